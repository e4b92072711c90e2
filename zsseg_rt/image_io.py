"""Reading user images with a bounded size (torch-free): the one place the CLI and the stream sources decode files.

The size is read from the file's header with Pillow (``Image.open`` is lazy: it parses the header and decodes
no pixels) and an image larger than the pixel limit is refused before OpenCV decodes it, so a tiny hostile file
(a 40000x40000 PNG of a few hundred bytes) cannot make the process allocate gigabytes.

The limit is ``max_pixels`` when given, else the environment variable ``ZSSEG_MAX_PIXELS``, else
:data:`DEFAULT_MAX_PIXELS` (40 megapixels, e.g. 8000x5000); ``0`` means no limit. It is the one limit of the
package: ``zsseg segment`` / ``camera`` / ``eval`` read files with it, ``zsseg_rt.Engine`` refuses larger arrays by
default (its ``max_pixels``), ``zsseg batch`` and ``zsseg serve`` check every file and request body with it.

Encoded data in memory (a request body, a file read by Ray) goes through :func:`decode_image_bytes`: its length is
checked against :func:`max_encoded_bytes` (what an uncompressed 8-bit RGB image of the pixel limit takes, plus
1 MiB of headers) and its header against the pixel limit, before OpenCV decodes anything.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from typing import BinaryIO, Optional, Tuple, Union

import numpy as np

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "ImageReadError",
    "ImageTooLargeError",
    "image_size",
    "max_pixels_limit",
    "read_image_bgr",
    "read_image_fitted",
    "check_frame_size",
    "check_pixels",
    "max_encoded_bytes",
    "image_bytes_size",
    "decode_image_bytes",
]

DEFAULT_MAX_PIXELS = 40_000_000
# read_image_fitted decodes a file over the limit only where that costs at most this many times the memory the limit
# allows: JPEG decodes straight at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling, OpenCV's IMREAD_REDUCED_*), so up to
# 64x the limit is never held at full size; other formats decode at full size first, so only up to 1.5x.
FIT_FACTOR_FULL_DECODE = 1.5
FIT_FACTOR_REDUCED_DECODE = 64.0
MAX_PIXELS_ENV = "ZSSEG_MAX_PIXELS"
HEADER_ALLOWANCE = 1 << 20  # bytes of an encoded image beyond its pixels (headers, metadata, a thumbnail)
_PIL_LIMIT_LOCK = threading.Lock()  # guards the temporary change of Pillow's global MAX_IMAGE_PIXELS


class ImageReadError(ValueError):
    """A user image is missing, unreadable, not an image, or too large to decode."""


class ImageTooLargeError(ImageReadError):
    """An image has more pixels than the configured limit (``--max-pixels`` / ``ZSSEG_MAX_PIXELS``)."""


def max_pixels_limit(max_pixels: Optional[int] = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else ``$ZSSEG_MAX_PIXELS``, else 40 MP (0 = none).

    Raises:
        ValueError: the value (argument or environment) is not a non-negative integer.
    """
    if max_pixels is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_PIXELS
        try:
            max_pixels = int(text.replace("_", ""))
        except ValueError:
            raise ValueError(
                f"{MAX_PIXELS_ENV} must be a whole number of pixels (0 = no limit), got {text!r}"
            ) from None
    if int(max_pixels) < 0:
        raise ValueError(f"the pixel limit must be >= 0 (0 = no limit), got {max_pixels}")
    return int(max_pixels)


def _header_size(source: Union[str, BinaryIO], what: str) -> Tuple[int, int]:
    """``(width, height)`` from the header of a file path or a binary file object (Pillow's lazy ``Image.open``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():  # the lock: threads must not interleave save/restore
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit applies instead
            try:
                with Image.open(source) as image:  # lazy: header only
                    return int(image.size[0]), int(image.size[1])
            finally:
                Image.MAX_IMAGE_PIXELS = saved_limit
    except FileNotFoundError:
        raise ImageReadError(f"{what} does not exist") from None
    except IsADirectoryError:
        raise ImageReadError(f"{what} is a directory, not an image file") from None
    except UnidentifiedImageError:
        if isinstance(source, str) and os.path.isfile(source) and os.path.getsize(source) == 0:
            raise ImageReadError(f"{what} is empty (0 bytes)") from None
        raise ImageReadError(f"cannot read {what}: not an image, or a format without a readable header") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # PIL raises SyntaxError for some corrupt headers
        raise ImageReadError(f"cannot read {what}: {exc}") from None


def image_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` of an image file from its header, without decoding pixels.

    Raises:
        ImageReadError: the file is missing, unreadable, or its format is not recognised.
    """
    return _header_size(path, f"image {path!r}")


