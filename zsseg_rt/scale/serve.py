"""Online segmentation on Ray Serve: one ``zsseg_rt.Engine`` per replica, request batching, metrics, a web page.

HTTP API (the Ray Serve proxy; host and port from :func:`run_server`):

* ``GET /``: the web page (``web/index.html`` + ``web/app.js``, shipped with the package): upload or drop an image,
  type the classes, see the overlay, the legend and each class's area; a new vocabulary needs no restart.
* ``POST /segment`` with the encoded image (JPEG, PNG, ... bytes) as the body, optionally ``?classes=a,b,c``
  (``;`` joins synonyms; a named vocabulary, ``?classes=voc21``; else the server's default vocabulary), ``?scores=0``
  (leave the scores out), ``?labels=raw`` and ``?objects=1`` (each class's connected regions as objects: box,
  centroid, area, score, RLE mask; ``Result.objects()`` with the server's ``--object-min-area`` and
  ``--max-objects``; the page's "Objects" box draws them). The answer is
  described in :mod:`.serve_http` (labels, scores, class names and colours, per-class areas, timing, the bundle's
  random-weights flag). A body that is not an image or a bad vocabulary gets HTTP 400, a body or image over the
  pixel limit 413 (the limit of every other command: ``--max-pixels``, else ``$ZSSEG_MAX_PIXELS`` or 40 MP), each
  with a message saying what was expected.
* ``GET /info``: the default vocabulary, the limits and the bundle's random-weights flag (the page reads it).
* ``GET /stats``: this replica's counters (:data:`.records.STAT_COUNTERS`: every request it got lands in exactly one
  outcome counter: ok, bad_requests by status, overloaded, aborted, errors, forbidden, pages, not_found), the
  requests in flight and their bound, the mean batch size, pid and RSS.

One request is the unit of failure: its body is read within the byte limit, its header checked against the pixel
limit and the image decoded before it joins a batch (so a decompression bomb gets 413 and costs nothing), and a
batch whose Engine call fails is retried image by image, so only the image at fault gets an error. Everything that
can be refused is refused before the request is queued: the query, the vocabulary, the body, the image, and the
Engine's input limits (sides, pixels after the test rescale, windows, working memory: the pipeline's ``plan``), so
a refusal never waits for a batch.

Batching: ``@serve.batch`` gathers up to ``max_batch_size`` concurrent requests (waiting at most ``batch_wait_s``)
into one call that groups them by vocabulary and runs the Engine on each group in a worker thread, so the replica
keeps accepting requests meanwhile.

Overload: a replica admits at most :func:`in_flight_limit` POST /segment requests at once (one batch plus
``max_queued`` waiting, 8 + 16 by default; ``zsseg serve --max-queued``); one more is answered 503 with a
``Retry-After`` (the batches ahead times a batch's mean duration) at once, before its body is read, so a burst costs
neither unbounded memory nor time-outs that hide the reason. Ray Serve's own ``max_ongoing_requests`` and
``max_queued_requests`` (each the bound plus :data:`RAY_HEADROOM`; 503 with Retry-After from the proxy past them)
bound what lies in front of the replica.

Metrics: the counters above, and Ray's Prometheus metrics (Ray Serve's own request counts and latency histograms, plus
``zsseg_images_total`` and ``zsseg_batch_size`` from here) at each node's metrics export port.

Listening: the HTTP proxy binds ``--host`` only. Ray Serve 2.60 binds each replica's inter-deployment gRPC server
to all interfaces (``[::]:0``) with no setting to change it; the replica rebinds it to its node's address (127.0.0.1
on the private local cluster), where Ray looks for it (:func:`_keep_replica_grpc_on_node_address`).

Why Ray Serve and not Triton through PyTriton: nvidia-pytriton 0.7.0 (the newest) requires ``numpy<2`` and this
project pins numpy 2.4.6; see docs/scaling_out.md.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from zsseg_rt.system_info import current_rss_bytes

from . import import_ray
from .serve_http import (
    CLIENT_CLOSED,
    RequestError,
    check_content_type,
    check_query,
    decode_labels,
    decode_request_image,
    decode_scores,
    encode_labels,
    encode_scores,
    error_status,
    parse_flag,
    query_classes,
    read_body,
)
from .serve_stop import STOPPING, STOPPING_RETRY_S

import_ray()  # this module needs Ray Serve: a clear ImportError naming the extra otherwise
from ray import serve  # noqa: E402

__all__ = [
    "SegmentationServer",
    "build_app",
    "run_server",
    "wait_until_answering",
    "current_rss_bytes",
    "decode_labels",
    "decode_scores",
]

APP_NAME = "zsseg"
_FOREIGN_HOST = (
    "this server listens on {} (this machine only) and answers requests addressed to 127.0.0.1, localhost or [::1]; "
    "Host {!r} is refused (a page of another site re-pointing its name here: DNS rebinding)"
)
_BUSY = (
    "the server is busy: {} requests are being segmented or waiting on this replica, its limit ({}); this request "
    "was not processed: send it again after {} s (Retry-After)"
)
# Ray Serve's own bounds in front of this replica's: the requests routed to a replica at once (the admitted ones plus
# this many being answered quickly: pages, refusals), and as many waiting at each HTTP proxy for a replica (the
# router's assignment takes a round trip to the replicas: a burst waits there first); past that the proxy answers
# 503 with Retry-After itself, in plain text, counted by Ray's metrics and not by a replica, so no queue is
# unbounded. Large, so that a burst meets the replica's own bound, answered in JSON and counted in /stats: with 32, a
# quarter of the 503s of a 200-request burst were Ray's. A refusal reads no body: a few KB each.
RAY_HEADROOM = 1024
VocabularyKey = Union[str, Tuple[str, ...]]  # a named vocabulary's name, or the class texts
BatchItem = Tuple[np.ndarray, VocabularyKey, bool, bool, bool]  # image, vocabulary, with scores, raw labels, objects
WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
WEB_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8")}


def _keep_replica_grpc_on_node_address() -> None:
    """Make this replica's inter-deployment gRPC server listen on its node's address instead of every interface.

    Ray Serve 2.60 starts it with ``add_port_to_grpc_server(server, "[::]:0")`` after the deployment's constructor
    returns, and offers no setting for the host; handles reach a replica at its node's IP, so binding that address
    only changes who else can connect. Replaces the module-level function the replica calls (a no-op when Ray's
    layout differs: the bind test in python_tests/scale catches that)."""
    import ray

    try:
        from ray.serve._private import replica as replica_module
    except ImportError:  # pragma: no cover - another Ray layout
        return
    original = getattr(replica_module, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "zsseg_node_address", None):
        return
    node_ip = ray.util.get_node_ip_address()
    host = f"[{node_ip}]" if ":" in node_ip else node_ip

    def add_port_on_node_address(server, address):
        if address.startswith("[::]:"):
            address = f"{host}:{address.rsplit(':', 1)[1]}"
        return original(server, address)

    add_port_on_node_address.zsseg_node_address = node_ip  # type: ignore[attr-defined]
    replica_module.add_port_to_grpc_server = add_port_on_node_address


def in_flight_limit(max_batch_size: int, max_queued: Optional[int] = None) -> int:
    """The bound of a replica's queue: the POST /segment requests it admits at once (reading their body, decoding,
    waiting for or in a batch) are one batch (``max_batch_size``) plus ``max_queued`` waiting (None: twice
    ``max_batch_size``, so 8 + 16 = 24 by default); one more gets 503 with Retry-After at once, before its body is
    read. A replica then holds at most this many requests' bodies and images (plus a batch whose clients left), and a
    request waits for at most the two batches ahead of its own."""
    batch = int(max_batch_size)
    queued = 2 * batch if max_queued is None else int(max_queued)
    if batch < 1 or queued < 0:
        raise ValueError(f"max_batch_size must be >= 1 and max_queued >= 0, got {max_batch_size} and {max_queued}")
    return batch + queued


class SegmentationServer:
    """The Ray Serve deployment class (wrapped by :func:`build_app`): one Engine, batched requests."""

    def __init__(
        self,
        bundle,
        classes,
        *,
        max_batch_size=8,
        batch_wait_s=0.005,
        host=None,
        max_queued=None,
        stop_flag=None,
        **engine_options,
    ):
        """``host``: the address the HTTP proxy listens on; a loopback one answers only requests addressed to a
        loopback name (DNS rebinding: ``zsseg_rt.outputs.loopback``); None: no such check (a replica behind a proxy
        of its own). ``max_queued``: POST /segment requests this replica admits beyond one batch (None: twice
        ``max_batch_size``); more at once get 503 with Retry-After (see :func:`in_flight_limit`). ``stop_flag``: the
        name of the driver's stop flag (:mod:`.serve_stop`; None: none), after which every request gets 503.
        ``engine_options``: the replica's Engine's (:func:`zsseg_rt.scale.engine.open_engine`)."""
        from ray.serve.metrics import Counter, Histogram

        from zsseg_rt.image_io import max_encoded_bytes

        from .engine import open_engine
        from .records import STAT_COUNTERS

        _keep_replica_grpc_on_node_address()
        self.host = host
        self.engine, self.max_pixels = open_engine(bundle, classes, **engine_options)
        self.max_bytes = max_encoded_bytes(self.max_pixels)
        self.max_classes = self.engine.meta.max_classes
        self.default_classes = tuple(self.engine.class_names)
        self.default_vocabulary = self._vocabulary(classes, "--classes")
        self.segment_batch.set_max_batch_size(int(max_batch_size))
        self.segment_batch.set_batch_wait_timeout_s(float(batch_wait_s))
        self.stats: Dict[str, float] = defaultdict(float)
        for counter in STAT_COUNTERS:  # every counter present from the start: a fresh replica's /stats is complete
            self.stats[counter] = 0
        self.bad_by_status: Dict[int, int] = defaultdict(int)
        self.max_batch_size = int(max_batch_size)
        self.in_flight = 0  # POST /segment requests admitted and not answered yet (reading, decoding, batched)
        self.in_flight_limit = in_flight_limit(max_batch_size, max_queued)
        self.batch_seconds = 0.0  # a running mean of the last batches' durations (for Retry-After)
        self.stop_flag, self.stop_watch = stop_flag, None  # (the watch: made on the first request, in its loop)
        self.images_metric = Counter("zsseg_images_total", description="images segmented by this deployment")
        self.batch_metric = Histogram(
            "zsseg_batch_size", description="requests per Engine call", boundaries=[1, 2, 4, 8, 16, 32, 64]
        )

    async def __call__(self, request):
        """Answer one HTTP request; every request lands in exactly one outcome counter (records.OUTCOME_COUNTERS)."""
        from starlette.responses import JSONResponse, Response

        from zsseg_rt.outputs.loopback import host_header_allowed

        path = request.url.path.rstrip("/") or "/"
        if await self._stopping():  # the server stops: 503 with Retry-After, never Ray's 404 once the route is gone
            for counter in ("requests", "overloaded") if path == "/segment" else ("pages",):  # one outcome each
                self.stats[counter] += 1
            retry = STOPPING_RETRY_S
            return JSONResponse({"error": STOPPING.format(retry)}, status_code=503, headers={"Retry-After": str(retry)})
        if self.host is not None and not host_header_allowed(self.host, request.headers.get("host")):
            self.stats["forbidden"] += 1  # a foreign page whose name was re-pointed at 127.0.0.1 (DNS rebinding)
            return JSONResponse({"error": _FOREIGN_HOST.format(self.host, request.headers.get("host"))}, 403)
        if request.method == "POST" and path == "/segment":
            return await self._admit(request)
        if request.method == "GET" and path in WEB_FILES:
            self.stats["pages"] += 1
            name, media = WEB_FILES[path]
            with open(os.path.join(WEB_DIR, name), "rb") as handle:
                return Response(handle.read(), media_type=media, headers={"Cache-Control": "no-cache"})
        if request.method == "GET" and path in ("/stats", "/info"):
            self.stats["pages"] += 1  # counted before the snapshot: /stats accounts for itself
            return JSONResponse(self._stats() if path == "/stats" else self._info())
        self.stats["not_found"] += 1
        return JSONResponse(
            {
                "error": f"{request.method} {request.url.path}: use POST /segment (image bytes), GET / (the web "
                "page), GET /info or GET /stats"
            },
            status_code=404,
        )

    async def _admit(self, request):
        """A POST /segment: refused at once with 503 and Retry-After when ``in_flight_limit`` requests are admitted
        already (the bounded queue), else answered; counted once, by the status of its answer (``outcome_of``), or
        as aborted when the client left first (its upload closed, or the request cancelled by Ray Serve's proxy,
        which cancels a request whose client disconnected: CancelledError, re-raised)."""
        from starlette.responses import JSONResponse

        from .records import outcome_of

        self.stats["requests"] += 1
        if self.in_flight >= self.in_flight_limit:
            retry = self._retry_after_s()
            self.stats["overloaded"] += 1
            message = _BUSY.format(self.in_flight, self.in_flight_limit, retry)
            return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": str(retry)})
        self.in_flight += 1
        status = 500  # an exception that escapes the handlers below: a failure of the server
        try:
            response = await self._segment_response(request)
            status = response.status_code
            return response
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self.stop_watch is not None:
                self.stop_watch.idle()
            outcome = outcome_of(status)
            self.stats[outcome] += 1
            if outcome == "bad_requests":
                self.bad_by_status[status] += 1

    async def _stopping(self) -> bool:
        """Whether the driver's stop flag is set (:mod:`.serve_stop`): read on this replica's first request, then
        watched, so a request after it is never admitted."""
        if self.stop_flag is None:
            return False
        if self.stop_watch is None:
            import ray

            from .serve_stop import STOP_NAMESPACE, StopWatch

            flag = ray.get_actor(self.stop_flag, namespace=STOP_NAMESPACE)
            self.stop_watch = StopWatch(flag, f"{os.getpid()}:{id(self)}")
            await self.stop_watch.start(lambda: self.in_flight)
        return self.stop_watch.stopping

    async def _segment_response(self, request):
        """The response to a POST /segment: 200 with the answer, or the refusal or failure with its status."""
        from starlette.requests import ClientDisconnect
        from starlette.responses import JSONResponse, Response

        try:
            return JSONResponse(await self._segment_request(request))
        except ClientDisconnect:  # the client went away mid-upload: its doing, no answer reaches it
            return Response(status_code=CLIENT_CLOSED)
        except RequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except Exception as exc:  # noqa: BLE001 - this request fails alone, with a one-line reason
            from zsseg_rt.console.errors import format_error

            return JSONResponse({"error": format_error(exc)}, status_code=error_status(exc))

    def _retry_after_s(self) -> int:
        """Whole seconds until this replica has room again, as the Retry-After of a 503: the batches ahead of a new
        request times the running mean of a batch's duration, at least 1."""
        batches_ahead = -(-(self.in_flight + 1) // max(self.max_batch_size, 1))
        return max(1, int(np.ceil(batches_ahead * self.batch_seconds)))

    async def _segment_request(self, request) -> Dict[str, Any]:
        start = time.perf_counter()
        check_content_type(request.headers.get("content-type"))
        query = request.query_params
        check_query(query.multi_items())  # a misspelt ?clases= is refused, not answered with the default vocabulary
        with_scores = parse_flag(query.get("scores"), True, "scores")
        labels_format = query.get("labels", "png")
        with_objects = parse_flag(query.get("objects"), False, "objects")
        if labels_format not in ("png", "raw"):
            raise RequestError(400, f"?labels= takes png or raw, got {labels_format!r}")
        classes = query_classes(query.getlist("classes"))
        vocabulary = self._vocabulary(classes) if classes is not None else self.default_vocabulary
        body = await self._read_body(request)
        read = time.perf_counter()
        loop = asyncio.get_running_loop()  # decoding can take a while: off the event loop
        partial = self.engine.allow_partial_images  # --allow-partial-images: the server's choice, not a client's
        image = await loop.run_in_executor(None, decode_request_image, body, self.max_pixels, partial)
        del body
        self._refuse_before_batching(image, vocabulary)
        decoded = time.perf_counter()
        outcome = await self.segment_batch((image, vocabulary[0], with_scores, labels_format == "raw", with_objects))
        del image
        if isinstance(outcome, RequestError):
            raise outcome
        answer, encode_s = outcome
        done = time.perf_counter()
        answer["timing_ms"] = {
            "read": round(1000 * (read - start), 3),
            "decode": round(1000 * (decoded - read), 3),
            "segment": round(1000 * (done - decoded - encode_s), 3),
            "encode": round(1000 * encode_s, 3),
            "total": round(1000 * (done - start), 3),
        }
        return answer

    async def _read_body(self, request) -> bytes:
        """The request's body (``read_body``: within the byte limit). Ray Serve's replica fetches it from the HTTP
        proxy call by call; when the client disconnects, the proxy drops the request and that call is cancelled
        (TaskCancelledError, raised where the next chunk was awaited): the client's doing, ClientDisconnect as when
        the disconnect itself arrives first (it was counted as a server error)."""
        from ray.exceptions import TaskCancelledError
        from starlette.requests import ClientDisconnect

        try:
            return await read_body(request.headers, request.stream(), self.max_bytes)
        except TaskCancelledError:
            raise ClientDisconnect() from None

    def _vocabulary(self, text: Union[str, Sequence[str]], what: str = "?classes=") -> Tuple[VocabularyKey, int, int]:
        """``(key, classes, names)`` of a requested vocabulary, checked (RequestError 400 otherwise): the key is what
        the batch passes to ``Engine.set_classes`` and groups requests by (a named vocabulary's name, ``"voc21"``, or
        the class texts, synonyms included: ``("cat; kitty", "dog")``); ``classes`` and ``names`` count its classes
        and its names (a class with synonyms has several). What ``Engine.set_classes`` refuses of a vocabulary's
        names is refused here, by the same rule (a class named ``unknown`` with ``--unknown-below``): such a request
        never reaches a batch (it was answered with the previous request's vocabulary)."""
        from zsseg_rt.runtime.result import check_unknown_name
        from zsseg_rt.vocabulary import Vocabulary, named_vocabulary_name, validate_class_names

        try:
            named = named_vocabulary_name(text)  # "voc21", whatever its case
            if named is not None:
                key: VocabularyKey = named
                parsed = Vocabulary.parse(key, self.max_classes)
            else:
                key = tuple(validate_class_names(text, self.max_classes))
                parsed = Vocabulary.parse(list(key), self.max_classes)
            check_unknown_name(parsed.labels, self.engine.options.unknown_below)
        except (TypeError, ValueError) as exc:
            raise RequestError(400, f"{what}: {exc}") from None
        return key, len(parsed.entries), len(parsed.names)

    def _refuse_before_batching(self, image: np.ndarray, vocabulary: Tuple[VocabularyKey, int, int]) -> None:
        """Refuse, before the request joins a batch, an image the Engine would refuse (RequestError, 413 past a limit):
        its shape, its sides, its pixels, the pixels after the test rescale (an elongated image: 1 x 5000 becomes
        512 x 2560000), its windows and the working memory of its vocabulary's size, checked by the pipeline's own
        ``plan`` (a pipeline without one: the side and pixel limits here, the rest in the batch). A refusal costs
        microseconds; in the batch it waited for the batch (seconds under load)."""
        from zsseg_rt.console.errors import format_error

        _, classes, names = vocabulary
        plan = getattr(self.engine.pipeline, "plan", None)
        try:
            if plan is not None:
                plan(image, np.zeros(classes, np.float32), names)
            else:
                height, width = image.shape[:2]
                self.engine.limits.check((height, width), (height, width), 1, None)
        except Exception as exc:  # noqa: BLE001 - the Engine's refusal, as the batch would have reported it
            raise RequestError(error_status(exc), format_error(exc)) from None

    def _info(self) -> Dict[str, Any]:
        from zsseg_rt.vocabulary import named_vocabularies

        from .records import random_weights

        info: Dict[str, Any] = {
            "classes": list(self.default_classes),
            "max_classes": self.max_classes,
            "max_pixels": self.max_pixels,
            "max_bytes": self.max_bytes,
            "camera": False,  # this server segments posted images; a live camera is `zsseg camera --preview`
            "backend": self.engine.backend.name,
        }
        if isinstance(self.default_vocabulary[0], str):  # a named vocabulary: the page shows (and sends) its name
            info["vocabulary"] = self.default_vocabulary[0]
        info["named_vocabularies"] = list(named_vocabularies())
        flag = random_weights(self.engine.meta)
        if flag is not None:
            info["random_weights"] = flag
        return info

    def _stats(self) -> Dict[str, Any]:
        stats: Dict[str, Any] = {name: int(value) for name, value in self.stats.items()}
        stats.update(in_flight=self.in_flight, in_flight_limit=self.in_flight_limit)
        stats["bad_by_status"] = {str(code): count for code, count in sorted(self.bad_by_status.items())}
        stats["mean_batch_size"] = stats.get("batched_requests", 0) / max(stats.get("batches", 0), 1)
        stats.update(pid=os.getpid(), rss_bytes=current_rss_bytes())
        return stats

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)  # reset from the constructor's arguments
    async def segment_batch(self, items: List[BatchItem]) -> List[Any]:
        return await self.run_batch(items)

    async def run_batch(self, items: List[BatchItem]) -> List[Any]:
        """One batch (``segment_batch`` without Ray Serve's batching), run in a worker thread; its counters are
        updated here, on the event loop's thread, as every other counter (a counter updated from two threads can lose
        an increment)."""
        self.stats["batches"] += 1
        self.stats["batched_requests"] += len(items)
        self.batch_metric.observe(len(items))
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        answers = await loop.run_in_executor(None, self._segment_groups, items)
        seconds = time.perf_counter() - start
        self.batch_seconds = seconds if not self.batch_seconds else 0.8 * self.batch_seconds + 0.2 * seconds
        self.stats["images"] += len(items)
        self.stats["refused_images"] += sum(isinstance(a, RequestError) and a.status < 500 for a in answers)
        self.images_metric.inc(len(items))
        return answers

    def _segment_groups(self, items: List[BatchItem]) -> List[Any]:
        """Segment a batch, one Engine call per distinct vocabulary (batches run one at a time per replica). Every
        image is segmented with the vocabulary its request asked for, or not at all: a vocabulary the Engine refuses
        (``set_classes`` raised) is its requests' error (400 with the Engine's reason), never a run with the
        vocabulary the Engine had before; a group whose Engine call fails is run again image by image
        with its own vocabulary, so only the image at fault gets its error."""
        from zsseg_rt.console.errors import format_error

        groups: Dict[VocabularyKey, List[int]] = defaultdict(list)
        for index, item in enumerate(items):
            groups[item[1]].append(index)
        answers: List[Any] = [None] * len(items)
        for names, indices in groups.items():
            try:
                # cached per class name: a repeated vocabulary costs nothing; a named one ("voc21") by its name
                self.engine.set_classes(names if isinstance(names, str) else list(names))
            except Exception as exc:  # noqa: BLE001 - this vocabulary's requests fail, each with the reason
                refusal = RequestError(error_status(exc), f"?classes=: {format_error(exc)}")
                for i in indices:
                    answers[i] = refusal
                continue
            asked = self._labels_of(names)  # what each answer of this group must name
            try:
                results = self.engine([items[i][0] for i in indices])
            except Exception:  # noqa: BLE001 - find the request at fault: one image at a time, this vocabulary still
                results = [self._segment_one(items[i][0]) for i in indices]
            for i, result in zip(indices, results):
                if not isinstance(result, RequestError):
                    result = self._checked(result, asked)
                answers[i] = result if isinstance(result, RequestError) else self._answer(result, *items[i][2:])
        return answers

    def _labels_of(self, key: VocabularyKey) -> Tuple[str, ...]:
        """The class labels an answer of the vocabulary ``key`` names (what the Engine's results name after
        ``set_classes(key)``), read from the request's vocabulary itself, not from the Engine."""
        from zsseg_rt.vocabulary import Vocabulary

        return tuple(Vocabulary.parse(key if isinstance(key, str) else list(key), self.max_classes).labels)

    @staticmethod
    def _checked(result, asked: Tuple[str, ...]) -> Any:
        """``result``, or a server error (500) when it names other classes than its request's vocabulary: an answer
        is never another vocabulary's labels (an Engine whose vocabulary changed behind the batch's back)."""
        if tuple(result.class_names) == asked:
            return result
        return RequestError(
            500,
            f"the result names the classes {list(result.class_names)}, not the {list(asked)} asked for: not answered "
            "(a failure of this server; send the request again)",
        )

    def _segment_one(self, image: np.ndarray) -> Any:
        from zsseg_rt.console.errors import format_error

        try:
            return self.engine(image)
        except Exception as exc:  # noqa: BLE001 - this request's failure, reported to its client only (and counted
            return RequestError(error_status(exc), format_error(exc))  # by its status, once, in _admit)

    def _answer(
        self, result, with_scores: bool, raw_labels: bool, with_objects: bool = False
    ) -> Tuple[Dict[str, Any], float]:
        """The JSON answer of one result (see :mod:`.serve_http`) and the seconds its encoding took."""
        from zsseg_rt.outputs.kinds import objects_needed
        from zsseg_rt.runtime.result import label_colors

        from .records import image_record

        start = time.perf_counter()
        names = list(result.class_names)
        unknown = getattr(result, "unknown_id", None)  # --unknown-below: its colour at colors[id], as every label's
        answer: Dict[str, Any] = {"classes": names, "colors": label_colors(len(names), unknown).tolist()}
        if unknown is not None:  # its id, name and threshold
            from zsseg_rt.runtime.result import UNKNOWN_NAME

            answer["unknown"] = {"id": int(unknown), "name": UNKNOWN_NAME, "below": result.unknown_below}
        answer.update(image_record(result.labels, names, None, self.engine.backend.name, self.engine.meta))
        answer.update(encode_labels(result.labels, len(names) + (unknown is not None), raw=raw_labels))
        if with_scores:
            answer.update(encode_scores(result.scores))
        if objects_needed(objects=with_objects):  # ?objects=1: the Engine's limits (--object-min-area, --max-objects)
            answer["objects"] = result.objects().to_dict()
        return answer, time.perf_counter() - start


