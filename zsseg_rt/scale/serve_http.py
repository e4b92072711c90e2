"""The HTTP side of ``zsseg serve`` without Ray: reading a request body within a byte limit, turning it into an image
under the pixel limit (header first), the answer's encodings, and the HTTP status of each failure.

One request is the unit of failure: everything here raises :class:`RequestError` carrying the status the client gets
(400 a malformed request, 413 too large, 415 a body that is not sent as an image), never an exception that would take
the other requests of a batch down.

``POST /segment`` takes the body as ``Content-Type: image/...`` (``image/jpeg``, ``image/png``, ...) or
``application/octet-stream``: a web form of another site can post ``text/plain``, ``multipart/form-data`` or
``application/x-www-form-urlencoded`` (or, from a script, no type at all) to a server on this machine without asking
(no CORS preflight), so those are refused (415); the two accepted types need a preflight this server never grants.

Answer of ``POST /segment`` (JSON)::

    {"classes": [names the label values index], "colors": [[R, G, B] per class],
     "height": H, "width": W,
     "labels_png": base64 PNG of the [H, W] label map (8-bit, 16-bit above 256 classes)
        (or, with ?labels=raw, "labels_raw": base64 of the little-endian uint8/uint16 array and "labels_dtype"),
     "scores_png": base64 16-bit PNG of the winning scores quantised over "scores_range": [lo, hi]
        (score = lo + value * (hi - lo) / 65535, within (hi - lo) / 131070; omitted with ?scores=0),
     "areas": {class: fraction of the pixels, most frequent first}, "pixels": {class: pixel count},
     "objects" (only with ?objects=1): {"objects": [{"class_id", "name", "score", "box": [x, y, w, h], "area",
        "centroid": [x, y], "rle": {"size": [h, w], "counts": COCO RLE}}, ...], "dropped": regions over the cap}
        (``Result.objects()``: each class's connected regions, with the server's --object-min-area / --max-objects),
     "timing_ms": {"read", "decode", "segment" (queue + batch), "encode", "total"},
     "backend": ..., "random_weights": true/false where the bundle records it}

:func:`decode_labels` and :func:`decode_scores` read those fields back.
"""

from __future__ import annotations

import base64
from typing import Any, AsyncIterator, Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "RequestError",
    "CLIENT_CLOSED",
    "check_content_type",
    "QUERY_KEYS",
    "check_query",
    "query_classes",
    "read_body",
    "decode_request_image",
    "parse_flag",
    "encode_labels",
    "encode_scores",
    "decode_labels",
    "decode_scores",
    "error_status",
]

BAD_REQUEST, TOO_LARGE, UNSUPPORTED_TYPE = 400, 413, 415
CLIENT_CLOSED = 499  # the client closed the connection before its request was read (nginx's code; nobody gets it)


class RequestError(ValueError):
    """A request the server refuses: ``status`` is its HTTP status (400 or 413), the message says what to send."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)


async def read_body(headers: Any, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes (0 = no limit): from its
    ``Content-Length`` before anything is read, else while it streams in; never read whole when it is too long.

    Args:
        headers: the request's headers (a mapping with ``get``).
        chunks: the body's chunks as they arrive (Starlette's ``request.stream()``).
        limit: the most bytes accepted.
    Raises:
        RequestError: 413 for a body over the limit, 400 for a malformed ``Content-Length``.
    """
    declared = headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise RequestError(BAD_REQUEST, f"malformed Content-Length header {declared!r}") from None
        if limit and length > limit:
            raise RequestError(TOO_LARGE, _too_long(length, limit))
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if limit and size > limit:
            raise RequestError(TOO_LARGE, _too_long(size, limit, streamed=True))
        parts.append(chunk)
    return b"".join(parts)


# What a client is told about the server's limits: what it can do (send a smaller image), not the server's settings
# (--max-pixels, $ZSSEG_MAX_PIXELS), which only whoever runs the server can change (docs/scaling_out.md says how).
def _too_long(size: int, limit: int, streamed: bool = False) -> str:
    what = f"more than {size - 1}" if streamed else str(size)
    return (
        f"the request body has {what} bytes, more than the {limit} an image of this server's pixel limit can take: "
        "send a smaller image, or a compressed one (JPEG/PNG)"
    )


