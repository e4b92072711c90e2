"""CUDA memory for the device-resident pipeline without torch: raw allocations through the CUDA driver (ctypes),
page-locked host buffers, and on integrated GPUs (Jetson: one DRAM shared by CPU and GPU) zero-copy mapped host
memory instead of copies. Buffers expose ``__cuda_array_interface__`` so the native ops read and write them in
place; the TensorRT executor binds them as engine inputs/outputs.

Written against the CUDA driver API and TensorRT 10. In CI ``CudaMemory`` runs over a CUDA-runtime stand-in of its
driver (python_tests/cuda_support.py ``RuntimeDriver``) on the emulated CUDA runtime, and ran so on the H200; over
the real ctypes ``cuda_driver.CudaDriver`` (mapped memory, driver stream capture, timing events) it has not run yet
(``checks/gpu_probe.py`` part P6 runs it); ``TensorRTExecutor`` has never run (no TensorRT on the lent GPUs).
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.bundle import Names

from .device_pipeline import Executor, Memory
from .stage_timing import EventClock, StageClock, SyncClock

_TYPESTR = {
    np.dtype(np.float32): "<f4",
    np.dtype(np.float16): "<f2",
    np.dtype(np.int32): "<i4",
    np.dtype(np.uint8): "|u1",
}


class CudaBuffer:
    """A C-contiguous device array: ``pointer``, ``shape``, ``dtype`` (no ownership: ``CudaMemory`` frees it)."""

    def __init__(self, pointer: int, shape: Sequence[int], dtype, stream: int = 0):
        self.pointer = int(pointer)
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.stream = int(stream)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def __cuda_array_interface__(self):
        return {
            "shape": self.shape,
            "typestr": _TYPESTR[self.dtype],
            "data": (self.pointer, False),
            "version": 3,
            "strides": None,
            "stream": self.stream or None,
        }

    def __getitem__(self, item):
        if not isinstance(item, slice) or item.step not in (None, 1):
            raise IndexError("CudaBuffer supports only contiguous row slices buffer[start:stop]")
        start, stop, _ = item.indices(self.shape[0])
        n = max(stop - start, 0)
        row_bytes = self.nbytes // max(self.shape[0], 1)
        return CudaBuffer(self.pointer + start * row_bytes, (n,) + self.shape[1:], self.dtype, self.stream)


def _nbytes(buffer) -> int:
    if isinstance(buffer, CudaBuffer):
        return buffer.nbytes
    cai = buffer.__cuda_array_interface__
    return int(np.prod(cai["shape"], dtype=np.int64)) * np.dtype(cai["typestr"]).itemsize


def _pointer(buffer) -> int:
    """Device address of a CudaBuffer or of any __cuda_array_interface__ producer (e.g. an op's DeviceArray)."""
    if isinstance(buffer, CudaBuffer):
        return buffer.pointer
    return int(buffer.__cuda_array_interface__["data"][0])


class CudaMemory(Memory):
    """Device buffers from ``cuMemAlloc``, host buffers page-locked, one stream for the whole pipeline.

    Args:
        driver: a ``CudaDriver`` with a current context.
        stream: the stream every op is enqueued on (created when 0).
        zero_copy: "auto" (on when the device reports integrated memory and can map host memory), True, False.
            With zero-copy the frame and the results live in mapped page-locked host memory that the kernels
            read and write directly: ``upload``/``download`` then copy nothing over a bus (they are still logged,
            as "mapped" copies within the one DRAM).
    """

    kind = "cuda"
    page_locked = True

    def __init__(self, driver, stream: int = 0, zero_copy="auto", device_index: int = 0):
        super().__init__()
        from zsseg_rt.runtime.device.cuda_driver import ATTR_CAN_MAP_HOST_MEMORY, ATTR_INTEGRATED

        self.driver = driver
        self.owns_stream = not stream  # made here: whoever ends the memory for good may destroy it (in_flight.py)
        self.stream = stream or driver.stream_create()
        if zero_copy == "auto":
            zero_copy = bool(driver.device_attribute(ATTR_INTEGRATED, device_index)) and bool(
                driver.device_attribute(ATTR_CAN_MAP_HOST_MEMORY, device_index)
            )
        self.zero_copy = bool(zero_copy)
        self._device: List[int] = []
        self._host: List[int] = []
        self._host_sizes: Dict[int, int] = {}
        self._mapped: Dict[Tuple[int, int], CudaBuffer] = {}  # (host address, nbytes) -> device view (zero-copy)
        self._events: List[int] = []  # timing events (stage_clock), destroyed by release_timing_event or close

    def empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        pointer = self.driver.mem_alloc(nbytes)
        self._device.append(pointer)
        return CudaBuffer(pointer, shape, dtype, self.stream)

    def host_buffer(self, shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        pointer = self.driver.host_alloc(nbytes, mapped=self.zero_copy)
        self._host.append(pointer)
        self._host_sizes[pointer] = nbytes
        raw = (ctypes.c_uint8 * max(nbytes, 1)).from_address(pointer)
        array = np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dtype).reshape(tuple(shape))
        if self.zero_copy:
            self._mapped[(pointer, nbytes)] = CudaBuffer(
                self.driver.host_device_pointer(pointer), shape, dtype, self.stream
            )
        return array

    def device_view(self, host: np.ndarray) -> Optional[CudaBuffer]:
        """The device address of a mapped host buffer (zero-copy), or None."""
        return self._mapped.get((host.__array_interface__["data"][0], host.nbytes))

    def host_access(self, host, write, what):
        check = getattr(self.driver, "check_host_access", None)  # the emulated runtime's driver stand-in has one
        if check is not None:
            label = f"host {'write' if write else 'read'} of {what}"
            check(host.__array_interface__["data"][0], host.nbytes, bool(write), label)

    def _copy_up(self, host, buffer):
        self.driver.copy_to_device(buffer.pointer, host, self.stream)

    def _copy_down(self, buffer, host):
        self.driver.copy_to_host(host, _pointer(buffer), self.stream)

    def copy_into(self, destination, offset, source):
        row_bytes = destination.nbytes // max(destination.shape[0], 1)
        nbytes = _nbytes(source)
        if int(offset) * row_bytes + nbytes > destination.nbytes:
            raise ValueError(
                f"copy_into: {nbytes} bytes at row {offset} overrun a {destination.nbytes}-byte buffer "
                f"{list(destination.shape)}"
            )
        self.driver.copy_device_to_device(
            _pointer(destination) + int(offset) * row_bytes, _pointer(source), nbytes, self.stream
        )

    def rows(self, buffer, start: int, n: int) -> CudaBuffer:
        """Rows ``start : start + n`` along axis 0 of a CudaBuffer or any ``__cuda_array_interface__`` array."""
        if not isinstance(buffer, CudaBuffer):
            cai = buffer.__cuda_array_interface__
            buffer = CudaBuffer(_pointer(buffer), cai["shape"], np.dtype(cai["typestr"]), self.stream)
        return buffer[int(start) : int(start) + int(n)]

    def release(self, buffer) -> None:
        """Free one buffer this memory allocated (``empty`` or ``host_buffer``) now; anything else is ignored."""
        if isinstance(buffer, np.ndarray):
            address = buffer.__array_interface__["data"][0]
            if address in self._host:
                self._host.remove(address)
                self._mapped.pop((address, buffer.nbytes), None)
                self.driver.host_free(address)
            return
        pointer = _pointer(buffer)
        if pointer in self._device:
            self._device.remove(pointer)
            self.driver.mem_free(pointer)

    @property
    def pinned_bytes(self) -> int:
        """Page-locked host memory held now (allocated by ``host_buffer``, not yet released)."""
        return sum(self._host_sizes.get(pointer, 0) for pointer in self._host)

    def synchronize(self):
        self.driver.stream_synchronize(self.stream)

    def activate(self):
        self.driver.make_current()

    # ---- stage timing (stage_timing.EventClock): driver timing events on the stream --------------------------
    TIMING_EVENT_API = ("event_create", "event_record", "event_elapsed_ms", "event_destroy")

    def stage_clock(self) -> StageClock:
        """Timing events when the driver has them (``CudaDriver``: cuEventCreate / cuEventRecordWithFlags /
        cuEventElapsedTime); else the stream synchronised around each stage (frames then timed eagerly)."""
        if all(callable(getattr(self.driver, name, None)) for name in self.TIMING_EVENT_API):
            return EventClock(self)
        return SyncClock(self)

    def timing_event(self) -> int:
        event = self.driver.event_create(timing=True)
        self._events.append(event)
        return event

    def record_timing_event(self, event: int) -> None:
        """Recorded on the stream; while a graph is captured on it, as an event-record node that every launch
        records (CU_EVENT_RECORD_EXTERNAL, which CUDA allows only during a capture)."""
        self.driver.event_record(event, self.stream, external=self.capturing)

    def elapsed_ms(self, start: int, end: int) -> float:
        return float(self.driver.event_elapsed_ms(start, end))

    def release_timing_event(self, event: int) -> None:
        if event in self._events:
            self._events.remove(event)
            self.driver.event_destroy(event)

    def close(self) -> None:
        self.synchronize()
        for pointer in self._device:
            self.driver.mem_free(pointer)
        for pointer in self._host:
            self.driver.host_free(pointer)
        for event in self._events:
            self.driver.event_destroy(event)
        self._device, self._host, self._mapped, self._host_sizes, self._events = [], [], {}, {}, []


class TensorRTExecutor(Executor):
    """TensorRT 10 engines run on ``CudaBuffer`` bindings: inputs are bound where they are (the image encoder's
    output buffers ARE the head's inputs), outputs go to buffers this executor owns (grown on demand), and every
    graph is enqueued with ``execute_async_v3`` on the memory's stream: no host round trip between graphs.

    ``contexts`` maps a graph role ("image", "head") to a TensorRT ``IExecutionContext`` of its engine. Contexts
    shared with the host path (``TrtRunner.device_executor``) come with that path's ``lock``, held while a graph
    is set up and enqueued, and ``select_profile(role, shapes, stream)``, which puts the context on a profile that
    holds the input shapes (the host path may have left it on another).
    """

    def __init__(
        self,
        contexts: Dict[str, Any],
        memory: CudaMemory,
        lock: Optional[Any] = None,
        select_profile: Optional[Callable[[str, Dict[str, Tuple[int, ...]], int], None]] = None,
    ):
        self.contexts = contexts
        self.memory = memory
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self.shares_contexts = lock is not None  # the host path's contexts: a second executor must not run beside it
        self._select_profile = select_profile
        self._outputs: Dict[Tuple[str, str], Tuple[CudaBuffer, int]] = {}

    def batch_limit(self) -> Optional[int]:
        """The smallest profile maximum of the leading (window) axis over the image encoder's and the head's image
        inputs (``get_tensor_profile_shape``, profile 0): more windows than this per call are refused by TensorRT."""
        import tensorrt as trt  # the executor exists only where TensorRT does

        limits = []
        for role in ("image", "head"):
            context = self.contexts.get(role)
            if context is None:
                continue
            engine = context.engine
            for index in range(engine.num_io_tensors):
                name = engine.get_tensor_name(index)
                if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT or name == Names.TEXT_EMBEDDINGS:
                    continue  # the head's text input is [C, D]: its leading axis is the class count
                high = engine.get_tensor_profile_shape(name, 0)[2]
                limits.append(int(high[0]))
        return min(limits) if limits else None

    def _output_buffer(self, role: str, name: str, shape, dtype) -> CudaBuffer:
        needed = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        current = self._outputs.get((role, name))
        if current is None or current[1] < needed:
            if current is not None:  # grown: the old buffer may still be read by enqueued work until a sync
                self.memory.synchronize()
                self.memory.release(current[0])
            buffer = self.memory.empty((max(needed, 1),), np.uint8)
            current = (buffer, needed)
            self._outputs[(role, name)] = current
        return CudaBuffer(current[0].pointer, shape, dtype, self.memory.stream)

    def run(self, role, inputs):
        with self.lock:
            return self._run(role, inputs)

    def _run(self, role, inputs):
        context = self.contexts[role]
        engine = context.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        import tensorrt as trt  # the executor exists only where TensorRT does

        outputs = {}
        wanted = [name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        missing = [name for name in wanted if name not in inputs]
        if missing:
            raise KeyError(f"graph {role!r} needs input {missing[0]!r}; got {sorted(inputs)}")
        if self._select_profile is not None:
            self._select_profile(role, {name: tuple(inputs[name].shape) for name in wanted}, self.memory.stream)
        for name in wanted:
            buffer = inputs[name]
            if not context.set_input_shape(name, buffer.shape):
                low, _, high = (list(d) for d in engine.get_tensor_profile_shape(name, 0))
                raise ValueError(
                    f"TensorRT rejected shape {list(buffer.shape)} for input {name!r} of {role!r}: the engine's "
                    f"profile is {low}..{high}; rebuild the engine with a larger profile (zsseg build-engine)"
                )
            context.set_tensor_address(name, buffer.pointer)
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                continue
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            outputs[name] = self._output_buffer(role, name, shape, dtype)
            context.set_tensor_address(name, outputs[name].pointer)
        if not context.execute_async_v3(self.memory.stream):
            raise RuntimeError(f"TensorRT execution of the {role!r} graph failed (see its log)")
        return outputs
