"""Online segmentation on Ray Serve: one ``zsseg_rt.Engine`` per replica, request batching, metrics.

HTTP API (the Ray Serve proxy; host and port from :func:`run_server`):

* ``POST /segment`` with the encoded image (JPEG, PNG, ... bytes) as the body, optionally ``?classes=a,b,c``
  (else the server's default vocabulary). Answer: JSON ``{"class_names": [...], "height": H, "width": W,
  "labels_png": base64 PNG of the [H, W] label map (8-bit, 16-bit above 256 classes), "seconds": segment time}``.
  A body that is not an image, or a bad vocabulary, gets HTTP 400 with a message saying what was expected.
* ``GET /stats``: this replica's counters (requests, images, batches, mean batch size, errors, pid, RSS).

Batching: ``@serve.batch`` gathers up to ``max_batch_size`` concurrent requests (waiting at most ``batch_wait_s``)
into one call that groups them by vocabulary and runs the Engine on each group in a worker thread, so the replica
keeps accepting requests meanwhile. Metrics: the counters above, and Ray's Prometheus metrics (Ray Serve's own
request counts and latency histograms, plus ``zsseg_images_total`` and ``zsseg_batch_size`` from here) at each
node's metrics export port.

Why Ray Serve and not Triton through PyTriton: nvidia-pytriton 0.7.0 (the newest) requires ``numpy<2`` and this
project pins numpy 2.4.6; see README "Scaling out".
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import import_ray

import_ray()  # this module needs Ray Serve: a clear ImportError naming the extra otherwise
from ray import serve  # noqa: E402

__all__ = ["SegmentationServer", "build_app", "run_server", "current_rss_bytes", "decode_labels"]

APP_NAME = "zsseg"


def current_rss_bytes() -> int:
    """Resident set size of this process in bytes (Linux ``/proc/self/statm``; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def decode_labels(answer: Dict[str, Any]) -> np.ndarray:
    """``[H, W]`` label map (uint8 or uint16) of a ``/segment`` JSON answer."""
    import cv2

    data = np.frombuffer(base64.b64decode(answer["labels_png"]), np.uint8)
    labels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if labels is None or labels.shape != (answer["height"], answer["width"]):
        raise ValueError("the answer's labels_png is not a PNG of the stated height x width")
    return labels


class SegmentationServer:
    """The Ray Serve deployment class (wrapped by :func:`build_app`): one Engine, batched requests."""

    def __init__(
        self, bundle, classes, backend="auto", device="auto", mode="exact", max_batch_size=8, batch_wait_s=0.005
    ):
        from ray.serve.metrics import Counter, Histogram

        from zsseg_rt.runtime import Engine
        from zsseg_rt.vocabulary import validate_class_names

        self.engine = Engine(bundle, classes=classes, backend=backend, device=device, mode=mode)
        self.max_classes = self.engine.meta.max_classes
        self.default_classes = tuple(validate_class_names(classes, self.max_classes))
        self.segment_batch.set_max_batch_size(int(max_batch_size))
        self.segment_batch.set_batch_wait_timeout_s(float(batch_wait_s))
        self.stats: Dict[str, float] = defaultdict(float)
        self.images_metric = Counter("zsseg_images_total", description="images segmented by this deployment")
        self.batch_metric = Histogram(
            "zsseg_batch_size", description="requests per Engine call", boundaries=[1, 2, 4, 8, 16, 32, 64]
        )

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/stats"):
            return JSONResponse(self._stats())
        if request.method != "POST" or not path.endswith("/segment"):
            return JSONResponse(
                {"error": f"{request.method} {request.url.path}: use POST /segment (image bytes) or GET /stats"},
                status_code=404,
            )
        self.stats["requests"] += 1
        try:
            image, names = self._parse(await request.body(), request.query_params.get("classes"))
        except ValueError as exc:
            self.stats["bad_requests"] += 1
            return JSONResponse({"error": str(exc)}, status_code=400)
        start = time.perf_counter()
        png, shape = await self.segment_batch((image, names))
        return JSONResponse(
            {
                "class_names": list(names),
                "height": shape[0],
                "width": shape[1],
                "labels_png": base64.b64encode(png).decode("ascii"),
                "seconds": round(time.perf_counter() - start, 6),
            }
        )

    def _parse(self, body: bytes, classes: Optional[str]) -> Tuple[np.ndarray, Tuple[str, ...]]:
        import cv2

        from zsseg_rt.vocabulary import validate_class_names

        if not body:
            raise ValueError("empty request body: POST the encoded bytes of an image (JPEG, PNG, ...)")
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(
                f"the request body ({len(body)} bytes) is not an image OpenCV can decode: POST the encoded bytes of "
                "a JPEG/PNG file"
            )
        names = tuple(validate_class_names(classes, self.max_classes)) if classes else self.default_classes
        return image, names

    def _stats(self) -> Dict[str, Any]:
        stats: Dict[str, Any] = dict(self.stats)
        stats["mean_batch_size"] = stats.get("batched_requests", 0) / max(stats.get("batches", 0), 1)
        stats.update(pid=os.getpid(), rss_bytes=current_rss_bytes())
        return stats

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)  # reset from the constructor's arguments
    async def segment_batch(self, items: List[Tuple[np.ndarray, Tuple[str, ...]]]) -> List[Tuple[bytes, tuple]]:
        self.stats["batches"] += 1
        self.stats["batched_requests"] += len(items)
        self.batch_metric.observe(len(items))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._segment_groups, items)

    def _segment_groups(self, items: List[Tuple[np.ndarray, Tuple[str, ...]]]) -> List[Tuple[bytes, tuple]]:
        """Segment a batch, one Engine call per distinct vocabulary (batches run one at a time per replica)."""
        from .batch import label_png_bytes

        groups: Dict[Tuple[str, ...], List[int]] = defaultdict(list)
        for index, (_, names) in enumerate(items):
            groups[names].append(index)
        answers: List[Any] = [None] * len(items)
        for names, indices in groups.items():
            self.engine.set_classes(list(names))  # cached per class name: a repeated vocabulary costs nothing
            results = self.engine([items[i][0] for i in indices])
            for i, result in zip(indices, results):
                answers[i] = (label_png_bytes(result.labels, len(names)), result.labels.shape)
        self.stats["images"] += len(items)
        self.images_metric.inc(len(items))
        return answers


