"""A minimal ctypes binding of the CUDA driver API (``libcuda``): device name / compute capability, device memory,
copies, streams, stream capture and timing events for the TensorRT runner. No cuda-python, pycuda or torch needed;
``libcuda`` ships with the NVIDIA driver (and with JetPack), so it is present wherever TensorRT can run.

The tests without a GPU only check that a missing driver gives a clear error; ``CudaMemory`` and ``DriverCudaGraphs``
run in CI over a CUDA-runtime stand-in with the same methods. This binding itself has not run on a GPU yet:
``checks/gpu_probe.py`` (part P6) runs it with mapped memory, driver capture and timing events.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Optional, Set, Tuple

import numpy as np

from zsseg_rt.ops.driver_probe import load_driver_library

_ATTR_COMPUTE_CAPABILITY_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_ATTR_COMPUTE_CAPABILITY_MINOR = 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
ATTR_MULTIPROCESSOR_COUNT = 16  # CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
ATTR_INTEGRATED = 18  # CU_DEVICE_ATTRIBUTE_INTEGRATED: the GPU shares the host's memory (Jetson)
ATTR_CAN_MAP_HOST_MEMORY = 19  # CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY
STREAM_NON_BLOCKING = 0x1  # CU_STREAM_NON_BLOCKING: no implicit synchronisation with the legacy default stream
_MEMHOSTALLOC_PORTABLE = 0x01
_MEMHOSTALLOC_DEVICEMAP = 0x02
_EVENT_DEFAULT = 0x0  # CU_EVENT_DEFAULT: a timing event
_EVENT_DISABLE_TIMING = 0x2  # CU_EVENT_DISABLE_TIMING
_EVENT_RECORD_DEFAULT = 0x0  # CU_EVENT_RECORD_DEFAULT
_EVENT_RECORD_EXTERNAL = 0x1  # CU_EVENT_RECORD_EXTERNAL: an event-record node when recorded during a capture


class CudaError(RuntimeError):
    """The CUDA driver is missing, has no device, or a driver call failed."""


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU an engine is built for / runs on. The name and compute capability do not tell Jetson modules apart
    (every Orin reports "Orin", sm 8.7); the multiprocessor count and total memory do."""

    name: str  # e.g. "Orin (nvgpu)", "NVIDIA GeForce RTX 4090"
    compute_capability: Tuple[int, int]  # e.g. (8, 7)
    multiprocessors: int = 0  # streaming multiprocessors (AGX Orin 16, Orin NX 16GB 8, Orin Nano 8GB 8, 4GB 4)
    total_memory_mib: int = 0  # cuDeviceTotalMem / 2**20 (shared with the CPU on Jetson)

    @property
    def sm(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def _load_library() -> ctypes.CDLL:
    try:
        return load_driver_library()
    except OSError as exc:
        raise CudaError(
            "the CUDA driver library (libcuda) was not found: TensorRT needs an NVIDIA GPU with its driver installed "
            f"(on Jetson it comes with JetPack). Tried: {exc}"
        ) from None


class CudaDriver:
    """The CUDA driver API through ctypes. ``cuInit`` runs on construction."""

    def __init__(self, library: Optional[ctypes.CDLL] = None):
        self._lib = library if library is not None else _load_library()
        self._declared_groups: Set[str] = set()  # the API groups declared on first use (_declared_api)
        self._declare()
        self._check(self._lib.cuInit(0), "cuInit")
        self._context: Optional[ctypes.c_void_p] = None
        self._context_device: Optional[int] = None

    def _declare(self) -> None:
        lib, c_size, c_ptr, c_u64 = self._lib, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_uint64
        lib.cuInit.argtypes = [ctypes.c_uint]
        lib.cuDeviceGetCount.argtypes = [ctypes.POINTER(ctypes.c_int)]
        lib.cuDeviceGet.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        lib.cuDeviceGetName.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        lib.cuDeviceGetAttribute.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int]
        lib.cuDeviceTotalMem_v2.argtypes = [ctypes.POINTER(c_size), ctypes.c_int]
        lib.cuDevicePrimaryCtxRetain.argtypes = [ctypes.POINTER(c_ptr), ctypes.c_int]
        lib.cuDevicePrimaryCtxRelease_v2.argtypes = [ctypes.c_int]
        lib.cuCtxSetCurrent.argtypes = [c_ptr]
        lib.cuMemAlloc_v2.argtypes = [ctypes.POINTER(c_u64), c_size]
        lib.cuMemFree_v2.argtypes = [c_u64]
        lib.cuMemcpyHtoDAsync_v2.argtypes = [c_u64, c_ptr, c_size, c_ptr]
        lib.cuMemcpyDtoHAsync_v2.argtypes = [c_ptr, c_u64, c_size, c_ptr]
        lib.cuMemcpyDtoDAsync_v2.argtypes = [c_u64, c_u64, c_size, c_ptr]
        lib.cuStreamCreate.argtypes = [ctypes.POINTER(c_ptr), ctypes.c_uint]
        lib.cuStreamSynchronize.argtypes = [c_ptr]
        lib.cuStreamDestroy_v2.argtypes = [c_ptr]
        lib.cuGetErrorString.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        lib.cuMemHostAlloc.argtypes = [ctypes.POINTER(c_ptr), c_size, ctypes.c_uint]
        lib.cuMemFreeHost.argtypes = [c_ptr]
        lib.cuMemHostGetDevicePointer_v2.argtypes = [ctypes.POINTER(c_u64), c_ptr, ctypes.c_uint]
        lib.cuMemGetInfo_v2.argtypes = [ctypes.POINTER(c_size), ctypes.POINTER(c_size)]
        lib.cuDriverGetVersion.argtypes = [ctypes.POINTER(ctypes.c_int)]

    def _check(self, result: int, call: str) -> None:
        if result == 0:
            return
        text = ctypes.c_char_p()
        described = self._lib.cuGetErrorString(result, ctypes.byref(text)) == 0 and text.value
        detail = text.value.decode(errors="replace") if described else "unknown error"
        hint = " (no CUDA-capable GPU is visible)" if result == 100 else ""
        raise CudaError(f"CUDA driver call {call} failed with error {result}: {detail}{hint}")

    def _device(self, index: int) -> int:
        count = ctypes.c_int()
        self._check(self._lib.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
        if not 0 <= index < count.value:
            raise CudaError(f"CUDA device {index} requested but {count.value} device(s) are visible")
        device = ctypes.c_int()
        self._check(self._lib.cuDeviceGet(ctypes.byref(device), index), "cuDeviceGet")
        return device.value

    def device_info(self, index: int = 0) -> DeviceInfo:
        """Name, compute capability, multiprocessor count and total memory of CUDA device ``index``."""
        device = self._device(index)
        name = ctypes.create_string_buffer(256)
        self._check(self._lib.cuDeviceGetName(name, len(name), device), "cuDeviceGetName")
        values = {}
        for attribute in (_ATTR_COMPUTE_CAPABILITY_MAJOR, _ATTR_COMPUTE_CAPABILITY_MINOR, ATTR_MULTIPROCESSOR_COUNT):
            value = ctypes.c_int()
            self._check(self._lib.cuDeviceGetAttribute(ctypes.byref(value), attribute, device), "cuDeviceGetAttribute")
            values[attribute] = int(value.value)
        total = ctypes.c_size_t()
        self._check(self._lib.cuDeviceTotalMem_v2(ctypes.byref(total), device), "cuDeviceTotalMem")
        return DeviceInfo(
            name.value.decode(errors="replace").strip(),
            (values[_ATTR_COMPUTE_CAPABILITY_MAJOR], values[_ATTR_COMPUTE_CAPABILITY_MINOR]),
            multiprocessors=values[ATTR_MULTIPROCESSOR_COUNT],
            total_memory_mib=int(total.value) >> 20,
        )

    def driver_version(self) -> int:
        """The newest CUDA version the installed driver supports, as 1000 * major + 10 * minor (e.g. 12080 for
        CUDA 12.8, 13000 for CUDA 13.0, which needs an r580 or newer driver)."""
        version = ctypes.c_int()
        self._check(self._lib.cuDriverGetVersion(ctypes.byref(version)), "cuDriverGetVersion")
        return int(version.value)

    def device_attribute(self, attribute: int, index: int = 0) -> int:
        """``cuDeviceGetAttribute`` (e.g. ``ATTR_INTEGRATED``) of device ``index``."""
        device = self._device(index)
        value = ctypes.c_int()
        self._check(self._lib.cuDeviceGetAttribute(ctypes.byref(value), int(attribute), device), "cuDeviceGetAttribute")
        return int(value.value)

    def host_alloc(self, nbytes: int, mapped: bool = False) -> int:
        """Page-locked host memory (``cuMemHostAlloc``); ``mapped`` also maps it into the device's address space
        (zero-copy on integrated GPUs). Free with ``host_free``."""
        pointer = ctypes.c_void_p()
        flags = _MEMHOSTALLOC_PORTABLE | (_MEMHOSTALLOC_DEVICEMAP if mapped else 0)
        self._check(
            self._lib.cuMemHostAlloc(ctypes.byref(pointer), max(int(nbytes), 1), flags), f"cuMemHostAlloc({nbytes})"
        )
        return int(pointer.value or 0)

    def host_free(self, pointer: int) -> None:
        self._check(self._lib.cuMemFreeHost(ctypes.c_void_p(pointer)), "cuMemFreeHost")

    def host_device_pointer(self, host_pointer: int) -> int:
        """The device address of mapped page-locked host memory (``cuMemHostGetDevicePointer``)."""
        device_pointer = ctypes.c_uint64()
        self._check(
            self._lib.cuMemHostGetDevicePointer_v2(ctypes.byref(device_pointer), ctypes.c_void_p(host_pointer), 0),
            "cuMemHostGetDevicePointer",
        )
        return int(device_pointer.value)

    def use_primary_context(self, index: int = 0) -> None:
        """Make the device's primary context (the one the CUDA runtime and TensorRT use) current."""
        device = self._device(index)
        context = ctypes.c_void_p()
        self._check(self._lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), device), "cuDevicePrimaryCtxRetain")
        self._check(self._lib.cuCtxSetCurrent(context), "cuCtxSetCurrent")
        self._context, self._context_device = context, device

    def make_current(self) -> None:
        """Bind the retained primary context to the CALLING thread (CUDA contexts are current per thread: a
        runner created on one thread and used from another must call this before touching device memory)."""
        if self._context is None:
            raise RuntimeError("no CUDA context retained: call use_primary_context() first")
        self._check(self._lib.cuCtxSetCurrent(self._context), "cuCtxSetCurrent")

    def release_primary_context(self) -> None:
        if self._context is not None:
            self._lib.cuDevicePrimaryCtxRelease_v2(self._context_device)
            self._context = None

    def mem_get_info(self) -> Tuple[int, int]:
        """(free, total) bytes of the current context's device (on an integrated GPU: of the shared DRAM)."""
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self._check(self._lib.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)), "cuMemGetInfo")
        return int(free.value), int(total.value)

    def mem_alloc(self, nbytes: int) -> int:
        pointer = ctypes.c_uint64()
        self._check(self._lib.cuMemAlloc_v2(ctypes.byref(pointer), max(int(nbytes), 1)), f"cuMemAlloc({nbytes})")
        return pointer.value

    def mem_free(self, pointer: int) -> None:
        self._check(self._lib.cuMemFree_v2(pointer), "cuMemFree")

    def copy_to_device(self, device_pointer: int, array: np.ndarray, stream: int) -> None:
        """Asynchronous host->device copy of a C-contiguous array (keep ``array`` alive until the stream syncs)."""
        if array.nbytes:
            self._check(
                self._lib.cuMemcpyHtoDAsync_v2(device_pointer, array.ctypes.data, array.nbytes, stream),
                "cuMemcpyHtoDAsync",
            )

    def copy_to_host(self, array: np.ndarray, device_pointer: int, stream: int) -> None:
        """Asynchronous device->host copy into a C-contiguous array."""
        if array.nbytes:
            self._check(
                self._lib.cuMemcpyDtoHAsync_v2(array.ctypes.data, device_pointer, array.nbytes, stream),
                "cuMemcpyDtoHAsync",
            )

    def copy_device_to_device(self, destination: int, source: int, nbytes: int, stream: int) -> None:
        """Asynchronous device->device copy on ``stream``."""
        if nbytes:
            self._check(self._lib.cuMemcpyDtoDAsync_v2(destination, source, nbytes, stream), "cuMemcpyDtoDAsync")

    def stream_create(self, flags: int = STREAM_NON_BLOCKING) -> int:
        """A new stream; non-blocking by default, so work on it is not serialised with the legacy default stream
        (stream 0) that other libraries in the process (or a blocking cudaMemcpy) may use."""
        stream = ctypes.c_void_p()
        self._check(self._lib.cuStreamCreate(ctypes.byref(stream), int(flags)), "cuStreamCreate")
        return stream.value or 0

    def stream_synchronize(self, stream: int) -> None:
        self._check(self._lib.cuStreamSynchronize(stream), "cuStreamSynchronize")

    # ---- CUDA graphs (cuda_graphs.DriverCudaGraphs) -----------------------------------------------------------
    CAPTURE_MODES = {"global": 0, "thread_local": 1, "relaxed": 2}  # CUstreamCaptureMode

    def _graph_api(self):
        """The stream-capture and graph entry points, declared on first use (cuGraphInstantiateWithFlags needs a
        CUDA 11.4 driver: an older one still runs everything else)."""
        return self._declared_api("CUDA graph", "11.4", self._declare_graphs)

    @staticmethod
    def _declare_graphs(lib) -> None:
        c_ptr = ctypes.c_void_p
        lib.cuStreamBeginCapture_v2.argtypes = [c_ptr, ctypes.c_int]
        lib.cuStreamEndCapture.argtypes = [c_ptr, ctypes.POINTER(c_ptr)]
        lib.cuGraphInstantiateWithFlags.argtypes = [ctypes.POINTER(c_ptr), c_ptr, ctypes.c_ulonglong]
        lib.cuGraphLaunch.argtypes = [c_ptr, c_ptr]
        lib.cuGraphExecDestroy.argtypes = [c_ptr]
        lib.cuGraphDestroy.argtypes = [c_ptr]

    def _declared_api(self, group: str, needs: str, declare):
        """The driver library, with the entry points of API ``group`` declared by ``declare(lib)`` the first time; a
        driver without one of them raises CudaError naming the CUDA version the group ``needs``."""
        if group not in self._declared_groups:
            try:
                declare(self._lib)
            except AttributeError as exc:
                raise CudaError(f"this CUDA driver has no {group} API ({exc}); it needs CUDA {needs} or newer") from exc
            self._declared_groups.add(group)
        return self._lib

    def begin_capture(self, stream: int, mode: str = "global") -> None:
        """Start capturing ``stream`` into a graph (the legacy default stream cannot be captured)."""
        lib = self._graph_api()
        self._check(lib.cuStreamBeginCapture_v2(stream, self.CAPTURE_MODES[mode]), "cuStreamBeginCapture")

    def end_capture(self, stream: int) -> int:
        """End the capture: the graph (a handle), or CudaError when the capture was invalidated."""
        graph = ctypes.c_void_p()
        self._check(self._graph_api().cuStreamEndCapture(stream, ctypes.byref(graph)), "cuStreamEndCapture")
        return graph.value or 0

    def graph_instantiate(self, graph: int) -> int:
        executable = ctypes.c_void_p()
        lib = self._graph_api()
        self._check(lib.cuGraphInstantiateWithFlags(ctypes.byref(executable), graph, 0), "cuGraphInstantiate")
        return executable.value or 0

    def graph_launch(self, executable: int, stream: int) -> None:
        self._check(self._graph_api().cuGraphLaunch(executable, stream), "cuGraphLaunch")

    def graph_exec_destroy(self, executable: int) -> None:
        self._check(self._graph_api().cuGraphExecDestroy(executable), "cuGraphExecDestroy")

    def graph_destroy(self, graph: int) -> None:
        self._check(self._graph_api().cuGraphDestroy(graph), "cuGraphDestroy")

    def stream_destroy(self, stream: int) -> None:
        self._check(self._lib.cuStreamDestroy_v2(stream), "cuStreamDestroy")

    # ---- timing events (stage_timing.EventClock through CudaMemory) -------------------------------------------
    def _event_api(self):
        """The event entry points, declared on first use (cuEventRecordWithFlags needs a CUDA 11.1 driver)."""
        return self._declared_api("event", "11.1", self._declare_events)

    def _declare_events(self, lib) -> None:
        c_ptr = ctypes.c_void_p
        lib.cuEventCreate.argtypes = [ctypes.POINTER(c_ptr), ctypes.c_uint]
        lib.cuEventRecordWithFlags.argtypes = [c_ptr, c_ptr, ctypes.c_uint]
        # CUDA 13's cuda.h names cuEventElapsedTime_v2 (12.8+); older drivers have only the first
        self._elapsed = getattr(lib, "cuEventElapsedTime_v2", None) or lib.cuEventElapsedTime
        self._elapsed.argtypes = [ctypes.POINTER(ctypes.c_float), c_ptr, c_ptr]
        lib.cuEventSynchronize.argtypes = [c_ptr]
        lib.cuEventDestroy_v2.argtypes = [c_ptr]

    def event_create(self, timing: bool = True) -> int:
        """A new event (``cuEventCreate``); ``timing``: CU_EVENT_DEFAULT (``event_elapsed_ms`` can measure between
        two), else CU_EVENT_DISABLE_TIMING. Free with ``event_destroy``."""
        event = ctypes.c_void_p()
        flags = _EVENT_DEFAULT if timing else _EVENT_DISABLE_TIMING
        self._check(self._event_api().cuEventCreate(ctypes.byref(event), flags), "cuEventCreate")
        return int(event.value or 0)

    def event_record(self, event: int, stream: int, external: bool = False) -> None:
        """Record ``event`` on ``stream`` (``cuEventRecordWithFlags``); ``external`` only while ``stream`` is being
        captured: an event-record node that every launch of the graph records (CU_EVENT_RECORD_EXTERNAL)."""
        flags = _EVENT_RECORD_EXTERNAL if external else _EVENT_RECORD_DEFAULT
        self._check(self._event_api().cuEventRecordWithFlags(event, stream, flags), "cuEventRecordWithFlags")

    def event_elapsed_ms(self, start: int, end: int) -> float:
        """Milliseconds between two completed records of timing events (``cuEventElapsedTime``)."""
        ms = ctypes.c_float()
        self._event_api()
        self._check(self._elapsed(ctypes.byref(ms), start, end), "cuEventElapsedTime")
        return float(ms.value)

    def event_synchronize(self, event: int) -> None:
        self._check(self._event_api().cuEventSynchronize(event), "cuEventSynchronize")

    def event_destroy(self, event: int) -> None:
        self._check(self._event_api().cuEventDestroy_v2(event), "cuEventDestroy")
