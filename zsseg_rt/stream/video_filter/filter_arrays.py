"""Where the video filter's state lives (``temporal.StreamFilter``): the filter's per-frame arithmetic is a sequence
of native ops (``ops.warp``, ``ops.temporal_blend``, ``ops.segment``, ``ops.temporal_hold``,
``ops.temporal_propagate``) that run on the device of their arrays, so the same code runs on both devices:

- ``HostArrays``: NumPy arrays, the ops' CPU kernels (the CPU filter, and the camera loop without a GPU).
- ``DeviceArrays``: buffers of the device pipeline's ``Memory`` (``runtime/device/device_pipeline.py``): the keyframe's
  class scores are made there by the pipeline (``ops.class_state``), the state stays there from frame to frame, and what
  crosses is one upload per frame of what the CPU computed from the optical flow (the flow resized to the state
  and to the frame, its validity, the blend's doubt, the fill of propagated frames; logged as "flow") and one
  download of the labels ("labels"), in ``memory.transfers``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["HostArrays", "DeviceArrays"]

Shape = Tuple[int, ...]


class HostArrays:
    """The filter's arrays on the host (NumPy; the ops' CPU kernels)."""

    device = False
    stream = 0

    def empty(self, key: str, shape: Shape, dtype) -> np.ndarray:
        """A new array (the previous frame's stays with the anchor that holds it)."""
        return np.empty(tuple(shape), dtype)

    def zeros(self, key: str, shape: Shape) -> np.ndarray:
        return np.zeros(tuple(shape), np.float32)

    def view(self, array: np.ndarray, shape: Shape, offset: int = 0) -> np.ndarray:
        """``shape`` elements of ``array`` from element ``offset`` on (no copy)."""
        count = int(np.prod(shape))
        return array.reshape(-1)[offset : offset + count].reshape(shape)

    def inputs(self, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """What the CPU computed for this frame, where the ops read it: here, as it is."""
        return arrays

    def to_host(self, labels: np.ndarray) -> np.ndarray:
        return labels

    def context(self):
        import contextlib

        return contextlib.nullcontext()


class DeviceArrays:
    """The filter's arrays in a device pipeline's ``Memory`` (``CudaMemory``, ``TorchMemory`` on CUDA; any Memory in
    tests). Buffers are kept per key and frame parity (two of each: the anchor's and the new frame's), reallocated
    when a shape changes; the per-frame inputs go up in one packed copy (pinned host memory where the memory has
    it), the labels come down in one."""

    device = True

    def __init__(self, memory: Any):
        self.memory = memory
        self._buffers: Dict[Tuple[str, int], Any] = {}
        self._parity: Dict[str, int] = {}
        self._staging: Dict[str, Tuple[np.ndarray, Any]] = {}  # the packed inputs: host buffer, device buffer

    @property
    def stream(self) -> int:
        return int(self.memory.stream)

    def context(self):
        return self.memory.stream_context()

    def empty(self, key: str, shape: Shape, dtype) -> Any:
        """The buffer of ``key`` for this frame: the one the frame before last used (two per key, alternating)."""
        parity = self._parity[key] = 1 - self._parity.get(key, 1)
        current = self._buffers.get((key, parity))
        from zsseg_rt.runtime.device.buffer_views import has_dtype

        if current is None or _shape(current) != tuple(shape) or not has_dtype(self.memory, current, dtype):
            if current is not None:
                self.memory.synchronize()  # nothing enqueued may still use it
                self.memory.release(current)
            current = self._buffers[(key, parity)] = self.memory.empty(tuple(shape), np.dtype(dtype))
        return current

    def zeros(self, key: str, shape: Shape) -> Any:
        """Zeros (float32) in the buffer of ``key``: one upload ("zeros"), on a keyframe that starts afresh."""
        buffer = self.empty(key, shape, np.float32)
        self.memory.upload("zeros", np.zeros(tuple(shape), np.float32), buffer)
        return buffer

    def view(self, buffer: Any, shape: Shape, offset: int = 0) -> Any:
        return _view(self.memory, buffer, tuple(shape), offset)

    def inputs(self, arrays: Dict[str, np.ndarray]) -> Dict[str, Any]:
        """One upload ("flow") of every array (packed in a host buffer, each at a 16-byte aligned offset), and their
        views on the device."""
        layout: List[Tuple[str, int, np.ndarray]] = []
        offset = 0
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            layout.append((name, offset, array))
            offset += -(-array.nbytes // 16) * 16
        host, device = self._packed(max(offset, 16))
        self.memory.host_access(host, True, "video filter inputs")
        for _, start, array in layout:
            host[start : start + array.nbytes] = array.reshape(-1).view(np.uint8)
        self.memory.upload("flow", host, device)
        return {name: _view(self.memory, device, array.shape, start, array.dtype) for name, start, array in layout}

    def _packed(self, nbytes: int) -> Tuple[np.ndarray, Any]:
        current = self._staging.get("inputs")
        if current is None or current[0].nbytes != nbytes:
            if current is not None:
                self.memory.synchronize()
                self.memory.release(current[0])
                self.memory.release(current[1])
            current = (self.memory.host_buffer((nbytes,), np.uint8), self.memory.empty((nbytes,), np.uint8))
            self._staging["inputs"] = current
        return current

    def to_host(self, labels: Any) -> np.ndarray:
        """The labels on the host: one download, then the stream synchronised (a copy the caller keeps)."""
        shape = _shape(labels)
        current = self._staging.get("labels")
        if current is None or current[0].shape != shape:
            if current is not None:
                self.memory.release(current[0])
            current = (self.memory.host_buffer(shape, np.int32), None)
            self._staging["labels"] = current
        self.memory.download("labels", labels, current[0])
        self.memory.synchronize()
        return self.memory.read_staging(current[0], None)[0]

    def close(self) -> None:
        """Free every buffer (after the stream has run what uses them)."""
        self.memory.synchronize()
        for buffer in self._buffers.values():
            self.memory.release(buffer)
        for host, device in self._staging.values():
            self.memory.release(host)
            if device is not None:
                self.memory.release(device)
        self._buffers.clear()
        self._staging.clear()


def _shape(buffer: Any) -> Shape:
    return tuple(int(d) for d in buffer.shape)


def _view(memory: Any, buffer: Any, shape: Shape, offset: int = 0, dtype: Optional[Any] = None) -> Any:
    from zsseg_rt.runtime.device.buffer_views import buffer_view

    return buffer_view(memory, buffer, shape, offset, dtype)
