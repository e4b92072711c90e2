"""Engine cache keys, shape profiles and ``engine.json`` records (no TensorRT needed).

An engine depends on (graph, ONNX sha256 from meta.json, precision, shape profile, TensorRT version, GPU name,
compute capability, multiprocessor count, total GPU memory, build recipe): ``EngineKey`` holds them,
``EngineKey.digest()`` names the cache directory ``<bundle>/engines/<digest>/``, and ``engine.json`` beside the
engine records them (and the accuracy-gate result of the build) so a mismatching engine is rebuilt or refused with
a message saying what differs. The GPU name alone does not tell Jetson modules apart ("Orin" is AGX, NX and Nano
alike); the multiprocessor count and memory do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, fields
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from zsseg_rt.bundle import GRAPH_FILES as SPEC_GRAPH_FILES
from zsseg_rt.bundle import BundleMeta, Names, graph_files
from zsseg_rt.errors import naming_path
from zsseg_rt.runtime.device.cuda_driver import DeviceInfo
from zsseg_rt.runtime.file_verification import cached_sha256, check_recorded_file

# fp32: reference numerics (TF32 off). fp16: plain fp16, only each L2 normalisation's sum of squares kept in fp32.
# fp16-pinned: the former recipe (LayerNorm/Softmax/reductions and two hops after them pinned to fp32 with
# OBEY_PRECISION_CONSTRAINTS). int8: explicitly quantised graphs only (QuantizeLinear/DequantizeLinear nodes).
NAME = "tensorrt"  # this module's backend row: its precisions are the row's (fp32, fp16, fp16-pinned, int8)
# bump when the TensorRT build settings change, so cached engines are rebuilt. 3: fp16-pinned skips shape-only chains,
# pinned builds carry ProfilingVerbosity.DETAILED (pins checked with the engine inspector), workspace capped on Jetson
BUILD_RECIPE_VERSION = 3
ENGINE_RECORD = "engine.json"
ENGINE_SUFFIX = ".engine"
DEFAULT_MAX_PROMPTS = 256
# Two-stage bundles: the crops per CLIP image-encoder call an engine takes (`zsseg build-engine`'s default
# --max-batch for them): the Engine's default max_batch for that pipeline (TwoStagePipeline.default_max_batch), so
# one call of the default Engine is one engine run; a larger Engine max_batch is split into calls of this many.
DEFAULT_MAX_CROPS = 32
CROPS_AXIS = "num_crops"  # the CLIP crop encoder's dynamic batch (zsseg_rt.bundle.spec.two_stage_graph_io)

# Which graphs exist (role -> file) and which of their input axes are dynamic: both come from the bundle
# (zsseg_rt.bundle.spec.graph_files(meta.pipeline) and meta.json's "io" table), so every model family is covered.
# GRAPH_FILES: the windowed pipeline's (kept for callers of zsseg_rt 0.1); graph_file() reads the bundle's pipeline.
GRAPH_FILES: Dict[str, str] = dict(SPEC_GRAPH_FILES)


def bundle_graph_files(meta: BundleMeta) -> Dict[str, str]:
    """Role -> ONNX file of the bundle's pipeline (windowed: image, head, text; two-stage: mask, clip_image, text)."""
    return graph_files(getattr(meta, "pipeline", "windowed"))  # stand-ins without one (tests) are windowed


def graph_file(meta: BundleMeta, role: str) -> str:
    """The ONNX file of graph ``role`` of the bundle's pipeline (ValueError naming the roles it has)."""
    files = bundle_graph_files(meta)
    if role not in files:
        raise ValueError(f"graph role must be one of {sorted(files)} for this bundle's pipeline, got {role!r}")
    return files[role]


def is_two_stage(meta: BundleMeta) -> bool:
    return getattr(meta, "pipeline", "windowed") == "two_stage"


def dynamic_input_axes(meta: BundleMeta, role: str) -> Dict[str, Dict[int, str]]:
    """Dynamic axes of graph ``role``'s inputs, as recorded by the exporter in meta.json."""
    entry = meta.io[role]
    return {name: axes for name, axes in entry["dynamic_axes"].items() if name in entry["inputs"]}


AxisRange = Tuple[int, int, int]  # (min, opt, max)
Shape = Tuple[int, ...]


class EngineMismatchError(RuntimeError):
    """A cached engine was built for another TensorRT / GPU / graph / profile, or is missing or corrupted."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse or build a graph."""


