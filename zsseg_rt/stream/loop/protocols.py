"""What the stream loop (:mod:`zsseg_rt.stream.loop.runner`) asks of what it drives, as typed protocols instead of
``hasattr`` probes:

* :class:`StreamSegmenter`: a segmenter that keeps state per source (``segment_streams``: the frames of one step, each
  with its source's index; ``stats(stream)``: that source's figures for ``SourceStats.video``). The
  :class:`~zsseg_rt.stream.video_filter.video.VideoSegmenter` declares it; an Engine is a plain segment callable
  (``frame -> result``, ``[frames] -> [results]``).
* :class:`DelayedSegmenter`: a segmenter whose result comes ``delay`` frames after its frame (the look-ahead
  filter, ``--stabilize-delay``): the loop holds each source's frames until their results come, and at a source's
  end takes the results it still holds (``flush(stream)``).
* :class:`FrameObjectFinder`: a runner's ``objects`` that takes each result's frame too (``of_frame``: its file's
  folder is its tracking sequence, ``Session(track=True)`` over image files); else ``objects(source, result)``.
* :class:`ResultSink`: a sink of results rather than overlays (``write_result(frame, result)``: the label folders, the
  robot outputs, COCO masks); with ``takes_overlay`` it is also handed a callable that draws the overlay.

All are ``runtime_checkable``: a class of an application's own that has the methods is one (``isinstance`` checks
the methods' presence), and the loop dispatches on ``isinstance``."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Protocol, Sequence, runtime_checkable

__all__ = ["DelayedSegmenter", "FrameObjectFinder", "ResultSink", "StreamSegmenter", "objects_of"]


@runtime_checkable
class StreamSegmenter(Protocol):
    """A segmenter with state per source: the stream loop hands it each step's frames with their sources."""

    def segment_streams(self, streams: Sequence[int], frames: Sequence[Any]) -> List[Any]:
        """One result per frame, ``frames[i]`` from source ``streams[i]``."""
        ...

    def stats(self, stream: int = 0) -> Dict[str, Any]:
        """Source ``stream``'s figures (keyframes, flow, ...), merged into its ``SourceStats.video``."""
        ...


@runtime_checkable
class DelayedSegmenter(Protocol):
    """A segmenter that gives the result of an earlier frame (None while the first ``delay`` frames come in)."""

    delay: int  # frames between a frame and its result (0: none, the segmenter is then not delayed)

    def flush(self, stream: Optional[int] = None) -> List[Any]:
        """The results still held for source ``stream`` (every source: None), oldest first."""
        ...


@runtime_checkable
class ResultSink(Protocol):
    """A sink that takes each frame's result (its labels) rather than the drawn overlay."""

    def write_result(self, frame: Any, result: Any, *overlay: Any) -> None:
        """``frame`` (a ``Frame``: its image, number, source), its ``result``; with ``takes_overlay``, also a
        callable that draws the overlay (called only when the sink needs it)."""
        ...


@runtime_checkable
class FrameObjectFinder(Protocol):
    """A runner's ``objects`` that finds (and tracks) a result's objects knowing its frame (``frame.path``: the image
    file it was read from), not only its source."""

    def of_frame(self, stream: int, frame: Any, result: Any) -> Any:
        """The objects of ``result``, the result of ``frame`` from source ``stream``."""
        ...


def objects_of(objects: Any, stream: int, frame: Any, result: Any) -> Any:
    """A runner's ``objects`` called on one result: with its frame (a :class:`FrameObjectFinder`), else
    ``objects(stream, result)``."""
    return (
        objects.of_frame(stream, frame, result) if isinstance(objects, FrameObjectFinder) else objects(stream, result)
    )
