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
    # two-stage pipeline bundles: the mask branch and CLIP's image tower on the proposals' crops
    MASK_BRANCH = "mask_branch.onnx"
    CLIP_IMAGE_ENCODER = "clip_image_encoder.onnx"
    ENGINE_DIR = "engines"  # TensorRT engines + timing cache, built on the target device


class Names:
    """ONNX graph input/output tensor names (and dynamic axis names)."""

    # image encoder
    IMAGE = "image"  # [B, 3, S, S] float32, normalised
    IMAGE_GLOBAL = "image_global"  # [B, D] float32, L2-normalised
    PATCHES = "patches"  # [B, N, D] float32, L2-normalised, N = h*w
    REGIONS = "regions"  # [B, R, D] float32, L2-normalised (CLIP-RC region-bridge tokens, R = 16)
    SEGMENT_FEATURES = "segment_features"  # [B, m, D] float32 (ZeroSeg segment tokens in CLIP space)
    GLOBAL_FEATURE = "global_feature"  # [B, D] float32 (ZeroSeg pooled embedding z)
    ASSIGNMENT_MAPS = "assignment_maps"  # [B, m, h, w] float32 (ZeroSeg patch -> segment assignment)
    # head
    TEXT_EMBEDDINGS = "text_embeddings"  # [C, D] float32 (also the text encoder's output)
    MASK_LOGITS = "mask_logits"  # [B, C, h, w] float32, pre-sigmoid (ZeroSeg: [B, 1 + C, S, S] class maps)
    # text encoder
    TOKENS = "tokens"  # [P, L] int32 token ids
    # two-stage pipeline: mask branch and CLIP crop encoder
    CLASS_LOGITS = "class_logits"  # [B, Q, C+1] float32, query-classifier logits (last column: no-object)
    QUERY_MASKS = "query_masks"  # [B, Q, H/4, W/4] float32, per-query mask logits
    CROPS = "crops"  # [N, 3, S, S] float32, CLIP-normalised crops (S = the CLIP input size)
    CROP_EMBEDDINGS = "crop_embeddings"  # [N, D] float32, L2-normalised
    # dynamic axes
    BATCH = "batch"
    NUM_CLASSES = "num_classes"
    NUM_PROMPTS = "num_prompts"
    TOKEN_LENGTH = "token_length"  # text encoder sequence length (<= context length; runtime trims padding)

    IMAGE_ENCODER_INPUTS = (IMAGE,)
    IMAGE_ENCODER_OUTPUTS = (IMAGE_GLOBAL, PATCHES)
    HEAD_INPUTS = (TEXT_EMBEDDINGS, IMAGE_GLOBAL, PATCHES)
    HEAD_OUTPUTS = (MASK_LOGITS,)
    TEXT_ENCODER_INPUTS = (TOKENS,)
    TEXT_ENCODER_OUTPUTS = (TEXT_EMBEDDINGS,)


# Graph roles -> file names. Every per-graph table in zsseg_rt is keyed by these roles. The windowed pipeline's
# bundles (image encoder + head per window, text encoder):
GRAPH_FILES = {"image": Files.IMAGE_ENCODER, "head": Files.HEAD, "text": Files.TEXT_ENCODER}
# The two-stage pipeline's bundles hold other graphs: the mask branch, CLIP's image tower on the crops (dynamic crop
# batch) and the same text encoder.
TWO_STAGE_GRAPH_FILES = {"mask": Files.MASK_BRANCH, "clip_image": Files.CLIP_IMAGE_ENCODER, "text": Files.TEXT_ENCODER}
PIPELINE_GRAPH_FILES = {"windowed": GRAPH_FILES, "two_stage": TWO_STAGE_GRAPH_FILES}


def graph_files(pipeline: str = "windowed"):
    """Graph roles -> file names of a bundle of runtime pipeline ``pipeline`` (``meta.json`` "pipeline")."""
    try:
        return dict(PIPELINE_GRAPH_FILES[pipeline])
    except KeyError:
        raise ValueError(
            f"unknown runtime pipeline {pipeline!r} in meta.json; known: {sorted(PIPELINE_GRAPH_FILES)} (a newer "
            "zsseg_rt wrote this bundle?)"
        ) from None


def two_stage_graph_io():
    """The I/O table of a two-stage pipeline bundle: mask branch (image of any size, padded to the size
    divisibility), CLIP crop encoder (dynamic crop batch) and text encoder."""
    text = default_graph_io()["text"]
    return {
        "mask": {
            "inputs": [Names.IMAGE, Names.TEXT_EMBEDDINGS],
            "outputs": [Names.CLASS_LOGITS, Names.QUERY_MASKS],
            "dynamic_axes": {
                Names.IMAGE: {0: Names.BATCH, 2: "height", 3: "width"},
                Names.TEXT_EMBEDDINGS: {0: Names.NUM_CLASSES},
                Names.CLASS_LOGITS: {0: Names.BATCH, 2: "num_classes_and_background"},
                Names.QUERY_MASKS: {0: Names.BATCH, 2: "mask_height", 3: "mask_width"},
            },
        },
        "clip_image": {
            "inputs": [Names.CROPS],
            "outputs": [Names.CROP_EMBEDDINGS],
            "dynamic_axes": {Names.CROPS: {0: "num_crops"}, Names.CROP_EMBEDDINGS: {0: "num_crops"}},
        },
        "text": text,
    }


def default_graph_io(image_outputs=Names.IMAGE_ENCODER_OUTPUTS):
    """The I/O table meta.json records under "io": per role, inputs, outputs and dynamic axes.

    ``image_outputs`` are the image encoder's outputs in order (ZegCLIP: image_global, patches); the head takes
    the text embeddings followed by all of them. Every image output has the batch on axis 0.
    """
    image_outputs = list(image_outputs)
    return {
        "image": {
            "inputs": [Names.IMAGE],
            "outputs": image_outputs,
            "dynamic_axes": {name: {0: Names.BATCH} for name in [Names.IMAGE] + image_outputs},
        },
        "head": {
            "inputs": [Names.TEXT_EMBEDDINGS] + image_outputs,
            "outputs": [Names.MASK_LOGITS],
            "dynamic_axes": dict(
                {
                    Names.TEXT_EMBEDDINGS: {0: Names.NUM_CLASSES},
                    Names.MASK_LOGITS: {0: Names.BATCH, 1: Names.NUM_CLASSES},
                },
                **{name: {0: Names.BATCH} for name in image_outputs},
            ),
        },
        "text": {
            "inputs": [Names.TOKENS],
            "outputs": [Names.TEXT_EMBEDDINGS],
            "dynamic_axes": {
                Names.TOKENS: {0: Names.NUM_PROMPTS, 1: Names.TOKEN_LENGTH},
                Names.TEXT_EMBEDDINGS: {0: Names.NUM_PROMPTS},
            },
        },
    }


def graph_io(meta_raw):
    """The bundle's I/O table with integer axis keys (JSON stores them as strings)."""
    table = meta_raw.get("io") or default_graph_io()
    out = {}
    for role, entry in table.items():
        axes = {
            name: {int(axis): label for axis, label in spec.items()}
            for name, spec in entry.get("dynamic_axes", {}).items()
        }
        out[role] = {"inputs": list(entry["inputs"]), "outputs": list(entry["outputs"]), "dynamic_axes": axes}
    return out