def _too_many_pixels(width: int, height: int, limit: int) -> str:
    return (
        f"the request body is {width}x{height} = {width * height / 1e6:.1f} MP, over the {limit / 1e6:g} MP limit "
        "of this server: send a smaller image (scale it down)"
    )


def decode_request_image(body: bytes, max_pixels: int, allow_partial: bool = False) -> np.ndarray:
    """``[H, W, 3]`` uint8 BGR from a request body, its header checked against the pixel limit before decoding
    (``allow_partial``: what a truncated or damaged body holds is decoded, the server's ``--allow-partial-images``).

    Raises:
        RequestError: 413 past the pixel limit (nothing decoded), 400 for an empty body, a body that is not an
            image, or a truncated or damaged one (the message of every other entry point).
    """
    from zsseg_rt.image_io import (
        CorruptImageError,
        ImageReadError,
        ImageTooLargeError,
        decode_image_bytes,
        image_bytes_size,
    )

    if not body:
        raise RequestError(BAD_REQUEST, "empty request body: POST the encoded bytes of an image (JPEG, PNG, ...)")
    what = f"the request body ({len(body)} bytes)"
    if max_pixels:
        try:
            width, height = image_bytes_size(body, what)
        except ImageReadError:
            width = height = 0  # not an image: decode_image_bytes says so below
        if width * height > max_pixels:
            raise RequestError(TOO_LARGE, _too_many_pixels(width, height, max_pixels))
    try:
        return decode_image_bytes(body, max_pixels, what=what, allow_partial=allow_partial)
    except ImageTooLargeError as exc:  # the decoder found more pixels than the header declared
        raise RequestError(TOO_LARGE, str(exc)) from None
    except CorruptImageError as exc:  # the shared refusal; the opt-in is the server's, a web client cannot set it
        raise RequestError(
            BAD_REQUEST, f"cannot decode {what}: {exc.problem}; POST the complete encoded bytes of the image"
        ) from None
    except ImageReadError as exc:
        raise RequestError(
            BAD_REQUEST, f"{exc}; POST the complete encoded bytes of an image (JPEG, PNG, ...)"
        ) from None


def check_content_type(value: Optional[str]) -> None:
    """Refuse (415) a ``POST /segment`` body not sent as an image: only ``image/*`` and ``application/octet-stream``
    are taken, the types a page of another site cannot send without a CORS preflight (see the module docstring)."""
    kind = (value or "").split(";", 1)[0].strip().lower()
    if kind.startswith("image/") or kind == "application/octet-stream":
        return
    raise RequestError(
        UNSUPPORTED_TYPE,
        f"send the image's bytes with Content-Type image/jpeg, image/png, ... or application/octet-stream; got "
        f"{kind or 'no Content-Type'!r} (what a web form of another site can send, so it is refused; with curl: "
        "-H 'Content-Type: image/jpeg')",
    )


QUERY_KEYS = ("classes", "scores", "labels", "objects")  # what POST /segment reads from its query


def check_query(items: Sequence[Tuple[str, str]]) -> None:
    """Refuse (400) a ``POST /segment`` query with a key it does not read (``?clases=`` or ``?Classes=`` would otherwise
    fall back, silently, to the server's default vocabulary) or with ``?scores=`` / ``?labels=`` / ``?objects=`` given
    more than once
    (``?classes=`` twice has its own message: ``query_classes``). ``items``: the query's (key, value) pairs."""
    keys = [key for key, _ in items]
    unknown = sorted({key for key in keys if key not in QUERY_KEYS})
    if unknown:
        known = ", ".join(f"?{key}=" for key in QUERY_KEYS)
        raise RequestError(
            BAD_REQUEST,
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)}: "
            f"POST /segment reads {known} (names are case-sensitive)",
        )
    for key in ("scores", "labels", "objects"):
        if keys.count(key) > 1:
            values = [value for name, value in items if name == key]
            raise RequestError(
                BAD_REQUEST, f"?{key}= is given {len(values)} times ({', '.join(map(repr, values))}): give it once"
            )


