"""How a backend is chosen and opened: a lookup in the backend table plus the ``auto`` policy (:func:`make_backend`),
and the run-time registration of other backends (:func:`register_backend`)."""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from zsseg_rt.bundle import BundleMeta
from zsseg_rt.options import ENGINE_OPTIONS, OptionValues

from .base import Backend, GraphRunner, OpenRequest, RoleAdapter, RoleGraphs, WindowedGraphs
from .cpu_auto import BackendPlan
from .table import (
    AUTO,
    BUILTIN_BACKENDS,
    REFERENCE_BACKEND,
    BackendSpec,
    add_target,
    backend_names,
    backend_row,
    load_reference,
    row_factory,
    rows_serving,
)

__all__ = [
    "backend_factory",
    "default_precision",
    "make_backend",
    "open_backend",
    "open_reference",
    "register_backend",
]

LOG = logging.getLogger("zsseg_rt")


def register_backend(name: str, factory: Callable[..., Any]) -> None:
    """Make ``backend=name`` build ``factory(meta, device=..., model=..., **options)`` (a windowed
    :class:`Backend`), or, given a :class:`BackendSpec` as ``factory``, add that row."""
    add_target(name, factory, f"register_backend({name!r}, ...)")


def backend_factory(name: str) -> Callable[..., Any]:
    """The factory of backend ``name`` (its row's runner factory, or a 0.1 registration's callable).

    Raises:
        ValueError: no such backend; ImportError: its module cannot be imported here (e.g. torch is missing).
    """
    row = backend_row(name)
    try:
        return row_factory(row)[0]
    except ImportError as exc:
        raise ImportError(
            f"the {name} backend cannot be imported here ({exc}); install what it needs (torch: pip install "
            f"'zsseg_rt[torch]') or use another backend ({', '.join(rows_serving(WindowedGraphs.roles))})"
        ) from exc


def default_precision(backend: str) -> str:
    """What ``backend`` runs when no precision is asked for (its row's)."""
    return backend_row(backend).default_precision or "fp32"


def is_cuda(device: Any) -> bool:
    """Whether ``device`` asks for a GPU ("cuda", "cuda:N"): it runs there or is refused with the reason, never
    run on the CPU instead."""
    return isinstance(device, str) and (device == "cuda" or device.startswith("cuda:"))


def _open(row: BackendSpec, meta, roles, adapter, values: OptionValues, options) -> Any:
    """The row's runner for ``roles``, as the pipeline's role object: a factory of ``runner_factory`` takes the
    Engine's options whole (``OpenRequest``), another the documented keywords, by name."""
    if not row.serves(roles):
        kind = getattr(meta, "pipeline", "windowed")
        raise ValueError(
            f"the {row.name} backend does not run bundles of the {kind} pipeline: its runner opens the graphs "
            f"{list(row.roles)}, the pipeline needs {list(roles)} (backends that do: "
            f"{', '.join(rows_serving(roles))})"
        )
    factory, legacy = row_factory(row)
    if legacy:
        extra = {} if values.precision is None else {"precision": values.precision}
        made = factory(meta, device=values.device, model=values.model, **extra, **options)
    else:
        values = values.replace(precision=values.precision or row.default_precision or "fp32")
        build = getattr(factory, "from_request", None)
        if build is not None:
            made = build(OpenRequest(meta, tuple(roles), values, dict(options)))
        else:
            named = {name: values[name] for name in ("device", "threads", "precision", "model", "verify")}
            made = factory(meta, tuple(roles), **named, **options)
    return adapter(made, meta) if isinstance(made, GraphRunner) and not isinstance(made, RoleGraphs) else made


def open_backend(
    meta: BundleMeta,
    name: str,
    *,
    device: str = "cpu",
    precision: Optional[str] = None,
    threads: int = 0,
    verify: bool = False,
    roles: Sequence[str] = WindowedGraphs.roles,
    adapter: RoleAdapter = WindowedGraphs,
    **options: Any,
) -> Any:
    """Backend ``name`` of the table opened as its row's factory opens it (no ``auto`` policy, nothing planned), as
    the pipeline's role object: what the preparers and gates run (``zsseg_rt.prepare``). ``options``: the runner's
    own (``cache_dir``, ``prepare``, ``image_encoder``, ...)."""
    values = ENGINE_OPTIONS.defaults().replace(device=device, precision=precision, threads=threads, verify=verify)
    return _open(backend_row(name), meta, roles, adapter, values, options)


