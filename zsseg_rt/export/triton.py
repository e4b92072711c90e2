"""A Triton Inference Server model repository from a bundle (TensorRT plans, or the ONNX graphs as fallback).

Layout: ``<repo>/<prefix><graph>/config.pbtxt`` + ``<repo>/<prefix><graph>/1/model.plan`` (or ``model.onnx``), and
an ensemble ``<prefix>segment`` chaining image encoder -> head.

* image encoder and text encoder: ``max_batch_size`` > 0, dims exclude the batch axis, dynamic batching on.
* head: ``max_batch_size: 0`` with full dims, because ``text_embeddings [C, D]`` has no batch axis (C is the
  vocabulary size) and Triton requires a batch axis on every input of a batching model.
* ensemble: ``max_batch_size: 0``; its ``image`` input carries the batch axis explicitly.
Untested against a running Triton here; the tests check the generated text.
"""

from __future__ import annotations

import os
import shutil
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from zsseg_rt.bundle import BundleMeta, Files, Names, graph_io, load_meta

_ROLES = {"image": Files.IMAGE_ENCODER, "head": Files.HEAD, "text": Files.TEXT_ENCODER}
Tensor = Tuple[str, str, Sequence[int]]  # (name, Triton data type, dims)


def _tensors(meta: BundleMeta) -> Dict[str, Tuple[List[Tensor], List[Tensor]]]:
    """role -> (inputs, outputs); dims exclude the batch axis for image/text, include it (-1) for head."""
    size, dim = int(meta.image_size), int(meta.embed_dim)
    grid_h, grid_w = meta.grid
    patches = grid_h * grid_w
    return {
        "image": (
            [(Names.IMAGE, "TYPE_FP32", [3, size, size])],
            [(Names.IMAGE_GLOBAL, "TYPE_FP32", [dim]), (Names.PATCHES, "TYPE_FP32", [patches, dim])],
        ),
        "head": (
            [
                (Names.TEXT_EMBEDDINGS, "TYPE_FP32", [-1, dim]),
                (Names.IMAGE_GLOBAL, "TYPE_FP32", [-1, dim]),
                (Names.PATCHES, "TYPE_FP32", [-1, patches, dim]),
            ],
            [(Names.MASK_LOGITS, "TYPE_FP32", [-1, -1, grid_h, grid_w])],
        ),
        "text": (
            [(Names.TOKENS, "TYPE_INT32", [int(meta.context_length)])],
            [(Names.TEXT_EMBEDDINGS, "TYPE_FP32", [dim])],
        ),
    }


def _tensor_block(kind: str, tensors: Sequence[Tensor]) -> str:
    items = [
        f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: [ {", ".join(str(d) for d in dims)} ]\n  }}'
        for name, dtype, dims in tensors
    ]
    return f"{kind} [\n" + ",\n".join(items) + "\n]\n"


def model_config(
    name: str,
    platform: str,
    max_batch: int,
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    dynamic_batching: bool,
) -> str:
    """The ``config.pbtxt`` text of one model."""
    text = f'name: "{name}"\nplatform: "{platform}"\nmax_batch_size: {int(max_batch)}\n'
    text += _tensor_block("input", inputs) + _tensor_block("output", outputs)
    if dynamic_batching:
        text += "dynamic_batching {\n  max_queue_delay_microseconds: 2000\n}\n"
    text += "instance_group [\n  {\n    count: 1\n    kind: KIND_GPU\n  }\n]\n"
    return text


