"""Readers for the standard on-disk layouts (mmseg conventions) and a generic folder dataset.

Every dataset is a list of ``(image_path, label_path)`` pairs plus a vocabulary (:class:`ClassSplit`).
``load(i)`` returns ``(rgb [H,W,3] uint8, label [H,W] uint8)`` with ``reduce_zero_label`` applied where the
layout needs it, so labels are ``0..C-1`` or 255 (ignore).

Layouts (``root`` is the directory named first):

* ``voc``: ``VOC2012/{JPEGImages, SegmentationClass, SegmentationClassAug, ImageSets/Segmentation/*.txt}``;
  split ``train_aug`` (official: ``train.txt`` ids with ``SegmentationClass`` masks followed by ``aug.txt`` ids
  with ``SegmentationClassAug`` masks, concatenated as mmseg does: 1,464 + 10,582 = 12,046 samples with
  mmseg's converter; else ids from ``trainaug.txt`` with ``SegmentationClassAug`` preferred), ``val`` (1,449),
  ``train``. Background -> ignore (reduce_zero_label), 20 classes.
* ``coco_stuff``: ``coco_stuff164k/{images,annotations}/{train2017,val2017}``, ``*_labelTrainIds.png``, 171.
* ``context59``: ``VOC2010/{JPEGImages, SegmentationClassContext, ImageSets/SegmentationContext/*.txt}``,
  reduce_zero_label, 59 classes.
* ``coco_object``: ``coco_stuff164k/{images,annotations}/val2017``, GroupViT's ``*_instanceTrainIds.png`` or the raw
  stuffthingmaps converted on the fly; 80 things, background reduced to ignore (ZeroSeg's evaluator keeps it).
* ``ade150``: ``ADEChallengeData2016/{images,annotations}/{training,validation}``, reduce_zero_label, 150.
* ``folder``: ``root/images/*.{jpg,png}``, ``root/labels/<stem>.png``, ``root/classes.txt`` (one name per
  line) or ``classes.json`` (``{"class_names": [...], "unseen": [...]}``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .labels import CorruptFileError, check_label_range, read_image, read_label, reduce_zero_label
from .splits import ClassSplit, load_split

__all__ = ["SegmentationDataset", "DatasetLayoutError", "DATASET_TYPES"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DatasetLayoutError(FileNotFoundError):
    """A dataset directory is missing or does not have the expected layout (the message shows the layout)."""


def _layout_error(kind: str, root, problem: str, layout: str) -> DatasetLayoutError:
    return DatasetLayoutError(f"{kind} dataset at {str(root)!r}: {problem}.\nExpected layout:\n{layout}")


class SegmentationDataset:
    """Image/label pairs with a vocabulary.

    Args:
        items: ``(image_path, label_path)`` pairs.
        split: the vocabulary and its seen/unseen partition.
        reduce_zero_label: apply mmseg's reduce-zero-label when reading labels.
        on_corrupt: "skip" (warn, count in ``skipped``) or "raise" for undecodable files (see :meth:`load_safe`).
        on_bad_label: "raise" or "ignore" (-> 255, counted in ``bad_label_pixels``) for out-of-range values.
    """

    def __init__(
        self,
        items: Sequence[Tuple[str, str]],
        split: ClassSplit,
        reduce_zero_label: bool = False,
        name: str = "dataset",
        on_corrupt: str = "raise",
        on_bad_label: str = "raise",
    ):
        if on_corrupt not in ("skip", "raise"):
            raise ValueError(f"on_corrupt must be 'skip' or 'raise', got {on_corrupt!r}")
        if on_bad_label not in ("raise", "ignore"):
            raise ValueError(f"on_bad_label must be 'raise' or 'ignore', got {on_bad_label!r}")
        self.items = [(str(a), str(b)) for a, b in items]
        self.split = split
        self.reduce_zero_label = bool(reduce_zero_label)
        self.name = name
        self.on_corrupt = on_corrupt
        self.on_bad_label = on_bad_label
        self.skipped: Dict[int, str] = {}
        self.bad_label_pixels = 0

    def __len__(self) -> int:
        return len(self.items)

    @property
    def class_names(self) -> List[str]:
        return list(self.split.class_names)

    @property
    def num_classes(self) -> int:
        return self.split.num_classes

    def image_id(self, index: int) -> str:
        return Path(self.items[index][0]).stem

    def load(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(rgb [H,W,3] uint8, label [H,W] uint8)``; raises CorruptFileError / ValueError."""
        img_path, lab_path = self.items[index]
        rgb = read_image(img_path)
        label = self.read_label_file(lab_path)
        if label.shape != rgb.shape[:2]:
            raise CorruptFileError(
                f"label {lab_path!r} is {label.shape[1]}x{label.shape[0]} but image "
                f"{img_path!r} is {rgb.shape[1]}x{rgb.shape[0]}"
            )
        if self.reduce_zero_label:
            label = reduce_zero_label(label)
        self.bad_label_pixels += check_label_range(label, self.num_classes, lab_path, self.on_bad_label)
        return rgb, label

    def read_label_file(self, path: str) -> np.ndarray:
        """The label PNG as stored (a layout that converts ids on the fly overrides this)."""
        return read_label(path)

    def load_safe(self, index: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """:meth:`load`, or None (with a warning, recorded in ``skipped``) for a corrupt file when
        ``on_corrupt="skip"``."""
        try:
            return self.load(index)
        except CorruptFileError as exc:
            if self.on_corrupt == "raise":
                raise CorruptFileError(f"{exc} (pass on_corrupt='skip' / --skip-corrupt to skip such files)") from exc
            if index not in self.skipped:
                self.skipped[index] = str(exc)
                warnings.warn(
                    f"skipping corrupt sample #{index}: {exc} ({len(self.skipped)} skipped so far)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, {len(self)} images, {self.num_classes} classes, "
            f"{len(self.split.unseen)} unseen)"
        )


# ------------------------------------------------------------------------------------------------ helpers
def _read_ids(path: Path) -> List[str]:
    with open(path, "r", encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def _require_dirs(kind: str, root: Path, dirs: Sequence[str], layout: str) -> None:
    if not root.is_dir():
        raise _layout_error(kind, root, "the directory does not exist", layout)
    missing = [d for d in dirs if not (root / d).exists()]
    if missing:
        raise _layout_error(kind, root, f"missing {missing}", layout)


def _pairs_from_ids(kind, root, ids, img_dirs, img_ext, lab_dirs, lab_suffix, layout) -> List[Tuple[str, str]]:
    items, missing = [], []
    for i in ids:
        img = next((root / d / f"{i}{img_ext}" for d in img_dirs if (root / d / f"{i}{img_ext}").is_file()), None)
        lab = next((root / d / f"{i}{lab_suffix}" for d in lab_dirs if (root / d / f"{i}{lab_suffix}").is_file()), None)
        if img is None or lab is None:
            missing.append(i)
            continue
        items.append((str(img), str(lab)))
    if missing:
        raise _layout_error(
            kind, root, f"{len(missing)} of {len(ids)} listed ids have no image or label (first: {missing[:3]})", layout
        )
    if not items:
        raise _layout_error(kind, root, "the split lists no images", layout)
    return items


def _pairs_from_dirs(kind, root, img_dir, lab_dir, lab_suffix, layout, img_exts=IMAGE_EXTS) -> List[Tuple[str, str]]:
    imgs = sorted(p for p in (root / img_dir).iterdir() if p.suffix.lower() in img_exts)
    if not imgs:
        raise _layout_error(kind, root, f"no images in {img_dir}", layout)
    items, missing = [], []
    for p in imgs:
        lab = root / lab_dir / f"{p.stem}{lab_suffix}"
        if lab.is_file():
            items.append((str(p), str(lab)))
        else:
            missing.append(p.name)
    if missing:
        raise _layout_error(
            kind,
            root,
            f"{len(missing)} images have no label {lab_dir}/<stem>{lab_suffix} (first: {missing[:3]})",
            layout,
        )
    return items


# ------------------------------------------------------------------------------------------------ layouts
VOC_LAYOUT = """  VOC2012/JPEGImages/<id>.jpg
  VOC2012/SegmentationClass/<id>.png        (palette PNG: 0 background, 1..20, 255 ignore)
  VOC2012/SegmentationClassAug/<id>.png     (train_aug only; SBD masks from mmseg's voc_aug converter)
  VOC2012/ImageSets/Segmentation/{train,val}.txt (+ aug.txt for train_aug; or a merged trainaug.txt)"""


def voc_dataset(root, split: str = "val", **kw) -> SegmentationDataset:
    root = Path(root)
    _require_dirs("PASCAL VOC 2012", root, ["JPEGImages", "ImageSets/Segmentation"], VOC_LAYOUT)
    sets = root / "ImageSets" / "Segmentation"
    kind = "PASCAL VOC 2012"
    if split == "train_aug":
        if (sets / "train.txt").is_file() and (sets / "aug.txt").is_file():
            # official (ZegCLIP configs/_base_/datasets/voc12_20_aug_512x512.py, as mmseg's voc12aug.py):
            # ann_dir=['SegmentationClass', 'SegmentationClassAug'] paired with split=[train.txt, aug.txt], i.e.
            # a ConcatDataset: train.txt ids with their fine SegmentationClass masks, then aug.txt ids with
            # their SegmentationClassAug (SBD) masks. No de-duplication: mmseg's aug.txt (10,582 ids) already
            # holds the train ids, which therefore appear twice (fine + SBD mask), 12,046 samples in all.
            # An aug id without a SegmentationClassAug mask falls back to SegmentationClass (officially a
            # missing-file error).
            for d in ("SegmentationClass", "SegmentationClassAug"):
                if not (root / d).is_dir():
                    raise _layout_error(kind, root, f"split train_aug (train.txt + aug.txt) needs {d}/", VOC_LAYOUT)
            items = _pairs_from_ids(
                kind,
                root,
                _read_ids(sets / "train.txt"),
                ["JPEGImages"],
                ".jpg",
                ["SegmentationClass"],
                ".png",
                VOC_LAYOUT,
            )
            items += _pairs_from_ids(
                kind,
                root,
                _read_ids(sets / "aug.txt"),
                ["JPEGImages"],
                ".jpg",
                ["SegmentationClassAug", "SegmentationClass"],
                ".png",
                VOC_LAYOUT,
            )
            return SegmentationDataset(items, load_split("voc20", kw.pop("unseen", None)), True, f"voc_{split}", **kw)
        if (sets / "trainaug.txt").is_file():  # a single merged list (other converters): SBD masks preferred
            ids = _read_ids(sets / "trainaug.txt")
        else:
            raise _layout_error(
                kind,
                root,
                "split train_aug needs ImageSets/Segmentation/train.txt + aug.txt (official) or trainaug.txt",
                VOC_LAYOUT,
            )
        lab_dirs = ["SegmentationClassAug", "SegmentationClass"]
    else:
        if not (sets / f"{split}.txt").is_file():
            raise _layout_error(kind, root, f"no ImageSets/Segmentation/{split}.txt", VOC_LAYOUT)
        ids = _read_ids(sets / f"{split}.txt")
        lab_dirs = ["SegmentationClass", "SegmentationClassAug"]
    if not any((root / d).is_dir() for d in lab_dirs):
        raise _layout_error(kind, root, f"none of {lab_dirs} exists", VOC_LAYOUT)
    items = _pairs_from_ids(kind, root, ids, ["JPEGImages"], ".jpg", lab_dirs, ".png", VOC_LAYOUT)
    return SegmentationDataset(items, load_split("voc20", kw.pop("unseen", None)), True, f"voc_{split}", **kw)


COCO_LAYOUT = """  coco_stuff164k/images/{train2017,val2017}/<id>.jpg
  coco_stuff164k/annotations/{train2017,val2017}/<id>_labelTrainIds.png  (0..170, 255 ignore; mmseg's
  coco_stuff164k converter; NOT the raw COCO ids)"""


def coco_stuff_dataset(root, split: str = "train2017", **kw) -> SegmentationDataset:
    root = Path(root)
    split = {"train": "train2017", "val": "val2017"}.get(split, split)
    _require_dirs("COCO-Stuff 164k", root, [f"images/{split}", f"annotations/{split}"], COCO_LAYOUT)
    items = _pairs_from_dirs(
        "COCO-Stuff 164k", root, f"images/{split}", f"annotations/{split}", "_labelTrainIds.png", COCO_LAYOUT
    )
    return SegmentationDataset(
        items, load_split("coco_stuff171", kw.pop("unseen", None)), False, f"coco_stuff_{split}", **kw
    )


CONTEXT_LAYOUT = """  VOC2010/JPEGImages/<id>.jpg
  VOC2010/SegmentationClassContext/<id>.png   (0 background, 1..59; mmseg's pascal_context converter)
  VOC2010/ImageSets/SegmentationContext/{train,val}.txt"""


def context59_dataset(root, split: str = "val", **kw) -> SegmentationDataset:
    root = Path(root)
    _require_dirs(
        "PASCAL Context-59",
        root,
        ["JPEGImages", "SegmentationClassContext", f"ImageSets/SegmentationContext/{split}.txt"],
        CONTEXT_LAYOUT,
    )
    ids = _read_ids(root / "ImageSets" / "SegmentationContext" / f"{split}.txt")
    items = _pairs_from_ids(
        "PASCAL Context-59", root, ids, ["JPEGImages"], ".jpg", ["SegmentationClassContext"], ".png", CONTEXT_LAYOUT
    )
    return SegmentationDataset(items, load_split("context59", kw.pop("unseen", None)), True, f"context59_{split}", **kw)


COCO_OBJECT_LAYOUT = """  <root>/images/val2017/<id>.jpg              (root: the COCO-Stuff 164k directory, as GroupViT's local_data/coco)
  <root>/annotations/val2017/<id>_instanceTrainIds.png   (GroupViT's convert_coco_object.py: 0 background, 1..80)
  or <root>/annotations/val2017/<id>.png     (raw COCO-Stuff 164k stuffthingmaps, 0-based COCO ids, 255 unlabeled;
                                              converted on the fly with the same mapping)"""

# The 80 COCO thing category ids (1-based, COCO's instances json order). COCO-Object (GroupViT): thing id -> its
# rank + 1, every stuff id (92..182) and unlabeled (255) -> 0 background; the 0-based raw stuffthingmaps store id - 1.
COCO_THING_IDS = (
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83), *range(84, 91)
)  # fmt: skip
COCO_OBJECT_SUFFIX = "_instanceTrainIds.png"


def coco_object_lut() -> np.ndarray:
    """uint8[256]: raw COCO-Stuff 164k value (0-based COCO id) -> COCO-Object label (0 background, 1..80 things,
    255 for the 11 ids no category uses, which never occur)."""
    lut = np.full(256, 255, dtype=np.uint8)
    lut[91:182] = 0  # stuff classes 92..182 -> background
    lut[255] = 0  # unlabeled -> background, as GroupViT's converter maps it
    for rank, cat in enumerate(COCO_THING_IDS):
        lut[cat - 1] = rank + 1
    return lut


class CocoObjectDataset(SegmentationDataset):
    """COCO-Object: converted ``*_instanceTrainIds.png`` read as they are, raw COCO-Stuff maps converted."""

    _LUT = coco_object_lut()

    def read_label_file(self, path: str) -> np.ndarray:
        label = read_label(path)
        return label if path.endswith(COCO_OBJECT_SUFFIX) else self._LUT[label]


def coco_object_dataset(root, split: str = "val2017", **kw) -> SegmentationDataset:
    """COCO-Object (GroupViT / ZeroSeg protocol): 80 things + background from the COCO-Stuff 164k pixel maps.
    Background is reduced to ignore like VOC (labels 0..79 = the things); ZeroSeg's evaluator keeps it."""
    root = Path(root)
    split = {"train": "train2017", "val": "val2017"}.get(split, split)
    kind = "COCO-Object"
    _require_dirs(kind, root, [f"images/{split}", f"annotations/{split}"], COCO_OBJECT_LAYOUT)
    ann = root / "annotations" / split
    converted = any(ann.glob(f"*{COCO_OBJECT_SUFFIX}"))
    suffix = COCO_OBJECT_SUFFIX if converted else ".png"
    items = _pairs_from_dirs(kind, root, f"images/{split}", f"annotations/{split}", suffix, COCO_OBJECT_LAYOUT)
    unseen = kw.pop("unseen", None)
    return CocoObjectDataset(items, load_split("coco_object80", unseen), True, f"coco_object_{split}", **kw)


ADE_LAYOUT = """  ADEChallengeData2016/images/{training,validation}/<id>.jpg
  ADEChallengeData2016/annotations/{training,validation}/<id>.png   (0 other, 1..150)"""


def ade150_dataset(root, split: str = "validation", **kw) -> SegmentationDataset:
    root = Path(root)
    split = {"train": "training", "val": "validation"}.get(split, split)
    _require_dirs("ADE20K-150", root, [f"images/{split}", f"annotations/{split}"], ADE_LAYOUT)
    items = _pairs_from_dirs("ADE20K-150", root, f"images/{split}", f"annotations/{split}", ".png", ADE_LAYOUT)
    return SegmentationDataset(items, load_split("ade150", kw.pop("unseen", None)), True, f"ade150_{split}", **kw)


FOLDER_LAYOUT = """  <root>/images/<stem>.{jpg,png}
  <root>/labels/<stem>.png        (single-channel class indices, 255 ignore)
  <root>/classes.txt              (one class name per line, in label order)
     or <root>/classes.json       ({"class_names": [...], "unseen": [names]})"""


def folder_dataset(
    root,
    split: Optional[str] = None,
    reduce_zero_label: bool = False,
    image_dir: str = "images",
    label_dir: str = "labels",
    label_suffix: str = ".png",
    class_names=None,
    **kw,
) -> SegmentationDataset:
    root = Path(root)
    if split:
        root = root / split
    _require_dirs("folder", root, [image_dir, label_dir], FOLDER_LAYOUT)
    unseen = kw.pop("unseen", None)
    if class_names is not None:
        split_obj = load_split({"name": root.name, "class_names": class_names, "unseen": []}, unseen)
    elif (root / "classes.json").is_file():
        with open(root / "classes.json", "r", encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, list):
            data = {"class_names": data}
        split_obj = load_split(dict(data, name=root.name), unseen)
    elif (root / "classes.txt").is_file():
        with open(root / "classes.txt", "r", encoding="utf-8") as f:
            names = [ln.strip() for ln in f if ln.strip()]
        split_obj = load_split({"name": root.name, "class_names": names, "unseen": []}, unseen)
    else:
        raise _layout_error("folder", root, "no classes.txt or classes.json", FOLDER_LAYOUT)
    if not split_obj.class_names:
        raise _layout_error("folder", root, "the class-name file is empty", FOLDER_LAYOUT)
    items = _pairs_from_dirs("folder", root, image_dir, label_dir, label_suffix, FOLDER_LAYOUT)
    return SegmentationDataset(items, split_obj, reduce_zero_label, f"folder_{root.name}", **kw)


DATASET_TYPES = {
    "voc": voc_dataset,
    "coco_stuff": coco_stuff_dataset,
    "context59": context59_dataset,
    "coco_object": coco_object_dataset,
    "ade150": ade150_dataset,
    "folder": folder_dataset,
}