def open_reference(
    meta: BundleMeta,
    threads: int = 0,
    roles: Sequence[str] = WindowedGraphs.roles,
    adapter: RoleAdapter = WindowedGraphs,
) -> Any:
    """The exact fp32 reference every accuracy gate compares with: :data:`REFERENCE_BACKEND` on the CPU."""
    return open_backend(meta, REFERENCE_BACKEND, precision="fp32", threads=threads, roles=roles, adapter=adapter)


def _auto(meta, roles, adapter, values: OptionValues) -> Tuple[Any, BackendPlan]:
    """backend='auto': TensorRT when its row serves the pipeline and its engines exist and import (not on
    device='cpu'), else, where ONNX Runtime would run on the CPU, the CPU policy (:func:`_cpu_auto`: the fastest path
    that passed the accuracy gate on this CPU), else ONNX Runtime on its GPU. A GPU row that is installed but cannot
    be used is said with a warning; one that is not installed at debug level (the normal state of a CPU machine).
    A GPU asked for (device "cuda" or "cuda:N") is never the CPU policy: ONNX Runtime opens on it or refuses it with
    the reason (device "auto" may run on the CPU, and its INFO line says so)."""
    device, precision = values.device, values.precision
    gpu_rows = [backend_row(name) for name in BUILTIN_BACKENDS if backend_row(name).devices == ("cuda",)]
    for row in gpu_rows if device != "cpu" else []:
        if not row.serves(roles):
            continue
        try:
            made = _open(row, meta, roles, adapter, values, {})
            return made, BackendPlan.of(made)
        except ImportError as exc:  # not installed here: the normal case on a CPU, said at debug level only
            LOG.debug("backend='auto': %s is not installed (%s); running the bundle on the CPU path", row.name, exc)
        except Exception as exc:  # noqa: BLE001 - installed but unusable here -> the next row, said out loud
            _passed_over(row, precision, exc)
    cpu = backend_row(REFERENCE_BACKEND)
    on_gpu = is_cuda(device) or (device != "cpu" and cpu.gpu_check and load_reference(cpu.gpu_check)(device))
    if on_gpu:  # fp32 on its GPU: the CPU's reduced precisions are CPU ones
        made = _open(cpu, meta, roles, adapter, values.replace(precision=None), {})
        return made, BackendPlan.of(made)
    return _cpu_auto(meta, roles, adapter, values)


def _passed_over(row: BackendSpec, precision: Optional[str], exc: BaseException) -> None:
    """backend='auto' passes over GPU row ``row``, installed here, that could not open: a warning with the reason
    (:class:`~zsseg_rt.errors.CliWarning`: in Python's words, and in the flags' on the command line). A precision the
    row does not run is said as such (it was "got 'auto'" with advice on int8)."""
    import warnings

    from zsseg_rt.errors import CliWarning

    if precision is not None and precision not in row.precisions:
        runs = ", ".join(row.precisions)
        python = (
            f"backend='auto': {row.name} does not run precision={precision!r} (it runs {runs}); ONNX Runtime or "
            f"OpenVINO runs the bundle instead. For the GPU: backend={row.name!r} with one of its precisions; for the CPU path "
            "without this warning: backend='onnxruntime' or 'openvino'"
        )
        cli = (
            f"--precision {precision}: {row.name} (installed here) does not run it ({runs}), so --backend auto runs "
            f"ONNX Runtime or OpenVINO; --backend {row.name} --precision {row.default_precision} runs on the GPU"
        )
    else:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        python = (
            f"backend='auto': {row.name} cannot be used ({reason}); ONNX Runtime runs the bundle instead. Build "
            f"its engines with `zsseg build-engine`, or pass backend='onnxruntime' to silence this"
        )
        cli = (
            f"--backend auto: {row.name} cannot be used ({reason}), so ONNX Runtime runs; build its engines with "
            "`zsseg build-engine BUNDLE`, or give --backend onnxruntime"
        )
    warnings.warn(CliWarning(python, cli), stacklevel=6)


