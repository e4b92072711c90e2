"""How a backend is chosen and opened: a lookup in the backend table plus the ``auto`` policy (:func:`make_backend`),
and the run-time registration of other backends (:func:`register_backend`)."""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

from zsseg_rt.bundle import BundleMeta

from .base import Backend, GraphRunner, RoleAdapter, RoleGraphs, WindowedGraphs
from .table import (
    AUTO,
    BUILTIN_BACKENDS,
    REFERENCE_BACKEND,
    BackendSpec,
    add_row,
    backend_names,
    backend_row,
    legacy_row,
    load_reference,
    row_factory,
    rows_serving,
)

__all__ = ["backend_factory", "default_precision", "make_backend", "register_backend"]

LOG = logging.getLogger("zsseg_rt")


def register_backend(name: str, factory: Callable[..., Any]) -> None:
    """Make ``backend=name`` build ``factory(meta, device=..., model=..., **options)`` (a windowed
    :class:`Backend`), or, given a :class:`BackendSpec` as ``factory``, add that row."""
    if isinstance(factory, BackendSpec):
        if factory.name != name:
            raise ValueError(f"register_backend({name!r}, row named {factory.name!r}): the two must agree")
        add_row(factory)
    else:
        add_row(legacy_row(name, factory), factory)


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


def _open(row: BackendSpec, meta, roles, adapter, device, model, precision, threads, verify, options) -> Any:
    """The row's runner for ``roles``, as the pipeline's role object."""
    if not row.serves(roles):
        kind = getattr(meta, "pipeline", "windowed")
        raise ValueError(
            f"the {row.name} backend does not run bundles of the {kind} pipeline: its runner opens the graphs "
            f"{list(row.roles)}, the pipeline needs {list(roles)} (backends that do: "
            f"{', '.join(rows_serving(roles))})"
        )
    factory, legacy = row_factory(row)
    if legacy:
        extra = {} if precision is None else {"precision": precision}
        made = factory(meta, device=device, model=model, **extra, **options)
    else:
        made = factory(
            meta,
            tuple(roles),
            device=device,
            threads=threads,
            precision=precision or row.default_precision or "fp32",
            model=model,
            verify=verify,
            **options,
        )
    return adapter(made, meta) if isinstance(made, GraphRunner) and not isinstance(made, RoleGraphs) else made


def _auto(meta, roles, adapter, device, model, precision, threads, verify, prepare, cache_dir) -> Any:
    """backend='auto': TensorRT when its row serves the pipeline and its engines exist and import (not on
    device='cpu'), else, where ONNX Runtime would run on the CPU, the CPU policy (:func:`_cpu_auto`: the fastest path
    that passed the accuracy gate on this CPU), else ONNX Runtime on its GPU. A GPU row that is installed but cannot
    be used is said with a warning; one that is not installed at debug level (the normal state of a CPU machine)."""
    gpu_rows = [backend_row(name) for name in BUILTIN_BACKENDS if backend_row(name).devices == ("cuda",)]
    for row in gpu_rows if device != "cpu" else []:
        if not row.serves(roles):
            continue
        try:
            return _open(row, meta, roles, adapter, device, model, precision, threads, verify, {})
        except ImportError as exc:  # not installed here: the normal case on a CPU, said at debug level only
            LOG.debug("backend='auto': %s is not installed (%s); running the bundle on the CPU path", row.name, exc)
        except Exception as exc:  # noqa: BLE001 - installed but unusable here -> the next row, said out loud
            import warnings

            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            warnings.warn(
                f"backend='auto': {row.name} cannot be used ({reason}); running the bundle with ONNX Runtime instead "
                "(slower, fp32). Build engines with `zsseg build-engine`, or pass backend='onnxruntime' to "
                "silence this.",
                RuntimeWarning,
                stacklevel=5,
            )
    cpu = backend_row(REFERENCE_BACKEND)
    on_gpu = device == "cuda" or (device != "cpu" and cpu.gpu_check and load_reference(cpu.gpu_check)(device))
    if on_gpu:  # fp32 on its GPU: the CPU's reduced precisions are CPU ones
        return _open(cpu, meta, roles, adapter, device, model, None, threads, verify, {})
    return _cpu_auto(meta, roles, adapter, model, precision, threads, verify, prepare, cache_dir)


