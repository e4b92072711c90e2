"""COCO's run-length encoding (RLE) of masks, as pycocotools writes and reads it, in NumPy: the compressed ``counts``
string of run lengths (``rleToString``) and its decoding. Shared by the COCO file (:mod:`.coco`) and the objects
(:mod:`.objects`); NumPy only."""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

__all__ = ["decode_rle", "rle_counts_array"]


def rle_counts_array(runs: np.ndarray) -> str:
    """The compressed ``counts`` string of an array of run lengths (pycocotools' ``rleToString``; the same string as
    ``zsseg_rt.runtime.coco.rle_counts``, vectorised: a frame's objects hold thousands of runs): each run from the
    third on as the difference from the run two before, in 5-bit groups, least significant first, each group + 48 as
    a character and bit 0x20 set on all but the last; each value's groups in a row of 7 (35 bits: runs up to 2^34
    pixels), the characters of each row up to its last group."""
    runs = np.asarray(runs, dtype=np.int64).ravel()
    if not runs.size:
        return ""
    values = runs.copy()
    values[3:] -= runs[1:-2]  # from the third on (index > 2, as rleToString): the difference from the run two before
    shifts = np.arange(7, dtype=np.int64) * 5
    groups = (values[:, None] >> shifts) & 0x1F
    rest = values[:, None] >> (shifts + 5)  # arithmetic: a negative difference ends in -1
    more = np.where(groups & 0x10, rest != -1, rest != 0)
    last = np.argmin(more, axis=1)  # the first group after which nothing more is needed
    if more[np.arange(values.size), last].any():
        raise ValueError("a run length over 2^34 pixels: no COCO RLE holds it")
    keep = np.arange(7)[None, :] <= last[:, None]
    codes = (groups | np.where(more, 0x20, 0)) + 48
    return codes[keep].astype(np.uint8).tobytes().decode("ascii")


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