def _cpu_auto(meta, roles, adapter, values: OptionValues) -> Tuple[Any, BackendPlan]:
    """The CPU policy (``cpu_auto.py``): open the fastest gated path recorded for this CPU (a candidate that will not
    open gives way to the next, its reason in the log line), else the exact fp32 reference; one INFO line says what
    runs, why and the gate it passed. The plan lists the faster paths not prepared yet and reopens the policy once a
    preparation has written their records (the Engine's doing: ``runtime/upgrade.py``); nothing is prepared here."""
    from .cpu_auto import cpu_policy

    precision, cache_dir = values.precision, values.cache_dir
    policy = cpu_policy(meta, roles, precision, cache_dir)
    anything = precision in (None, AUTO)
    for index, (row, chosen_precision, chosen) in enumerate(policy):
        options: dict = {"cache_dir": str(cache_dir)} if cache_dir else {}
        if chosen.gate:  # a recorded path: run it from its record, never prepare here
            options["prepare"] = False
        try:
            made = _open(row, meta, roles, adapter, values.replace(device="cpu", precision=chosen_precision), options)
        except Exception as exc:  # noqa: BLE001 - the next of the plan, the reason in its log line
            if index == len(policy) - 1:
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            for _, _, later in policy[index + 1 :]:
                later.notes = later.notes + [f"{row.name} {chosen_precision}: could not be opened ({reason})"]
            continue
        LOG.info("%s", chosen.line())

        def reopen() -> Tuple[Any, BackendPlan]:
            return _cpu_auto(meta, roles, adapter, values)

        path = (row.name, str(getattr(made, "precision", chosen_precision)))
        return made, BackendPlan(path, chosen, chosen.missing if anything else [], reopen if anything else None)
    raise AssertionError("the CPU policy's plan ends with the exact reference")  # pragma: no cover


def _records_folder(backend: Any, cache_dir: Any) -> Dict[str, Any]:
    """``{"cache_dir": DIR}`` for the backends that read gated records (auto, and the table's rows with
    ``gated_choices``: ONNX Runtime, OpenVINO), {} without one; refused in one line for the others."""
    if cache_dir is None:
        return {}
    if isinstance(backend, str) and (backend == AUTO or backend_row(backend).gated_choices):
        return {"cache_dir": str(cache_dir)}
    raise ValueError(
        f"cache_dir={cache_dir!r}: the folder of the prepared CPU paths' records (backend auto, onnxruntime, "
        f"openvino); backend {getattr(backend, 'name', backend)!r} keeps what it builds elsewhere: leave cache_dir unset"
    )


_POSITIONAL = ("backend", "device", "model", "precision", "threads", "verify")  # make_backend's 0.1 arguments


def make_backend(
    meta: BundleMeta,
    values: Any,
    *positional: Any,
    roles: Sequence[str] = WindowedGraphs.roles,
    adapter: RoleAdapter = WindowedGraphs,
    **options: Any,
) -> Tuple[Any, BackendPlan]:
    """``(backend, plan)``: the backend running a bundle's graphs of ``roles``, as the pipeline's role object
    (``adapter(runner, meta)``), and its :class:`~.cpu_auto.BackendPlan` (the path it runs; for backend "auto" on a
    CPU why, the faster paths not prepared yet and how to reopen the policy once they are).

    ``values``: the Engine's options (:class:`~zsseg_rt.options.OptionValues`), handed on by name to the backend's
    factory (``OpenRequest.values``). Of them, ``backend``: a name of the table (``backend_names()``), "auto" (see
    :func:`_auto`), a ready :class:`Backend` or role object (used as it is), or a :class:`GraphRunner` (wrapped in
    ``adapter``); ``precision``: None for the backend's default (its row's: TensorRT fp16, else fp32);
    ``cache_dir``: where the records are (backend auto and the gated rows; default ``<bundle>/engines``).
    ``options``: a named backend's runner's own. The 0.1 call ``make_backend(meta, backend, device, model,
    precision, threads, verify=True, cache_dir=...)`` still works.
    """
    if not isinstance(values, OptionValues):  # the 0.1 call, positional
        given = dict(zip(_POSITIONAL, (values, *positional)))
        values = ENGINE_OPTIONS.defaults().replace(**given, cache_dir=options.pop("cache_dir", None))
    if values.cache_dir is not None:
        values = values.replace(cache_dir=str(values.cache_dir))
    backend = values.backend
    options = {**_records_folder(backend, values.cache_dir), **options}
    if isinstance(backend, (Backend, RoleGraphs)):
        return backend, BackendPlan.of(backend)
    if isinstance(backend, GraphRunner):
        made = adapter(backend, meta)
        return made, BackendPlan.of(made)
    if not isinstance(backend, str):
        raise ValueError(f"backend must be one of {backend_names()} or a Backend object, got {backend!r}")
    if backend == AUTO:
        unknown = sorted(set(options) - {"cache_dir"})
        if unknown:
            raise ValueError(f"backend='auto' takes no options {unknown} (name a backend to pass its own options)")
        return _auto(meta, roles, adapter, values)
    made = _open(backend_row(backend), meta, roles, adapter, values, options)
    return made, BackendPlan.of(made)
