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

Truncated and damaged images: one policy for every entry point. Files and bytes go through the same decoder
(:func:`read_image_bgr`, :func:`read_image_fitted` and :func:`decode_image_bytes` share it), which checks the
encoded data is complete before OpenCV decodes it: a JPEG's marker structure up to its end-of-image marker (and
that its compressed data can hold the size its header declares: a few KB claiming 20000x20000 is refused), a PNG's
chunks with their CRCs up to IEND, a WebP's RIFF length, other formats by Pillow decoding them. A truncated or
damaged image is refused with :class:`CorruptImageError` (one line: ``cannot decode <what>: truncated JPEG (...)``)
and nothing reaches stderr (libjpeg's "Premature end of JPEG file" or libpng's errors are never provoked).
``allow_partial=True`` (``Engine(allow_partial_images=True)``, ``zsseg segment --allow-partial-images``) decodes
what a truncated or damaged file holds instead (Pillow's tolerant decoder, silently; the missing part is filled),
except a header that declares more pixels than its data could ever hold, which is always refused.
"""

from __future__ import annotations

import io
import os
import re
import threading
import warnings
import zlib
from typing import BinaryIO, Optional, Tuple, Union

import numpy as np

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "ImageReadError",
    "ImageTooLargeError",
    "CorruptImageError",
    "image_size",
    "max_pixels_limit",
    "read_image_bgr",
    "read_image_fitted",
    "check_frame_size",
    "check_pixels",
    "check_image_data",
    "max_encoded_bytes",
    "image_bytes_size",
    "decode_image_bytes",
    "PARTIAL_IMAGES_HINT",
    "first_frame_note",
    "frame_count",
    "pil_image_rgb",
    "refuse_special_file",
]

DEFAULT_MAX_PIXELS = 40_000_000
# read_image_fitted decodes a file over the limit only where that costs at most this many times the memory the limit
# allows: JPEG decodes straight at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling, OpenCV's IMREAD_REDUCED_*), so up to
# 64x the limit is never held at full size; other formats decode at full size first, so only up to 1.5x.
FIT_FACTOR_FULL_DECODE = 1.5
FIT_FACTOR_REDUCED_DECODE = 64.0
MAX_PIXELS_ENV = "ZSSEG_MAX_PIXELS"
HEADER_ALLOWANCE = 1 << 20  # bytes of an encoded image beyond its pixels (headers, metadata, a thumbnail)
# Pillow's global MAX_IMAGE_PIXELS and LOAD_TRUNCATED_IMAGES are changed only while this lock is held (threads must
# not interleave their save/restore)
_PIL_LIMIT_LOCK = threading.Lock()
_DIAGNOSE_BYTES = 64 << 20  # a file whose header Pillow cannot read is read whole (up to this) to say what is wrong
# How a refused partial image can be had anyway (every entry point's message says the same)
PARTIAL_IMAGES_HINT = (
    "partial images only on request: zsseg segment / zsseg camera --allow-partial-images, "
    "Engine(allow_partial_images=True)"
)
DEFLATE_MAX_RATIO = 1032  # deflate codes at most 258 bytes in 2 bits: no zlib stream inflates more than this


class ImageReadError(ValueError):
    """A user image is missing, unreadable, not an image, or too large to decode."""


class ImageTooLargeError(ImageReadError):
    """An image has more pixels than the configured limit (``--max-pixels`` / ``ZSSEG_MAX_PIXELS``)."""


class CorruptImageError(ImageReadError):
    """An image's encoded data is truncated or damaged (``kind``: "truncated", "damaged", or "implausible": a header
    declaring more pixels than the data can hold; ``problem``: what is wrong, without the name of the image and the
    advice). Refused before decoding; see ``allow_partial``. (A complete JPEG with extraneous bytes before a marker,
    which libjpeg decodes with a warning on stderr, is not refused: Pillow decodes it, silently.)"""

    def __init__(self, message: str, kind: str, problem: str = ""):
        super().__init__(message)
        self.kind = kind
        self.problem = problem or message  # "truncated JPEG: the data stops ...": without the name and the advice


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
        if max_pixels < 0:
            raise ValueError(f"{MAX_PIXELS_ENV} must be a whole number of pixels >= 0 (0 = no limit), got {text!r}")
    if int(max_pixels) < 0:
        raise ValueError(f"the pixel limit must be >= 0 (0 = no limit), got {max_pixels}")
    return int(max_pixels)


def _header_size(source: Union[str, BinaryIO], what: str) -> Tuple[int, int]:
    """``(width, height)`` from the header of a file path or a binary file object (Pillow's lazy ``Image.open``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():  # the lock: threads must not interleave save/restore
            warnings.simplefilter("ignore")  # DecompressionBombWarning, "Corrupt EXIF data", ...: we say it ourselves
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
        CorruptImageError: the header itself is cut short or damaged (e.g. a truncated WebP).
        ImageReadError: the file is missing, unreadable, or its format is not recognised.
    """
    what = f"image {path!r}"
    refuse_special_file(path, what)
    try:
        return _header_size(path, what)
    except ImageReadError:
        if os.path.isfile(path) and os.path.getsize(path) <= _DIAGNOSE_BYTES:  # say what is wrong with it
            with open(path, "rb") as handle:
                _raise_if_corrupt(handle.read(), what)
        raise


def refuse_special_file(path: str, what: str) -> None:
    """Refuse a FIFO, a device or a socket given as an image (reading one waits for a writer, or forever): one line.

    Raises:
        ImageReadError: ``path`` is one (:func:`zsseg_rt.input_files.special_file`).
    """
    from zsseg_rt.input_files import special_file

    kind = special_file(path)
    if kind is not None:
        raise ImageReadError(f"{what} is {kind}, not an image file: give a regular file (a FIFO is never read)")


def frame_count(path: str) -> int:
    """The frames (pages) of an image file from its header: more than 1 for an animated GIF, APNG or WebP, or a
    multi-page TIFF (1 when the format has no frames, or the header says nothing)."""
    from PIL import Image

    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as image:
                    return max(1, int(getattr(image, "n_frames", 1) or 1))
            finally:
                Image.MAX_IMAGE_PIXELS = saved_limit
    except Exception:  # noqa: BLE001 - the read itself reports what is wrong with the file
        return 1


def first_frame_note(path: str) -> str:
    """Empty for a single image, else the line that says only the first of its frames is segmented (an
    animated GIF's first frame was used silently)."""
    frames = frame_count(path)
    if frames <= 1:
        return ""
    return (
        f"{path} holds {frames} frames (an animated or multi-page image): only its first is segmented; "
        f"`zsseg segment` segments every frame of a video file (or `zsseg camera {path}` if OpenCV reads it)"
    )


def pil_image_rgb(image) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of a PIL image, turned upright as its EXIF orientation says (as the file's path would
    be read: a phone photo opened with PIL came out on its side)."""
    from PIL import ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Corrupt EXIF data": the pixels are read all the same
        try:
            turned = ImageOps.exif_transpose(image)
        except Exception:  # noqa: BLE001 - unreadable EXIF: the pixels as they are
            turned = image
    return np.asarray((turned if turned is not None else image).convert("RGB"))


def image_bytes_size(data: bytes, what: str = "the image") -> Tuple[int, int]:
    """``(width, height)`` of encoded image bytes from their header, without decoding pixels.

    Raises:
        CorruptImageError: the header itself is cut short or damaged (e.g. a truncated WebP).
        ImageReadError: empty data, or not an image Pillow can read the header of.
    """
    if not len(data):
        raise ImageReadError(f"{what} is empty (0 bytes): send the encoded bytes of a JPEG/PNG/... file")
    try:
        return _header_size(io.BytesIO(data), what)
    except ImageReadError:
        _raise_if_corrupt(bytes(data), what)
        raise


def _raise_if_corrupt(data: bytes, what: str) -> None:
    """After Pillow could not read a header: the truncated / damaged image message when the data is a known format
    cut short, so that a header cut off says the same as data cut off (else the caller's "not an image")."""
    if _format_of(data):
        problem = _problem(data)
        if problem is not None and problem[0] != "quirk":
            raise _corrupt_error(what, _format_of(data), problem, partial_hint=False)  # no header: no partial image


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


# ---- is the encoded data complete? ------------------------------------------------------------------------------------
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_HUFFMAN_DCT = {0xC0, 0xC1, 0xC2}  # baseline, extended, progressive (Huffman): >= 1 bit per 8x8 block
# In entropy-coded data a 0xFF byte is followed by 0x00 (a stuffed 0xFF), a restart marker 0xD0-0xD7, or a fill
# 0xFF; anything else is the next marker.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")


def _jpeg_problem(data: bytes) -> Optional[Tuple[str, str]]:
    """``(kind, what is wrong)`` of a JPEG whose marker structure is incomplete or broken, or whose compressed data
    is too short for the size its frame header declares; None for a complete one. Walks the segments (lengths),
    the scans' entropy-coded data (to the next marker) and stops at the end-of-image marker."""
    n = len(data)
    if data[:2] != b"\xff\xd8":
        return "damaged", "no JPEG start-of-image marker"
    pos, frame, scans, coded, stray = 2, None, 0, 0, False
    while True:
        if pos >= n:
            return "truncated", "the data stops before the end-of-image marker"
        if data[pos] != 0xFF:  # extraneous bytes before a marker: libjpeg skips them (with a warning)
            following = data.find(b"\xff", pos)
            if following < 0:
                return "truncated", "the data stops before the end-of-image marker"
            pos, stray = following, True
            continue
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            return "truncated", "the data stops before the end-of-image marker"
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # end of image
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, a restart marker: no length
            continue
        if marker in (0x00, 0xD8):
            return "damaged", f"an unexpected marker 0xFF{marker:02X} (byte {pos - 2})"
        if pos + 2 > n:
            return "truncated", "the data stops inside a segment header"
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            return "damaged", f"a segment of impossible length {length} (byte {pos - 2})"
        if pos + length > n:
            return "truncated", "the data stops inside a segment"
        if marker in _JPEG_SOF:
            frame = (marker, data[pos + 2 : pos + length])
        pos += length
        if marker == 0xDA:  # start of scan: its entropy-coded data runs to the next marker
            if frame is None:
                return "damaged", "a scan before the frame header"
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                return "truncated", "the data stops inside the compressed image data, before the end-of-image marker"
            scans += 1
            coded += found.start() - pos
            pos = found.start()
    if frame is None or not scans:
        return "damaged", "no image data before the end-of-image marker"
    implausible = _jpeg_implausible(frame[0], frame[1], coded)
    if implausible is None and stray:
        return "quirk", "extraneous bytes before a marker"  # complete: decoded by Pillow, which says nothing
    return implausible


def _jpeg_implausible(marker: int, header: bytes, coded: int) -> Optional[Tuple[str, str]]:
    """Huffman-coded JPEGs spend at least one bit per 8x8 block of every component (its DC code): a frame header
    declaring more blocks than ``coded`` bytes of compressed data have bits is a damaged (or forged) header."""
    if marker not in _JPEG_HUFFMAN_DCT or len(header) < 6:
        return None
    height, width, count = (header[1] << 8) | header[2], (header[3] << 8) | header[4], header[5]
    if not height or not width or len(header) < 6 + 3 * count or not count:  # height 0: given later (DNL)
        return None
    factors = [(header[7 + 3 * i] >> 4, header[7 + 3 * i] & 15) for i in range(count)]
    h_max, v_max = max(max(h for h, _ in factors), 1), max(max(v for _, v in factors), 1)
    blocks = 0
    for h, v in factors:
        comp_w, comp_h = -(-width * h // h_max), -(-height * v // v_max)
        blocks += -(-comp_w // 8) * -(-comp_h // 8)
    if 8 * coded < blocks:
        return (
            "implausible",
            f"its header declares {width}x{height} pixels, which its {coded} bytes of compressed data cannot hold "
            "(a damaged or forged header)",
        )
    return None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_problem(data: bytes) -> Optional[Tuple[str, str]]:
    """``(kind, what is wrong)`` of a PNG whose chunks are cut short, fail their CRC, or end without IEND, or whose
    IDAT data is too short for its size (deflate inflates at most 1032:1); None for a complete one."""
    n, pos = len(data), len(_PNG_SIGNATURE)
    view = memoryview(data)
    idat, header = 0, None
    while True:
        if pos + 8 > n:
            return "truncated", "the data stops before its IEND chunk"
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = bytes(data[pos + 4 : pos + 8])
        if length > 0x7FFFFFFF or not kind.isalpha():
            return "damaged", f"a broken chunk header at byte {pos}"
        end = pos + 12 + length
        if end > n:
            return "truncated", f"the data stops inside its {kind.decode('ascii')} chunk"
        crc = int.from_bytes(data[end - 4 : end], "big")
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            return "damaged", f"its {kind.decode('ascii')} chunk at byte {pos} fails its CRC check"
        if kind == b"IHDR":
            header = bytes(view[pos + 8 : pos + 8 + length])
        elif kind == b"IDAT":
            idat += length
        elif kind == b"IEND":
            break
        pos = end
    if header is None or len(header) < 13:
        return "damaged", "no IHDR chunk"
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, color = header[8], header[9]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color, 1)
    raw = height * (1 + (width * channels * depth + 7) // 8)  # filter byte + packed samples per row
    if raw > DEFLATE_MAX_RATIO * idat + 1024:  # interlaced images have more rows: this is a lower bound
        return (
            "implausible",
            f"its header declares {width}x{height} pixels, which its {idat} bytes of compressed data cannot hold "
            "(a damaged or forged header)",
        )
    return None


def _webp_problem(data: bytes) -> Optional[Tuple[str, str]]:
    """A WebP (RIFF) whose data is shorter than its RIFF header says."""
    if len(data) < 12:
        return "truncated", "the data stops inside its RIFF header"
    declared = 8 + int.from_bytes(data[4:8], "little")
    if len(data) < declared:
        return "truncated", f"the data stops before the {declared} bytes its RIFF header declares"
    return None


def _tiff_problem(data: bytes) -> Optional[Tuple[str, str]]:
    """A TIFF whose first directory (IFD) lies beyond its end (OpenCV writes it last: a cut file loses it), else
    what Pillow finds decoding it."""
    if len(data) < 8:
        return "truncated", "the data stops inside its header"
    offset = int.from_bytes(data[4:8], "little" if data[:2] == b"II" else "big")
    if offset + 2 > len(data):
        return "truncated", f"the data stops before its image directory (at byte {offset})"
    return _pillow_problem(data)


def _pillow_problem(data: bytes) -> Optional[Tuple[str, str]]:
    """Other formats (BMP, PPM, TIFF, ...): Pillow decodes them (it raises, silently, where data is missing); None
    when it decodes them, or cannot (a format only OpenCV reads: OpenCV decides)."""
    from PIL import Image

    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the size was checked already
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
            finally:
                Image.MAX_IMAGE_PIXELS = saved_limit
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        text = str(exc)
        if "truncated" in text or isinstance(exc, EOFError):
            return "truncated", "the data stops before the image does"
        if any(word in text for word in ("not available", "unsupported", "cannot identify", "not supported")):
            return None  # a variant Pillow cannot decode: OpenCV decides
        return "damaged", f"Pillow cannot decode it ({text})"
    return None


def _format_of(data: bytes) -> str:
    """The format's name from the first bytes ("" when none of those the messages name)."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == _PNG_SIGNATURE:
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:1] == b"P" and data[1:2] in b"123456" and data[1:2]:
        return "PNM"
    return ""


def check_image_data(data: bytes, what: str = "the image") -> None:
    """Refuse encoded image data that is truncated or damaged (the checks every reader of this module runs before
    decoding; see the module docstring).

    Raises:
        CorruptImageError: one line naming ``what``, the format and what is wrong.
    """
    problem = _problem(data)
    if problem is not None and problem[0] != "quirk":
        raise _corrupt_error(what, _format_of(data), problem)


def _problem(data: bytes) -> Optional[Tuple[str, str]]:
    kind = _format_of(data)
    if kind == "JPEG":
        return _jpeg_problem(data)
    if kind == "PNG":
        return _png_problem(data)
    if kind == "WebP":
        return _webp_problem(data)
    if kind == "TIFF":
        return _tiff_problem(data)
    return _pillow_problem(data)  # BMP, PNM and the rest


def _corrupt_error(
    what: str, image_format: str, problem: Tuple[str, str], partial_hint: bool = True
) -> CorruptImageError:
    kind, detail = problem
    name = image_format or "image"
    label = {"truncated": f"truncated {name}", "damaged": f"damaged {name}", "implausible": f"corrupt {name}"}[kind]
    hint = "" if kind == "implausible" else "; re-copy or re-export the file"
    if hint and partial_hint:
        hint += f" ({PARTIAL_IMAGES_HINT})"
    return CorruptImageError(f"cannot decode {what}: {label}: {detail}{hint}", kind, f"{label}: {detail}")


# ---- decoding -----------------------------------------------------------------------------------------------------------
def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ImageReadError(f"cannot read {what}: {exc.strerror or exc}") from None


def _decode(data: bytes, what: str, flag: Optional[int] = None, allow_partial: bool = False) -> np.ndarray:
    """``[H, W, 3]`` uint8 BGR from complete encoded data (OpenCV, ``flag`` default IMREAD_COLOR); truncated or
    damaged data is refused (:class:`CorruptImageError`) or, with ``allow_partial``, decoded as far as it goes."""
    import cv2

    problem = _problem(data)
    if problem is not None and problem[0] == "quirk":  # complete, with bytes libjpeg would warn about on stderr
        return _decode_with_pillow(data, what, _reduction_of(flag), tolerant=False)
    if problem is not None:
        if problem[0] == "implausible" or not allow_partial:
            raise _corrupt_error(what, _format_of(data), problem)
        return _decode_with_pillow(data, what, _reduction_of(flag), tolerant=True)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if flag is None else flag)
    except cv2.error as exc:
        raise ImageReadError(f"cannot decode {what}: {str(exc).strip().splitlines()[-1]}") from None
    if image is None:
        raise ImageReadError(f"cannot decode {what}: corrupt, or a format OpenCV cannot read")
    return image


def _decode_with_pillow(data: bytes, what: str, reduction: int = 1, tolerant: bool = True) -> np.ndarray:
    """An image decoded by Pillow, which writes nothing to stderr, turned as its EXIF orientation says (as OpenCV
    does), as ``[H, W, 3]`` uint8 BGR. ``tolerant``: what a truncated or damaged image holds (the missing part is
    filled); else a complete image with a quirk libjpeg would warn about (extraneous bytes before a marker)."""
    from PIL import Image, ImageFile, ImageOps

    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = None, bool(tolerant)
            try:
                with Image.open(io.BytesIO(data)) as image:
                    if reduction > 1 and image.format == "JPEG":
                        image.draft("RGB", (image.size[0] // reduction, image.size[1] // reduction))
                    image.load()
                    turned = ImageOps.exif_transpose(image)
                    rgb = np.asarray(turned.convert("RGB"))
            finally:
                Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        partially = ", not even partially" if tolerant else ""
        raise ImageReadError(f"cannot decode {what}{partially}: {exc}") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _reduction_of(flag: Optional[int]) -> int:
    import cv2

    return {cv2.IMREAD_REDUCED_COLOR_2: 2, cv2.IMREAD_REDUCED_COLOR_4: 4, cv2.IMREAD_REDUCED_COLOR_8: 8}.get(
        -1 if flag is None else flag, 1
    )


def read_image_bgr(path: str, max_pixels: Optional[int] = None, allow_partial: bool = False) -> np.ndarray:
    """Decode an image file to ``[H, W, 3]`` uint8 BGR (OpenCV order), refusing it before decoding when its header
    says it has more than the pixel limit, or when its data is truncated or damaged.

    Args:
        path: image file (any format Pillow can read the header of and OpenCV can decode: PNG, JPEG, BMP, TIFF,
            WebP, PPM/PGM...).
        max_pixels: the limit (None: ``$ZSSEG_MAX_PIXELS`` or 40 MP; 0: no limit).
        allow_partial: decode what a truncated or damaged file holds (the rest filled) instead of refusing it.
    Returns:
        ``[H, W, 3]`` uint8 BGR array.
    Raises:
        ImageTooLargeError: over the limit (nothing was decoded).
        CorruptImageError: truncated or damaged (nothing was decoded; see ``allow_partial``).
        ImageReadError: missing, unreadable or undecodable file.
    """
    what = f"image {path!r}"
    width, height = image_size(path)
    _check_pixels(width, height, max_pixels_limit(max_pixels), what)
    return _decode(_read_file(path, what), what, allow_partial=allow_partial)


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


def read_image_fitted(path: str, max_pixels: Optional[int] = None, resize: bool = True, allow_partial: bool = False):
    """Like :func:`read_image_bgr`, but an image over the pixel limit is decoded resized to fit it (keeping its
    aspect ratio) instead of refused, when ``resize`` and the decode stays cheap (a JPEG up to 64x the limit,
    decoded at a reduced scale; other formats up to 1.5x); larger ones are refused as by ``read_image_bgr``.

    Returns:
        ``(image [H, W, 3] uint8 BGR, resized)``: ``resized`` is None, or ``{"from": [w, h], "to": [w, h],
        "note": one line saying so}``.
    Raises:
        ImageTooLargeError, CorruptImageError, ImageReadError: as :func:`read_image_bgr`.
    """
    import cv2

    limit = max_pixels_limit(max_pixels)
    width, height = image_size(path)
    pixels = width * height
    if not resize or not limit or pixels <= limit:
        return read_image_bgr(path, limit, allow_partial), None
    what = f"image {path!r}"
    data = _read_file(path, what)
    jpeg = data[:3] == b"\xff\xd8\xff"
    factor = FIT_FACTOR_REDUCED_DECODE if jpeg else FIT_FACTOR_FULL_DECODE
    if pixels > factor * limit:
        _check_pixels(width, height, limit, what)  # raises: too large even to resize cheaply
    flag, _reduction = _reduced_flag((limit / pixels) ** 0.5, jpeg)
    image = _decode(data, what, flag, allow_partial)
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


def decode_image_bytes(
    data: bytes, max_pixels: Optional[int] = None, what: str = "the image", allow_partial: bool = False
) -> np.ndarray:
    """Decode encoded image bytes (a request body, a file's content) to ``[H, W, 3]`` uint8 BGR, refusing them
    before decoding when they are longer than :func:`max_encoded_bytes` or their header declares more pixels than
    the limit (a decompression bomb: a few KB declaring 30000x30000 is refused without allocating anything), or
    when they are truncated or damaged (as :func:`read_image_bgr`: the same checks, the same message).

    Args:
        data: the encoded bytes (any format Pillow reads the header of and OpenCV decodes).
        max_pixels: the limit (None: ``$ZSSEG_MAX_PIXELS`` or 40 MP; 0: no limit).
        what: how messages name the data (e.g. "the request body", "image 'a.png'").
        allow_partial: decode what truncated or damaged data holds instead of refusing it.
    Returns:
        ``[H, W, 3]`` uint8 BGR array.
    Raises:
        ImageTooLargeError: too many bytes or pixels (nothing was decoded).
        CorruptImageError: truncated or damaged (nothing was decoded).
        ImageReadError: empty, not an image, or undecodable.
    """
    limit = max_pixels_limit(max_pixels)
    most = max_encoded_bytes(limit)
    if most and len(data) > most:
        raise ImageTooLargeError(
            f"{what} has {len(data)} bytes, more than an image of the {limit / 1e6:g} MP limit can take "
            f"({most} bytes); downscale or compress it, or raise the limit with --max-pixels N or {MAX_PIXELS_ENV}=N"
        )
    width, height = image_bytes_size(data, what)
    _check_pixels(width, height, limit, what)
    image = _decode(bytes(data), what, allow_partial=allow_partial)
    _check_pixels(image.shape[1], image.shape[0], limit, what)  # the decoder agreed with the header
    return image
