"""Where the device pipeline's buffers live (``device_pipeline.py``): a ``Memory`` allocates, copies (each copy
logged in its ``TransferLog``, so tests can prove the copies per frame), synchronises and gives the stage clock;
``HostMemory`` (NumPy: CPU runs and tests) and ``TorchMemory`` (torch tensors on any torch device) here,
``CudaMemory`` (raw CUDA allocations, TensorRT) in ``cuda_memory.py``. Moved out of ``device_pipeline.py``, which
re-exports every name.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .stage_timing import EventClock, HostClock, StageClock, SyncClock

__all__ = ["Buffer", "HostMemory", "Memory", "TorchMemory", "TransferLog"]

Buffer = Any  # an array of the Memory's kind (np.ndarray, torch.Tensor, CudaBuffer)


@dataclasses.dataclass
class TransferLog:
    """Host<->device copies: one entry ``(direction, name, nbytes)`` per copy ("up" or "down")."""

    entries: List[Tuple[str, str, int]] = dataclasses.field(default_factory=list)
    paused: bool = False  # a CUDA-graph replay logs the copies its capture recorded, not Python's re-run of them

    def record(self, direction: str, name: str, nbytes: int) -> None:
        if not self.paused:
            self.entries.append((direction, name, int(nbytes)))

    def count(self, direction: str) -> int:
        return sum(1 for d, _, _ in self.entries if d == direction)

    def nbytes(self, direction: str) -> int:
        return sum(n for d, _, n in self.entries if d == direction)

    def clear(self) -> None:
        self.entries.clear()


class Memory:
    """Where a pipeline's buffers live. Subclasses allocate, copy and synchronise; copies are logged."""

    kind = "abstract"
    stream = 0  # the stream every op of the pipeline is enqueued on (CUDA handle as int; 0 elsewhere)
    page_locked = False  # host_buffer gives page-locked memory (worth reusing, instead of one per frame)
    capturing = False  # True while a CUDA graph is being captured on ``stream`` (set by ``FrameGraphs``)

    def __init__(self) -> None:
        self.transfers = TransferLog()

    def empty(self, shape: Sequence[int], dtype) -> Buffer:
        raise NotImplementedError

    def host_buffer(self, shape: Sequence[int], dtype) -> np.ndarray:
        """A host array that copies are fastest from/into (pinned memory on CUDA)."""
        return np.empty(tuple(shape), dtype=dtype)

    def _copy_up(self, host: np.ndarray, buffer: Buffer) -> None:
        raise NotImplementedError

    def _copy_down(self, buffer: Buffer, host: np.ndarray) -> None:
        raise NotImplementedError

    def device_view(self, host: np.ndarray) -> Optional[Buffer]:
        """The device address of a host buffer from ``host_buffer`` when the device reads host memory directly
        (zero-copy on integrated GPUs), else None."""
        return None

    def host_access(self, host: np.ndarray, write: bool, what: str) -> None:
        """The host is about to read (or write, ``write=True``) ``host``, a buffer from ``host_buffer`` that device
        work copies into or out of (or reads in place). Nothing to do here; a memory whose device work can be
        checked (``CudaMemory`` on a driver with ``check_host_access``: the emulated CUDA runtime's) reports a host
        access not ordered after that work, e.g. a staging buffer read without a synchronize."""

    def read_staging(self, labels: np.ndarray, scores: Optional[np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Copies of a frame's staging buffers ``(labels, scores or None)``, host buffers the next frame reuses;
        read once the stream was synchronised (a read before is reported where ``host_access`` can check it)."""
        self.host_access(labels, False, "labels staging buffer")
        if scores is not None:
            self.host_access(scores, False, "scores staging buffer")
        return labels.copy(), (scores.copy() if scores is not None else None)

    def upload(self, name: str, host: np.ndarray, buffer: Buffer) -> None:
        """Make ``buffer`` hold ``host``: a copy, or nothing when ``buffer`` is ``host``'s zero-copy view
        (logged as "mapped")."""
        if not self._zero_copy(name, host, buffer):
            self.transfers.record("up", name, host.nbytes)
            self._copy_up(host, buffer)

    def download(self, name: str, buffer: Buffer, host: np.ndarray) -> None:
        if not self._zero_copy(name, host, buffer):
            self.transfers.record("down", name, host.nbytes)
            self._copy_down(buffer, host)

    def _zero_copy(self, name: str, host: np.ndarray, buffer: Buffer) -> bool:
        """Whether ``buffer`` is ``host``'s zero-copy view (nothing to copy either way; logged as "mapped")."""
        view = self.device_view(host)
        if view is not None and _same_address(view, buffer):
            self.transfers.record("mapped", name, host.nbytes)
            return True
        return False

    def copy_into(self, destination: Buffer, offset: int, source: Buffer) -> None:
        """``destination[offset : offset + len(source)] = source`` on the device, enqueued on ``stream`` (a
        device-side copy, not a host transfer; both C-contiguous with the same trailing shape)."""
        raise NotImplementedError

    def release(self, buffer) -> None:
        """Free a buffer from ``empty`` or ``host_buffer`` now, instead of at ``close`` (call it only once nothing
        enqueued can still use the buffer, e.g. after ``synchronize``). A no-op for anything else (a view, a buffer
        of another memory) and where memory is garbage-collected."""

    def leading(self, buffer: Buffer, n: int) -> Buffer:
        """The first ``n`` entries along axis 0, without a copy."""
        return buffer[:n]

    def rows(self, buffer: Buffer, start: int, n: int) -> Buffer:
        """Entries ``start : start + n`` along axis 0, without a copy."""
        return buffer[int(start) : int(start) + int(n)]

    def synchronize(self) -> None:
        """Wait for everything enqueued on ``stream``."""

    def activate(self) -> None:
        """Make this memory's device context current on the calling thread (CUDA driver contexts are per thread)."""

    def stream_context(self):
        """A context making ``stream`` the current stream of the library that runs the graphs (torch), so that its
        kernels and the native ops land on the same stream; a no-op where there is only one."""
        return contextlib.nullcontext()

    def stage_clock(self) -> StageClock:
        """A clock for the pipeline's ``stage_hook`` (``stage_timing.py``): here the stream synchronised around each
        stage (a memory with timing events gives an ``EventClock``, whose marks a CUDA graph captures)."""
        return SyncClock(self)


def _same_address(a, b) -> bool:
    return getattr(a, "pointer", None) is not None and a.pointer == getattr(b, "pointer", None)


class HostMemory(Memory):
    """Buffers are NumPy arrays: the 'device' is the host (CPU execution, and recording tests)."""

    kind = "host"

    def empty(self, shape, dtype):
        return np.empty(tuple(shape), dtype=dtype)

    def _copy_up(self, host, buffer):
        np.copyto(buffer, host)

    def _copy_down(self, buffer, host):
        np.copyto(host, buffer)

    def copy_into(self, destination, offset, source):
        np.copyto(destination[offset : offset + len(source)], source)

    def stage_clock(self) -> StageClock:
        return HostClock()  # the stages run on the calling thread


class TorchMemory(Memory):
    """Buffers are torch tensors on ``device`` (CUDA or CPU); the native ops take them through DLPack and are
    enqueued on torch's current stream at the time of the call (a caller's ``with torch.cuda.stream(s):`` puts them
    on ``s``, with torch's own kernels), or on a stream of this memory's own (``own_stream``: what CUDA graphs are
    captured on; the legacy default stream cannot be captured). Host buffers are pinned when the device is CUDA."""

    kind = "torch"

    def __init__(self, device, own_stream: bool = False) -> None:
        super().__init__()
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.page_locked = self.cuda
        self.torch_stream = torch.cuda.Stream(self.device) if self.cuda and own_stream else None

    @property
    def stream(self) -> int:  # type: ignore[override]  # Memory.stream is a plain attribute elsewhere
        """The stream of the next op: this memory's own, else torch's current stream of the device now (never the
        one current when the memory was made)."""
        if self.torch_stream is not None:
            return self.torch_stream.cuda_stream
        return self.torch.cuda.current_stream(self.device).cuda_stream if self.cuda else 0

    def empty(self, shape, dtype):
        return self.torch.empty(tuple(shape), dtype=_torch_dtype(self.torch, dtype), device=self.device)

    def host_buffer(self, shape, dtype):
        tensor = self.torch.empty(tuple(shape), dtype=_torch_dtype(self.torch, dtype), pin_memory=self.cuda)
        return tensor.numpy()

    def _copy_up(self, host, buffer):
        buffer.copy_(self.torch.from_numpy(host), non_blocking=self.cuda)

    def _copy_down(self, buffer, host):
        source = buffer if isinstance(buffer, self.torch.Tensor) else self.torch.from_dlpack(buffer)
        self.torch.from_numpy(host).copy_(source, non_blocking=self.cuda)

    def copy_into(self, destination, offset, source):
        source = source if isinstance(source, self.torch.Tensor) else self.torch.from_dlpack(source)
        destination[offset : offset + source.shape[0]].copy_(source, non_blocking=self.cuda)

    def synchronize(self):
        if self.cuda:
            (self.torch_stream or self.torch.cuda.current_stream(self.device)).synchronize()

    def stream_context(self):
        if self.torch_stream is None:
            return contextlib.nullcontext()
        return self.torch.cuda.stream(self.torch_stream)

    # ---- stage timing (stage_timing.EventClock): torch CUDA events on the pipeline's stream ------------------
    def stage_clock(self) -> StageClock:
        return EventClock(self) if self.cuda else HostClock()  # torch on the CPU runs each op on this thread

    def _current_stream(self):
        return self.torch_stream or self.torch.cuda.current_stream(self.device)

    def timing_event(self):
        """A timing event that becomes an event-record node when recorded in a capture (``external=True``). It is
        recorded once here, outside any capture, so that torch creates its CUDA event now and not inside one."""
        event = self.torch.cuda.Event(enable_timing=True, external=True)
        if not self.torch.cuda.is_current_stream_capturing():
            event.record(self._current_stream())
        return event

    def record_timing_event(self, event) -> None:
        event.record(self._current_stream())

    def elapsed_ms(self, start, end) -> float:
        return float(start.elapsed_time(end))

    def release_timing_event(self, event) -> None:
        """Nothing to do: torch destroys the CUDA event with the object."""


def _torch_dtype(torch, dtype):
    return {
        np.dtype(np.float32): torch.float32,
        np.dtype(np.float16): torch.float16,
        np.dtype(np.int32): torch.int32,
        np.dtype(np.uint8): torch.uint8,
    }[np.dtype(dtype)]
