"""Shape-profile coverage of a bundle's graphs, checked without TensorRT: what ``zsseg build-engine`` would give
TensorRT as optimisation profiles, and whether the runtime stays inside them.

* every dynamic dimension of every graph input has a range in every optimisation profile (meta.json names the axis,
  ``axis_ranges`` gives it min/opt/max; an image graph of any size has a wide and a tall profile, whose patch-grid
  ranges are the image's divided by the patch), static dimensions are not given one, and
  ``1 <= min <= opt <= max``;
* the head's image inputs are the image encoder's outputs: same names, dtypes and shapes once the batch size is
  substituted (at the profile's min, opt and max);
* the device pipeline's windows per encoder call (``device_pipeline.windows_per_call``: ``Engine.max_batch`` capped by
  the engine's profile) never exceed the engines' batch maximum, for engines built with the Python API's default
  ``max_batch`` and with the CLI's.

``check_bundle_profiles`` returns ``compat.Finding`` objects; the CI test runs it on every family's bundle.
"""

from __future__ import annotations

import inspect
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from zsseg_rt.bundle import GRAPH_FILES, BundleMeta, Names
from zsseg_rt.prepare.tensorrt.compat import Finding
from zsseg_rt.runtime.engine_cache import (
    DEFAULT_MAX_PROMPTS,
    AxisRange,
    EngineBuildError,
    axis_ranges,
    dynamic_input_axes,
    profile_count,
    profile_ranges,
    profile_shapes,
)

Shapes = Dict[str, Tuple[int, Tuple[int, ...]]]  # tensor name -> (ONNX elem type, shape; -1 = dynamic)


def _graph_io(path: str) -> Tuple[Shapes, Shapes, Dict[str, List[str]]]:
    """(inputs, outputs, dim names) of an ONNX file, weights not loaded."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    names: Dict[str, List[str]] = {}

    def table(infos) -> Shapes:
        out = {}
        for info in infos:
            if info.name in initializers:
                continue
            dims = info.type.tensor_type.shape.dim
            out[info.name] = (
                int(info.type.tensor_type.elem_type),
                tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in dims),
            )
            names[info.name] = [d.dim_param if d.HasField("dim_param") else "" for d in dims]
        return out

    return table(model.graph.input), table(model.graph.output), names


def check_graph_profile(meta: BundleMeta, role: str, ranges: Mapping[str, AxisRange]) -> List[Finding]:
    """Every dynamic dimension of ``role``'s inputs has a range in ``ranges``; ranges are ordered and >= 1."""
    findings: List[Finding] = []
    inputs, _, dim_names = _graph_io(meta.file(GRAPH_FILES[role]))
    axes = dynamic_input_axes(meta, role)
    declared = list(meta.io[role]["inputs"])
    if sorted(declared) != sorted(inputs):
        findings.append(
            Finding(
                "error",
                "profile_inputs_mismatch",
                f"{role}: meta.json lists inputs {declared}, the graph has {sorted(inputs)}; re-export the bundle",
            )
        )
    for name, (_, shape) in inputs.items():
        input_axes = {int(axis): axis_name for axis, axis_name in axes.get(name, {}).items()}
        missing = False
        for axis, dim in enumerate(shape):
            axis_name = input_axes.get(axis)
            if dim < 0 and (axis_name is None or axis_name not in ranges):
                missing = True
                label = dim_names[name][axis] or "unnamed"
                findings.append(
                    Finding(
                        "error",
                        "missing_profile_range",
                        f"{role} input {name!r} axis {axis} ({label}) is dynamic but has no profile range: meta.json "
                        f"names {'no axis' if axis_name is None else repr(axis_name)} there and zsseg_rt's ranges are "
                        f"{sorted(ranges)}; TensorRT needs min/opt/max for every dynamic dimension",
                    )
                )
        if missing:
            continue
        try:
            low, opt, high = profile_shapes(name, shape, input_axes, ranges)
        except (EngineBuildError, KeyError) as exc:
            findings.append(Finding("error", "bad_profile_range", f"{role} input {name!r}: {exc}"))
            continue
        for axis, (a, b, c) in enumerate(zip(low, opt, high)):
            if not 1 <= a <= b <= c:
                findings.append(
                    Finding(
                        "error",
                        "bad_profile_range",
                        f"{role} input {name!r} axis {axis}: min/opt/max {a}/{b}/{c} are not 1 <= min <= opt <= max",
                    )
                )
    return findings


