"""``CallableSource``: frames from a Python callable or iterable (a Python app's own frames; no source string)."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from .base import FrameSource, SourceError


class CallableSource(FrameSource):
    """Frames from a Python callable or iterable (synthetic sources, tests, frames from another library).

    Args:
        factory: called on every ``open()``; returns an iterable of BGR uint8 frames (a generator is fine).
            Raising an exception from ``factory`` or from the iteration counts as losing the source.
        live: whether the frames are real-time (a lost live source is reconnected with backoff).
        fps: pace for non-live sources (None: as fast as they are consumed).
    """

    def __init__(
        self,
        factory: Callable[[], Iterable[np.ndarray]],
        live: bool = True,
        fps: Optional[float] = None,
        name: str = "callable",
    ):
        super().__init__()
        self.factory = factory
        self.live = live
        self.fps = fps
        self.name = name
        self._iter: Optional[Iterator[np.ndarray]] = None

    def open(self) -> None:
        self.ended = False
        try:
            self._iter = iter(self.factory())
        except Exception as exc:  # noqa: BLE001 - any failure to open is reported as a SourceError
            self._iter = None
            raise SourceError(f"cannot open {self.name}: {exc}") from exc

    def read(self) -> Optional[np.ndarray]:
        if self._iter is None:
            return None
        try:
            return next(self._iter)
        except StopIteration:
            self._iter = None
            if not self.live:
                self.ended = True
            return None
        except Exception:  # noqa: BLE001 - a failing generator is a lost source, not a crash
            self._iter = None
            return None

    def close(self) -> None:
        self._iter = None