def _cpu_auto(meta, roles, adapter, model, precision, threads, verify, prepare, cache_dir) -> Any:
    """The CPU policy (``cpu_auto.py``): open the fastest gated path recorded for this CPU (a candidate that will not
    open gives way to the next, its reason in the log line), else the exact fp32 reference; one INFO line says what
    runs, why and the gate it passed. ``prepare`` (what is missing): "auto" (``cpu_auto.resolve_prepare``), None,
    "now" (prepared first) or "background"
    (``runner.auto_upgrade``: a :class:`~.cpu_auto.BackgroundUpgrade` the Engine switches to when ready)."""
    from . import cpu_auto
    from .cpu_auto import PREPARE_MODES, BackgroundUpgrade, cpu_policy, prepare_now

    if prepare not in PREPARE_MODES:
        raise ValueError(f"prepare must be one of {PREPARE_MODES}, got {prepare!r}")
    prepare = cpu_auto.resolve_prepare(prepare, meta, cache_dir)
    anything = precision in (None, AUTO)
    plan = cpu_policy(meta, roles, precision, cache_dir)
    if prepare == "now" and anything and plan[0][2].missing:
        prepare_now(meta, cache_dir, threads)
        plan = cpu_policy(meta, roles, precision, cache_dir)
    for index, (row, chosen_precision, chosen) in enumerate(plan):
        options: dict = {"cache_dir": cache_dir} if cache_dir else {}
        if chosen.gate:  # a recorded path: run it from its record, never prepare here
            options["prepare"] = False
        try:
            made = _open(row, meta, roles, adapter, "cpu", model, chosen_precision, threads, verify, options)
        except Exception as exc:  # noqa: BLE001 - the next of the plan, the reason in its log line
            if index == len(plan) - 1:
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            for _, _, later in plan[index + 1 :]:
                later.notes = later.notes + [f"{row.name} {chosen_precision}: could not be opened ({reason})"]
            continue
        runner = getattr(made, "runner", made)
        runner.auto_choice = chosen
        LOG.info("%s", chosen.line())
        if prepare == "background" and anything and chosen.missing:

            def rebuild() -> Any:
                return _cpu_auto(meta, roles, adapter, model, precision, threads, verify, None, cache_dir)

            runner.auto_upgrade = BackgroundUpgrade(
                lambda stop: cpu_auto.run_preparation(meta, stop), rebuild, (chosen.backend, chosen.precision)
            )
        return made
    raise AssertionError("the CPU policy's plan ends with the exact reference")  # pragma: no cover


def make_backend(
    meta: BundleMeta,
    backend: Any,
    device: str,
    model: Any,
    precision: Optional[str],
    threads: int,
    verify: bool = True,
    *,
    roles: Sequence[str] = WindowedGraphs.roles,
    adapter: RoleAdapter = WindowedGraphs,
    auto_prepare: Optional[str] = None,
    **options: Any,
) -> Any:
    """The backend running a bundle's graphs of ``roles``, as the pipeline's role object (``adapter(runner, meta)``).

    ``backend``: a name of the table (``backend_names()``), "auto" (see :func:`_auto`), a ready :class:`Backend` or
    role object (used as it is), or a :class:`GraphRunner` (wrapped in ``adapter``). ``precision``: None for the
    backend's default (its row's: TensorRT fp16, else fp32). ``auto_prepare`` (backend "auto" on a CPU only): what
    to do about gated paths not prepared yet: "auto", None, "now" or "background" (``cpu_auto.py``); ``options`` of "auto":
    ``cache_dir`` (where the records are; default ``<bundle>/engines``).
    """
    if isinstance(backend, (Backend, RoleGraphs)):
        return backend
    if isinstance(backend, GraphRunner):
        return adapter(backend, meta)
    if not isinstance(backend, str):
        raise ValueError(f"backend must be one of {backend_names()} or a Backend object, got {backend!r}")
    if backend == AUTO:
        unknown = sorted(set(options) - {"cache_dir"})
        if unknown:
            raise ValueError(f"backend='auto' takes no options {unknown} (name a backend to pass its own options)")
        cache_dir = options.get("cache_dir")
        return _auto(meta, roles, adapter, device, model, precision, threads, verify, auto_prepare, cache_dir)
    if auto_prepare not in (None, "auto"):  # "auto": the Engine's default, nothing asked for
        raise ValueError(
            f"prepare={auto_prepare!r} applies to backend='auto' (it prepares the CPU paths auto chooses among); "
            f"backend={backend!r} prepares its own reduced precision on first use"
        )
    return _open(backend_row(backend), meta, roles, adapter, device, model, precision, threads, verify, options)
