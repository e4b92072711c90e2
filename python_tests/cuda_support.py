"""Device arrays and streams for the Python CUDA tests without torch.

Tests marked ``cuda`` run wherever ``zsseg_rt.ops.cuda_available()`` is True: on a real GPU, and in CI on the build
against the emulated CUDA runtime (``ZSSEG_CUDA_EMULATION=1``, ``tools/build_emulated.sh``), where device memory is
host memory under AddressSanitizer. They make their CUDA arrays with ``zsseg_rt._C._testing`` (every CUDA build of
the native module) instead of torch, so the same test checks the binding layer in both places. Tests that need torch
CUDA tensors use ``requires_torch_cuda``; tests that need the emulation's controls (holding a stream, counting
device-wide synchronisations) use ``requires_emulation``.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util

import numpy as np
import pytest

from zsseg_rt import ops
from zsseg_rt.bundle import Names
from zsseg_rt.ops import _loader
from zsseg_rt.runtime.device.cuda_memory import CudaBuffer
from zsseg_rt.runtime.device.device_pipeline import Executor

CUDA = ops.cuda_available()
EMULATED = CUDA and _loader.emulated()

requires_cuda = pytest.mark.skipif(
    not CUDA, reason=f"no usable CUDA device ({ops.cuda_unavailable_reason() or 'cuda_available() is False'})"
)
requires_emulation = pytest.mark.skipif(
    not EMULATED, reason="needs the emulated CUDA runtime (ZSSEG_CUDA_EMULATION=1 with tools/build_emulated.sh)"
)


def torch_cuda_available() -> bool:
    """torch with a usable CUDA device (never True under the emulation: torch sees no GPU there). The emulation is
    looked at first: this runs when the module is imported (``requires_torch_cuda``), and importing torch there cost
    every emulated pytest process about 4 CPU-s under ASan for an answer known beforehand."""
    if EMULATED or importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


requires_torch_cuda = pytest.mark.skipif(
    not (CUDA and torch_cuda_available()), reason="needs torch CUDA tensors (a real GPU with torch's CUDA build)"
)


def cuda_testing():
    """``zsseg_rt._C._testing``: DeviceMemory, streams, capture."""
    return ops.native_module()._testing


def cuda_emulation():
    """``zsseg_rt._C._emulation``: StreamHold, stats, is_live (emulated build only)."""
    return ops.native_module()._emulation


@contextlib.contextmanager
def held(stream):
    """Hold ``stream`` (emulation only): work enqueued on it stays pending, as a kernel still running on a GPU, until
    the block ends (then it runs, and the streams settle). Freeing device memory (cudaFree) waits for the whole
    device, which finishes the held work as it would on a GPU; so first the garbage of earlier tests is collected and
    the arguments the ops keep alive for finished launches are dropped (every op call drops them otherwise), and
    automatic collection is off in the block."""
    gc.collect()
    ops.native_module().check_pending_errors(wait=True)
    enabled = gc.isenabled()
    gc.disable()
    hold = cuda_emulation().StreamHold(int(stream))
    try:
        yield hold
    finally:
        hold.release()
        if enabled:
            gc.enable()


def device(host, kind: str = "device", **kwargs):
    """A copy of ``host`` (NumPy) in CUDA memory of ``kind`` (device, pool, managed, mapped, host), exported through
    ``interface`` ("cai", "dlpack", "both"; default "cai")."""
    return cuda_testing().DeviceMemory(np.ascontiguousarray(host), kind=kind, **kwargs)


def to_host(array) -> np.ndarray:
    """A NumPy copy of a DeviceArray or a DeviceMemory (waits for the device)."""
    return np.asarray(array.numpy())


class Stream:
    """A CUDA stream created for a test (``int(stream)`` is its handle), destroyed on ``close()``."""

    def __init__(self, non_blocking: bool = True):
        self.handle = cuda_testing().stream_create(non_blocking)

    def __int__(self) -> int:
        return self.handle

    def close(self) -> None:
        if self.handle:
            cuda_testing().stream_destroy(self.handle)
            self.handle = 0


@pytest.fixture
def stream():
    s = Stream()
    yield s
    s.close()


class RuntimeDriver:
    """What CudaMemory needs from ``cuda_driver.CudaDriver``, through the CUDA runtime of the native module."""

    def __init__(self):
        self.t = cuda_testing()
        self.streams = []

    def stream_create(self):
        self.streams.append(Stream())
        return int(self.streams[-1])

    def stream_destroy(self, stream):
        for made in self.streams:
            if int(made) == int(stream):
                made.close()

    def device_attribute(self, attribute, index=0):
        return self.t.device_attribute({18: "integrated", 19: "can_map_host_memory"}[attribute], index)

    def mem_alloc(self, nbytes):
        return self.t.malloc(nbytes, "device")

    def mem_free(self, pointer):
        self.t.free(pointer, "device")

    def host_alloc(self, nbytes, mapped=False):
        return self.t.malloc(nbytes, "mapped")  # page-locked (mapped: one address with unified addressing)

    def host_free(self, pointer):
        self.t.free(pointer, "mapped")

    def host_device_pointer(self, pointer):
        return pointer

    def copy_to_device(self, pointer, array, stream):
        self.t.memcpy_async(pointer, array.__array_interface__["data"][0], array.nbytes, stream)

    def copy_to_host(self, array, pointer, stream):
        self.t.memcpy_async(array.__array_interface__["data"][0], pointer, array.nbytes, stream)

    def copy_device_to_device(self, destination, source, nbytes, stream):
        self.t.memcpy_async(destination, source, nbytes, stream)

    def stream_synchronize(self, stream):
        self.t.stream_synchronize(stream)

    def check_host_access(self, pointer, nbytes, write, what):
        """CudaMemory.host_access: on the emulated runtime, the host's access is checked against the device work on
        that memory it has not synchronised with (a race report); nothing to check on a GPU."""
        if EMULATED:
            cuda_emulation().host_access(pointer, nbytes, write, what)

    def make_current(self):
        pass

    # CUDA graphs (DriverCudaGraphs): the runtime's stream capture
    def begin_capture(self, stream, mode="global"):
        self.t.begin_capture(stream, mode)

    def end_capture(self, stream):
        return self.t.end_capture(stream, keep=True)

    def graph_instantiate(self, graph):
        return self.t.graph_instantiate(graph)

    def graph_launch(self, executable, stream):
        self.t.graph_launch(executable, stream)

    def graph_exec_destroy(self, executable):
        self.t.graph_exec_destroy(executable)

    def graph_destroy(self, graph):
        self.t.graph_destroy(graph)

    # timing events (in-graph stage timing): what cuda_driver.CudaDriver offers over cuEvent*
    def event_create(self, timing=True):
        return self.t.event_create(timing)

    def event_record(self, event, stream, external=False):
        self.t.event_record(event, stream, external)

    def event_elapsed_ms(self, start, end):
        return self.t.event_elapsed_ms(start, end)

    def event_synchronize(self, event):
        self.t.event_synchronize(event)

    def event_destroy(self, event):
        self.t.event_destroy(event)


class CudaOpsModel(Executor):
    """A capturable stand-in for a bundle's graphs, CUDA ops only (the CUDA-graph and post-processing tests): the
    image encoder resizes the image to the patch grid (``ops.upsample``), the head resizes that again and subtracts
    the text embedding's first column per class (the vocabulary matters; 3 classes, one per colour channel). Its
    output buffers are allocated on the first run of each batch size and reused, as TensorRTExecutor's are (never
    during a capture)."""

    def __init__(self, memory, grid):
        self.memory = memory
        self.grid = tuple(int(g) for g in grid)
        self.buffers = {}

    def _buffer(self, key, shape):
        if key not in self.buffers:
            self.buffers[key] = self.memory.empty(shape, np.float32)
        return self.buffers[key]

    def run(self, role, inputs):
        stream = self.memory.stream
        if role == "image":
            image = inputs[Names.IMAGE]
            out = self._buffer(("features", image.shape[0]), (image.shape[0], 3) + self.grid)
            ops.upsample(image, self.grid, out=out, stream=stream)
            return {"features": out}
        features = inputs["features"]
        text = inputs[Names.TEXT_EMBEDDINGS]
        bias = CudaBuffer(text.pointer, (text.shape[0],), np.float32, stream)  # row starts: column 0 needs D == 1
        out = self._buffer(("logits", features.shape[0]), features.shape)
        ops.upsample(features, self.grid, class_bias=bias, out=out, stream=stream)
        return {Names.MASK_LOGITS: out}
