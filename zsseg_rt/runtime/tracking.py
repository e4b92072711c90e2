"""Objects that keep their identity across frames: :class:`ObjectTracker` gives each frame's objects
(:class:`~zsseg_rt.runtime.objects.FrameObjects`, as ``Result.objects()`` and ``find_objects`` give them) a
``track_id``, the same for the same thing from frame to frame.

How a frame's objects are matched to the tracks (one tracker per stream of frames; within one class, by name):

* **motion**: each track's box moves on at its constant velocity (its box centre's last move per frame, averaged
  with the move before: :data:`VELOCITY_WEIGHT`), so an object that moves farther than its own size between frames
  is looked for where it went, not where it was;
* **mask overlap**: a track's last mask, moved to its predicted place, against each region's mask (their IoU,
  computed on the boxes' crops of the masks, decoded from the objects' RLE);
* **distance gate**: a pair counts when the masks overlap by :data:`MIN_OVERLAP` or more, or when the region's box
  centre lies within :data:`GATE` box sides (the larger side of the two boxes) of the predicted centre, and
  :data:`GATE_GROWTH` more per frame the track was not seen. The distance decides the first move of a new track,
  which has no velocity yet;
* **assignment**: the pairs' costs (``1 - IoU``, plus the distance over the gate, halved: the overlap leads, the
  distance breaks ties and matches regions that do not overlap) solved as one assignment per class by SciPy's
  ``linear_sum_assignment`` (the Hungarian method); a region left over starts a new track with a new id;
* a track not matched in a frame is **missed**; it is ended after more than ``max_missed`` frames missed in a row
  (``track_max_missed``, an Engine option row; the default covers a dropout of three frames) and its id is never
  given again. A region whose area changes more than :data:`SIZE_JUMP` times between two matches (two objects of a
  class merged into one region, or one region split) gives no velocity: its box centre's jump is no motion.

ByteTrack's second pass over low-score detections is not done: a segmentation's regions have no low-score
detections to keep (every pixel has its best class, and regions under ``object_min_area`` are no objects at all).

Cost: one crop decode per region, one crop IoU per pair whose boxes meet after the prediction, one small assignment
per class with two or more tracks or regions (``python -m benchmarks robots``, its tracking column). NumPy and SciPy
only.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from zsseg_rt.options import ENGINE_OPTIONS

from .objects import FrameObjects, RegionObject
from .result import Result

__all__ = ["DEFAULT_MAX_MISSED", "ObjectTracker", "SourceTrackers", "crop_mask"]

# The default lives in the option table (its row's help says why this value); read here, never copied.
DEFAULT_MAX_MISSED: int = ENGINE_OPTIONS["track_max_missed"].default
MIN_OVERLAP = 0.1  # a predicted mask overlapping a region by this IoU pairs them whatever the distance
GATE = 1.5  # box sides (the larger side of the two boxes) from the predicted centre to a region's centre
GATE_GROWTH = 0.5  # more box sides per frame missed
VELOCITY_WEIGHT = 0.5  # the last move's weight in the velocity (the rest: the velocity before)
SIZE_JUMP = 2.0  # an area changing more than this many times between matches gives no velocity
_NO_PAIR = 1e6  # the cost of a pair outside the gate (never kept)


def _check_max_missed(value: Any) -> int:
    """``value`` checked by the option's row (ValueError in its words: ``track_max_missed: expected ...``)."""
    ENGINE_OPTIONS["track_max_missed"].check_value(value)
    return int(value)


def _counts_runs(counts: str) -> np.ndarray:
    """The run lengths of a compressed COCO RLE ``counts`` string (pycocotools' ``rleFrString``, vectorised: the
    twin of :func:`zsseg_rt.runtime.rle.decode_rle`'s loop, which decodes a whole mask; this reads the runs only)."""
    codes = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if not codes.size:
        return np.zeros(0, dtype=np.int64)
    last = (codes & 0x20) == 0  # a value's last character has no continuation bit
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    groups = ends - starts + 1
    value = np.cumsum(np.concatenate(([True], last[:-1])), dtype=np.intp) - 1  # each character's value
    shift = 5 * (np.arange(codes.size) - starts[value])
    values = np.add.reduceat((codes & 0x1F) << shift, starts)
    values -= np.where(codes[ends] & 0x10, np.int64(1) << (5 * groups), 0)  # the sign of the last group
    runs = values.copy()
    runs[3::2] = np.cumsum(values[1::2])[1:]  # from the fourth on: plus the run two before (rleFrString)
    runs[4::2] = np.cumsum(values[2::2])[1:]
    return runs