def _encoder_output_shapes(meta: BundleMeta, batch: int) -> Optional[Shapes]:
    """The image encoder's output (type, shape) for ``batch`` windows: ONNX shape inference with the batch fixed, and
    where it leaves a dimension open, one ONNX Runtime run on zeros (None if neither is possible)."""
    import onnx
    from onnx import shape_inference

    path = meta.file(GRAPH_FILES["image"])
    model = onnx.load(path, load_external_data=False)
    size = int(meta.image_size)
    fixed = {Names.IMAGE: (batch, 3, size, size)}
    for info in model.graph.input:
        if info.name in fixed:
            for dim, value in zip(info.type.tensor_type.shape.dim, fixed[info.name]):
                dim.Clear()
                dim.dim_value = value
    for info in model.graph.output:
        for dim in info.type.tensor_type.shape.dim:
            dim.Clear()
    inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes = {}
    for info in inferred.graph.output:
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = (
            int(info.type.tensor_type.elem_type),
            tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims),
        )
    if all(all(d > 0 for d in shape) and shape for _, shape in shapes.values()):
        return shapes
    try:
        import numpy as np
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {Names.IMAGE: np.zeros(fixed[Names.IMAGE], np.float32)})
    return {o.name: (shapes.get(o.name, (1, ()))[0], tuple(v.shape)) for o, v in zip(session.get_outputs(), outputs)}


def check_head_matches_encoder(meta: BundleMeta, ranges: Mapping[str, AxisRange]) -> List[Finding]:
    """The head's image inputs equal the encoder's outputs (names, dtypes, shapes at the batch min/opt/max)."""
    findings: List[Finding] = []
    head_inputs, _, _ = _graph_io(meta.file(GRAPH_FILES["head"]))
    image_outputs = list(meta.io["image"]["outputs"])
    wanted = sorted(n for n in head_inputs if n != Names.TEXT_EMBEDDINGS)
    if sorted(image_outputs) != wanted:
        return [
            Finding(
                "error",
                "head_encoder_mismatch",
                f"the head takes {wanted} besides the text, the image encoder gives {sorted(image_outputs)}",
            )
        ]
    head_axes = dynamic_input_axes(meta, "head")
    for batch in sorted(set(ranges[Names.BATCH])):
        encoder = _encoder_output_shapes(meta, batch)
        if encoder is None:
            findings.append(
                Finding(
                    "warning",
                    "head_encoder_unchecked",
                    "the encoder's output shapes could not be worked out without onnxruntime",
                )
            )
            return findings
        for name in image_outputs:
            elem, shape = head_inputs[name]
            axes = {int(a): n for a, n in head_axes.get(name, {}).items()}
            grid = int(meta.image_size) // int(meta.patch_size)  # the encoder ran at the window size S x S
            fill = {Names.BATCH: batch, Names.GRID_HEIGHT: grid, Names.GRID_WIDTH: grid}
            substituted = tuple(fill.get(axes.get(i, ""), d) for i, d in enumerate(shape))
            if (elem, substituted) != encoder[name]:
                findings.append(
                    Finding(
                        "error",
                        "head_encoder_mismatch",
                        f"at batch {batch} the image encoder gives {name!r} as type {encoder[name][0]} shape "
                        f"{list(encoder[name][1])}, the head takes type {elem} shape {list(substituted)}",
                    )
                )
    return findings


