"""Label maps: reading (palette/grey PNGs), reduce-zero-label, range checks and the training lookup tables.

All remapping is a 256-entry lookup table applied to uint8 labels (``lut[label]``), exactly like the
official ``_visiable_mask`` (inductive) and ``_visiable_mask_st`` (transductive) in ZegCLIP.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

IGNORE_INDEX = 255
UNSEEN_MARK = -1  # transductive: pixels whose GT is an unseen class, to be pseudo-labelled online

__all__ = [
    "IGNORE_INDEX",
    "UNSEEN_MARK",
    "read_label",
    "read_image",
    "reduce_zero_label",
    "check_label_range",
    "inductive_lut",
    "transductive_lut",
    "identity_lut",
    "apply_lut",
    "CorruptFileError",
]


class CorruptFileError(IOError):
    """An image or label file that exists but cannot be decoded."""


def read_image(path: str) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB. Raises :class:`CorruptFileError` when the file cannot be decoded or has more pixels
    than the limit of ``zsseg_rt.image_io`` (``$ZSSEG_MAX_PIXELS``, default 40 MP; checked before decoding)."""
    import cv2

    from zsseg_rt.image_io import ImageReadError, check_frame_size, image_size

    if path and os.path.isfile(path):  # refuse from the header, before decoding: see zsseg_rt.image_io
        try:
            width, height = image_size(path)
            check_frame_size(width, height, what=f"image {path!r}")
        except ImageReadError as exc:
            raise CorruptFileError(str(exc)) from None
    data = np.fromfile(path, dtype=np.uint8) if path else np.zeros(0, np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise CorruptFileError(f"cannot decode image {path!r} (empty, truncated or not an image)")
    return np.ascontiguousarray(img[:, :, ::-1])


def read_label(path: str) -> np.ndarray:
    """``[H, W]`` uint8 class indices from a label PNG.

    Palette ("P") PNGs (VOC ``SegmentationClass``) give their palette INDICES, not colours; greyscale PNGs
    (``SegmentationClassAug``, ``*_labelTrainIds.png``, ADE, Context) give their values. Raises
    :class:`CorruptFileError` when the file cannot be decoded or is not a single-channel map.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L"):
                arr = np.array(im, dtype=np.uint8)
            elif im.mode in ("I;16", "I", "I;16B"):
                arr = np.array(im)
                if arr.max(initial=0) > 255:
                    raise CorruptFileError(
                        f"label {path!r} holds values > 255 (max {arr.max()}); labels must be 0..255"
                    )
                arr = arr.astype(np.uint8)
            else:
                raise CorruptFileError(
                    f"label {path!r} has PIL mode {im.mode!r}; expected a single-channel index map (P or L)"
                )
    except CorruptFileError:
        raise
    except Exception as exc:  # PIL raises many types for broken files
        raise CorruptFileError(f"cannot decode label {path!r}: {exc}") from exc
    return arr


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """mmseg ``reduce_zero_label``: 0 (background) -> 255, v -> v - 1, 255 stays 255."""
    out = label.astype(np.int16) - 1
    out[label == 0] = IGNORE_INDEX
    out[label == IGNORE_INDEX] = IGNORE_INDEX
    return out.astype(np.uint8)


def check_label_range(label: np.ndarray, num_classes: int, where: str = "", policy: str = "raise") -> int:
    """Values outside ``[0, num_classes)`` that are not 255: ``policy`` "raise" (ValueError naming them) or
    "ignore" (set to 255 IN PLACE). Returns the number of offending pixels."""
    bad = (label >= num_classes) & (label != IGNORE_INDEX)
    n = int(bad.sum())
    if n:
        if policy == "raise":
            vals = np.unique(label[bad])[:10].tolist()
            raise ValueError(
                f"label {where or ''} has {n} pixels with values {vals} outside the {num_classes} classes [0, "
                f"{num_classes}) and not ignore (255); fix the labels, check reduce_zero_label, or set "
                "on_bad_label='ignore' to map them to 255"
            )
        if policy != "ignore":
            raise ValueError(f"on_bad_label must be 'raise' or 'ignore', got {policy!r}")
        label[bad] = IGNORE_INDEX
    return n


def identity_lut() -> np.ndarray:
    return np.arange(256, dtype=np.int16)


def inductive_lut(seen_classes: Sequence[int]) -> np.ndarray:
    """Official ``_visiable_mask`` followed by the decode head's ``-1 -> 255``: seen id -> its position in
    ``seen_classes``; everything else -> 255."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.int16)
    for pos, cls in enumerate(seen_classes):
        lut[int(cls)] = pos
    return lut


ST_PAD_VALUE = 200  # the official *_st configs pad labels with seg_pad_val=200; _visiable_mask_st keeps it


def transductive_lut(seen_classes: Sequence[int], num_classes: Optional[int] = None) -> np.ndarray:
    """Official ``_visiable_mask_st`` (ZegCLIP ``models/segmentor/zegclip.py``), entry for entry::

        seen_map = [-1] * 256; seen_map[255] = 255
        for n in seen_classes: seen_map[n] = n
        seen_map[200] = 200   # "pixels of padding will be excluded"

    i.e. seen ids kept, 255 kept, 200 kept, EVERY other value -> -1 (pseudo-labelled online). The table does
    not depend on the number of classes; ``num_classes`` (optional) only checks that the seen ids fit.
    Values ``>= num_classes`` never reach it in this pipeline (``check_label_range`` runs at load time and
    the augmentation pads labels with 255), so 200 matters only for datasets with more than 200 classes.
    """
    seen = [int(c) for c in seen_classes]
    if num_classes is not None and any(not 0 <= c < int(num_classes) for c in seen):
        raise ValueError(f"seen classes {seen} outside [0, {num_classes})")
    lut = np.full(256, UNSEEN_MARK, dtype=np.int16)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for cls in seen:
        lut[cls] = cls
    lut[ST_PAD_VALUE] = ST_PAD_VALUE
    return lut


def apply_lut(label: np.ndarray, lut: Optional[np.ndarray]) -> np.ndarray:
    """``lut[label]`` as int64 (``label`` uint8); None -> plain int64 copy."""
    if lut is None:
        return label.astype(np.int64)
    if label.dtype != np.uint8:
        raise TypeError(f"labels must be uint8 before the lookup table, got {label.dtype}")
    return lut.astype(np.int64)[label]
