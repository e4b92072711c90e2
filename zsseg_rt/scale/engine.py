"""The Engine of one ``zsseg batch`` actor or ``zsseg serve`` replica: built the same way in both, once per worker.
Ray-free (the workers call it inside Ray; nothing here imports Ray). Its options are the rows of
``zsseg_rt.options.ENGINE_OPTIONS`` that a worker takes (``workers=True``)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

from zsseg_rt.options import ENGINE_OPTIONS

__all__ = ["open_engine", "checked_engine_options", "WORKER_PREPARE"]

WORKER_PREPARE = None  # Engine(prepare=) of every worker: one path from the first image to the last


def open_engine(bundle: str, classes: Union[str, Sequence[str]], **options: Any) -> Tuple[Any, Optional[int]]:
    """``(Engine, pixel limit)``: the worker's ``zsseg_rt.Engine`` on ``bundle`` with the vocabulary ``classes``
    and the pixel limit ``max_pixels`` resolved in the worker's process (``image_io.max_pixels_limit``: None reads
    ``$ZSSEG_MAX_PIXELS`` there, else 40 MP; 0: none); ``options`` are the Engine's that a worker takes
    (:func:`checked_engine_options`), nothing prepared behind its back (``prepare=None``)."""
    from zsseg_rt.image_io import max_pixels_limit
    from zsseg_rt.runtime import Engine
    from zsseg_rt.signal_phases import phase

    options = checked_engine_options(options, "open_engine()")
    phase("worker:model-load")  # (a test hook: python_tests/scale/test_ray_signal_phases.py)

    limit = max_pixels_limit(options.pop("max_pixels", None))
    engine = Engine(bundle, classes=classes, max_pixels=limit, prepare=WORKER_PREPARE, **options)
    return engine, limit


def checked_engine_options(options: Dict[str, Any], caller: str, leave_out: Sequence[str] = ()) -> Dict[str, Any]:
    """``options`` for :func:`open_engine`, checked where a worker's builder is called, not in the worker: a
    keyword that is no Engine option (the closest one named), one a worker does not take (the row's reason), or one
    of ``leave_out`` is refused in one line (TypeError)."""
    taken = [name for name in ENGINE_OPTIONS.worker_names() if name not in leave_out]
    for name in options:
        if name in ENGINE_OPTIONS and name not in taken:
            row = ENGINE_OPTIONS[name]
            why = row.not_in_workers if not row.workers else f"{caller} sets it itself"
            raise TypeError(
                f"{caller}: {name} is not an option of a Ray worker's Engine ({why}), got {name}={options[name]!r}"
            )
    ENGINE_OPTIONS.check_names(options, caller, taken)
    return dict(options)