# ---------------------------------------------------------------------------------------------- profiles and keys
def validate_precision(precision: str) -> None:
    """Raise ValueError for an unknown precision."""
    from zsseg_rt.runtime.backends.table import check_precision

    check_precision(
        NAME,
        precision,
        " (int8 needs an explicitly quantised bundle: QuantizeLinear/DequantizeLinear nodes in its image encoder; "
        "implicit calibration is not offered)",
    )


def graph_precision(precision: str, role: str) -> str:
    """int8 applies to the image encoder only (the graph a quantisation tool would quantise); the head and text
    encoder are then fp16."""
    return "fp16" if precision == "int8" and role != "image" else precision


PROFILE_MARK = "@"  # "height@1": the range of axis "height" in optimisation profile 1 (profile 0: the bare name)


def axis_ranges(
    meta: BundleMeta, max_batch: int = 1, opt_classes: int = 20, max_prompts: int = DEFAULT_MAX_PROMPTS
) -> Dict[str, AxisRange]:
    """(min, opt, max) of every dynamic axis. Batch opt = max_batch (callers batching crops use full batches).

    A bundle whose image graph takes any size (``whole_image``) adds the image's ``height`` / ``width`` and the
    patch grid's ``grid_height`` / ``grid_width`` in two optimisation profiles that together span every input the
    bundle declares (sides up to ``max_side``, the shorter up to ``max_short_side``): profile 0 wide (height up to
    ``max_short_side``), profile 1 tall (``"height@1"``...: width up to ``max_short_side``); one profile when the two
    bounds are equal. The graph-size window S x S is in profile 0; opt is a 4:3 image at the test scale (wide in 0,
    tall in 1), or the window for a bundle that runs windows by default."""
    if int(max_batch) < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if not 1 <= int(opt_classes) <= int(meta.max_classes):
        raise ValueError(f"opt_classes must be in 1..{meta.max_classes} (meta.max_classes), got {opt_classes}")
    if int(max_prompts) < 1:
        raise ValueError(f"max_prompts must be >= 1, got {max_prompts}")
    opt_prompts = min(int(max_prompts), int(opt_classes) * max(1, len(meta.templates)))
    if is_two_stage(meta):  # max_batch: crops per CLIP encoder call; the mask branch runs one image per call
        image_axes = {Names.BATCH: (1, 1, 1), CROPS_AXIS: (1, int(max_batch), int(max_batch)), **two_stage_ranges(meta)}
    else:
        image_axes = {Names.BATCH: (1, int(max_batch), int(max_batch)), **whole_image_ranges(meta)}
    return {
        **image_axes,
        Names.NUM_CLASSES: (1, int(opt_classes), int(meta.max_classes)),
        Names.NUM_PROMPTS: (1, opt_prompts, int(max_prompts)),
        # text sequence length (bundles with a dynamic token axis): the runtime trims padding to multiples of 8
        Names.TOKEN_LENGTH: (1, min(16, int(meta.context_length)), int(meta.context_length)),
    }


