"""Progress bars of an export's long stages (the ONNX graphs, the verification against PyTorch: 30-60 s for a
ViT-B/16 on 2 cores): tqdm bars on stderr while :func:`shown` is active (``export_bundle(progress=...)``: ``zsseg
export``, ``zsseg demo``), and nothing otherwise (library calls, tests), so the functions that report steps need no
argument for it."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

__all__ = ["shown", "stage_bar"]

_SHOWN: "contextvars.ContextVar[bool]" = contextvars.ContextVar("zsseg_export_progress_bars", default=False)


@contextlib.contextmanager
def shown(enabled: bool = True) -> Iterator[None]:
    """Within the block, :func:`stage_bar` draws its bars (``enabled``) or not."""
    token = _SHOWN.set(bool(enabled))
    try:
        yield
    finally:
        _SHOWN.reset(token)


def stage_bar(total: int, desc: str, unit: str = "step") -> Any:
    """A tqdm bar of ``total`` steps named ``desc`` (disabled outside :func:`shown`); use it as a context manager and
    call ``update()`` per step. It leaves no line behind: the stage's own line says when it is done."""
    from zsseg_rt.progress import progress_bar

    return progress_bar(
        total=int(total), desc=desc, unit=unit, disable=not _SHOWN.get(), leave=False, dynamic_ncols=True
    )
