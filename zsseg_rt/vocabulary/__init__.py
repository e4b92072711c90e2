"""The vocabulary unit (no torch): class names and the one rule for what counts as the same name, prompt
templates, the CLIP tokenizer, the per-name text-embedding cache and the bundled class lists."""

from .class_lists import VOCAB_DIR, load_class_names
from .names import prompt_key, validate_class_bias, validate_class_names, validate_templates
from .tokenizer import ClipTokenizer, build_tokenizer_json, clean_text, expand_templates

__all__ = [
    "VOCAB_DIR",
    "load_class_names",
    "prompt_key",
    "validate_class_bias",
    "validate_class_names",
    "validate_templates",
    "ClipTokenizer",
    "build_tokenizer_json",
    "clean_text",
    "expand_templates",
]