def build_app(
    bundle: str,
    classes: Union[str, Sequence[str]],
    replicas: int = 1,
    gpus_per_replica: float = 0.0,
    cpus_per_replica: float = 1.0,
    max_batch_size: int = 8,
    batch_wait_s: float = 0.005,
    *,
    host: Optional[str] = None,
    max_queued: Optional[int] = None,
    stop_flag: Optional[str] = None,
    **engine_options: Any,
):
    """The Ray Serve application (deployment bound to its arguments), for ``serve.run``.

    Args:
        bundle: bundle directory (the same path on every node that hosts a replica).
        classes: the default vocabulary.
        replicas: Engine replicas (Ray places them on the cluster's nodes; the proxies spread requests).
        gpus_per_replica, cpus_per_replica: resources each replica reserves (0 GPUs: CPU replicas).
        max_batch_size, batch_wait_s: request batching (see the module docstring).
        host: the HTTP proxy's listening address (a loopback one: only requests addressed to a loopback name).
        max_queued: POST /segment requests a replica admits beyond one batch (None: twice ``max_batch_size``); more
            at once get 503 with Retry-After (:func:`in_flight_limit`).
        stop_flag: the name of the stop flag the replicas watch (:mod:`.serve_stop`; :func:`run_server` makes it).
        engine_options: each replica's Engine's, as :func:`zsseg_rt.scale.engine.open_engine` takes them (checked
            here: the rows of ``zsseg_rt.options.ENGINE_OPTIONS`` a worker takes) and with their defaults;
            ``max_pixels`` is also the pixel limit of a request (None: ``$ZSSEG_MAX_PIXELS`` of this process or 40
            MP; 0: none; the body limit follows from it, ``image_io.max_encoded_bytes``), ``allow_partial_images``
            decodes what a truncated or damaged request body holds instead of refusing it.
    Returns:
        a bound ``ray.serve`` application.
    """
    from ray.serve.config import BackpressureConfig

    from zsseg_rt.image_io import max_pixels_limit

    from .engine import checked_engine_options

    options = checked_engine_options(engine_options, "build_app()")
    # resolved here: the replica's environment may differ from this process's
    options["max_pixels"] = max_pixels_limit(options.get("max_pixels"))
    limit = in_flight_limit(max_batch_size, max_queued)
    deployment: Any = serve.deployment(SegmentationServer)  # (mypy picks the decorator-factory overload)
    deployment = deployment.options(
        num_replicas=int(replicas),
        ray_actor_options={"num_cpus": float(cpus_per_replica), "num_gpus": float(gpus_per_replica)},
        max_ongoing_requests=limit + RAY_HEADROOM,
        max_queued_requests=limit + RAY_HEADROOM,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=1),
    )
    return deployment.bind(
        bundle,
        list(classes) if not isinstance(classes, str) else classes,
        max_batch_size=max_batch_size,
        batch_wait_s=batch_wait_s,
        host=host,
        max_queued=max_queued,
        stop_flag=stop_flag,
        **options,
    )


