"""A :class:`~zsseg_rt.stream.loop.session.Session`'s sources: each parsed, built and (a file, a folder, one
source) opened before anything else (:func:`open_inputs`); with ``skipped_fails`` a video file or folder among
several that cannot be opened is kept aside with why, for the Session to skip it as ``zsseg segment`` does."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, List, Optional, Sequence

from zsseg_rt.errors import OptionError

if TYPE_CHECKING:
    from zsseg_rt.stream.loop.session_options import SessionOptions

__all__ = ["SessionInput", "open_inputs", "source_path"]


@dataclasses.dataclass
class SessionInput:
    """A source of the session: its name (statistics, ``{source}``, the preview), its ``FrameSource``, and whether it
    was opened already (a camera among several is opened by its capture thread)."""

    name: str
    source: Any
    opened: bool
    failed: Optional[str] = None  # skipped_fails among several sources: why it could not be opened (then skipped)


def open_inputs(sources: Sequence[str], options: "SessionOptions", max_pixels: int) -> List[SessionInput]:
    """Every source parsed and built first (a source string that names nothing is an error at once). One source, or
    a file / folder among several: opened here, so a missing camera or file is an error at once (reconnecting is for
    a source lost while streaming). A camera or stream among several: opened by its capture thread, which reports
    it and retries with backoff while the other sources go on. With ``skipped_fails``, a video file or folder among
    several that cannot be opened is closed and kept with ``failed`` (why): the Session skips it, as segment does."""
    from zsseg_rt.stream.sources import (
        FrameSource,
        SourceError,
        open_source,
        parse_source,
        source_label,
        split_source_name,
        unique_labels,
    )

    given = [(None, text) if isinstance(text, FrameSource) else split_source_name(str(text)) for text in sources]
    # SourceError: one line from zsseg_rt.console.errors; a FrameSource of the app's (or segment's image files) as is
    specs = [text if isinstance(text, FrameSource) else parse_source(text) for _, text in given]
    chosen = [name for name, _ in given if name]
    for name in set(chosen):
        if chosen.count(name) > 1:
            raise OptionError(f"two sources are named {name!r}: give each NAME=SOURCE its own name", "sources")
    labels = unique_labels([name or _label(spec, source_label) for (name, _), spec in zip(given, specs)])
    inputs: List[SessionInput] = []
    try:
        for label, spec in zip(labels, specs):
            source = open_source(
                spec,
                width=options.width,
                height=options.height,
                fps=options.fps,
                max_pixels=max_pixels,
                allow_partial=bool(options.allow_partial_images),
                fit=bool(options.fit_images),
            )
            opened = len(specs) == 1 or not source.live
            try:
                if opened:
                    source.open()
            except (SourceError, OSError, ValueError) as exc:  # skipped as zsseg segment skips it, the others go on
                if not (options.skipped_fails and len(specs) > 1):
                    raise
                source.close()
                inputs.append(SessionInput(label, source, False, str(exc) or type(exc).__name__))
                continue
            inputs.append(SessionInput(label, source, opened))
    except BaseException:
        for item in inputs:
            item.source.close()
        raise
    return inputs


def _label(spec: Any, source_label: Any) -> str:
    """A source's name: its spec's label, or a FrameSource's own kind (``images`` of ``images:a.jpg``)."""
    if isinstance(spec, str) or hasattr(spec, "kind"):
        return source_label(spec)
    return str(getattr(spec, "name", "") or "source").split(":", 1)[0] or "source"


def source_path(source: Any) -> str:
    """The file or folder a source reads (what ``skipped`` names), else its name."""
    spec = getattr(source, "spec", None)  # OpenCV's video file: its spec's target
    path = getattr(source, "path", None) or getattr(source, "folder", None) or getattr(spec, "target", None)
    return str(path or source.name)
