"""File names and ONNX tensor names of an export bundle: the only place they are spelled."""
from __future__ import annotations

BUNDLE_FORMAT_VERSION = 1


class Files:
    """File names inside a bundle directory."""

    META = "meta.json"
    IMAGE_ENCODER = "image_encoder.onnx"
    HEAD = "head.onnx"
    TEXT_ENCODER = "text_encoder.onnx"
    TOKENIZER = "tokenizer.json"
    ENGINE_DIR = "engines"  # TensorRT engines + timing cache, built on the target device


class Names:
    """ONNX graph input/output tensor names (and dynamic axis names)."""

    # image encoder
    IMAGE = "image"                      # [B, 3, S, S] float32, normalised
    IMAGE_GLOBAL = "image_global"        # [B, D] float32, L2-normalised
    PATCHES = "patches"                  # [B, N, D] float32, L2-normalised, N = h*w
    # head
    TEXT_EMBEDDINGS = "text_embeddings"  # [C, D] float32 (also the text encoder's output)
    MASK_LOGITS = "mask_logits"          # [B, C, h, w] float32, pre-sigmoid
    # text encoder
    TOKENS = "tokens"                    # [P, L] int32 token ids
    # dynamic axes
    BATCH = "batch"
    NUM_CLASSES = "num_classes"
    NUM_PROMPTS = "num_prompts"

    IMAGE_ENCODER_INPUTS = (IMAGE,)
    IMAGE_ENCODER_OUTPUTS = (IMAGE_GLOBAL, PATCHES)
    HEAD_INPUTS = (TEXT_EMBEDDINGS, IMAGE_GLOBAL, PATCHES)
    HEAD_OUTPUTS = (MASK_LOGITS,)
    TEXT_ENCODER_INPUTS = (TOKENS,)
    TEXT_ENCODER_OUTPUTS = (TEXT_EMBEDDINGS,)
