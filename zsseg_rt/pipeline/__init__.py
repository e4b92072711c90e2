"""Pre- and post-processing shared by every model path and runtime backend (NumPy + OpenCV + ``_C``; no torch).

The official ZegCLIP test-time order is implemented here once (:class:`Postprocessor` owns the window loop):
rescale (keep ratio, short side 512) -> normalise -> 512x512 windows with stride 426 -> per window: logits
[C,h,w] -> bilinear to the head size -> sigmoid -> minus calibration bias -> average overlapping windows ->
bilinear to the original size -> argmax.
"""

from zsseg_rt.vocabulary import validate_class_bias, validate_class_names, validate_templates

from .limits import InputLimitError, InputLimits, estimate_bytes
from .postprocess import calibrated_window_scores, finalize_scores, merge_windows, segment_fast, segment_windows_exact
from .postprocessor import Postprocessor
from .preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WHOLE_FITS,
    Window,
    check_image,
    fit_to_patches,
    normalize_image,
    pad_to_multiple,
    rescale_keep_ratio,
    sliding_windows,
    to_rgb_uint8,
    whole_input_size,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WHOLE_FITS",
    "Window",
    "check_image",
    "fit_to_patches",
    "whole_input_size",
    "InputLimits",
    "InputLimitError",
    "estimate_bytes",
    "normalize_image",
    "pad_to_multiple",
    "rescale_keep_ratio",
    "sliding_windows",
    "to_rgb_uint8",
    "calibrated_window_scores",
    "merge_windows",
    "finalize_scores",
    "segment_fast",
    "validate_class_names",
    "validate_templates",
    "validate_class_bias",
    "Postprocessor",
    "segment_windows_exact",
]
