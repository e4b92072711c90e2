"""The TensorRT runner: engines built by ``zsseg build-engine`` (TensorRT 10), one execution context per graph, so
calls are serialised with a lock (a TensorRT execution context is not thread-safe); each call is split into chunks
of the engine's optimisation profile (``batch_limit``)."""

from __future__ import annotations

import threading
import weakref
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from zsseg_rt.bundle import BundleMeta

from ..base import OpenRequest, runner_factory

__all__ = ["TrtRunner", "open_tensorrt"]

NAME = "tensorrt"


class TrtRunner:
    """Engines of ``roles`` (default: the windowed bundle's image, head and text engines).

    ``engine_paths`` (role -> engine file) runs these engines, checked only against this machine's TensorRT and GPU
    (the accuracy gate uses it on a fresh build); default: ``find_engines`` for ``precision``. ``cuda_graphs``: the
    device pipeline captures each kind of frame as a CUDA graph and replays it (``runtime/device/cuda_graphs.
    DriverCudaGraphs``); off by default: it has not run on a GPU yet, and it costs a second execution context
    (activation memory) per engine (:meth:`device_executor`)."""

    name = NAME

    def __init__(
        self,
        meta: BundleMeta,
        precision: str = "fp16",
        engine_paths: Optional[Dict[str, str]] = None,
        cuda_graphs: bool = False,
        roles: Optional[Sequence[str]] = None,
    ):
        from . import engines as trt_run  # imports tensorrt itself lazily

        if engine_paths:
            paths = dict(engine_paths)
        else:
            paths = trt_run.find_engines(meta.path, precision=precision, graphs=list(roles) if roles else None)
        self._runners: Dict[str, Any] = {key: trt_run.TensorRTRunner(path) for key, path in paths.items()}
        self._lock = threading.Lock()
        self.cuda_graphs = bool(cuda_graphs)
        # the memories (streams) of the device executors that share the host path's execution contexts
        self._sharing: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.precision = self.requested_precision = precision
        self.precision_record: Optional[dict] = None
        self.runs_on_gpu = True

    def run(self, role: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> List[np.ndarray]:
        with self._lock:
            if role in ("image", "head"):  # device work enqueued on these contexts finishes first
                for memory in list(self._sharing):
                    memory.activate()
                    memory.synchronize()
            result = self._runners[role].run(dict(feeds))
        return [result[name] for name in outputs]

    def batch_limit(self, role: str, input: str) -> Optional[int]:
        """The largest leading dimension the engine's optimisation profile accepts for ``input``."""
        return int(self._runners[role].input_profile(input)[2][0])

    def device_executor(self):
        """An executor running these engines on device buffers (the device-resident pipeline), on the image runner's
        CUDA context and a stream of its own.

        It runs the host path's execution contexts: TensorRT allocates a context's activation memory when the
        context is made, sized for the engine's largest profile, so a second context per engine would hold it twice
        (docs/tensorrt.md, "Memory"). A context must not run on two streams at once, so the two paths take turns
        under this runner's lock: the device path enqueues under it (the host path's runs are synchronous), the
        host path first waits for the device path's stream (:meth:`run`), and each puts the context on the
        optimisation profile its inputs need. With ``cuda_graphs`` the executor has contexts of its own (a second
        activation memory per engine): a graph replays the state its context had at the capture, which the host
        path must not change in between."""
        from ...device.cuda_memory import CudaMemory, TensorRTExecutor

        driver = self._runners["image"]._cuda
        driver.make_current()
        memory = CudaMemory(driver)
        runners = {role: self._runners[role] for role in ("image", "head")}
        if not self.cuda_graphs:
            self._sharing.add(memory)
            return TensorRTExecutor(
                {role: runner.context for role, runner in runners.items()},
                memory,
                lock=self._lock,
                select_profile=lambda role, shapes, stream: runners[role].select_profile(shapes, stream),
            )
        contexts = {}
        for role, runner in runners.items():
            context = runner.engine.create_execution_context()
            if context is None:
                raise RuntimeError(f"TensorRT could not create an execution context for the {role!r} engine")
            contexts[role] = context
        return TensorRTExecutor(contexts, memory)

    def frame_graphs(self, executor: Any):
        """The device pipeline's CUDA graphs of a frame (``cuda_graphs=True``), or None: eager."""
        if not self.cuda_graphs:
            return None
        from ...device.cuda_graphs import DriverCudaGraphs, FrameGraphs

        return FrameGraphs(DriverCudaGraphs(executor.memory), precision=self.precision)


@runner_factory
def open_tensorrt(request: OpenRequest) -> TrtRunner:
    """The table row's factory: the engines of the request's roles built for this bundle, precision, TensorRT and
    GPU."""
    if request.device == "cpu":
        raise ValueError("the tensorrt backend runs on a CUDA GPU: device must be 'auto' or 'cuda', got 'cpu'")
    if request.device not in ("auto", "cuda", "cuda:0"):  # never another GPU than the one asked for
        raise ValueError(
            f"the tensorrt backend runs on CUDA device 0: device={request.device!r} is not taken (to run on that GPU: "
            "CUDA_VISIBLE_DEVICES=N with device='cuda')"
        )
    options = request.options
    paths, graphs = options.pop("engine_paths", None), options.pop("cuda_graphs", False)
    return TrtRunner(request.meta, request.precision or "fp16", paths, graphs, request.roles)
