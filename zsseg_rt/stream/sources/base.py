"""What every frame source shares: ``FrameSource`` (the interface and the frame numbers from presentation time),
``SourceSpec`` (a parsed source string), ``SourceError``, the file extensions and the quiet-OpenCV helper."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Iterable, List, Optional, Sequence

import numpy as np

# shared with the outputs below the stream (re-exported: the sources and their users import them from here)
from zsseg_rt.console.opencv_build import quiet_opencv as quiet_opencv
from zsseg_rt.errors import ZssegError
from zsseg_rt.input_files import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from zsseg_rt.input_files import VIDEO_EXTENSIONS as VIDEO_EXTENSIONS

log = logging.getLogger("zsseg_rt.stream")


class SourceError(ZssegError, RuntimeError):
    """A source could not be opened or read."""


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """A parsed source string.

    Attributes:
        kind: the name of its row in ``SOURCE_KINDS`` (``zsseg_rt.stream.sources.table``).
        target: the device path / index, sensor id, URL, file path, folder path or pipeline.
        live: True for cameras and network streams (frames arrive in real time; losing them means reconnect).
    """

    kind: str
    target: str
    live: bool
    # the row of ``SOURCE_KINDS`` that recognised it (set by ``parse_source``; not part of the spec's value)
    row: Optional["SourceKind"] = dataclasses.field(default=None, compare=False, repr=False)


MISSING_KEPT = 20  # missing frame numbers a source remembers (the summary names the first ones; all are counted)


def missing_note(count: int, numbers: Sequence[int]) -> str:
    """The note "3 frames missing by presentation time (000024, ...): ..." for a source whose frame numbers
    skipped ``count`` (the first of them: ``numbers``), else ""; said once, in a run's summary."""
    if not count:
        return ""
    named = [f"{int(number):06d}" for number in list(numbers)[:10]]
    shown = ", ".join(named) + (f" and {count - len(named)} more" if count > len(named) else "")
    frames = "frame" if count == 1 else "frames"
    return (
        f"{count} {frames} missing by presentation time ({shown}: lost to damaged data, or a variable frame rate); "
        "the outputs are named by presentation time, so the names skip them"
    )


class FrameSource:
    """Interface. ``open()`` (idempotent re-open), ``read()``, ``close()``; ``ended`` after a finite source's
    last frame; ``live`` for real-time sources; ``fps`` when known (used to pace non-live sources)."""

    name = "source"
    live = False
    fps: Optional[float] = None
    frame_count: Optional[int] = None  # frames of a finite source when known (progress bars), after ``open()``
    frames_declared: Optional[int] = None  # the frame count a video file's container declares (None: none declared)
    decode_errors = 0  # damaged packets / images skipped (a file or folder), over every open()
    # the presentation time (seconds) of the frame ``read()`` returned last: a video file's own, an image folder's
    # place at ``fps`` (30 when not given); None for a live source (its frames are stamped with the time of capture)
    last_pts: Optional[float] = None
    # the number of that frame from its presentation time at the SOURCE's own rate, round((pts - start) x rate) (``rate``:
    # a video file's container rate; never a rate the caller asked for, which sets the output video's rate only), the
    # name every output of a run gives it (a label map's 000042.png, a COCO image, a segmented video's
    # clip_000042_*): a frame lost to damaged data leaves a gap (``missing``) instead of shifting the frames after
    # it; None for a live source (numbered by capture order)
    last_number: Optional[int] = None
    # the source's own frame rate, which frame numbers count at (a video file's, from its container); None: not known
    # (then ``fps``, else 30)
    rate: Optional[float] = None

    def __init__(self):
        self.ended = False
        self.missing: List[int] = []  # the numbers skipped (no frame decoded there), the first MISSING_KEPT of them
        self.missing_count = 0  # all of them, over every open()

    def _place(self, pts: float, start: float = 0.0, number: Optional[int] = None) -> None:
        """``pts`` (seconds; ``start``: the stream's own start time) as the frame just read's presentation time, and
        its number (``number``: given, else from ``pts``). A number at or before the last one (a variable frame
        rate's rounding) is made the next one: two frames never share a name."""
        self.last_pts = pts
        if number is None:
            number = int(round((pts - start) * self.number_rate))
        last = -1 if self.last_number is None else self.last_number
        if number <= last:
            number = last + 1
        elif number > last + 1:
            self._skipped(range(last + 1, number))
        self.last_number = number

    @property
    def number_rate(self) -> float:
        """The rate frame numbers count at: the source's own (``rate``), else ``fps``, else 30 (a
        requested ``fps`` numbered a 10 fps file's frames 0, 2, 5, 8, ... and called the gaps it made damaged data)."""
        return float(self.rate or self.fps or 30.0)

    def _skipped(self, numbers: Iterable[int]) -> None:
        for number in numbers:
            self.missing_count += 1
            if len(self.missing) < MISSING_KEPT:
                self.missing.append(number)

    def _restart_numbers(self) -> None:
        """At ``open()``: the numbers start again from the file's start (``--loop``: the reader counts on)."""
        self.last_number = None

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()


@dataclasses.dataclass(frozen=True)
class OpenOptions:
    """What building a source may use besides its spec (``open_source``'s arguments)."""

    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    max_pixels: Optional[int] = None
    allow_partial: bool = False
    fit: bool = False  # image files over the pixel limit: read resized to fit it (with a note) instead of skipped


@dataclasses.dataclass(frozen=True)
class SourceKind:
    """One row of the table (see the module).

    ``parse(text)`` returns the ``SourceSpec`` of a string this kind recognises, else None (``text`` is stripped and
    not empty). ``label(spec)`` is the source's short name before it is made file-name safe. ``build(spec, options)``
    returns the (not yet open) ``FrameSource``; None: an ``OpenCVSource`` whose capture ``capture(spec, source)``
    opens (``cv2.VideoCapture``), after ``check(spec)`` (raises when the machine cannot open the kind) and with
    ``configure(cap, source)`` applied once it is open. ``open_failure`` says why an open failed.
    """

    name: str
    example: str
    parse: Callable[[str], Optional[SourceSpec]]
    label: Callable[[SourceSpec], str]
    build: Optional[Callable[[SourceSpec, OpenOptions], FrameSource]] = None
    capture: Optional[Callable[[SourceSpec, Any], Any]] = None
    check: Optional[Callable[[SourceSpec], None]] = None
    configure: Optional[Callable[[Any, Any], None]] = None
    open_failure: str = "the pipeline could not start"
