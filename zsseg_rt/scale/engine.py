"""The Engine of one ``zsseg batch`` actor or ``zsseg serve`` replica: built the same way in both, once per worker.
Ray-free (the workers call it inside Ray; nothing here imports Ray)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

__all__ = ["open_engine", "checked_engine_options"]


def open_engine(
    bundle: str,
    classes: Union[str, Sequence[str]],
    backend: str = "auto",
    device: str = "auto",
    mode: str = "exact",
    max_pixels: Optional[int] = None,
    expected_digest: Optional[str] = None,
    precision: Optional[str] = None,
) -> Tuple[Any, Optional[int]]:
    """``(Engine, pixel limit)``: the worker's ``zsseg_rt.Engine`` on ``bundle`` with the vocabulary ``classes``
    and the pixel limit ``max_pixels`` resolved in the worker's process (``image_io.max_pixels_limit``: None reads
    ``$ZSSEG_MAX_PIXELS`` there, else 40 MP; 0: none); the other arguments are the Engine's."""
    from zsseg_rt.image_io import max_pixels_limit
    from zsseg_rt.runtime import Engine
    from zsseg_rt.signal_phases import phase

    phase("worker:model-load")  # (a test hook: python_tests/scale/test_ray_signal_phases.py)

    limit = max_pixels_limit(max_pixels)
    engine = Engine(
        bundle,
        classes=classes,
        backend=backend,
        device=device,
        mode=mode,
        max_pixels=limit,
        expected_digest=expected_digest,
        precision=precision,
        prepare=None,  # one path from the first image to the last: nothing prepared behind a worker's back
    )
    return engine, limit


def checked_engine_options(options: Dict[str, Any], caller: str, leave_out: Sequence[str] = ()) -> Dict[str, Any]:
    """``options`` for :func:`open_engine` (its keywords after ``bundle`` and ``classes``, but ``leave_out``), checked
    where a worker's builder is called, not in the worker: a keyword it does not take is refused (TypeError)."""
    import inspect

    taken = [name for name in list(inspect.signature(open_engine).parameters)[2:] if name not in leave_out]
    unknown = [name for name in options if name not in taken]
    if unknown:
        raise TypeError(
            f"{caller} got an unexpected keyword argument {unknown[0]!r} (the Engine's: {', '.join(taken)})"
        )
    return dict(options)