def image_bytes_size(data: bytes, what: str = "the image") -> Tuple[int, int]:
    """``(width, height)`` of encoded image bytes from their header, without decoding pixels.

    Raises:
        ImageReadError: empty data, or not an image Pillow can read the header of.
    """
    if not len(data):
        raise ImageReadError(f"{what} is empty (0 bytes): send the encoded bytes of a JPEG/PNG/... file")
    return _header_size(io.BytesIO(data), what)


def max_encoded_bytes(max_pixels: Optional[int] = None) -> int:
    """The most bytes an encoded image may have under the pixel limit (0 = no limit): an uncompressed 8-bit RGB
    image of that many pixels plus 1 MiB (headers, metadata); compressed formats are far smaller."""
    limit = max_pixels_limit(max_pixels)
    return 3 * limit + HEADER_ALLOWANCE if limit else 0


def _check_pixels(width: int, height: int, limit: int, what: str) -> None:
    if limit and width * height > limit:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {width * height / 1e6:.1f} MP, over the {limit / 1e6:g} MP limit; "
            f"downscale it, or raise the limit with --max-pixels N or {MAX_PIXELS_ENV}=N (0 = no limit) if this "
            "machine has the memory"
        )


def check_pixels(width: int, height: int, max_pixels: Optional[int] = None, what: str = "the image") -> None:
    """Refuse ``width x height`` over the pixel limit (``max_pixels``, else ``$ZSSEG_MAX_PIXELS``, else 40 MP).

    Raises:
        ImageTooLargeError: ``width * height`` exceeds the limit.
    """
    _check_pixels(int(width), int(height), max_pixels_limit(max_pixels), what)


def check_frame_size(width: int, height: int, max_pixels: Optional[int] = None, what: str = "the frame") -> None:
    """Refuse a frame size (e.g. a video's, from its container header) over the pixel limit.

    Raises:
        ImageTooLargeError: ``width * height`` exceeds the limit.
    """
    _check_pixels(int(width), int(height), max_pixels_limit(max_pixels), what)