def connect_host(host: str) -> str:
    """Where a client on this machine reaches a server listening on ``host`` (a wildcard: the loopback address)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def wait_until_answering(host: str, port: int, timeout_s: float = 120.0) -> None:
    """Block until ``GET /info`` on ``host:port`` answers 200 (the proxy routes and a replica answers).

    Raises:
        TimeoutError: no answer within ``timeout_s``.
    """
    import http.client

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(connect_host(host), int(port), timeout=5)
        try:
            connection.request("GET", "/info")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return
            last = f"HTTP {response.status}"
        except OSError as exc:
            last = str(exc)
        finally:
            connection.close()
        time.sleep(0.2)
    raise TimeoutError(f"the server on {host}:{port} did not answer GET /info within {timeout_s:g} s ({last})")


def _quiet_serve_logger() -> None:
    """Ray Serve's driver-side logger shows warnings and errors only, unless Ray's logs are wanted
    (``ZSSEG_RAY_LOGS=1`` / ``--debug``): its INFO lines ("Started Serve in namespace", "Connecting to existing Serve
    app ... New http_options/controller_options will not be applied", which ``serve.run`` logs after every
    ``serve.start`` with HTTP options, the documented way to set them; "Application ... is ready") are not news to a
    ``zsseg serve`` user, who gets "serving on ..." once the server answers."""
    import logging

    from . import ray_logs_wanted

    if not ray_logs_wanted():
        logging.getLogger("ray.serve").setLevel(logging.WARNING)


def run_server(bundle: str, classes, host: str = "127.0.0.1", port: int = 8000, **kwargs):
    """Start Ray Serve's HTTP proxy on ``host:port``, deploy :func:`build_app` there and return once it answers
    HTTP requests (not merely once Ray calls the deployment ready).

    Args:
        host: listening address (127.0.0.1: this machine only; 0.0.0.0 behind a load balancer).
        port: HTTP port.
        kwargs: passed to :func:`build_app`.
    Returns:
        the deployment handle.
    """
    from zsseg_rt.console.signal_phases import held_signals, phase

    _quiet_serve_logger()
    with held_signals():  # not left midway: a signal while Serve starts is acted on once it has (signal_phases)
        phase("serve:start")  # (a test hook: python_tests/scale/test_ray_signal_phases.py)
        serve.start(http_options={"host": host, "port": int(port)})
    from .serve_stop import create_stop_flag

    app = build_app(bundle, classes, host=host, stop_flag=create_stop_flag(), **kwargs)  # serve_stop: no 404
    handle = serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    wait_until_answering(host, port)
    return handle
