"""Objects for robots: each class's connected regions of a label map as detections.

A robot acts on things, not on pixels: :func:`find_objects` (and ``Result.objects()``) turns a label map into one
:class:`RegionObject` per connected region of a class (8-connectivity, OpenCV's ``connectedComponents`` on each
class's pixels in the crops of its groups of 16 px tiles that hold at least ``min_area`` of them), with its class id
and name, score, box ``(x, y, w, h)``, area, centroid and mask as COCO RLE (``{"size": [h, w], "counts": str}``,
what ``pycocotools.mask.decode`` reads), in a deterministic order:

* class id (vocabulary order), then area (largest first), then the region whose first pixel in raster order (top row
  first, then leftmost) comes first (a key of the region itself, so the order does not depend on how OpenCV numbers
  its components, nor on its threads);
* regions smaller than ``min_area`` (a fraction of the frame's pixels, rounded up to whole pixels, at least one) are
  no objects; the unknown label (``unknown_id``, ``Engine(unknown_below=P)``) gives none;
* at most ``max_objects`` objects a frame: the first ones in that order; :attr:`FrameObjects.dropped` counts the
  regions over the cap (regions under ``min_area`` are not counted: they are no objects).

The two limits are rows of the Engine's option table (``zsseg_rt.options.ENGINE_OPTIONS``: ``object_min_area``,
``max_objects``; flags ``--object-min-area``, ``--max-objects``); their defaults are this module's defaults.

Cost (the goal: at most 5 % of ``--live``'s frame time, ``python -m benchmarks robots``): OpenCV labels the pixels
without statistics (with them it updates the background's too, every other pixel of the crop, at about seven times
the cost); the areas are counted by NumPy, a region's box is read by OpenCV (SciPy for many regions of one crop), and
the first pixels, centroids, scores and masks are read in the boxes of the regions kept only, their RLE strings
encoded together.

NumPy, SciPy and OpenCV only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union, overload

import numpy as np

from zsseg_rt.options import ENGINE_OPTIONS

from .rle import rle_counts_arrays

__all__ = ["DEFAULT_MAX_OBJECTS", "DEFAULT_MIN_AREA", "FrameObjects", "RegionObject", "find_objects", "min_pixels"]

# The defaults live in the option table (its rows' help says why these values); read here, never copied.
DEFAULT_MIN_AREA: float = ENGINE_OPTIONS["object_min_area"].default
DEFAULT_MAX_OBJECTS: int = ENGINE_OPTIONS["max_objects"].default


@dataclass(frozen=True)
class RegionObject:
    """One connected region of one class.

    Attributes:
        class_id: the class's label id (its index in the vocabulary, as the label maps hold it).
        name: the class's name.
        score: the mean over the region's pixels of the class's score at the output size (``Result.scores``: the
            winning class's score, and every pixel of the region has this class as its winner); non-finite scores
            are left out of the mean, and a region with none finite scores 0.0. Without scores (``scores=None``)
            every object scores 1.0: the label map alone gives the class, not a confidence.
        box: ``(x, y, w, h)`` in output pixels: the leftmost column, the top row, the width and the height of the
            region's bounding box (COCO's ``bbox``).
        area: the region's pixels.
        centroid: ``(x, y)``, the mean column and row of its pixels (may lie outside a region with a hole or a bend).
        rle: its mask as COCO RLE, ``{"size": [h, w], "counts": str}`` (column-major runs, compressed as
            pycocotools' ``rleToString``): ``pycocotools.mask.decode(rle)`` is the region's ``[h, w]`` mask.
        track_id: its identity across frames (``zsseg_rt.ObjectTracker``: ``--track``, ``Session(track=True)``),
            unique for the tracker's life; None: not tracked.
    """

    class_id: int
    name: str
    score: float
    box: Tuple[int, int, int, int]
    area: int
    centroid: Tuple[float, float]
    rle: Dict[str, Any]
    track_id: Optional[int] = None

    def mask(self) -> np.ndarray:
        """The region's ``[h, w]`` uint8 mask (1 inside), decoded from :attr:`rle` (NumPy; no pycocotools)."""
        from .rle import decode_rle

        return decode_rle(self.rle)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: ``class_id``, ``name``, ``score``, ``box`` [x, y, w, h], ``area``, ``centroid`` [x, y],
        ``rle``; ``track_id`` when tracked."""
        tracked = {} if self.track_id is None else {"track_id": int(self.track_id)}
        return {
            "class_id": self.class_id,
            "name": self.name,
            "score": self.score,
            "box": list(self.box),
            "area": self.area,
            "centroid": list(self.centroid),
            "rle": dict(self.rle),
            **tracked,
        }


@dataclass(frozen=True)
class FrameObjects(Sequence[RegionObject]):
    """A frame's objects in their order (class id, then area largest first, then first pixel in raster order), and
    ``dropped``: how many regions of at least ``min_area`` were over the per-frame cap (``max_objects``)."""

    objects: Tuple[RegionObject, ...]
    dropped: int = 0

    @overload
    def __getitem__(self, index: int) -> RegionObject: ...

    @overload
    def __getitem__(self, index: slice) -> Tuple[RegionObject, ...]: ...

    def __getitem__(self, index: Union[int, slice]) -> Any:
        return self.objects[index]

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[RegionObject]:
        return iter(self.objects)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: ``{"objects": [RegionObject.to_dict(), ...], "dropped": n}``."""
        return {"objects": [item.to_dict() for item in self.objects], "dropped": int(self.dropped)}


def min_pixels(min_area: float, pixels: int) -> int:
    """The smallest region (whole pixels) that ``min_area`` (a fraction of a frame of ``pixels``) keeps: rounded up,
    at least one.

    Raises:
        ValueError: ``min_area`` is not a number in [0, 1] (a pixel count is refused with the fraction it means).
    """
    number = isinstance(min_area, (int, float, np.integer, np.floating)) and not isinstance(min_area, bool)
    if not number or not 0.0 <= float(min_area) <= 1.0:  # NaN too
        hint = ""
        if number and float(min_area) > 1.0 and pixels:
            hint = f" ({min_area!r} pixels of this frame's {pixels} is min_area={float(min_area) / pixels:.6g})"
        raise ValueError(f"min_area: expected a fraction of the frame's pixels in [0, 1], got {min_area!r}{hint}")
    return max(1, math.ceil(float(min_area) * pixels - 1e-9))


def _check_count(max_objects: Any) -> int:
    if isinstance(max_objects, bool) or not isinstance(max_objects, (int, np.integer)) or max_objects < 1:
        raise ValueError(f"max_objects: expected a whole number >= 1, got {max_objects!r}")
    return int(max_objects)


_TILE = 16  # the side of the tiles whose classes bound each class's crops (:func:`_class_tiles`, :func:`_groups`)
_WITHIN_A_CLASS = np.zeros((3, 3, 3), dtype=bool)  # scipy's structure: 8-connected in a class's plane, not across
_WITHIN_A_CLASS[1] = True


@functools.lru_cache(maxsize=8)
def _tile_keys(height: int, width: int, stride: int) -> np.ndarray:
    """Each pixel's tile (``_TILE`` x ``_TILE``, row-major) times ``stride``, for a frame size (cached: a stream has
    one)."""
    rows = np.arange(height, dtype=np.intp) // _TILE
    columns = np.arange(width, dtype=np.intp) // _TILE
    index = (rows[:, None] * (-(-width // _TILE)) + columns[None, :]) * stride
    index.setflags(write=False)
    return index


def _class_tiles(labels: Any, classes: int, unknown_id: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """``labels`` as a C-contiguous ``[H, W]`` uint8 (if so given) or int32 map, and its pixels per tile and class id
    (``[tiles, classes]``,
    from one ``bincount``: each class's pixel count, and the tiles that bound its crop), refused (ValueError, one
    line) unless every id is a class or ``unknown_id``."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels: expected an [H, W] map of integer label ids, got {labels.dtype} {list(labels.shape)}"
        )
    labels = np.ascontiguousarray(labels, dtype=np.uint8 if labels.dtype == np.uint8 else np.int32)
    height, width = labels.shape
    tiles = -(-height // _TILE) * -(-width // _TILE)
    if not labels.size:
        return labels, np.zeros((0, classes), np.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"labels: label {low} is no class of the {classes} (nor the unknown id {unknown_id})")
    keyed = labels
    if high >= classes:  # the unknown id (its pixels: column classes, dropped) or a label that is no class (classes+1)
        other = np.where(labels >= classes, np.int32(classes + 1), labels)
        keyed = np.where(labels == (-1 if unknown_id is None else unknown_id), np.int32(classes), other)
    table = np.bincount((_tile_keys(height, width, classes + 2) + keyed).ravel(), minlength=tiles * (classes + 2))
    table = table.reshape(tiles, classes + 2)
    if table[:, classes + 1].any():
        stray = int(labels[(labels >= classes) & (labels != (-1 if unknown_id is None else unknown_id))][0])
        raise ValueError(f"labels: label {stray} is no class of the {classes} (nor the unknown id {unknown_id})")
    return labels, table[:, :classes]


def _groups(
    table: np.ndarray, height: int, width: int, smallest: int
) -> Iterator[Tuple[int, int, int, int, int, int, Optional[np.ndarray]]]:
    """Each class's crops: one per 8-connected group of the tiles that hold the class with at least ``smallest`` of
    its pixels (every class's tile grid labelled in one call: ``scipy.ndimage.label`` on ``[class, tile row, tile
    column]``, connected within a class only), as ``(class_id, y0, y1, x0, x1, pixels, tiles)``: the bounds of the
    group's tiles, the class's pixels in them and, where other groups' tiles of the class lie within them, the
    group's tiles there (``[rows, columns]`` bool, to mask the crop with), else None.

    Every region of a class lies in one group's tiles (its 8-connected pixels lie in 8-connected tiles), so the
    regions of the crops, each masked to its group's tiles, are the class's regions, each once; a group of fewer
    pixels holds no region of ``smallest``. A class whose regions lie apart is read in small crops, not in one box
    around all of them, and its specks are not read at all."""
    ndimage = _ndimage()

    down, across = -(-height // _TILE), -(-width // _TILE)
    classes = np.flatnonzero(table.sum(axis=0) >= smallest)  # a class of fewer pixels has no group of smallest
    if not classes.size:
        return
    pixels = np.ascontiguousarray(table[:, classes].T).reshape(-1, down, across)
    group, count = ndimage.label(pixels > 0, structure=_WITHIN_A_CLASS)
    sizes = np.bincount(group.ravel(), weights=pixels.ravel(), minlength=count + 1).astype(np.int64)
    slices = ndimage.find_objects(group)
    for index in (np.flatnonzero(sizes[1:] >= smallest) + 1).tolist():
        planes, rows, columns = slices[index - 1]
        inside = group[planes.start, rows, columns]
        tiles = inside == index
        mask = None if np.array_equal(tiles, inside > 0) else tiles  # another group's tiles within its bounds
        y0, y1 = rows.start * _TILE, min(height, rows.stop * _TILE)
        x0, x1 = columns.start * _TILE, min(width, columns.stop * _TILE)
        yield int(classes[planes.start]), y0, y1, x0, x1, int(sizes[index]), mask


def _ndimage() -> Any:
    """``scipy.ndimage``, or an ImportError in one line naming the extra that installs it."""
    try:
        from scipy import ndimage
    except ImportError:
        raise ImportError(
            "Result.objects() (--objects) needs SciPy, which is not installed: pip install 'zsseg_rt[objects]' "
            "(part of zsseg_rt[runtime])"
        ) from None
    return ndimage


def _equal(image: np.ndarray, value: int) -> np.ndarray:
    """``image == value`` as a uint8 mask (1 where equal): NumPy's comparison, not ``cv2.compare``, which takes a
    1x1 image for the scalar and refuses the pair (a one-pixel crop, e.g. a one-pixel region in the
    bottom-right corner of a 17x17 frame, crashed with "Sizes of input arguments do not match"); as fast or faster."""
    return np.equal(image, value).view(np.uint8)


_FEW = 6  # up to this many regions of a crop, each one's box is read by OpenCV (:func:`_boxes`)


def _boxes(component: np.ndarray, indices: np.ndarray) -> List[Sequence[int]]:
    """The boxes ``(x, y, w, h)`` of the regions ``indices`` (ascending) of a label image: for a few, each one's mask
    and its bounding rectangle (OpenCV: two passes over the image each, about a seventh of SciPy's one for all),
    else ``scipy.ndimage.find_objects``."""
    import cv2

    ndimage = _ndimage()

    if indices.size <= _FEW:
        return [cv2.boundingRect(_equal(component, index)) for index in indices.tolist()]
    slices = ndimage.find_objects(component, max_label=int(indices[-1]))
    return [
        (columns.start, rows.start, columns.stop - columns.start, rows.stop - rows.start)
        for rows, columns in (slices[index - 1] for index in indices.tolist())
    ]


def _runs(inside: np.ndarray, x: int, y: int, height: int, total: int) -> Tuple[np.ndarray, int, int]:
    """COCO's run lengths (zeros first) of a region given as ``inside`` (bool ``[h, w]``), its box's mask at
    column ``x``, row ``y`` of a ``height``-row image of ``total`` pixels, and the sums of its pixels' columns and
    rows (exact integers: the centroid's numerators).

    The runs of each column of the box (a zero row above and below it, so that each column's runs start and end in
    it), joined where one column's run goes on at the top of the next (a box of the frame's full height)."""
    import cv2

    rows = inside.shape[0]
    padded = cv2.copyMakeBorder(cv2.transpose(inside.view(np.uint8)), 0, 0, 1, 1, cv2.BORDER_CONSTANT, value=0)
    flat = padded.ravel()  # column-major (COCO's order), each column between two zeros
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # starts (even) and ends (odd), in the padded columns
    column, row = np.divmod(edges, rows + 2)
    column, first, stop = column[0::2] + x, row[0::2] + (y - 1), row[1::2] + (y - 1)
    length = stop - first
    sum_columns, sum_rows = int(column @ length), int((first + stop - 1) @ length) // 2  # each run's rows: a series
    starts, ends = column * height + first, column * height + stop
    apart = np.flatnonzero(starts[1:] != ends[:-1]) + 1  # a run that goes on into the next column: one run
    starts, ends = starts[np.concatenate(([0], apart))], ends[np.concatenate((apart - 1, [ends.size - 1]))]
    runs = np.empty(2 * starts.size + 1, dtype=np.int64)
    runs[0] = starts[0]
    runs[1:-1:2] = ends - starts
    runs[2:-1:2] = starts[1:] - ends[:-1]
    runs[-1] = total - ends[-1]
    return (runs if runs[-1] else runs[:-1]), sum_columns, sum_rows


def _score(values: np.ndarray) -> float:
    mean = float(np.mean(values, dtype=np.float64)) if values.size else 0.0
    if math.isfinite(mean):  # every value finite (a float64 sum of them is finite), or none
        return mean
    finite = values[np.isfinite(values)]
    return float(np.mean(finite, dtype=np.float64)) if finite.size else 0.0


def find_objects(
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    scores: Optional[np.ndarray] = None,
    unknown_id: Optional[int] = None,
    min_area: float = DEFAULT_MIN_AREA,
    max_objects: int = DEFAULT_MAX_OBJECTS,
) -> FrameObjects:
    """Each class's connected regions (8-connectivity) of the ``[H, W]`` label map ``labels`` as objects.

    Args:
        labels: label ids, indices into ``class_names`` (or ``unknown_id``).
        class_names: the vocabulary the ids index.
        scores: ``[H, W]`` scores at the labels' size (``Result.scores``: the winning class's); a region's score is
            their mean over its pixels (:class:`RegionObject`); None: every score is 1.0. Scores at another size are
            refused (``Result.class_scores``, every class's at a lower resolution, is not read).
        unknown_id: the unknown label's id (``Result.unknown_id``): its pixels give no objects; None: off.
        min_area: the smallest region kept, as a fraction of the frame's pixels in [0, 1] (:func:`min_pixels`:
            rounded up, at least one pixel; 0 keeps every region).
        max_objects: at most this many objects; the regions over it are counted in ``dropped``.

    Returns:
        :class:`FrameObjects`, in the module's order (class id, area largest first, first pixel in raster order).

    Raises:
        ValueError: in one line, a map that is not ``[H, W]`` integers, an id that is no class (nor unknown), scores
            of another shape, a ``min_area`` out of [0, 1] or a ``max_objects`` below 1.
    """
    import cv2

    names = [str(name) for name in class_names]
    labels, table = _class_tiles(labels, len(names), unknown_id)
    height, width = labels.shape
    if scores is not None:
        scores = np.asarray(scores)
        if scores.shape != labels.shape:
            raise ValueError(
                f"scores: expected the labels' shape {list(labels.shape)} (scores at the output size), "
                f"got {list(scores.shape)}"
            )
    cap = _check_count(max_objects)
    smallest = min_pixels(min_area, labels.size)
    if not labels.size:
        return FrameObjects((), 0)
    # Each class's crops (:func:`_groups`), labelled by OpenCV without statistics (the module's "Cost").
    found: List[Tuple[Tuple[int, int, int], np.ndarray, int, int, int, Tuple[int, int, int, int]]] = []
    for class_id, y0, y1, x0, x1, pixels, tiles in _groups(table, height, width, smallest):
        inside = _equal(labels[y0:y1, x0:x1], class_id)
        if tiles is not None:  # the group's tiles only (another group's regions are its own crop's)
            spread = np.repeat(np.repeat(tiles, _TILE, axis=0), _TILE, axis=1)[: y1 - y0, : x1 - x0]
            inside &= spread.view(np.uint8)
        number, component = cv2.connectedComponents(inside, connectivity=8, ltype=cv2.CV_32S)
        boxes: List[Sequence[int]]
        if number == 2:  # one region: every pixel of the class in the crop, its box theirs
            large, areas, boxes = np.array([1]), np.array([0, pixels]), [cv2.boundingRect(inside)]
        else:
            areas = np.bincount(component.ravel(), minlength=number)
            large = np.flatnonzero(areas[1:] >= smallest) + 1  # 0: the background (every other pixel)
            boxes = _boxes(component, large) if large.size else []
        for index, area, (x, y, w, h) in zip(large.tolist(), areas[large].tolist(), boxes):
            first = x + int(np.argmax(component[y, x : x + w] == index))  # its first pixel in raster order
            key = (class_id, -area, (y + y0) * width + first + x0)
            found.append((key, component, index, y0, x0, (x, y, w, h)))
    found.sort(key=lambda item: item[0])
    kept = found[:cap]
    fields, runs = [], []
    for (class_id, negative_area, _), component, index, y0, x0, (x, y, w, h) in kept:
        inside = component[y : y + h, x : x + w] == index
        x, y, area = x + x0, y + y0, -negative_area
        region_runs, sum_columns, sum_rows = _runs(inside, x, y, height, labels.size)
        runs.append(region_runs)
        score = 1.0 if scores is None else _score(scores[y : y + h, x : x + w][inside])
        fields.append((int(class_id), score, (x, y, w, h), area, (sum_columns / area, sum_rows / area)))
    objects = tuple(
        RegionObject(
            class_id=class_id,
            name=names[class_id],
            score=score,
            box=box,
            area=area,
            centroid=centroid,
            rle={"size": [int(height), int(width)], "counts": counts},
        )
        for (class_id, score, box, area, centroid), counts in zip(fields, rle_counts_arrays(runs))
    )
    return FrameObjects(objects, len(found) - len(kept))