def check_grid_follows_image(meta: BundleMeta, ranges: Mapping[str, AxisRange], profile: int = 0) -> List[Finding]:
    """An image graph of any size: the head's patch-grid ranges are the image's divided by the patch (a head range
    narrower than the encoder's output would refuse images the encoder accepts)."""
    findings = []
    for image_axis, grid_axis in ((Names.HEIGHT, Names.GRID_HEIGHT), (Names.WIDTH, Names.GRID_WIDTH)):
        if image_axis not in ranges:
            continue
        want = tuple(max(1, v // int(meta.patch_size)) for v in ranges[image_axis])
        if ranges.get(grid_axis) != want:
            findings.append(
                Finding(
                    "error",
                    "grid_profile_mismatch",
                    f"profile {profile}: {grid_axis} {ranges.get(grid_axis)} is not {image_axis} {ranges[image_axis]} "
                    f"/ patch {meta.patch_size} = {want}",
                )
            )
    return findings


class _ProfileExecutor:
    """An executor whose batch limit is an engine profile's maximum (for ``windows_per_call``)."""

    def __init__(self, limit: int):
        self.limit = int(limit)

    def batch_limit(self) -> int:
        return self.limit


def check_device_windows(meta: BundleMeta, engine_batch_max: int) -> List[Finding]:
    """The device pipeline's windows per call fit an engine whose batch profile ends at ``engine_batch_max``, for the
    Engine's default ``max_batch`` and for one call per frame of every shape the CLI default assumes."""
    from zsseg_rt.runtime.device.device_pipeline import windows_per_call
    from zsseg_rt.runtime.engine import Engine
    from zsseg_rt.runtime.pipelines import pipeline_class

    requested = inspect.signature(Engine.__init__).parameters["max_batch"].default
    if requested is None:  # Engine(max_batch=None): the pipeline's own default
        requested = pipeline_class(meta.pipeline).default_max_batch
    findings = []
    for asked in sorted({int(requested), 1, int(engine_batch_max) + 1}):
        chunk = windows_per_call(asked, _ProfileExecutor(engine_batch_max))  # type: ignore[arg-type]
        if not 1 <= chunk <= engine_batch_max:
            findings.append(
                Finding(
                    "error",
                    "device_windows_exceed_profile",
                    f"the device pipeline would run {chunk} windows per "
                    f"call (Engine max_batch={asked}) on an engine built for at most {engine_batch_max}",
                )
            )
    return findings


def check_bundle_profiles(
    meta: BundleMeta,
    max_batches: Optional[Sequence[int]] = None,
    opt_classes: int = 20,
    max_prompts: int = DEFAULT_MAX_PROMPTS,
) -> List[Finding]:
    """All profile checks for engines built with each of ``max_batches`` (default: the Python API's default
    ``build_engine_set(max_batch=...)`` and the CLI's, a 4:3 frame's windows)."""
    from zsseg_rt.prepare.tensorrt.build import build_engine_set, frame_windows

    if max_batches is None:
        api_default = inspect.signature(build_engine_set).parameters["max_batch"].default
        max_batches = sorted({int(api_default), frame_windows(meta)})
    findings: List[Finding] = []
    roles = [role for role, name in GRAPH_FILES.items() if name in meta.files]
    for max_batch in max_batches:
        every = axis_ranges(meta, max_batch, min(int(opt_classes), int(meta.max_classes)), max_prompts)
        ranges = profile_ranges(every, 0)
        for index in range(profile_count(every)):  # two for an image graph of any size (wide and tall images)
            for role in roles:
                findings += check_graph_profile(meta, role, profile_ranges(every, index))
            findings += check_grid_follows_image(meta, profile_ranges(every, index), index)
        if {"image", "head"} <= set(roles):
            findings += check_head_matches_encoder(meta, ranges)
            findings += check_device_windows(meta, ranges[Names.BATCH][2])
    return findings