def build_app(
    bundle: str,
    classes: Union[str, Sequence[str]],
    replicas: int = 1,
    gpus_per_replica: float = 0.0,
    cpus_per_replica: float = 1.0,
    max_batch_size: int = 8,
    batch_wait_s: float = 0.005,
    backend: str = "auto",
    device: str = "auto",
    mode: str = "exact",
):
    """The Ray Serve application (deployment bound to its arguments), for ``serve.run``.

    Args:
        bundle: bundle directory (the same path on every node that hosts a replica).
        classes: the default vocabulary.
        replicas: Engine replicas (Ray places them on the cluster's nodes; the proxies spread requests).
        gpus_per_replica, cpus_per_replica: resources each replica reserves (0 GPUs: CPU replicas).
        max_batch_size, batch_wait_s: request batching (see the module docstring).
    Returns:
        a bound ``ray.serve`` application.
    """
    deployment: Any = serve.deployment(SegmentationServer)  # (mypy picks the decorator-factory overload)
    deployment = deployment.options(
        num_replicas=int(replicas),
        ray_actor_options={"num_cpus": float(cpus_per_replica), "num_gpus": float(gpus_per_replica)},
        max_ongoing_requests=max(2 * int(max_batch_size), 16),
    )
    return deployment.bind(
        bundle,
        list(classes) if not isinstance(classes, str) else classes,
        backend,
        device,
        mode,
        max_batch_size,
        batch_wait_s,
    )


def run_server(bundle: str, classes, host: str = "127.0.0.1", port: int = 8000, blocking: bool = False, **kwargs):
    """Start Ray Serve's HTTP proxy on ``host:port`` and deploy :func:`build_app` there.

    Args:
        host: listening address (127.0.0.1: this machine only; 0.0.0.0 behind a load balancer).
        port: HTTP port.
        blocking: serve until interrupted (the CLI) instead of returning a handle.
        kwargs: passed to :func:`build_app`.
    Returns:
        the deployment handle (when not blocking).
    """
    serve.start(http_options={"host": host, "port": int(port)})
    app = build_app(bundle, classes, **kwargs)
    if blocking:
        print(f"serving on http://{host}:{port}/segment (Ctrl-C stops)", flush=True)
    return serve.run(app, name=APP_NAME, route_prefix="/", blocking=blocking)