def crop_mask(rle: Dict[str, Any], box: Sequence[int]) -> np.ndarray:
    """The ``[h, w]`` bool mask of a COCO RLE (``{"size": [H, W], "counts": str}``) in its box ``(x, y, w, h)``: what
    ``decode_rle(rle)[y:y+h, x:x+w]`` gives, read from the runs of the box's columns only (runs that end before the
    mask does leave zeros, as ``decode_rle``).

    Raises:
        ValueError: the box is not inside the mask, or the RLE has a negative run or more pixels than the mask.
    """
    height, width = (int(side) for side in rle["size"])
    x, y, w, h = (int(v) for v in box)
    if min(x, y, w, h) < 0 or x + w > width or y + h > height:
        raise ValueError(f"an object's box (x, y, w, h) = {(x, y, w, h)} is not inside its {height}x{width} mask")
    runs = _counts_runs(str(rle["counts"]))
    if runs.size and int(runs.min()) < 0:
        raise ValueError(f"an object's RLE has a negative run ({int(runs.min())})")
    edges = np.cumsum(np.concatenate(([0], runs, [0])))
    if edges[-1] > height * width:
        raise ValueError(f"an RLE of {int(edges[-1])} pixels for a {height}x{width} mask")
    edges[-1] = height * width  # the pixels after the last run: zeros (a last run of the rest)
    first = x * height  # the box's columns, column-major: the runs cut to them, then repeated into pixels
    lengths = np.diff(np.clip(edges, first, (x + w) * height))
    values = np.zeros(lengths.size, dtype=bool)
    values[1 : runs.size : 2] = True  # the runs alternate, zeros first (the rest: zeros)
    return np.repeat(values, lengths).reshape(w, height).T[y : y + h]


class _Mask:
    """A region's mask crop, decoded from its RLE when first asked for (most pairs never need it: see
    :meth:`ObjectTracker._costs`)."""

    __slots__ = ("rle", "box", "_crop")

    def __init__(self, item: RegionObject):
        self.rle, self.box = item.rle, item.box
        self._crop: Optional[np.ndarray] = None

    @property
    def crop(self) -> np.ndarray:
        if self._crop is None:
            self._crop = crop_mask(self.rle, self.box)
        return self._crop


@dataclasses.dataclass
class _Track:
    """One identity: its id, its last region (box, mask crop, area), its velocity and how many frames it was missed."""

    track_id: int
    box: Tuple[float, float, float, float]
    mask: _Mask
    area: int
    velocity: Optional[Tuple[float, float]] = None  # box centre's move per frame; None: not known yet
    missed: int = 0

    def predicted(self, motion: bool) -> Tuple[float, float, float, float]:
        """Its box now: moved on at its velocity for every frame since it was last seen."""
        x, y, w, h = self.box
        if not motion or self.velocity is None:
            return self.box
        frames = self.missed + 1
        return (x + self.velocity[0] * frames, y + self.velocity[1] * frames, w, h)


def _overlap(mask: np.ndarray, at: Tuple[int, int], area: int, other: np.ndarray, box: Sequence[int], size: int):
    """IoU of ``mask`` placed at ``at`` (x, y) and ``other`` at ``box``'s corner (``area``, ``size``: their pixels)."""
    x0, y0 = max(at[0], int(box[0])), max(at[1], int(box[1]))
    x1 = min(at[0] + mask.shape[1], int(box[0]) + other.shape[1])
    y1 = min(at[1] + mask.shape[0], int(box[1]) + other.shape[0])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    mine = mask[y0 - at[1] : y1 - at[1], x0 - at[0] : x1 - at[0]]
    theirs = other[y0 - int(box[1]) : y1 - int(box[1]), x0 - int(box[0]) : x1 - int(box[0])]
    both = int(np.count_nonzero(mine & theirs))
    return both / float(area + size - both) if both else 0.0