def ensemble_config(name: str, image_model: str, head_model: str, meta: BundleMeta) -> str:
    """``image [B,3,S,S]`` + ``text_embeddings [C,D]`` -> ``mask_logits [B,C,h,w]`` via encoder then head."""
    tensors = _tensors(meta)
    image_in = [(n, t, [-1] + list(d)) for n, t, d in tensors["image"][0]]
    text_in = [tensors["head"][0][0]]
    steps = [
        (
            image_model,
            [(Names.IMAGE, Names.IMAGE)],
            [(Names.IMAGE_GLOBAL, "_image_global"), (Names.PATCHES, "_patches")],
        ),
        (
            head_model,
            [
                (Names.TEXT_EMBEDDINGS, Names.TEXT_EMBEDDINGS),
                (Names.IMAGE_GLOBAL, "_image_global"),
                (Names.PATCHES, "_patches"),
            ],
            [(Names.MASK_LOGITS, Names.MASK_LOGITS)],
        ),
    ]
    text = f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 0\n'
    text += _tensor_block("input", image_in + text_in) + _tensor_block("output", tensors["head"][1])
    text += "ensemble_scheduling {\n  step [\n"
    blocks = []
    for model, inputs, outputs in steps:
        lines = [f'    {{\n      model_name: "{model}"\n      model_version: -1']
        lines += [f'      input_map {{ key: "{key}" value: "{value}" }}' for key, value in inputs]
        lines += [f'      output_map {{ key: "{key}" value: "{value}" }}' for key, value in outputs]
        blocks.append("\n".join(lines) + "\n    }")
    return text + ",\n".join(blocks) + "\n  ]\n}\n"


def _check_engine_batch(engines: Mapping[str, str], max_batch: int) -> None:
    """Triton batches the image and text encoders up to ``max_batch``: their engines' profiles must cover it."""
    from zsseg_rt.runtime.engine_cache import read_engine_record

    axis = {"image": Names.BATCH, "text": Names.NUM_PROMPTS}
    for role, name in axis.items():
        path = engines.get(role)
        if not path:
            continue
        key, _ = read_engine_record(path)
        high = dict(key.profile).get(name, (0, 0, 0))[2]
        if high < max_batch:
            raise ValueError(
                f"the {role} engine {path!r} accepts at most {high} on its {name!r} axis but max_batch={max_batch}; "
                f"rebuild with `zsseg build-engine --max-batch {max_batch}` or pass max_batch={high}"
            )


def write_triton_repository(
    bundle_dir: str,
    repository_dir: str,
    engines: Optional[Mapping[str, str]] = None,
    max_batch: int = 8,
    prefix: str = "zsseg_",
) -> Dict[str, str]:
    """Write a Triton model repository for a bundle.

    Args:
        bundle_dir: an export bundle.
        repository_dir: where to write (created; existing model folders of the same names are replaced).
        engines: ``{"image": path, "head": path, "text": path}`` TensorRT engines (``build_engines`` output; their
            batch profile must cover ``max_batch``); None serves the ONNX graphs with onnxruntime instead.
        max_batch: Triton ``max_batch_size`` of the image and text encoders.
    Returns:
        ``{model name: model directory}``, the ensemble included.
    """
    if int(max_batch) < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    meta = load_meta(bundle_dir)
    if meta.io != graph_io({}):
        raise NotImplementedError(
            f"the Triton writer supports bundles with ZegCLIP's graph I/O; {bundle_dir!r} ({meta.family}) has "
            f"image outputs {meta.io['image']['outputs']}. Serve it through zsseg_rt.Engine instead."
        )
    tensors = _tensors(meta)
    if engines:
        _check_engine_batch(engines, max_batch)
    platform = "tensorrt_plan" if engines else "onnxruntime_onnx"
    written = {}
    for role, graph in _ROLES.items():
        source = engines.get(role) if engines else meta.file(graph)
        if not source or not os.path.isfile(source):
            continue
        name = prefix + os.path.splitext(graph)[0]
        model_dir = os.path.join(repository_dir, name)
        shutil.rmtree(model_dir, ignore_errors=True)
        os.makedirs(os.path.join(model_dir, "1"))
        shutil.copyfile(source, os.path.join(model_dir, "1", "model.plan" if engines else "model.onnx"))
        batching = role != "head"
        config = model_config(name, platform, max_batch if batching else 0, *tensors[role], dynamic_batching=batching)
        with open(os.path.join(model_dir, "config.pbtxt"), "w", encoding="utf-8") as handle:
            handle.write(config)
        written[name] = model_dir
    image_name, head_name = (prefix + os.path.splitext(_ROLES[r])[0] for r in ("image", "head"))
    if image_name in written and head_name in written:
        name = prefix + "segment"
        model_dir = os.path.join(repository_dir, name)
        os.makedirs(os.path.join(model_dir, "1"), exist_ok=True)
        with open(os.path.join(model_dir, "config.pbtxt"), "w", encoding="utf-8") as handle:
            handle.write(ensemble_config(name, image_name, head_name, meta))
        written[name] = model_dir
    return written