def two_stage_ranges(meta: BundleMeta) -> Dict[str, AxisRange]:
    """The mask branch's image axes of a two-stage bundle: the pipeline resizes an image's shorter side to
    ``test_short_side`` with the longer side at most ``test_max_size`` and pads both up to ``size_divisibility``,
    so two profiles hold every input: wide (height up to the padded short side, width up to the padded cap) and tall
    (``"height@1"``...: the other way round); sides from one padding step up (a thin image's). Opt: a 4:3 image."""
    params = meta.section("two_stage")
    div = max(1, int(params["size_divisibility"]))

    def padded(value: float) -> int:
        return max(div, -(-int(round(value)) // div) * div)

    short, long = padded(int(params["test_short_side"])), padded(int(params["test_max_size"]))
    short = min(short, long)
    opt = (short, min(long, padded(int(params["test_short_side"]) * 4 / 3)))
    return _wide_and_tall(short, long, opt, div)


def whole_image_ranges(meta: BundleMeta) -> Dict[str, AxisRange]:
    """The image-size axes of :func:`axis_ranges` (empty for a fixed-size image graph)."""
    whole = getattr(meta, "whole_image", None)
    if not whole:
        return {}
    patch, size = int(meta.patch_size), int(meta.image_size)
    long, short = int(whole["max_side"]), int(whole["max_short_side"])

    def to_patch(value: float, low: int, high: int) -> int:
        return min(high, max(low, int(round(value / patch)) * patch))

    if whole["default"] == "windows":
        opt = (size, size)
    else:
        test_short = int(meta.test_scale[1] or size)
        opt = (to_patch(test_short, patch, short), to_patch(test_short * 4 / 3, patch, long))
    return _wide_and_tall(short, long, opt, patch, patch)


def _wide_and_tall(short: int, long: int, opt: Tuple[int, int], low: int, patch: int = 0) -> Dict[str, AxisRange]:
    """The image axes in two profiles: wide (height up to ``short``, width up to ``long``) and, unless the two are
    equal, tall (``"height@1"``...: the other way round), sides from ``low``, ``opt`` the wide one's; ``patch``: the
    patch-grid axes too (a whole-image graph's)."""
    ranges: Dict[str, AxisRange] = {}
    profiles = [((short, long), opt)] + ([((long, short), opt[::-1])] if long != short else [])
    for index, ((high_h, high_w), (opt_h, opt_w)) in enumerate(profiles):
        mark = f"{PROFILE_MARK}{index}" if index else ""
        ranges[Names.HEIGHT + mark] = (low, opt_h, high_h)
        ranges[Names.WIDTH + mark] = (low, opt_w, high_w)
        if patch:
            ranges[Names.GRID_HEIGHT + mark] = (1, opt_h // patch, high_h // patch)
            ranges[Names.GRID_WIDTH + mark] = (1, opt_w // patch, high_w // patch)
    return ranges


def profile_count(ranges: Mapping[str, AxisRange]) -> int:
    """How many optimisation profiles ``ranges`` describe (axes named ``"axis@i"`` for profile i > 0)."""
    marks = [int(name.split(PROFILE_MARK)[1]) for name in ranges if PROFILE_MARK in name]
    return 1 + max(marks, default=0)


def profile_ranges(ranges: Mapping[str, AxisRange], index: int) -> Dict[str, AxisRange]:
    """The ranges of optimisation profile ``index``: each axis's ``"axis@index"`` range where there is one, else
    its profile-0 range (the axes every profile shares: batch, classes)."""
    plain = {name: rng for name, rng in ranges.items() if PROFILE_MARK not in name}
    if index:
        mark = f"{PROFILE_MARK}{index}"
        plain.update({name[: -len(mark)]: rng for name, rng in ranges.items() if name.endswith(mark)})
    return plain


def graph_profile(meta: BundleMeta, role: str, ranges: Mapping[str, AxisRange]) -> Dict[str, AxisRange]:
    """The axis ranges one graph uses, in every profile (so e.g. changing opt_classes does not rebuild the image
    encoder)."""
    used = {axis for axes in dynamic_input_axes(meta, role).values() for axis in axes.values()}
    names = set(used) | {name for name in ranges if name.split(PROFILE_MARK)[0] in used}
    return {name: ranges[name] for name in sorted(names)}


def profile_shapes(
    input_name: str, network_shape: Sequence[int], dynamic_axes: Mapping[int, str], ranges: Mapping[str, AxisRange]
) -> Tuple[Shape, Shape, Shape]:
    """(min, opt, max) shapes of one network input: static dims from the ONNX, dynamic ones from ``ranges``.

    Raises:
        EngineBuildError when the ONNX has a dynamic axis zsseg_rt has no range for, or a static axis where the
        profile asks for a range (re-export with that axis dynamic).
    """
    shapes: Tuple[List[int], List[int], List[int]] = ([], [], [])
    for axis, dim in enumerate(network_shape):
        axis_name = dynamic_axes.get(axis)
        if axis_name is None:
            if dim < 0:
                raise EngineBuildError(
                    f"input {input_name!r} axis {axis} is dynamic in the ONNX graph, but zsseg_rt "
                    "expects it static; re-export the bundle"
                )
            low = opt = high = int(dim)
        else:
            low, opt, high = ranges[axis_name]
            if dim >= 0 and not low == opt == high == dim:
                raise EngineBuildError(
                    f"input {input_name!r} axis {axis} ({axis_name}) is static ({dim}) in the ONNX graph but the "
                    f"profile asks for {low}..{high}; re-export with a dynamic {axis_name} axis or use {dim}"
                )
        for shape, value in zip(shapes, (low, opt, high)):
            shape.append(int(value))
    return tuple(shapes[0]), tuple(shapes[1]), tuple(shapes[2])


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. ``digest()`` names its cache directory."""

    graph: str  # ONNX file name (from zsseg_rt.bundle.spec.Files)
    onnx_sha256: str  # from meta.json
    precision: str  # of this graph (see graph_precision)
    profile: Tuple[Tuple[str, AxisRange], ...]  # sorted (axis name, (min, opt, max))
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    gpu_multiprocessors: int = 0  # CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT (Orin AGX 16, NX 8, Nano 4..8)
    gpu_memory_mib: int = 0  # cuDeviceTotalMem in MiB
    recipe: int = BUILD_RECIPE_VERSION

    def as_dict(self) -> Dict:
        data = asdict(self)
        data["profile"] = {axis: list(rng) for axis, rng in self.profile}
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "EngineKey":
        known = {f.name for f in fields(cls)}
        values = {name: data[name] for name in known if name in data}
        values["profile"] = tuple(sorted((axis, tuple(rng)) for axis, rng in dict(data.get("profile", {})).items()))
        return cls(**values)

    def digest(self) -> str:
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:24]

    def differences(self, other: "EngineKey") -> List[str]:
        """Human-readable ``field: engine has X, expected Y`` for every differing field."""
        mine, theirs = self.as_dict(), other.as_dict()
        return [
            f"{name}: engine has {mine[name]!r}, expected {theirs[name]!r}"
            for name in mine
            if mine[name] != theirs.get(name)
        ]


def make_engine_key(
    meta: BundleMeta,
    role: str,
    precision: str,
    ranges: Mapping[str, AxisRange],
    tensorrt_version: str,
    device: DeviceInfo,
) -> EngineKey:
    """The key of graph ``role`` (windowed: "image", "head", "text"; two-stage: "mask", "clip_image", "text") for
    this bundle, request and platform."""
    graph = graph_file(meta, role)
    if graph not in meta.files:
        raise EngineMismatchError(f"meta.json of {meta.path!r} records no {graph!r}; re-export the bundle")
    own_precision = graph_precision(precision, role)
    return EngineKey(
        graph=graph,
        onnx_sha256=meta.files[graph],
        precision=own_precision,
        profile=tuple(sorted(graph_profile(meta, role, ranges).items())),
        tensorrt_version=str(tensorrt_version),
        gpu_name=device.name,
        compute_capability=device.sm,
        gpu_multiprocessors=int(device.multiprocessors),
        gpu_memory_mib=int(device.total_memory_mib),
    )


def platform_fields(tensorrt_version: str, device: DeviceInfo) -> Dict[str, object]:
    """The key fields that tie an engine to this TensorRT and this GPU."""
    return {
        "tensorrt_version": str(tensorrt_version),
        "gpu_name": device.name,
        "compute_capability": device.sm,
        "gpu_multiprocessors": int(device.multiprocessors),
        "gpu_memory_mib": int(device.total_memory_mib),
    }


# ---------------------------------------------------------------------------------------------- engine records
def engine_path_for(engine_root: str, key: EngineKey) -> str:
    return os.path.join(engine_root, key.digest(), os.path.splitext(key.graph)[0] + ENGINE_SUFFIX)


def write_engine_record(engine_path: str, key: EngineKey, extra: Optional[Mapping] = None) -> None:
    """Write ``engine.json`` beside a freshly built engine: its key, file hash and size, and ``extra`` fields of the
    build (e.g. ``precision_pins``: which fp32 pins held)."""
    record = {
        **dict(extra or {}),
        "key": key.as_dict(),
        "digest": key.digest(),
        "engine_file": os.path.basename(engine_path),
        "engine_sha256": cached_sha256(engine_path),
        "engine_bytes": os.path.getsize(engine_path),
    }
    atomic_write(
        os.path.join(os.path.dirname(engine_path), ENGINE_RECORD), json.dumps(record, indent=2, sort_keys=True).encode()
    )


def read_engine_record(engine_path: str) -> Tuple[EngineKey, Dict]:
    """The key recorded beside an engine. Raises EngineMismatchError if the record is missing or unreadable."""
    record_path = os.path.join(os.path.dirname(os.path.abspath(engine_path)), ENGINE_RECORD)
    try:
        with open(record_path, "r", encoding="utf-8") as handle:
            record = json.load(handle)
        return EngineKey.from_dict(record["key"]), record
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineMismatchError(
            f"cannot read the engine record {record_path!r} ({exc}); zsseg_rt only loads engines it built and "
            "recorded. Rebuild with `zsseg build-engine <bundle>`"
        ) from exc


def check_engine(
    engine_path: str, expected_key: EngineKey, check_file_hash: bool = True, require_gate: bool = True
) -> EngineKey:
    """Refuse an engine whose recorded key differs from ``expected_key``, whose file does not match its record, or
    (``require_gate``) that did not pass the accuracy gate after its build (nor was accepted with the override).

    Returns:
        the recorded key (equal to ``expected_key``).
    Raises:
        EngineMismatchError saying which fields differ and to rebuild with ``zsseg build-engine``.
    """
    recorded, record = read_engine_record(engine_path)
    diffs = recorded.differences(expected_key)
    if diffs:
        raise EngineMismatchError(
            f"refusing TensorRT engine {engine_path!r}: it was built for a different setup:\n  - "
            + "\n  - ".join(diffs)
            + "\nRebuild it on this machine with `zsseg build-engine <bundle>`"
        )
    check_recorded_file(
        engine_path,
        record.get("engine_sha256"),
        check_file_hash,
        EngineMismatchError,
        missing=f"engine file {engine_path!r} is missing; rebuild with `zsseg build-engine <bundle>`",
        modified=f"engine file {engine_path!r} does not match the sha256 in its engine.json (truncated or modified); "
        "rebuild with `zsseg build-engine <bundle> --force`",
    )
    problem = accuracy_gate_problem(record) if require_gate else None
    if problem:
        raise EngineMismatchError(f"refusing TensorRT engine {engine_path!r}: {problem}")
    return recorded


GATE_FIELD = "accuracy_gate"


def record_accuracy_gate(engine_path: str, gate: Mapping) -> None:
    """Store the accuracy-gate result of a build in the engine's ``engine.json`` (``gate["accepted"]`` decides
    whether ``check_engine`` lets the engine be used)."""
    update_engine_record(engine_path, GATE_FIELD, dict(gate))


def update_engine_record(engine_path: str, field: str, value) -> None:
    """Set one field of an engine's ``engine.json`` (not the key fields: those say what the engine is)."""
    if field in ("key", "digest", "engine_sha256", "engine_file", "engine_bytes"):
        raise ValueError(f"engine.json field {field!r} is written only with the engine")
    record_path = os.path.join(os.path.dirname(os.path.abspath(engine_path)), ENGINE_RECORD)
    _, record = read_engine_record(engine_path)
    record[field] = value
    atomic_write(record_path, json.dumps(record, indent=2, sort_keys=True).encode())


def accuracy_gate_problem(record: Mapping) -> Optional[str]:
    """None when the engine record says the accuracy gate passed (or was overridden), else why it is refused."""
    gate = record.get(GATE_FIELD)
    if not isinstance(gate, Mapping):
        return (
            "its build was not checked by the accuracy gate (interrupted build?); rebuild with "
            "`zsseg build-engine <bundle> --force`"
        )
    if not gate.get("accepted"):
        return (
            f"it failed the accuracy gate ({gate.get('summary', 'no summary')}); rebuild with another "
            "--precision (fp16-pinned or fp32), or accept it explicitly with `zsseg build-engine --accept-below-gate`"
        )
    return None


def check_engine_platform(engine_path: str, tensorrt_version: str, device: DeviceInfo) -> EngineKey:
    """Refuse an engine recorded for another TensorRT version or GPU (used when no full key is known)."""
    recorded, _ = read_engine_record(engine_path)
    expected = platform_fields(tensorrt_version, device)
    diffs = [
        f"{name}: engine has {getattr(recorded, name)!r}, this machine has {value!r}"
        for name, value in expected.items()
        if getattr(recorded, name) != value
    ]
    if diffs:
        raise EngineMismatchError(
            f"refusing TensorRT engine {engine_path!r}; TensorRT engines are specific to the TensorRT version and "
            "GPU they were built with:\n  - "
            + "\n  - ".join(diffs)
            + "\nRebuild it on this machine with `zsseg build-engine <bundle>`"
        )
    return recorded


def cached_engine_problem(engine_path: str, key: EngineKey) -> Optional[str]:
    """None when a valid engine for ``key`` is cached at ``engine_path``, else why not."""
    if not os.path.isfile(engine_path):
        return "not built yet"
    try:
        check_engine(engine_path, key)
    except EngineMismatchError as exc:
        return str(exc)
    return None


def atomic_write(path: str, data: bytes) -> None:
    """``data`` into ``path`` through a temporary name beside it (removed if the write fails); a write the disk
    refuses (full) raises an ``OSError`` naming ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}-{threading.get_ident()}"  # unique per process AND thread
    try:
        with naming_path(path, "writing it"), open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
