"""Label maps as COCO-style masks: one run-length-encoded (RLE) mask per class present in an image, in the format of
``pycocotools`` (``zsseg segment --save-json FILE``, ``zsseg camera --save-json FILE`` on files)::

    {"info": {...}, "images": [{"id": 1, "file_name": "a.jpg", "height": 480, "width": 640}, ...],
     "categories": [{"id": 0, "name": "cat"}, ..., {"id": 255, "name": "unknown"}],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "segmentation": {"size": [480, 640],
                      "counts": "..."}, "area": 1234, "bbox": [x, y, w, h], "iscrowd": 1}, ...]}

A category's id is its label id in the label maps (``classes.json``: 0 for the first class, as the label PNGs hold
it), and the unknown label (``Engine(unknown_below=P)``) is a category of its own, named "unknown", with its
reserved id (``zsseg_rt.runtime.result.unknown_label``). ``pycocotools.mask.decode(annotation["segmentation"])`` of
every annotation of an image, painted with its ``category_id``, gives the image's label map back exactly (tested).
``counts`` is the compressed string of pycocotools' ``rleToString`` (column-major runs, starting with a run of
zeros), so the file needs no pycocotools to be written. ``iscrowd`` is 1: an RLE mask is a "crowd" region in COCO's
terms (an object detector's evaluation would treat it so; a semantic map's region is not one object).

With objects (``zsseg segment --objects --save-json``, ``zsseg camera --objects --save-json``; ``add(...,
objects=result.objects())``), each image's objects follow its per-class annotations in the same ``annotations`` list
(ids go on counting: every id in the file is unique): one instance annotation per connected region
(``zsseg_rt.runtime.objects``), ``{"id", "image_id", "category_id", "segmentation": {"size", "counts"}, "area",
"bbox": [x, y, w, h], "iscrowd": 0, "score"}``: what an instance-segmentation model's COCO file holds, the region's
mask as RLE (``pycocotools.mask.decode`` gives the region back); tracked (``--track``), also ``"track_id"``, the
object's identity across the frames (as video instance annotations, YouTube-VIS and TAO, carry one). A reader that wants the objects only keeps
``iscrowd == 0``; the per-class masks are ``iscrowd == 1``. CVAT's COCO 1.0 import (Datumaro) reads both as masks
(with ``score`` as an attribute); Label Studio's COCO converter reads the boxes (``bbox``) and polygon
segmentations only, not RLE.

NumPy only.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .result import UNKNOWN_NAME, unknown_label
from .rle import decode_rle, rle_counts_array

__all__ = ["CocoMasks", "decode_rle", "encode_rle", "frame_file_name", "rle_counts", "rle_counts_array"]


def frame_file_name(stem: str, frame: int) -> str:
    """The ``file_name`` of a video's frame: ``STEM/frame_000042.png`` (``stem``: the video's path without its
    extension, or a source's name; ``frame``: the frame's number by presentation time, the one every output of the
    run names it by). ``frame_`` and six digits is how CVAT names a video's frames, so a task made from the video
    matches the image to its frame by that number; the image entry also holds ``frame`` (and ``video`` or
    ``source``). The frame as a file: ``zsseg camera VIDEO -o STEM/`` writes each frame's overlay, not the frame."""
    return f"{stem}/frame_{int(frame):06d}.png"


