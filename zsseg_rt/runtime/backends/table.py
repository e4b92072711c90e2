"""The backend table: one row per backend, the one list of backend and precision names in zsseg_rt.

A row (:class:`BackendSpec`) names its runner factory as ``"module:attr"`` (imported only when the backend is
opened), the devices it runs on, its precisions and default precision, the graph roles its runner opens (a backend
serves every pipeline whose roles these cover), what ``zsseg build-engine`` does for it, and the modules that are its
own (only they, and this package, may spell its name: ``python_tests/test_architecture.py``).

Other backends join the table through the ``zsseg_rt.backends`` entry points of installed distributions (an entry
point names a :class:`BackendSpec`, or, as before, a factory ``factory(meta, device=..., model=..., **options)``),
or :func:`zsseg_rt.runtime.backends.register_backend` at run time: every row is one of :data:`BACKENDS`, a
``zsseg_rt.options.registry.Registry`` (``names()``, ``get(name)`` with the closest name, ``adding(row)`` for a
block). Importing this module imports neither torch nor
any runtime library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, Optional, Tuple

from zsseg_rt.aliases import resolve_reference
from zsseg_rt.options.registry import Registry

__all__ = [
    "AUTO",
    "BACKEND_ENTRY_POINTS",
    "BACKENDS",
    "BUILTIN_BACKENDS",
    "BackendSpec",
    "REFERENCE_BACKEND",
    "backend_names",
    "backend_row",
    "backend_rows",
    "check_precision",
    "load_reference",
    "markdown_table",
    "precision_help",
    "precision_names",
    "prepared_rows",
    "row_factory",
    "rows_serving",
]

AUTO = "auto"  # the policy, not a row: zsseg_rt.runtime.backends.make_backend
# The exact fp32 reference every accuracy gate and export check compares with, and what "auto" falls back to
REFERENCE_BACKEND = "onnxruntime"
BACKEND_ENTRY_POINTS = "zsseg_rt.backends"

# The graph roles of the two pipelines (zsseg_rt.bundle.graph_files)
_WINDOWED = ("image", "head", "text")
_TWO_STAGE = ("mask", "clip_image", "text")


@dataclass(frozen=True)
class BackendSpec:
    """One backend.

    Attributes:
        name: what ``Engine(backend=...)`` and ``--backend`` take.
        factory: ``"module:attr"`` of ``factory(meta, roles, *, device, threads, precision, model, verify,
            **options)`` returning a :class:`~zsseg_rt.runtime.backends.GraphRunner` (or a ready role object, such
            as the torch backend's :class:`~zsseg_rt.runtime.backends.Backend`).
        devices: where it runs: "cpu", "cuda".
        precisions: what ``precision=`` it takes ("auto": the fastest that passed its accuracy gate here).
        default_precision: what runs when none is asked for.
        roles: the graph roles its runner opens.
        summary: one line for help texts and docs.
        prepare: ``"module:attr"`` of ``prepare(bundle_dir, precision, *, force, accept_below_gate) -> record``:
            ``zsseg build-engine --backend NAME`` gates a reduced precision ahead of use (None: nothing to prepare).
        prepare_precisions: the precisions ``prepare`` (or the engine build) takes, the first its default.
        prepare_help: what ``zsseg build-engine --backend NAME`` does, for its help.
        builds_engines: ``zsseg build-engine`` builds engines for it (TensorRT), with engine options.
        own_modules: modules that implement this backend (they may spell its name).
        gated_choices: ``"module:attr"`` of ``gated_choices(meta, cache_dir) -> [GatedChoice]``: its reduced
            precisions on this CPU from their gate records, nothing prepared (``runtime/precision_records.py``). A
            row with it is a candidate of the ``auto`` policy on a CPU (``cpu_auto.py``), which runs the fastest
            gated one by the speed each record measured; ImportError: the backend is not installed here.
        gpu_check: ``"module:attr"`` of ``check(device) -> bool``: whether the row would run on a GPU for
            ``device`` ("auto": the CPU ``auto`` policy applies only where the reference row runs on the CPU).
        prepare_costs: ``(precision, (CPU s fixed, CPU s per MB of image encoder, disk MB kept per MB of it, peak
            MB fixed, peak MB per MB of it))`` of each gated precision: what preparing it costs, measured
            (``runtime/preparation_cost.py`` estimates from them; BENCHMARKS.md, "Preparing the CPU paths").
    """

    name: str
    factory: str
    devices: Tuple[str, ...]
    precisions: Tuple[str, ...]
    default_precision: str
    roles: Tuple[str, ...]
    summary: str = ""
    prepare: Optional[str] = None
    prepare_precisions: Tuple[str, ...] = ()
    prepare_help: str = ""
    builds_engines: bool = False
    own_modules: Tuple[str, ...] = ()
    gated_choices: Optional[str] = None
    gpu_check: Optional[str] = None
    prepare_costs: Tuple[Tuple[str, Tuple[float, float, float, float, float]], ...] = ()

    def serves(self, roles: Iterable[str]) -> bool:
        """Whether its runner opens every one of ``roles`` (a pipeline's)."""
        return set(roles) <= set(self.roles)


_ROWS: Tuple[BackendSpec, ...] = (
    BackendSpec(
        name="tensorrt",
        factory="zsseg_rt.runtime.backends.tensorrt.runner:open_tensorrt",
        devices=("cuda",),
        precisions=("fp32", "fp16", "fp16-pinned", "int8"),
        default_precision="fp16",
        roles=_WINDOWED + _TWO_STAGE[:2],
        summary="TensorRT 10 engines built on the device by `zsseg build-engine` (NVIDIA GPUs, Jetson); two-stage "
        "bundles run the host path (no device-resident pipeline) and take no int8",
        prepare_precisions=("fp16", "fp16-pinned", "fp32", "int8"),
        prepare_help="build engines for this GPU",
        builds_engines=True,
        own_modules=(
            "zsseg_rt.runtime.backends.tensorrt",
            "zsseg_rt.runtime.engine_cache",
            "zsseg_rt.prepare.tensorrt",
            "zsseg_rt.runtime.device.cuda_memory",
        ),
    ),
    BackendSpec(
        name="onnxruntime",
        factory="zsseg_rt.runtime.backends.onnxruntime.runner:open_onnxruntime",
        devices=("cpu", "cuda"),
        precisions=("fp32", "int8", "bf16", "auto"),
        default_precision="fp32",
        roles=_WINDOWED + _TWO_STAGE[:2],
        summary="ONNX Runtime on the bundle's graphs (CPU; CUDA with onnxruntime-gpu)",
        prepare="zsseg_rt.prepare.onnxruntime:prepare_onnxruntime_precision",
        prepare_precisions=("int8", "bf16"),
        prepare_help="quantise the image encoder for this CPU (int8) or gate bf16 (Arm64)",
        own_modules=("zsseg_rt.runtime.backends.onnxruntime", "zsseg_rt.prepare.onnxruntime"),
        gated_choices="zsseg_rt.runtime.backends.onnxruntime.precision:gated_choices",
        gpu_check="zsseg_rt.runtime.backends.onnxruntime.runner:runs_on_gpu",
        # measured: int8 on the tiny and the demo bundle (BENCHMARKS.md); bf16 (Arm64 only, never run): int8's
        prepare_costs=(("int8", (1.2, 0.19, 0.28, 250.0, 4.9)), ("bf16", (1.2, 0.19, 0.55, 250.0, 4.9))),
    ),
    BackendSpec(
        name="openvino",
        factory="zsseg_rt.runtime.backends.openvino.runner:open_openvino",
        devices=("cpu",),
        precisions=("fp32", "bf16", "int8", "auto"),
        default_precision="fp32",
        roles=_WINDOWED + _TWO_STAGE[:2],
        summary="OpenVINO on the CPU (bf16 / NNCF int8 through the accuracy gate)",
        prepare="zsseg_rt.prepare.openvino:prepare_openvino_precision",
        prepare_precisions=("bf16", "int8"),
        prepare_help="gate bf16 (AMX / AVX-512-BF16) or NNCF int8 (VNNI / AMX-INT8) on this CPU",
        own_modules=("zsseg_rt.runtime.backends.openvino", "zsseg_rt.prepare.openvino"),
        gated_choices="zsseg_rt.runtime.backends.openvino.precision:gated_choices",
        # measured on the tiny and the demo bundle (BENCHMARKS.md); the disk includes OpenVINO's compiled caches
        prepare_costs=(("bf16", (1.4, 0.05, 1.75, 320.0, 8.5)), ("int8", (6.0, 0.30, 3.05, 840.0, 8.6))),
    ),
    BackendSpec(
        name="torch",
        factory="zsseg_rt.export.torch_backend:open_torch",
        devices=("cpu", "cuda"),
        precisions=("fp32", "fp16", "bf16"),
        default_precision="fp32",
        roles=_WINDOWED,
        summary="the PyTorch model the bundle was exported from (needs torch and its checkpoint)",
        prepare="zsseg_rt.export.torch_backend:prepare_torch_precision",
        prepare_precisions=("fp16", "bf16"),
        prepare_help="gate fp16/bf16 on this device",
        own_modules=("zsseg_rt.export.torch_backend", "zsseg_rt.export.torch_precision"),
    ),
)
BUILTIN_BACKENDS: Tuple[str, ...] = tuple(row.name for row in _ROWS)


@dataclass(frozen=True)
class LegacyBackendSpec(BackendSpec):
    """The row of a backend registered the 0.1 way: ``legacy`` is its factory ``factory(meta, device=...,
    model=..., **options)`` (a callable, not a ``"module:attr"``: it may be a test's local function)."""

    legacy: Optional[Callable[..., Any]] = field(default=None, compare=False)


# the object a row's ``"module:attr"`` reference names (imported now): the package's one resolver
load_reference = resolve_reference


def _load_entry(entry: Any) -> None:
    """Register the backend an entry point of :data:`BACKEND_ENTRY_POINTS` names (a row, or a 0.1 factory)."""
    try:
        target = entry.load()
    except ImportError as exc:
        raise ImportError(
            f"the {entry.name} backend (entry point {entry.value}) cannot be imported here ({exc}): install what it "
            "needs, or use another backend"
        ) from exc
    add_target(entry.name, target, f"entry point {entry.name!r}")


# The table: a Registry (zsseg_rt.options.registry) of the built-in rows, then those of register_backend and of
# the zsseg_rt.backends entry points (loaded when asked for by name, or when every row is listed); a test's row:
# ``BACKENDS.adding(row)``
BACKENDS: Registry[BackendSpec] = Registry(
    "backend", _ROWS, error=ValueError, group=BACKEND_ENTRY_POINTS, load=_load_entry
)


def add_row(row: BackendSpec, legacy_factory: Optional[Callable[..., Any]] = None) -> None:
    """Add (or replace) a row that is not built in (``register_backend``, entry points); ``legacy_factory``: the
    callable of a backend registered the 0.1 way (``factory(meta, device=..., model=..., **options)``)."""
    if row.name in BUILTIN_BACKENDS or row.name == AUTO:
        raise ValueError(f"backend name {row.name!r} is built in")
    if legacy_factory is not None:
        fields = {name: getattr(row, name) for name in BackendSpec.__dataclass_fields__}
        row = LegacyBackendSpec(**fields, legacy=legacy_factory)
    BACKENDS.register(row, replace=True)


def row_factory(row: BackendSpec) -> Tuple[Callable[..., Any], bool]:
    """``(factory, legacy)``: the row's factory (imported now) and whether it takes the 0.1 calling convention."""
    if isinstance(row, LegacyBackendSpec) and row.legacy is not None:
        return row.legacy, True
    return load_reference(row.factory), False


def legacy_row(name: str, factory: Callable[..., Any]) -> BackendSpec:
    """The row of a backend known only by its factory ``factory(meta, device=..., model=..., **options)`` (the
    registration of zsseg_rt 0.1): a windowed backend on any device whose precisions the factory checks itself."""
    module = getattr(factory, "__module__", "") or ""
    return BackendSpec(
        name=name,
        factory=f"{module}:{getattr(factory, '__qualname__', '')}",
        devices=("cpu", "cuda"),
        precisions=(),
        default_precision="",
        roles=_WINDOWED,
        summary="registered at run time",
    )


def backend_row(name: str) -> BackendSpec:
    """The row of backend ``name``: built in, registered, or an entry point (loaded now).

    Raises:
        ValueError: no such backend (the closest name, or the known ones); ImportError: its entry point cannot be
        imported here.
    """
    return BACKENDS.get(name)


def add_target(name: str, target: Any, what: str) -> None:
    """Add backend ``name`` from what registers it (``register_backend``, an entry point: ``what``): a
    :class:`BackendSpec` of that name, or a factory of the 0.1 registration (``factory(meta, device=..., model=...,
    **options)``)."""
    if isinstance(target, BackendSpec):
        if target.name != name:
            raise ValueError(f"{what} names the backend row {target.name!r}: the two must agree")
        add_row(target)
    else:
        add_row(legacy_row(name, target), target)


def check_precision(name: str, precision: str, hint: str = "") -> None:
    """Raise ValueError unless ``precision`` is one of backend ``name``'s row's precisions (the one list: a backend
    checks its own names against its row, never a copy); ``hint`` ends the message (what to use instead)."""
    row = backend_row(name)
    if precision not in row.precisions:
        raise ValueError(f"the {name} backend's precision must be one of {row.precisions}, got {precision!r}{hint}")


def backend_rows() -> List[BackendSpec]:
    """Every row: built in, then registered and installed ones by name (entry points loaded now; one that cannot
    be loaded is listed by name, ``backend_names``, and refused with its reason when asked for)."""
    BACKENDS.load_all(skip=(ImportError, ValueError))
    return list(_ROWS) + sorted((row for row in BACKENDS if row.name not in BUILTIN_BACKENDS), key=_name)


def backend_names(auto: bool = True) -> List[str]:
    """Every backend name, without importing any backend: "auto" first (unless ``auto=False``), the built-in rows,
    then registered ones and the names of installed entry points."""
    others = sorted(name for name in BACKENDS.names() if name not in BUILTIN_BACKENDS)
    return ([AUTO] if auto else []) + list(BUILTIN_BACKENDS) + others


def _name(row: BackendSpec) -> str:
    return row.name


def precision_names(auto: bool = True) -> List[str]:
    """Every precision some backend runs (the one list of precision names): the built-in rows', then those of the
    registered and installed ones (a plugin's precision, listed in ``--precision``'s help by
    :func:`precision_help`, is one of its choices too), "auto" last (unless ``auto=False``)."""
    names: List[str] = []
    for row in backend_rows():
        for precision in row.precisions:
            if precision != AUTO and precision not in names:
                names.append(precision)
    return names + ([AUTO] if auto else [])


def precision_help() -> str:
    """Each backend's precisions, default first, for ``--precision``'s help (``zsseg_rt.options``: the row of
    ``precision`` names this function): "tensorrt: fp16 (default), fp32, ...; onnxruntime: ..."."""
    parts = []
    for row in backend_rows():
        others = [p for p in row.precisions if p != row.default_precision]
        parts.append(f"{row.name}: {', '.join([row.default_precision + ' (default)'] + others)}")
    return "; ".join(parts) + "."


def prepared_rows() -> List[BackendSpec]:
    """The built-in rows ``zsseg build-engine`` prepares something for (engines, or a gated precision)."""
    return [row for row in _ROWS if row.builds_engines or row.prepare]


def markdown_table() -> str:
    """The built-in rows as the Markdown table docs/development.md shows (python_tests checks the two agree)."""
    lines = [
        "| backend | devices | precisions (default first) | graph roles | `zsseg build-engine` | what it is |",
        "|---|---|---|---|---|---|",
    ]
    for row in _ROWS:
        precisions = [row.default_precision] + [p for p in row.precisions if p != row.default_precision]
        prepared = ", ".join(row.prepare_precisions) if row.builds_engines or row.prepare else "-"
        lines.append(
            f"| `{row.name}` | {', '.join(row.devices)} | {', '.join(precisions)} | {', '.join(row.roles)} | "
            f"{prepared} | {row.summary} |"
        )
    return "\n".join(lines)


def rows_serving(roles: Iterable[str]) -> List[str]:
    """The built-in backends whose runner opens every one of ``roles`` (a pipeline's graphs)."""
    roles = tuple(roles)
    return [row.name for row in _ROWS if row.serves(roles)]
