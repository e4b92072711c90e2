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


def _auto(meta, roles, adapter, device, model, precision, threads, verify) -> Any:
    """backend='auto': TensorRT when its row serves the pipeline and its engines exist and import (not on
    device='cpu'), else ONNX Runtime: said with a warning when TensorRT is installed but cannot be used, at debug level
    when it is not installed (the normal state of a CPU machine)."""
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
    # fp32: ONNX Runtime's reduced precisions are asked for explicitly
    cpu = backend_row(REFERENCE_BACKEND)
    return _open(cpu, meta, roles, adapter, device, model, None, threads, verify, {})


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
    **options: Any,
) -> Any:
    """The backend running a bundle's graphs of ``roles``, as the pipeline's role object (``adapter(runner, meta)``).

    ``backend``: a name of the table (``backend_names()``), "auto" (see :func:`_auto`), a ready :class:`Backend` or
    role object (used as it is), or a :class:`GraphRunner` (wrapped in ``adapter``). ``precision``: None for the
    backend's default (its row's: TensorRT fp16, else fp32).
    """
    if isinstance(backend, (Backend, RoleGraphs)):
        return backend
    if isinstance(backend, GraphRunner):
        return adapter(backend, meta)
    if not isinstance(backend, str):
        raise ValueError(f"backend must be one of {backend_names()} or a Backend object, got {backend!r}")
    if backend == AUTO:
        return _auto(meta, roles, adapter, device, model, precision, threads, verify)
    return _open(backend_row(backend), meta, roles, adapter, device, model, precision, threads, verify, options)
