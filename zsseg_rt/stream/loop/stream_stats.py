"""The statistics of a stream: :class:`SourceStats` per source and :class:`StreamStats` for all of them (what
``MultiStreamRunner.snapshot()``, the preview's ``/stats`` and ``--stats-json`` hold), and the percentiles of their
latencies. Moved out of ``runner.py``, which imports them from here."""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["PERCENTILE_WINDOW", "SourceStats", "StreamStats", "percentiles"]

PERCENTILE_WINDOW = 1000  # latencies kept per source for p50 / p99 (the most recent frames)


def percentiles(values: Sequence[float]) -> Tuple[float, float]:
    """(p50, p99) in ms of latencies in seconds; (0, 0) for none."""
    if not values:
        return 0.0, 0.0
    p50, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 99])
    return 1000.0 * float(p50), 1000.0 * float(p99)


@dataclasses.dataclass
class SourceStats:
    """The counters and rates of one source of a stream (JSON-serialisable via ``as_dict``).

    ``fps``: its processed frames per second over the last ``window`` frames; ``latency_ms``: mean time of the
    ``segment`` calls its frames were in (a batched call counts for every frame in it), ``latency_p50_ms`` /
    ``latency_p99_ms`` over its last ``PERCENTILE_WINDOW`` frames; ``e2e_latency_*``: from capture to its sinks
    written. ``state``: the capture thread's ("streaming", "reconnecting", "ended", "failed", "stopped", ...);
    ``error``: why it failed or last could not open; ``failed_opens``: open attempts that failed.
    ``decode_errors``: damaged packets or images of a file or folder that were skipped; ``frames_declared``: the
    frame count a video file's container declares (None: it declares none, or not a file), which a file that ends
    before it falls short of (the log says so); ``ffmpeg_messages``: FFmpeg's own lines about the file (logged at
    WARNING, the first ten; the rest counted); ``frames_missing``: frame numbers of a file or folder, by presentation
    time, at which no frame was decoded (``missing_frames``: the first of them), which the outputs' names skip.
    """

    name: str = ""
    source: str = ""
    live: bool = False
    state: str = "starting"
    error: Optional[str] = None
    processed: int = 0
    captured: int = 0
    dropped: int = 0
    reconnects: int = 0
    failed_opens: int = 0
    decode_errors: int = 0
    frames_declared: Optional[int] = None
    ffmpeg_messages: int = 0
    frames_missing: int = 0  # frame numbers (by presentation time) with no frame: the outputs' names skip them
    missing_frames: List[int] = dataclasses.field(default_factory=list)  # the first of them
    fps: float = 0.0
    latency_ms: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    e2e_latency_ms: float = 0.0
    e2e_latency_p50_ms: float = 0.0
    e2e_latency_p99_ms: float = 0.0
    # video label metrics (zsseg_rt.stream.video_filter.video_metrics: flicker_pct, changed_pct, tc_pct, fps_end_to_end, keyframes)
    # and the temporal filter's counters (VideoSegmenter.stats)
    video: dict = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def title(self) -> str:
        return f"{self.fps:.1f} FPS  {self.latency_ms:.0f} ms  drop {self.dropped}"

    def line(self) -> str:
        """One short line for progress bars and logs: ``name 12.3 fps p50/p99 80/95 ms drop 0 rc 0`` (and the state
        while it is not streaming)."""
        text = (
            f"{self.name} {self.fps:.1f} fps p50/p99 {self.latency_p50_ms:.0f}/{self.latency_p99_ms:.0f} ms "
            f"drop {self.dropped} rc {self.reconnects}"
        )
        return text if self.state in ("streaming", "ended", "stopped") else f"{text} {self.state}"


@dataclasses.dataclass
class StreamStats:
    """Counters and rates of a running stream, all sources together (a snapshot; JSON-serialisable via ``as_dict``).

    With one source the numbers are that source's. ``fps``: processed frames per second of all sources (the sum of
    their rates); ``latency_ms``: mean time in ``segment`` over the last ``window`` calls, ``latency_p50_ms`` /
    ``latency_p99_ms`` per frame over the recent frames of all sources; ``e2e_latency_ms``: mean time from capture to
    sinks written; ``engine_calls`` and ``mean_batch`` (frames per ``segment`` call); ``started_at`` (``time.time()``
    when ``run()`` began), ``elapsed_s`` and ``cpu_s`` (CPU time of the whole process meanwhile); ``sources``: each source's :class:`SourceStats`.
    """

    processed: int = 0
    captured: int = 0
    dropped: int = 0
    reconnects: int = 0
    decode_errors: int = 0  # damaged packets / images skipped, all sources
    fps: float = 0.0
    latency_ms: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    e2e_latency_ms: float = 0.0
    engine_calls: int = 0
    mean_batch: float = 0.0
    started_at: float = 0.0  # time.time() when run() began
    elapsed_s: float = 0.0  # seconds since then (at the end: how long the stream ran)
    cpu_s: float = 0.0  # CPU seconds this process (all its threads) spent meanwhile
    classes: List[str] = dataclasses.field(default_factory=list)
    vocabulary_changes: int = 0
    vocabulary_request: int = 0  # the last request_classes() number handled (applied, refused or replaced)
    vocabulary_error: Optional[str] = None  # why that request was not applied; None when it was
    sources: List[SourceStats] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def title(self) -> str:
        return f"{self.fps:.1f} FPS  {self.latency_ms:.0f} ms  drop {self.dropped}"
