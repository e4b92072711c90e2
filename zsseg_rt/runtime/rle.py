"""COCO's run-length encoding (RLE) of masks, as pycocotools writes and reads it, in NumPy: the compressed ``counts``
string of run lengths (``rleToString``) and its decoding. Shared by the COCO file (:mod:`.coco`) and the objects
(:mod:`.objects`); NumPy only."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

__all__ = ["decode_rle", "rle_counts_array", "rle_counts_arrays"]


def rle_counts_array(runs: np.ndarray) -> str:
    """The compressed ``counts`` string of an array of run lengths (pycocotools' ``rleToString``; the same string as
    ``zsseg_rt.runtime.coco.rle_counts``, vectorised: a frame's objects hold thousands of runs): each run from the
    third on as the difference from the run two before, in 5-bit groups, least significant first, each group + 48 as
    a character and bit 0x20 set on all but the last; each value's groups in a row of 7 (35 bits: runs up to 2^34
    pixels), the characters of each row up to its last group."""
    return rle_counts_arrays([runs])[0]


def rle_counts_arrays(arrays: Sequence[np.ndarray]) -> List[str]:
    """:func:`rle_counts_array` of each array of run lengths, encoded together (one pass of NumPy for a frame's
    objects, not one each)."""
    arrays = [np.asarray(runs, dtype=np.int64).ravel() for runs in arrays]
    if not arrays:
        return []
    sizes = np.array([runs.size for runs in arrays], dtype=np.int64)
    runs = np.concatenate(arrays)
    if not runs.size:
        return [""] * len(arrays)
    position = np.arange(runs.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # each run's index in its array
    values = runs.copy()
    later = np.flatnonzero(position > 2)  # from the third on (index > 2, as rleToString): the difference from the
    values[later] -= runs[later - 2]  # run two before in the same array
    magnitude = np.where(values >= 0, values, ~values)  # a value fits n groups where this is under 2^(5n - 1)
    groups = 1 + np.searchsorted(_GROUP_BOUNDS, magnitude, side="right")
    if groups.size and groups.max() > 7:
        raise ValueError("a run length over 2^34 pixels: no COCO RLE holds it")
    ends = np.cumsum(groups)  # each value's characters end here
    group = np.arange(int(ends[-1])) - np.repeat(ends - groups, groups)  # each character's group in its value
    codes = (np.repeat(values, groups) >> (5 * group)) & 0x1F  # arithmetic shift: a negative value's groups
    codes |= np.where(group < np.repeat(groups - 1, groups), 0x20, 0)  # more groups follow
    text = (codes + 48).astype(np.uint8).tobytes().decode("ascii")
    ends = ends[np.cumsum(sizes) - 1]  # each array's characters end after its last value's
    ends[sizes == 0] = 0
    ends = np.maximum.accumulate(ends).tolist()
    return [text[start:end] for start, end in zip([0] + ends[:-1], ends)]


_GROUP_BOUNDS = 2 ** (5 * np.arange(1, 8, dtype=np.int64) - 1)  # n groups (5 bits each, signed) hold |v| < 2^(5n-1)


def decode_rle(rle: Dict[str, Any]) -> np.ndarray:
    """The ``[h, w]`` uint8 mask (1 inside) of a COCO RLE ``{"size": [h, w], "counts": str}`` (compressed, as
    :func:`encode_rle` and pycocotools write it), as ``pycocotools.mask.decode`` gives it (NumPy only)."""
    height, width = (int(side) for side in rle["size"])
    counts = rle["counts"]
    text = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    runs: List[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            code = text[position] - 48
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    flat = np.zeros(height * width, dtype=np.uint8)
    edges = np.cumsum([0] + runs)
    if edges[-1] > flat.size:
        raise ValueError(f"an RLE of {int(edges[-1])} pixels for a {height}x{width} mask")
    for start, stop in zip(edges[1::2], edges[2::2]):
        flat[start:stop] = 1
    return flat.reshape(width, height).T.copy()