def read_image_bgr(path: str, max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode an image file to ``[H, W, 3]`` uint8 BGR (OpenCV order), refusing it before decoding when its header
    says it has more than the pixel limit.

    Args:
        path: image file (any format Pillow can read the header of and OpenCV can decode: PNG, JPEG, BMP, TIFF,
            WebP, PPM/PGM...).
        max_pixels: the limit (None: ``$ZSSEG_MAX_PIXELS`` or 40 MP; 0: no limit).
    Returns:
        ``[H, W, 3]`` uint8 BGR array.
    Raises:
        ImageTooLargeError: over the limit (nothing was decoded).
        ImageReadError: missing, unreadable or undecodable file.
    """
    import cv2

    width, height = image_size(path)
    _check_pixels(width, height, max_pixels_limit(max_pixels), f"image {path!r}")
    try:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageReadError(f"cannot decode image {path!r}: {str(exc).strip().splitlines()[-1]}") from None
    if image is None:
        raise ImageReadError(f"cannot decode image {path!r} (truncated, corrupt, or a format OpenCV cannot read)")
    return image


def _reduced_flag(scale: float, jpeg: bool) -> Tuple[int, int]:
    """``(imread flag, reduction)``: the largest JPEG reduction 2/4/8 that still decodes at least ``scale`` of the
    size (``scale`` < 1), or a full decode."""
    import cv2

    if jpeg:
        for reduction, flag in (
            (8, cv2.IMREAD_REDUCED_COLOR_8),
            (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2),
        ):
            if 1.0 / reduction >= scale:
                return flag, reduction
    return cv2.IMREAD_COLOR, 1


def read_image_fitted(path: str, max_pixels: Optional[int] = None, resize: bool = True):
    """Like :func:`read_image_bgr`, but an image over the pixel limit is decoded resized to fit it (keeping its
    aspect ratio) instead of refused, when ``resize`` and the decode stays cheap (a JPEG up to 64x the limit,
    decoded at a reduced scale; other formats up to 1.5x); larger ones are refused as by ``read_image_bgr``.

    Returns:
        ``(image [H, W, 3] uint8 BGR, resized)``: ``resized`` is None, or ``{"from": [w, h], "to": [w, h],
        "note": one line saying so}``.
    Raises:
        ImageTooLargeError, ImageReadError: as :func:`read_image_bgr`.
    """
    import cv2

    limit = max_pixels_limit(max_pixels)
    width, height = image_size(path)
    pixels = width * height
    if not resize or not limit or pixels <= limit:
        return read_image_bgr(path, limit), None
    with open(path, "rb") as handle:
        jpeg = handle.read(3) == b"\xff\xd8\xff"
    factor = FIT_FACTOR_REDUCED_DECODE if jpeg else FIT_FACTOR_FULL_DECODE
    if pixels > factor * limit:
        _check_pixels(width, height, limit, f"image {path!r}")  # raises: too large even to resize cheaply
    flag, _reduction = _reduced_flag((limit / pixels) ** 0.5, jpeg)
    try:
        image = cv2.imread(path, flag)
    except cv2.error as exc:
        raise ImageReadError(f"cannot decode image {path!r}: {str(exc).strip().splitlines()[-1]}") from None
    if image is None:
        raise ImageReadError(f"cannot decode image {path!r} (truncated, corrupt, or a format OpenCV cannot read)")
    decoded_h, decoded_w = image.shape[:2]  # after the EXIF rotation OpenCV applies: the header may be turned
    scale = min(1.0, (limit / (decoded_h * decoded_w)) ** 0.5)
    target = (max(1, int(decoded_w * scale)), max(1, int(decoded_h * scale)))
    if target != (decoded_w, decoded_h):
        image = cv2.resize(image, target, interpolation=cv2.INTER_AREA)
    note = (
        f"{path} is {width}x{height} ({pixels / 1e6:.1f} MP), over the {limit / 1e6:g} MP limit: segmented resized "
        f"to {target[0]}x{target[1]} (--max-pixels 0 keeps the full size if this machine has the memory)"
    )
    return image, {"from": [width, height], "to": list(target), "note": note}


def decode_image_bytes(data: bytes, max_pixels: Optional[int] = None, what: str = "the image") -> np.ndarray:
    """Decode encoded image bytes (a request body, a file's content) to ``[H, W, 3]`` uint8 BGR, refusing them
    before decoding when they are longer than :func:`max_encoded_bytes` or their header declares more pixels than
    the limit (a decompression bomb: a few KB declaring 30000x30000 is refused without allocating anything).

    Args:
        data: the encoded bytes (any format Pillow reads the header of and OpenCV decodes).
        max_pixels: the limit (None: ``$ZSSEG_MAX_PIXELS`` or 40 MP; 0: no limit).
        what: how messages name the data (e.g. "the request body", "image 'a.png'").
    Returns:
        ``[H, W, 3]`` uint8 BGR array.
    Raises:
        ImageTooLargeError: too many bytes or pixels (nothing was decoded).
        ImageReadError: empty, not an image, truncated or corrupt.
    """
    import cv2

    limit = max_pixels_limit(max_pixels)
    most = max_encoded_bytes(limit)
    if most and len(data) > most:
        raise ImageTooLargeError(
            f"{what} has {len(data)} bytes, more than an image of the {limit / 1e6:g} MP limit can take "
            f"({most} bytes); downscale or compress it, or raise the limit with --max-pixels N or {MAX_PIXELS_ENV}=N"
        )
    width, height = image_bytes_size(data, what)
    _check_pixels(width, height, limit, what)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageReadError(f"cannot decode {what}: {str(exc).strip().splitlines()[-1]}") from None
    if image is None:
        raise ImageReadError(
            f"cannot decode {what} ({len(data)} bytes): truncated, corrupt, or a format OpenCV cannot read"
        )
    _check_pixels(image.shape[1], image.shape[0], limit, what)  # the decoder agreed with the header
    return image