def rle_counts(runs: Sequence[int]) -> str:
    """The compressed string of run lengths (pycocotools ``rleToString``): each run as a difference from the run two
    before it (from the third on), in 5-bit groups, least significant first, each group + 48 as a character and bit
    0x20 set on all but the last."""
    out: List[str] = []
    for index, run in enumerate(runs):
        value = int(run) - (int(runs[index - 2]) if index > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic: a negative difference ends in -1
            more = value != -1 if group & 0x10 else value != 0
            out.append(chr((group | (0x20 if more else 0)) + 48))
    return "".join(out)


def _runs(flat: np.ndarray) -> List[int]:
    """Run lengths of a column-major 0/1 mask ``flat`` (bool), the first one of zeros (0 when it starts with a 1)."""
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(edges).tolist()
    return ([0] + runs) if flat.size and flat[0] else runs


def encode_rle(mask: np.ndarray) -> Dict[str, Any]:
    """``{"size": [h, w], "counts": str}`` of a ``[h, w]`` mask (nonzero: in it), as ``pycocotools.mask.encode``
    gives it (its ``counts`` decoded to a str)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask is [height, width], got shape {list(mask.shape)}")
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle_counts_array(np.asarray(_runs(flat)))}


class CocoMasks:
    """The COCO document of a run's label maps, image by image (:meth:`add`), with the categories of its vocabulary
    (the first image's; a later image of another vocabulary is refused: one file, one set of categories)."""

    def __init__(self, description: str = "zsseg_rt label maps"):
        self.images: List[Dict[str, Any]] = []
        self.annotations: List[Dict[str, Any]] = []
        self.class_names: Optional[List[str]] = None
        self.unknown: Optional[int] = None  # the unknown label's id, once an image had the unknown threshold on
        self.description = description

    def add(
        self,
        labels: np.ndarray,
        class_names: Sequence[str],
        file_name: str,
        unknown: bool = False,
        objects: Optional[Sequence[Any]] = None,
        **extra,
    ):
        """One image's label map ``[H, W]`` (ids into ``class_names``; ``unknown``: the threshold was on, so the
        reserved id may occur), under ``file_name``; ``objects``: its objects (``Result.objects()``, a
        ``FrameObjects``), written as instance annotations after its per-class ones (``iscrowd`` 0); ``extra``: more
        fields of its image entry (``frame``, ``source``). Returns its image id (1, 2, ...).

        Raises:
            ValueError: another vocabulary than the first image's, or a label that is no class and not unknown.
        """
        names = [str(name) for name in class_names]
        if self.class_names is None:
            self.class_names = names
        elif names != self.class_names:
            raise ValueError(
                f"--save-json holds one vocabulary ({len(self.class_names)} classes: "
                f"{', '.join(self.class_names[:4])}...); this image's is another ({', '.join(names[:4])}...): write "
                "one file per vocabulary"
            )
        labels = np.asarray(labels)
        height, width = int(labels.shape[0]), int(labels.shape[1])
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": str(file_name), "height": height, "width": width, **extra})
        reserved = unknown_label(len(names)) if unknown else None
        if reserved is not None:
            self.unknown = reserved
        flat = np.ascontiguousarray(labels.T).ravel()  # column-major, as COCO's RLE runs
        ids, counts = np.unique(flat, return_counts=True)
        for label, area in zip(ids.tolist(), counts.tolist()):
            if not (0 <= label < len(names) or label == reserved):
                raise ValueError(f"label {label} of {file_name!r} is no class of the {len(names)} (nor unknown)")
            inside = flat == label
            columns = np.flatnonzero(inside.reshape(width, height).any(axis=1))
            rows = np.flatnonzero(inside.reshape(width, height).any(axis=0))
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "segmentation": {"size": [height, width], "counts": rle_counts_array(np.asarray(_runs(inside)))},
                    "area": int(area),
                    "bbox": [
                        int(columns[0]),
                        int(rows[0]),
                        int(columns[-1] - columns[0] + 1),
                        int(rows[-1] - rows[0] + 1),
                    ],
                    "iscrowd": 1,
                }
            )
        for item in objects or ():
            if list(item.rle["size"]) != [height, width]:
                raise ValueError(
                    f"an object of {file_name!r} has a mask of {item.rle['size']}, the labels are [{height}, {width}]"
                )
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(item.class_id),
                    "segmentation": {"size": [height, width], "counts": item.rle["counts"]},
                    "area": int(item.area),
                    "bbox": [int(value) for value in item.box],
                    "iscrowd": 0,
                    "score": round(float(item.score), 6),
                    **({} if getattr(item, "track_id", None) is None else {"track_id": int(item.track_id)}),
                }
            )
        return image_id

    def categories(self) -> List[Dict[str, Any]]:
        names = self.class_names or []
        found = [{"id": index, "name": name} for index, name in enumerate(names)]
        if self.unknown is not None:
            found.append({"id": self.unknown, "name": UNKNOWN_NAME})
        return found

    def document(self) -> Dict[str, Any]:
        """The whole file's JSON (``images``, ``categories``, ``annotations``, and ``info``)."""
        return {
            "info": {
                "description": self.description,
                "date_created": time.strftime("%Y-%m-%d %H:%M:%S"),
                "category_ids": "label ids of the label maps (classes.json)",
                "iscrowd": "1: a class's pixels in an image; 0: one connected region of a class (an object)",
            },
            "images": self.images,
            "categories": self.categories(),
            "annotations": self.annotations,
        }
