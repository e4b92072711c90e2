"""Live vocabulary changes: a text file watched for edits (one class per line or comma-separated); an app's Engine lent
to a run and given back with its vocabulary."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, List, Optional, Tuple

from zsseg_rt.vocabulary import parse_class_text, validate_class_names

__all__ = ["ClassFileWatcher", "checked_names", "lend_vocabulary", "parse_class_text"]

log = logging.getLogger("zsseg_rt.stream")


class ClassFileWatcher:
    """Polls a class-list file; ``poll()`` returns the new names when the file changed since the last poll.

    Polling (mtime + size + content) instead of inotify keeps it portable; the stream loop calls ``poll()`` at
    most every ``interval`` seconds, so watching costs nothing measurable.
    """

    def __init__(self, path: str, interval: float = 0.5):
        self.path = path
        self.interval = float(interval)
        self._stamp: Optional[Tuple[float, int]] = None
        self._names: Optional[List[str]] = None
        self._last_poll = float("-inf")

    def read(self) -> List[str]:
        with open(self.path, encoding="utf-8") as handle:
            return parse_class_text(handle.read())

    def poll(self, now: float) -> Optional[List[str]]:
        """New class names if the file changed (and is non-empty), else None. ``now``: time.monotonic()."""
        if now - self._last_poll < self.interval:
            return None
        self._last_poll = now
        try:
            stat = os.stat(self.path)
        except OSError:
            return None  # being replaced (editors write a new file and rename): try again next poll
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            names = self.read()
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read class file %s: %s", self.path, exc)
            return None
        if not names:
            log.warning("class file %s is empty; keeping the current classes", self.path)
            return None
        if names == self._names:
            return None
        self._names = names
        return names


def checked_names(names) -> Optional[List[str]]:
    """``names`` as the vocabulary unit reads them (a string is comma-separated; names stripped), or None when it
    refuses them (the segment's ``set_classes`` then says why): what the stream loop compares with its vocabulary."""
    try:
        return validate_class_names(names)
    except (TypeError, ValueError):
        return None


def lend_vocabulary(engine: Any, classes: Any) -> Callable[[], None]:
    """An app's Engine lent to a run: ``classes`` made current (when given); returns what gives the app its vocabulary
    back when the run ends, the run's own changes undone too (a watched class file's, the preview's class box).
    Before this, ``Session(engine, classes="p,q")`` left the app's Engine answering ``['p', 'q']``. An Engine's
    prepared vocabulary is restored as it was (``Engine.vocabulary_snapshot``); an Engine-like object
    gets its names again."""
    snapshot = getattr(engine, "vocabulary_snapshot", None)
    if callable(snapshot):
        kept = snapshot()
        give_back: Callable[[], None] = lambda: engine.restore_vocabulary(kept)  # noqa: E731
    else:
        names = list(getattr(engine, "class_names", None) or [])
        give_back = (lambda: engine.set_classes(names)) if names else (lambda: None)
    if classes is not None:
        engine.set_classes(classes)
    return give_back
