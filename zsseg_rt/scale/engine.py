"""The Engine of one ``zsseg batch`` actor or ``zsseg serve`` replica: built the same way in both, once per worker.
Ray-free (the workers call it inside Ray; nothing here imports Ray)."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

__all__ = ["open_engine"]


# twin (by shape): serve.py build_app - the replica's builder takes these Engine arguments and passes them on
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
