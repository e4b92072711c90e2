"""PAMR (pixel-adaptive mask refinement) as a native op: the optional refinement of the training-free softmax
post-processing (NACLIP, SC-CLIP). NumPy specification: :func:`zsseg_rt.ops.reference.pamr`."""

from __future__ import annotations

import operator
from typing import Any, Optional, Sequence

import numpy as np

from ._arrays import as_native_array, resolve_stream
from ._loader import native_module

__all__ = ["pamr"]


def _iterations(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"pamr: iterations must be an int >= 1, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"pamr: iterations must be an int >= 1, got {type(value).__name__} {value!r}") from None


def _dilations(value: Any) -> Any:
    """NumPy integers become Python ints (the binding validates everything else and names what it got)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [v.item() if isinstance(v, np.integer) else v for v in value]
    return value


def pamr(
    mask: Any,
    image: Any,
    iterations: int = 10,
    dilations: Sequence[int] = (8, 16),
    stream: Optional[int] = None,
    out: Any = None,
) -> Any:
    """Pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020; visinf/1-stage-wseg ``PAMR``), exactly as
    NACLIP and SC-CLIP apply it: ``PAMR(num_iter=iterations, dilations=dilations)(image, mask)``.

    Neighbour weights come from the guide image once: for every neighbour ``n`` at offset ``o_n`` (per dilation
    ``d`` the 8 cells of the 3x3 grid ``{-d, 0, d}^2``; replicate padding at the border), ``a_n(p)`` is the mean
    over image channels ``k`` of ``-|image_k(p) - image_k(p + o_n)| / (1e-8 + 0.1 * sigma_k(p))`` with
    ``sigma_k(p)`` the standard deviation (Bessel-corrected) over the dilated 3x3 grids around ``p``, and
    ``w_n(p) = softmax_n(a_n(p))``. Then, ``iterations`` times, every class plane becomes
    ``mask(p) <- sum_n w_n(p) * mask(p + o_n)``: a convex combination of neighbours, so the refinement is linear
    in ``mask`` (it commutes with a logit scale) and never leaves the range of the input values.

    Args:
        mask: ``[B, C, H, W]`` float32 class logits at the image size (C-contiguous; CPU NumPy, or a CUDA array).
            The reference's bilinear resize of the mask to the image size is the identity here; other sizes are
            refused: resize the mask first.
        image: ``[B, K, H, W]`` float32 guide (NACLIP / SC-CLIP: the normalised network input bilinearly
            resized to ``H x W``), on the mask's device.
        iterations: refinement steps, >= 1 (NACLIP's reported numbers: 10).
        dilations: 1..8 dilations, each >= 1 (NACLIP and SC-CLIP: ``(8, 16)``).
        stream: CUDA stream as an integer ``cudaStream_t`` (None: torch's current stream for torch CUDA inputs,
            else 0); must be 0/None on the CPU. The CUDA path allocates its two workspaces
            (``[B, 8 * len(dilations), H, W]`` weights and a ``[B, C, H, W]`` ping-pong buffer) stream-ordered.
        out: optional preallocated ``[B, C, H, W]`` float32 result on the inputs' device (not overlapping them).
    Returns:
        ``[B, C, H, W]`` float32: a NumPy array for CPU input, a ``DeviceArray`` for CUDA input. NaN or inf in the
        image or the mask spreads to the pixels whose neighbourhoods hold it, as in the reference.
    """
    as_native_array(out, "pamr", "out")
    return native_module().pamr(
        as_native_array(mask, "pamr", "mask"),
        as_native_array(image, "pamr", "image"),
        iterations=_iterations(iterations),
        dilations=_dilations(dilations),
        out=out,
        stream=resolve_stream(stream, "pamr", mask, image),
    )