def query_classes(values: Sequence[str]) -> Optional[str]:
    """The ``?classes=`` of a request: None when it is not given (the server's default vocabulary); refused (400)
    when given empty or more than once (the command line and the camera's preview refuse both too)."""
    if not values:
        return None
    if len(values) > 1:
        shown = " and ".join(repr(v) for v in values[:3]) + (" ..." if len(values) > 3 else "")
        raise RequestError(
            BAD_REQUEST,
            f"?classes= is given {len(values)} times ({shown}): give it once, the classes separated by commas "
            "(?classes=cat,dog)",
        )
    if not values[0].strip():
        raise RequestError(
            BAD_REQUEST,
            "?classes= is empty: give class names separated by commas (?classes=cat,dog), or leave ?classes= out for "
            "the server's default vocabulary",
        )
    return values[0]


def parse_flag(value: Optional[str], default: bool, name: str) -> bool:
    """A query flag: ``1/true/yes/on`` or ``0/false/no/off``; RequestError 400 otherwise."""
    if value is None or value == "":
        return default
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise RequestError(BAD_REQUEST, f"?{name}= takes 1 or 0 (true/false), got {value!r}")


def error_status(exc: BaseException) -> int:
    """The HTTP status of an exception raised while segmenting one image: 413 past an input limit, 400 for another
    bad input (ValueError/TypeError), 500 for a failure of the server itself."""
    from zsseg_rt.pipeline.limits import InputLimitError

    if isinstance(exc, RequestError):
        return exc.status
    if isinstance(exc, InputLimitError):
        return TOO_LARGE
    if isinstance(exc, (ValueError, TypeError)):
        return BAD_REQUEST
    return 500


def _png(array: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {array.shape} {array.dtype} array as PNG")
    return encoded.tobytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_labels(labels: np.ndarray, num_classes: int, raw: bool = False) -> Dict[str, str]:
    """The label map's answer fields: ``labels_png`` (8-bit up to 256 classes, else 16-bit), or with ``raw``
    ``labels_raw`` (base64 of the little-endian array, row-major) and ``labels_dtype`` ("uint8"/"uint16"), which a
    browser reads without a PNG decoder of its own."""
    dtype = np.dtype("<u1") if num_classes <= 256 else np.dtype("<u2")
    table = np.ascontiguousarray(labels.astype(dtype))
    if raw:
        return {"labels_raw": _b64(table.tobytes()), "labels_dtype": "uint8" if dtype.itemsize == 1 else "uint16"}
    return {"labels_png": _b64(_png(table))}


def encode_scores(scores: np.ndarray) -> Dict[str, Any]:
    """``scores_png`` (16-bit PNG of the scores quantised linearly over their range) and ``scores_range``."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(scores.min()), float(scores.max())) if scores.size else (0.0, 0.0)
    span = high - low
    steps = np.zeros(scores.shape, np.uint16) if span <= 0 else np.rint((scores - low) * (65535.0 / span))
    return {"scores_png": _b64(_png(steps.astype(np.uint16))), "scores_range": [low, high]}


def _decode_png(text: str, shape: Tuple[int, int], what: str) -> np.ndarray:
    import cv2

    array = cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.shape != shape:
        raise ValueError(f"the answer's {what} is not a PNG of the stated height x width {shape}")
    return array


def decode_labels(answer: Dict[str, Any]) -> np.ndarray:
    """``[H, W]`` label map (uint8 or uint16) of a ``/segment`` JSON answer (``labels_png`` or ``labels_raw``)."""
    shape = (int(answer["height"]), int(answer["width"]))
    if "labels_raw" in answer:
        dtype = {"uint8": "<u1", "uint16": "<u2"}[answer["labels_dtype"]]
        return np.frombuffer(base64.b64decode(answer["labels_raw"]), dtype).reshape(shape)
    return _decode_png(answer["labels_png"], shape, "labels_png")


def decode_scores(answer: Dict[str, Any]) -> np.ndarray:
    """``[H, W]`` float32 winning scores of a ``/segment`` answer (quantised: within ``(hi - lo) / 131070``)."""
    shape = (int(answer["height"]), int(answer["width"]))
    low, high = (float(v) for v in answer["scores_range"])
    steps = _decode_png(answer["scores_png"], shape, "scores_png").astype(np.float64)
    return (low + steps * ((high - low) / 65535.0)).astype(np.float32)
