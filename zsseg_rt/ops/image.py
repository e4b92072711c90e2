"""Image pre-processing op: uint8 frame -> the engine's normalised window batch, in one native pass."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ._arrays import as_native_array, resolve_stream
from ._loader import native_module


# its NumPy reference twin (same arguments on purpose) is ops/reference.py preprocess
def preprocess(
    image: Any,
    scaled_size: Sequence[int],
    windows: Sequence[Sequence[int]],
    crop: int,
    mean: Sequence[float],
    std: Sequence[float],
    color_order: str = "bgr",
    dtype: str = "float32",
    out: Any = None,
    stream: Optional[int] = None,
) -> Any:
    """The official test pre-processing fused into one pass: keep-ratio rescale -> normalise -> window crops.

    Computes, for window ``k = (y1, y2, x1, x2)`` of the rescaled image,
    ``out[k, c, y, x] = (resize(image)[y1 + y, x1 + x, c] - mean[c]) / std[c]`` inside the window and 0 in the
    zero padding up to ``crop x crop``, where ``resize`` is ``cv2.resize(image_rgb, (W, H), INTER_LINEAR)`` on the
    8-bit image with OpenCV's fixed-point arithmetic (bit-exact against OpenCV 4.14 on x86-64; see
    ``zsseg/preprocess.h``) and no resize at all when ``scaled_size`` equals the image size.

    Args:
        image: ``[H, W, 3]`` (BGR or RGB per ``color_order``), ``[H, W, 4]`` (alpha ignored), ``[H, W, 1]`` or
            ``[H, W]`` gray; uint8, C-contiguous; a NumPy array (CPU) or a CUDA array (DLPack /
            ``__cuda_array_interface__``).
        scaled_size: ``(H', W')`` the rescaled size (``pipeline.rescaled_size``), each in 1..65536.
        windows: ``[(y1, y2, x1, x2), ...]`` crops of the rescaled image (``pipeline.sliding_windows``), each at
            most ``crop`` per side.
        crop: the graph's input size S.
        mean, std: per RGB channel, 0..255 units; std > 0.
        color_order: "bgr" (OpenCV) or "rgb"; ignored for gray images.
        dtype: "float32", or "float16" (CUDA only; rounded once after the fp32 normalisation).
        out: optional ``[n, 3, S, S]`` array of ``dtype`` on the image's device to write into (e.g. the engine's
            input binding), C-contiguous, writable, not overlapping ``image``; returned. No allocation then.
        stream: the CUDA stream of the launch (:mod:`zsseg_rt.ops`, "stream"); 0/None for CPU inputs.
    Returns:
        ``[n, 3, S, S]``: a NumPy array (CPU), a ``DeviceArray`` (CUDA), or ``out``.
    """
    as_native_array(out, "preprocess", "out")  # the same checks (masked arrays, lazy torch views); ``out`` itself
    # is passed on unconverted so that the caller gets back the very object it gave
    return native_module().preprocess(
        as_native_array(image, "preprocess", "image"),
        tuple(scaled_size),
        [tuple(w) for w in windows],
        int(crop),
        tuple(mean),
        tuple(std),
        color_order=color_order,
        dtype=dtype,
        out=out,
        stream=resolve_stream(stream, "preprocess", image, out),
    )