class ObjectTracker:
    """Track ids for a stream's objects (see the module): ``update(objects)`` once a frame, in the frames' order.

    Args:
        max_missed: frames a track may go unseen and still continue (``track_max_missed``; None: the option's
            default, :data:`DEFAULT_MAX_MISSED`); 0 ends a track at its first missed frame.
        motion: predict each track's box at its constant velocity and match by distance too (the default); False
            matches by mask overlap alone, the masks where they were last seen (a comparison, as a tracker by IoU
            alone: an object that moves its own size between frames is lost).

    One tracker follows one stream: its ids are unique for its life and never given again, even after a track
    ended. ``zsseg camera --track`` and ``Session(track=True)`` keep one per source.

    Raises:
        ValueError: ``max_missed`` is not a whole number >= 0.
    """

    def __init__(self, max_missed: Optional[int] = None, *, motion: bool = True):
        self.max_missed = DEFAULT_MAX_MISSED if max_missed is None else _check_max_missed(max_missed)
        self.motion = bool(motion)
        self._tracks: Dict[str, List[_Track]] = {}  # by class name: a new vocabulary keeps the classes it names
        self._ids = itertools.count(1)  # MOTChallenge's ids are positive
        self.frames = 0  # frames updated
        self.started = 0  # tracks started (ids given)

    @property
    def active(self) -> int:
        """Tracks alive now (seen within ``max_missed`` frames)."""
        return sum(len(tracks) for tracks in self._tracks.values())

    def update(self, objects: Union[Iterable[RegionObject], Result]) -> FrameObjects:
        """One frame's objects with their ``track_id`` set, in their order (``dropped`` kept).

        Args:
            objects: a :class:`FrameObjects` (or a sequence of :class:`RegionObject`) of the next frame, or its
                ``Result``, whose ``objects()`` are taken (the Engine's ``object_min_area`` and ``max_objects``).

        Raises:
            TypeError: an item is not a ``RegionObject``.
            ValueError: an object's box is not inside its mask, or its RLE is malformed (:func:`crop_mask`).
        """
        if isinstance(objects, Result):  # (it was "'Result' object is not iterable")
            objects = objects.objects()
        given = list(objects)
        for item in given:
            if not isinstance(item, RegionObject):
                raise TypeError(
                    f"ObjectTracker.update takes RegionObjects (Result.objects()), got {type(item).__name__}"
                )
        dropped = int(getattr(objects, "dropped", 0))
        ids: List[int] = [0] * len(given)
        by_class: Dict[str, List[int]] = {}
        for index, item in enumerate(given):
            by_class.setdefault(item.name, []).append(index)
        # the classes in the objects' order, then those with tracks only (sorted): new ids in a repeatable order
        for name in list(by_class) + sorted(set(self._tracks) - set(by_class)):
            tracks = self._tracks.get(name, [])
            kept = self._match_class(tracks, [given[i] for i in by_class.get(name, [])])
            for index, track_id in zip(by_class.get(name, []), kept):
                ids[index] = track_id
            tracks = [track for track in self._tracks.get(name, []) if track.missed <= self.max_missed]
            if tracks:
                self._tracks[name] = tracks
            else:
                self._tracks.pop(name, None)
        self.frames += 1
        return FrameObjects(tuple(dataclasses.replace(item, track_id=i) for item, i in zip(given, ids)), dropped)

    def _match_class(self, tracks: List[_Track], found: List[RegionObject]) -> List[int]:
        """Match one class's regions to its tracks (see the module); returns each region's track id (new tracks
        added), every unmatched track's ``missed`` counted."""
        masks = [_Mask(item) for item in found]
        pairs: Dict[Tuple[int, int], float] = {}
        if tracks and found:
            cost = self._costs(tracks, found, masks)
            if cost.size == 1:
                rows, columns = (np.array([0]), np.array([0]))
            else:
                from scipy.optimize import linear_sum_assignment

                rows, columns = linear_sum_assignment(cost)
            pairs = {(r, c): cost[r, c] for r, c in zip(rows.tolist(), columns.tolist()) if cost[r, c] < _NO_PAIR}
        matched = {c: r for r, c in pairs}
        seen = set(matched.values())
        for row, track in enumerate(tracks):
            if row not in seen:
                track.missed += 1
        ids = []
        for column, item in enumerate(found):
            taken = matched.get(column)
            if taken is None:
                box = (float(item.box[0]), float(item.box[1]), float(item.box[2]), float(item.box[3]))
                track = _Track(next(self._ids), box, masks[column], int(item.area))
                self.started += 1
                self._tracks.setdefault(item.name, []).append(track)
            else:
                track = tracks[taken]
                self._follow(track, item, masks[column])
            ids.append(track.track_id)
        return ids

    def _costs(self, tracks: List[_Track], found: List[RegionObject], masks: List[_Mask]) -> np.ndarray:
        """``[tracks, regions]``: ``1 - IoU`` of the moved mask plus half the distance over the gate; outside the
        gate :data:`_NO_PAIR`. A pair within the gate whose track and region have no other candidate is matched by
        the distance alone (its IoU would change no assignment: the masks are not decoded for it)."""
        boxes = np.array([item.box for item in found], dtype=np.float64)
        centres = boxes[:, :2] + boxes[:, 2:] / 2.0
        predicted = np.array([track.predicted(self.motion) for track in tracks], dtype=np.float64)
        corners = np.round(predicted[:, :2])
        sides = predicted[:, 2:]
        steps = GATE + GATE_GROWTH * np.array([track.missed for track in tracks], dtype=np.float64)
        reach = np.maximum(sides.max(axis=1)[:, None], boxes[None, :, 2:].max(axis=2)) * steps[:, None]
        distance = np.hypot(
            centres[None, :, 0] - (predicted[:, None, 0] + sides[:, None, 0] / 2.0),
            centres[None, :, 1] - (predicted[:, None, 1] + sides[:, None, 1] / 2.0),
        )
        meets = (
            (boxes[None, :, 0] < corners[:, None, 0] + sides[:, None, 0])
            & (corners[:, None, 0] < boxes[None, :, 0] + boxes[None, :, 2])
            & (boxes[None, :, 1] < corners[:, None, 1] + sides[:, None, 1])
            & (corners[:, None, 1] < boxes[None, :, 1] + boxes[None, :, 3])
        )
        within = (distance <= reach) if self.motion else np.zeros_like(meets)
        candidate = meets | within
        shared = (candidate.sum(axis=1, keepdims=True) > 1) | (candidate.sum(axis=0, keepdims=True) > 1)
        cost = np.full(candidate.shape, _NO_PAIR)
        for row, column in zip(*np.nonzero(candidate)):
            iou = 1.0 if within[row, column] and not shared[row, column] else 0.0  # alone: the distance decides
            if meets[row, column] and (shared[row, column] or not within[row, column]):
                track, item = tracks[row], found[column]
                at = (int(corners[row, 0]), int(corners[row, 1]))
                iou = _overlap(track.mask.crop, at, track.area, masks[column].crop, item.box, item.area)
            if iou >= MIN_OVERLAP or within[row, column]:
                cost[row, column] = 1.0 - iou + 0.5 * min(1.0, distance[row, column] / reach[row, column])
        return cost

    @staticmethod
    def _follow(track: _Track, item: RegionObject, mask: _Mask) -> None:
        """The track takes the region: its box, mask and area, and its velocity from the move (none across a jump in
        size: a merge or a split)."""
        x, y, w, h = (float(v) for v in item.box)
        old = track.box
        frames = track.missed + 1
        ratio = max(item.area, 1) / max(track.area, 1)
        if 1.0 / SIZE_JUMP <= ratio <= SIZE_JUMP:
            move = ((x + w / 2.0 - old[0] - old[2] / 2.0) / frames, (y + h / 2.0 - old[1] - old[3] / 2.0) / frames)
            if track.velocity is None:
                track.velocity = move
            else:
                keep = 1.0 - VELOCITY_WEIGHT
                track.velocity = (
                    VELOCITY_WEIGHT * move[0] + keep * track.velocity[0],
                    VELOCITY_WEIGHT * move[1] + keep * track.velocity[1],
                )
        else:
            track.velocity = None
        track.box, track.mask, track.area, track.missed = (x, y, w, h), mask, int(item.area), 0


class SourceTrackers:
    """One :class:`ObjectTracker` per source: ``(source, result) -> its objects, tracked`` (the stream loop's objects
    with ``--track``, ``Session(track=True)``: ``MultiStreamRunner(objects=SourceTrackers(...))``), each source's
    tracker made at its first frame. ``max_missed``: every tracker's (None: the default).

    Raises:
        ValueError: ``max_missed`` is not a whole number >= 0.
    """

    def __init__(self, max_missed: Optional[int] = None):
        self.max_missed = DEFAULT_MAX_MISSED if max_missed is None else _check_max_missed(max_missed)
        self.trackers: Dict[Any, ObjectTracker] = {}

    def __call__(self, source: Any, result: Any) -> FrameObjects:
        tracker = self.trackers.get(source)
        if tracker is None:
            tracker = self.trackers[source] = ObjectTracker(self.max_missed)
        return tracker.update(result.objects())
