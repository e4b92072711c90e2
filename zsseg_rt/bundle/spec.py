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
    PATCH_GRID = "patch_grid"  # [B, h, w, D] float32, L2-normalised (image graphs of any input size)
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
    # image graphs that take any input size (meta.json "whole_image"): the input's sides and the patch grid's
    HEIGHT = "height"
    WIDTH = "width"
    GRID_HEIGHT = "grid_height"
    GRID_WIDTH = "grid_width"

    IMAGE_ENCODER_INPUTS = (IMAGE,)
    IMAGE_ENCODER_OUTPUTS = (IMAGE_GLOBAL, PATCHES)
    HEAD_INPUTS = (TEXT_EMBEDDINGS, IMAGE_GLOBAL, PATCHES)
    HEAD_OUTPUTS = (MASK_LOGITS,)
    TEXT_ENCODER_INPUTS = (TOKENS,)
    TEXT_ENCODER_OUTPUTS = (TEXT_EMBEDDINGS,)


class WholeImage:
    """The values of meta.json's ``whole_image`` section (bundles whose image graph takes any input size;
    ``zsseg_rt.bundle.schema`` checks it, ``zsseg_rt.runtime.pipelines.windowed`` runs it)."""

    # how a rescaled image becomes the graph input: "pad" zeros bottom/right up to a multiple of the patch (mmseg's
    # PatchEmbed, padding='corner'), "crop" drops the rows/columns past the last whole patch (a stride-p convolution)
    FITS = ("pad", "crop")
    # where the grid logits are resized first: to the rescaled image, then to the original ("rescaled": mmseg
    # encode_decode + whole_inference), or straight to the original ("original")
    LOGITS_TO = ("rescaled", "original")
    # the test modes: one pass over the whole rescaled image, or sliding windows of the graph size
    INFERENCE = ("whole", "windows")


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


def default_graph_io(image_outputs=Names.IMAGE_ENCODER_OUTPUTS, any_size: bool = False):
    """The I/O table meta.json records under "io": per role, inputs, outputs and dynamic axes.

    ``image_outputs`` are the image encoder's outputs in order (ZegCLIP: image_global, patches); the head takes
    the text embeddings followed by all of them. Every image output has the batch on axis 0. ``any_size``: the
    image graph takes any height and width (a bundle with a ``whole_image`` section): the image's axes 2, 3
    (``height``, ``width``), ``patch_grid``'s axes 1, 2 and the mask logits' axes 2, 3 (``grid_height``,
    ``grid_width``) are dynamic too.
    """
    image_outputs = list(image_outputs)
    table = _fixed_size_graph_io(image_outputs)
    if any_size:
        grid = {Names.PATCH_GRID: {1: Names.GRID_HEIGHT, 2: Names.GRID_WIDTH}}
        table["image"]["dynamic_axes"][Names.IMAGE].update({2: Names.HEIGHT, 3: Names.WIDTH})
        for role in ("image", "head"):
            for name, axes in table[role]["dynamic_axes"].items():
                axes.update(grid.get(name, {}))
        table["head"]["dynamic_axes"][Names.MASK_LOGITS].update({2: Names.GRID_HEIGHT, 3: Names.GRID_WIDTH})
    return table


def _fixed_size_graph_io(image_outputs):
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
