"""The vocabulary unit (no torch; below ``bundle/``): everything about the class names a user gives at run time.

* names (:mod:`.names`): the ONE rule for what counts as the same name (:func:`name_key`, the CLIP tokenizer's
  cleaning), the check of a vocabulary (:func:`validate_class_names`), its entries (:class:`Vocabulary`, one
  :class:`VocabularyEntry` per class, which can hold several names: synonyms ``"person; man; woman"``) and
  class-list file text;
* named vocabularies (:mod:`.named`): the standard benchmarks' official class files with their synonyms and
  background class (``"voc21"``, ``"context60"``, ...);
* templates (:mod:`.templates`): the check of a prompt template, the bundled sets, the prompts of a vocabulary;
* the CLIP tokenizer (:mod:`.tokenizer`, token-for-token open_clip's);
* text embeddings (:mod:`.text_cache`): a class's prompts through a text encoder, and the per-name cache;
* the per-class bias (:mod:`.bias`) and the bundled class lists (:mod:`.class_lists`).

The Engine, the stream runner, the server, evaluation and the PyTorch models all use this unit.
"""

from . import text_cache
from .bias import validate_class_bias
from .class_lists import VOCAB_DIR, load_class_names
from .named import describe_named, named_vocabularies
from .names import (
    SYNONYM_SEPARATOR,
    Vocabulary,
    VocabularyEntry,
    name_key,
    named_vocabulary,
    named_vocabulary_name,
    parse_class_text,
    prompt_key,
    same_name,
    seen_mask,
    split_synonyms,
    validate_class_names,
)
from .templates import expand_templates, load_templates, template_sets, validate_templates
from .text_cache import *  # noqa: F403 - the names of text_cache.__all__, listed there only (added below)
from .tokenizer import ClipTokenizer, build_tokenizer_json, clean_text

__all__ = [
    "SYNONYM_SEPARATOR",
    "split_synonyms",
    "named_vocabulary",
    "named_vocabulary_name",
    "named_vocabularies",
    "describe_named",
    "Vocabulary",
    "VocabularyEntry",
    "name_key",
    "same_name",
    "prompt_key",
    "seen_mask",
    "validate_class_names",
    "parse_class_text",
    "validate_templates",
    "expand_templates",
    "load_templates",
    "template_sets",
    "validate_class_bias",
    "VOCAB_DIR",
    "load_class_names",
    "ClipTokenizer",
    "build_tokenizer_json",
    "clean_text",
]
__all__ += text_cache.__all__  # the text embeddings' names, listed once (in text_cache)
