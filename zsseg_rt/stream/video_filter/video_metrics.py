"""How stable a video's labels are: flicker on still pixels, labels changed, flow-warped temporal consistency (TC),
agreement with per-frame inference, and frames per second end to end (NumPy + OpenCV; no torch).

The definitions (docs/video.md, "Metrics"), for grey 8-bit frames ``I_0 .. I_{n-1}`` and label maps ``L_0 .. L_{n-1}``
at the frame's size:

* **flicker**: for each ``k >= 1``, among the still pixels ``|I_k - I_{k-1}| < 6`` (grey levels), the share whose
  label changed, ``mean(L_k != L_{k-1} over still_k)``; the mean over ``k`` (frames with no still pixel are left
  out), in %. A perfect filter on a static scene gives 0; moving objects are excluded by ``still_k``.
* **changed**: ``mean(L_k != L_{k-1})`` over the whole frame, mean over ``k``, in %.
* **TC** (flow-warped temporal consistency): OpenCV DIS optical flow (preset MEDIUM, on the grey frames) from frame
  ``k`` to frame ``k-1``, the previous labels sampled at ``x + flow(x)`` with nearest neighbour
  (``cv2.remap(..., INTER_NEAREST)``), and the share of pixels where they equal ``L_k``; mean over ``k``, in %.
* **agreement**: the share of pixels whose label equals the per-frame Engine's label on the same frame, mean over
  frames (keyframes included), in %.
* **fps end to end**: frames over the wall time from the first frame read to the last result written.
* **moved** (a diagnostic of flicker): the pixels of ``k`` that the TC flow moves by more than 1 px. A smoothly
  shaded surface that moves stays under 6 grey levels of change: still to flicker, which counts labels that move
  with it as flicker; flicker ``within`` the pixels not moved leaves them out.
* **voted** (an oracle for the benchmark, not a filter): each ``L_k`` replaced pixel by pixel by the most frequent
  label of ``L_{k-r} .. L_{k+r}``; its flicker is what is left once every label change that lasts fewer than about
  ``r + 1`` frames is removed, knowing the future.

A frame of another size than the previous one starts a new sequence (nothing is compared across the change).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = [
    "STILL_THRESHOLD",
    "MOVING_PX",
    "grey",
    "flicker",
    "changed",
    "temporal_consistency",
    "moved",
    "tc_flow",
    "agreement",
    "voted",
    "carried",
    "VideoMetrics",
]

STILL_THRESHOLD = 6  # grey levels: a pixel is still when |I_k - I_{k-1}| < 6
MOVING_PX = 1.0  # moved: a pixel the flow moves by more than this (px)


def grey(frame: np.ndarray, color_order: str = "bgr") -> np.ndarray:
    """``[H, W]`` uint8 grey of a ``[H, W, 3]`` uint8 frame in ``color_order`` ("bgr" or "rgb"), or of a grey
    ``[H, W]`` uint8 one (returned as it is)."""
    import cv2

    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
        raise ValueError(f"expected a [H, W, 3] (or grey [H, W]) uint8 frame, got {frame.dtype} {list(frame.shape)}")
    if frame.ndim == 2:
        return np.ascontiguousarray(frame)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if color_order == "bgr" else cv2.COLOR_RGB2GRAY)


def _check_pair(previous: np.ndarray, current: np.ndarray, what: str) -> None:
    if previous.shape != current.shape:
        raise ValueError(f"{what}: previous {list(previous.shape)} and current {list(current.shape)} differ in size")


def flicker(
    previous_grey: np.ndarray,
    current_grey: np.ndarray,
    previous_labels: np.ndarray,
    current_labels: np.ndarray,
    within: Optional[np.ndarray] = None,
) -> Optional[float]:
    """The share (0..1) of still pixels (``|I_k - I_{k-1}| < 6``) whose label changed; None when no pixel is still.
    ``within``: a boolean ``[H, W]`` mask, only the still pixels inside it count (e.g. ``~moved(...)``)."""
    _check_pair(previous_grey, current_grey, "flicker frames")
    _check_pair(previous_labels, current_labels, "flicker labels")
    _check_pair(previous_grey, current_labels, "flicker frame and labels")
    diff = np.abs(current_grey.astype(np.int16) - previous_grey.astype(np.int16))
    still = diff < STILL_THRESHOLD
    if within is not None:
        _check_pair(previous_grey, within, "flicker frame and mask")
        still &= within
    count = int(still.sum())
    if not count:
        return None
    return float(np.count_nonzero((previous_labels != current_labels) & still)) / count


def changed(previous_labels: np.ndarray, current_labels: np.ndarray) -> float:
    """The share (0..1) of all pixels whose label changed."""
    _check_pair(previous_labels, current_labels, "changed labels")
    return float(np.count_nonzero(previous_labels != current_labels)) / max(1, current_labels.size)


def tc_flow(current_grey: np.ndarray, previous_grey: np.ndarray, dis: Any = None) -> np.ndarray:
    """``[H, W, 2]`` float32 DIS optical flow (preset MEDIUM) from the current frame to the previous one: the metric's
    flow (``dis``: a reusable ``cv2.DISOpticalFlow`` of that preset)."""
    import cv2

    _check_pair(previous_grey, current_grey, "TC frames")
    flow: Any = dis if dis is not None else cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return flow.calc(current_grey, previous_grey, None)  # Any: OpenCV's stubs refuse flow=None


def temporal_consistency(
    previous_grey: np.ndarray,
    current_grey: np.ndarray,
    previous_labels: np.ndarray,
    current_labels: np.ndarray,
    dis: Any = None,
) -> float:
    """The share (0..1) of pixels whose label equals the previous labels warped by the flow from the current frame to
    the previous one (``tc_flow``; ``cv2.remap`` with ``INTER_NEAREST`` and its default border: a pixel mapped
    outside the previous frame reads label 0)."""
    import cv2

    _check_pair(previous_labels, current_labels, "TC labels")
    _check_pair(current_grey, current_labels, "TC frame and labels")
    flow = tc_flow(current_grey, previous_grey, dis)
    height, width = current_labels.shape
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    warped = cv2.remap(
        np.ascontiguousarray(previous_labels, dtype=np.float32),
        grid_x + flow[..., 0],
        grid_y + flow[..., 1],
        cv2.INTER_NEAREST,
    )
    return float(np.count_nonzero(warped.astype(np.int64) == current_labels)) / max(1, current_labels.size)


def moved(previous_grey: np.ndarray, current_grey: np.ndarray, dis: Any = None) -> np.ndarray:
    """``[H, W]`` bool: the pixels that the flow from the current frame to the previous one (:func:`tc_flow`) moves by
    more than ``MOVING_PX``. Among the still pixels of :func:`flicker` they are surfaces whose grey level hardly
    changes as they move (smooth shading, flat colour), where labels that follow the motion count as flicker."""
    flow = tc_flow(current_grey, previous_grey, dis)
    return np.hypot(flow[..., 0], flow[..., 1]) > MOVING_PX


def agreement(labels: np.ndarray, reference: np.ndarray) -> float:
    """The share (0..1) of pixels whose label equals ``reference``'s (the per-frame Engine's on the same frame)."""
    _check_pair(reference, labels, "agreement labels")
    return float(np.count_nonzero(labels == reference)) / max(1, labels.size)


def voted(labels: Sequence[np.ndarray], radius: int) -> List[np.ndarray]:
    """Each label map of a sequence replaced, pixel by pixel, by the label it has most often over the frames
    ``k - radius .. k + radius`` (the window clipped at the sequence's ends); a tie goes to frame ``k``'s own label,
    then to the smallest one. An oracle, not a filter: it sees ``radius`` frames ahead and ignores motion.
    ``python -m benchmarks video`` reports the flicker it leaves on the per-frame labels: the flicker of the label
    changes that last (about ``radius + 1`` frames and more), which a filter faithful to per-frame inference has
    to follow.

    Args:
        labels: ``[H, W]`` integer label maps of one size, in frame order.
        radius: frames on each side (0: the labels as they are).
    Returns:
        one ``[H, W]`` int64 map per frame.
    """
    if int(radius) < 0:
        raise ValueError(f"the vote's radius must be >= 0, got {radius}")
    maps = [np.asarray(item) for item in labels]
    for item in maps[1:]:
        _check_pair(maps[0], item, "voted labels")
    out = []
    for k, own in enumerate(maps):
        window = np.stack(maps[max(0, k - radius) : k + radius + 1]).astype(np.int64)
        best = np.zeros(own.shape, np.int64)  # 2 x count + 1 for the frame's own label: it wins ties
        winner = own.astype(np.int64)
        for label in np.unique(window):
            score = 2 * np.count_nonzero(window == label, axis=0) + (own == label)
            better = score > best
            best[better], winner[better] = score[better], label
        out.append(winner)
    return out


def carried(greys: Sequence[np.ndarray], labels: Sequence[np.ndarray], every: int, dis: Any = None) -> List[np.ndarray]:
    """The keyframe oracle: every ``every``-th frame keeps its own labels (the keyframes: frames 0, every, 2 every,
    ...), each frame between takes its keyframe's labels carried by the metric's flow from that frame straight to the
    keyframe (:func:`tc_flow`, DIS MEDIUM at full size; ``cv2.remap`` nearest, border replicated). What propagation can
    agree with per-frame inference when the flow is as good as the metric's and nothing else is known: the per-frame
    labels' changes between keyframes that motion does not explain (new scores, near-ties) are out of its reach.
    ``python -m benchmarks video`` reports its agreement with the per-frame labels beside ``--keyframe-every 4``'s.

    Args:
        greys: the grey frames (``grey``), in order.
        labels: their per-frame ``[H, W]`` integer label maps, one size.
        every: the keyframe interval (>= 1; 1: the labels as they are).
    Returns:
        one ``[H, W]`` int64 map per frame.
    """
    import cv2

    if int(every) < 1:
        raise ValueError(f"the keyframe interval must be >= 1, got {every}")
    if len(greys) != len(labels):
        raise ValueError(f"{len(greys)} frames but {len(labels)} label maps")
    maps = [np.asarray(item) for item in labels]
    flow_of: Any = dis if dis is not None else cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = []
    for k, own in enumerate(maps):
        _check_pair(greys[k], own, "carried frame and labels")
        key = k - k % int(every)
        if key == k:
            out.append(own.astype(np.int64))
            continue
        flow = tc_flow(greys[k], greys[key], flow_of)
        height, width = own.shape
        grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        moved_labels = cv2.remap(
            np.ascontiguousarray(maps[key], dtype=np.float32),
            grid_x + flow[..., 0],
            grid_y + flow[..., 1],
            cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_REPLICATE,
        )
        out.append(moved_labels.astype(np.int64))
    return out


def _mean_pct(total: List[float]) -> Optional[float]:
    """The mean of a running ``[sum, count]`` in percent (None for no value)."""
    return round(100.0 * total[0] / total[1], 4) if total[1] else None


class VideoMetrics:
    """The metrics of one stream, updated frame by frame (thread-safe: the camera loop's writer thread updates,
    the statistics read).

    Args:
        consistency: also measure TC (a DIS MEDIUM flow per frame at the frame's size: 40 to 200 ms a 768x576 frame
            on a CPU core, so off by default in the camera loop; flicker and changed cost a difference per frame).

    ``update(frame, labels, keyframe=...)`` after each frame's result is written; ``summary()`` is what
    ``--stats-json`` reports per source: ``flicker_pct``, ``changed_pct``, ``tc_pct`` (None when not measured),
    ``frames``, ``keyframes`` (frames the encoder ran on), ``fps_end_to_end`` and ``measured_pairs``.
    """

    def __init__(self, consistency: bool = False):
        self.consistency = bool(consistency)
        self._lock = threading.Lock()
        self._dis: Any = None
        self._previous: Optional[tuple] = None  # (grey, labels) of the last frame
        # running [sum, count] per metric, not the per-frame values: a camera that runs for days keeps the same few
        # numbers and summary() (after every frame) costs the same at frame 10 and at frame 10 million (the lists it
        # kept made both grow with the run)
        self._flicker, self._changed, self._tc = [0.0, 0], [0.0, 0], [0.0, 0]
        self.frames = 0
        self.keyframes = 0
        self.first_read: Optional[float] = None
        self.last_written: Optional[float] = None

    def update(
        self,
        frame: np.ndarray,
        labels: np.ndarray,
        keyframe: bool = True,
        read_at: Optional[float] = None,
        written_at: Optional[float] = None,
    ) -> None:
        """Account one frame (``[H, W, 3]`` uint8 BGR) and its labels ``[H, W]``. ``read_at`` / ``written_at``:
        ``time.monotonic()`` when the frame was read and when its result was written (default: now)."""
        labels = np.asarray(labels)
        current = grey(frame)
        if current.shape != labels.shape:
            raise ValueError(f"labels {list(labels.shape)} are not the frame's size {list(current.shape)}")
        pair = None
        with self._lock:
            previous = self._previous
        if previous is not None and previous[0].shape == current.shape:
            pair = (
                flicker(previous[0], current, previous[1], labels),
                changed(previous[1], labels),
                self._consistency(previous, current, labels) if self.consistency else None,
            )
        now = time.monotonic()
        with self._lock:
            self._previous = (current, labels.copy())
            self.frames += 1
            self.keyframes += int(bool(keyframe))
            start = now if read_at is None else float(read_at)
            self.first_read = start if self.first_read is None else min(self.first_read, start)
            self.last_written = now if written_at is None else float(written_at)
            if pair is not None:
                for total, value in zip((self._flicker, self._changed, self._tc), pair):
                    if value is not None:
                        total[0] += float(value)
                        total[1] += 1

    def _consistency(self, previous: tuple, current: np.ndarray, labels: np.ndarray) -> float:
        if self._dis is None:
            import cv2

            self._dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return temporal_consistency(previous[0], current, previous[1], labels, self._dis)

    def summary(self) -> Dict[str, Any]:
        """The metrics so far (percentages rounded to 1e-4; None where nothing was measured)."""
        with self._lock:
            span = (self.last_written or 0.0) - (self.first_read or 0.0)
            return {
                "frames": self.frames,
                "keyframes": self.keyframes,
                "measured_pairs": self._changed[1],
                "flicker_pct": _mean_pct(self._flicker),
                "changed_pct": _mean_pct(self._changed),
                "tc_pct": _mean_pct(self._tc),
                "fps_end_to_end": round(self.frames / span, 4) if self.frames and span > 0 else None,
            }
