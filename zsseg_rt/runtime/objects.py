"""Objects for robots: each class's connected regions of a label map as detections (issue 81).

A robot acts on things, not on pixels: :func:`find_objects` (and ``Result.objects()``) turns a label map into one
:class:`RegionObject` per connected region of a class (8-connectivity, OpenCV's ``connectedComponentsWithStats`` on
each present class's pixels), with its class id and name, score, box ``(x, y, w, h)``, area, centroid and mask as
COCO RLE (``{"size": [h, w], "counts": str}``, what ``pycocotools.mask.decode`` reads), in a deterministic order:

* class id (vocabulary order), then area (largest first), then the region whose first pixel in raster order (top row
  first, then leftmost) comes first (a key of the region itself, so the order does not depend on how OpenCV numbers
  its components, nor on its threads);
* regions smaller than ``min_area`` (a fraction of the frame's pixels, rounded up to whole pixels, at least one) are
  no objects; the unknown label (``unknown_id``, ``Engine(unknown_below=P)``) gives none;
* at most ``max_objects`` objects a frame: the first ones in that order; :attr:`FrameObjects.dropped` counts the
  regions over the cap (regions under ``min_area`` are not counted: they are no objects).

The two limits are rows of the Engine's option table (``zsseg_rt.options.ENGINE_OPTIONS``: ``object_min_area``,
``max_objects``; flags ``--object-min-area``, ``--max-objects``); their defaults are this module's defaults.

NumPy and OpenCV only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union, overload

import numpy as np

from zsseg_rt.options import ENGINE_OPTIONS

from .rle import rle_counts_array

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
    """

    class_id: int
    name: str
    score: float
    box: Tuple[int, int, int, int]
    area: int
    centroid: Tuple[float, float]
    rle: Dict[str, Any]

    def mask(self) -> np.ndarray:
        """The region's ``[h, w]`` uint8 mask (1 inside), decoded from :attr:`rle` (NumPy; no pycocotools)."""
        from .rle import decode_rle

        return decode_rle(self.rle)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: ``class_id``, ``name``, ``score``, ``box`` [x, y, w, h], ``area``, ``centroid`` [x, y],
        ``rle``."""
        return {
            "class_id": self.class_id,
            "name": self.name,
            "score": self.score,
            "box": list(self.box),
            "area": self.area,
            "centroid": list(self.centroid),
            "rle": dict(self.rle),
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


_TILE = 16  # the side of the tiles whose classes bound each class's crop (:func:`_class_tiles`)


@functools.lru_cache(maxsize=8)
def _tile_index(height: int, width: int) -> np.ndarray:
    """Each pixel's tile (``_TILE`` x ``_TILE``, row-major), for a frame size (cached: a stream has one)."""
    rows = np.arange(height, dtype=np.int32) // _TILE
    columns = np.arange(width, dtype=np.int32) // _TILE
    index = rows[:, None] * np.int32(-(-width // _TILE)) + columns[None, :]
    index.setflags(write=False)
    return index


def _class_tiles(labels: Any, classes: int, unknown_id: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """``labels`` as a C-contiguous ``[H, W]`` int32 map, and its pixels per tile and class id (``[tiles, classes]``,
    from one ``bincount``: each class's pixel count, and the tiles that bound its crop), refused (ValueError, one
    line) unless every id is a class or ``unknown_id``."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels: expected an [H, W] map of integer label ids, got {labels.dtype} {list(labels.shape)}"
        )
    labels = np.ascontiguousarray(labels, dtype=np.int32)
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
    table = np.bincount(
        (_tile_index(height, width) * np.int32(classes + 2) + keyed).ravel(), minlength=tiles * (classes + 2)
    )
    table = table.reshape(tiles, classes + 2)
    if table[:, classes + 1].any():
        stray = int(labels[(labels >= classes) & (labels != (-1 if unknown_id is None else unknown_id))][0])
        raise ValueError(f"labels: label {stray} is no class of the {classes} (nor the unknown id {unknown_id})")
    return labels, table[:, :classes]


def _crop(table: np.ndarray, class_id: int, height: int, width: int) -> Tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the bounds of the tiles that hold ``class_id`` (every pixel of the class is inside)."""
    across = -(-width // _TILE)
    held = np.flatnonzero(table[:, class_id])
    rows, columns = held // across, held % across
    y0, x0 = int(rows.min()) * _TILE, int(columns.min()) * _TILE
    return y0, min(height, (int(rows.max()) + 1) * _TILE), x0, min(width, (int(columns.max()) + 1) * _TILE)


def _runs(columns: np.ndarray, rows: np.ndarray, height: int, total: int) -> np.ndarray:
    """COCO's run lengths (zeros first) of the pixels at (``rows``, ``columns``), given in column-major order, of a
    ``height``-row image of ``total`` pixels."""
    linear = columns.astype(np.int64) * height + rows
    breaks = np.flatnonzero(np.diff(linear) != 1) + 1
    starts = linear[np.concatenate(([0], breaks))]
    ends = linear[np.concatenate((breaks - 1, [linear.size - 1]))] + 1
    runs = np.empty(2 * starts.size + 1, dtype=np.int64)
    runs[0] = starts[0]
    runs[1:-1:2] = ends - starts
    runs[2:-1:2] = starts[1:] - ends[:-1]
    runs[-1] = total - ends[-1]
    return runs if runs[-1] else runs[:-1]


def _score(values: np.ndarray) -> float:
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
    found: List[Tuple[Tuple[int, int, int], int, Tuple[int, int, int, int], Tuple[float, float]]] = []
    components: Dict[int, Tuple[np.ndarray, int, int]] = {}
    for class_id in np.flatnonzero(table.sum(axis=0) >= smallest).tolist():
        y0, y1, x0, x1 = _crop(table, class_id, height, width)  # the class's tiles: OpenCV reads these pixels only
        inside = cv2.compare(labels[y0:y1, x0:x1], class_id, cv2.CMP_EQ)
        number, component, stats, centroids = cv2.connectedComponentsWithStats(inside, connectivity=8, ltype=cv2.CV_32S)
        components[class_id] = (component, y0, x0)
        large = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= smallest) + 1  # 0: the background (every other pixel)
        for index, (x, y, w, h, area), (cx, cy) in zip(
            large.tolist(), stats[large].tolist(), centroids[large].tolist()
        ):
            first = x + int(np.argmax(component[y, x : x + w] == index))  # its first pixel in raster order
            key = (class_id, -area, (y + y0) * width + first + x0)
            found.append((key, index, (x + x0, y + y0, w, h), (cx + x0, cy + y0)))
    found.sort(key=lambda item: item[0])
    kept = found[:cap]
    objects = []
    for (class_id, negative_area, _), index, (x, y, w, h), centroid in kept:
        component, y0, x0 = components[class_id]
        crop = component[y - y0 : y - y0 + h, x - x0 : x - x0 + w] == index
        columns, rows = np.nonzero(crop.T)  # column-major order: COCO's
        runs = _runs(columns + x, rows + y, height, labels.size)
        score = 1.0 if scores is None else _score(scores[y : y + h, x : x + w][crop])
        objects.append(
            RegionObject(
                class_id=int(class_id),
                name=names[class_id],
                score=score,
                box=(x, y, w, h),
                area=-negative_area,
                centroid=centroid,
                rle={"size": [int(height), int(width)], "counts": rle_counts_array(runs)},
            )
        )
    return FrameObjects(tuple(objects), len(found) - len(kept))
