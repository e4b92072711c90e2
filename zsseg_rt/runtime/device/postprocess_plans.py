"""The device pipeline's post-processing as prepared launches (``ops.SegmentWindowsPlan``): validated once per frame
kind and vocabulary, then one call per frame into the kernel's launcher.

The same ``segment_windows`` call runs every frame on the same buffers (the merged window logits, the class bias, the
result buffers; only their contents change), so parsing its thirteen arguments, exporting four arrays through DLPack
(torch: an Event per argument on the pipeline's own stream), checking the bias on the device and recording a
completion event every frame was host time for nothing: 147-168 us per call on an H200 (the GPU review of b991c98,
section 3.2). The bias was already checked on the host when the vocabulary was set (``set_vocabulary``), so the plans
are made with ``bias_checked=True``; every buffer is enqueued on the pipeline's one stream, which orders them.

A plan is looked up by what it launches on: the buffers' addresses and shapes, the windows and the sizes, and its
kernel. It keeps references to its buffers (torch tensors stay allocated while it lives), so at most ``capacity``
plans are kept (least recently used dropped first), and a new vocabulary (another bias buffer) drops them all.

Every plan names its kernel (``SegmentWindowsPlan(kernel=...)``): the one ``kernels`` (``postprocess_choice.
PostprocessKernels``, the pipeline's ``postprocess_kernel``) gives for the geometry, pinned or chosen by timing the
candidates on the first frame of that geometry; without ``kernels``, the reference kernel (``tiled``). No plan reads
the process-wide testing setting.
"""

from __future__ import annotations

import collections
from typing import Any, Optional, Sequence, Tuple

from zsseg_rt import ops as native_ops

from .postprocess_choice import CANDIDATES

REFERENCE = CANDIDATES[0]  # the kernel of a pipeline without a choice (the library's default before the choice)


def address(buffer: Any) -> int:
    """The data address of a pipeline buffer: a torch tensor, a NumPy array, a ``CudaBuffer`` or any
    ``__cuda_array_interface__`` producer."""
    pointer = getattr(buffer, "pointer", None)  # CudaBuffer
    if pointer is not None:
        return int(pointer)
    data_ptr = getattr(buffer, "data_ptr", None)  # torch.Tensor
    if data_ptr is not None:
        return int(data_ptr())
    interface = getattr(buffer, "__array_interface__", None)  # NumPy
    if interface is not None:
        return int(interface["data"][0])
    return int(buffer.__cuda_array_interface__["data"][0])


class PostprocessPlans:
    """The prepared ``segment_windows`` launches of one pipeline (see the module docstring)."""

    def __init__(self, capacity: int = 8, ops: Any = native_ops, kernels: Any = None, memory: Any = None):
        """``ops``: where ``SegmentWindowsPlan`` comes from (``zsseg_rt.ops``; the device pipeline passes the module
        it calls, which a test's host stand-in replaces). ``kernels``: the pipeline's ``PostprocessKernels`` (None:
        the reference kernel), which times candidates on ``memory`` (the pipeline's) when it chooses."""
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.ops = ops
        self._plans: "collections.OrderedDict[tuple, Any]" = collections.OrderedDict()
        self._bias_address: Optional[int] = None
        self.made = 0  # plans made so far (each one validation; tests count them)
        self.kernels = kernels
        self.memory = memory

    def __len__(self) -> int:
        return len(self._plans)

    def clear(self) -> None:
        self._plans.clear()

    def run(
        self,
        merged: Any,  # [windows, C, h, w] float32 logits on the pipeline's device
        windows: Sequence[Sequence[int]],
        head_size: Tuple[int, int],
        scaled_hw: Tuple[int, int],
        out_hw: Tuple[int, int],
        bias: Any,  # [C] float32, checked on the host (DevicePipeline.set_vocabulary)
        results: Tuple[Any, Any],  # (labels [H, W] int32, scores [H, W] float32)
        stream: int,
    ) -> Tuple[Any, Any]:
        """Enqueue the fused post-processing of ``merged`` into ``results`` on ``stream``: the plan of these
        buffers, made on first use. Returns ``results``."""
        bias_address = address(bias)
        if bias_address != self._bias_address:  # a new vocabulary: the plans of the old one read a buffer that went
            self._plans.clear()
            self._bias_address = bias_address
        windows = tuple(tuple(int(v) for v in w) for w in windows)
        geometry = (tuple(int(d) for d in merged.shape), windows, tuple(head_size), tuple(scaled_hw), tuple(out_hw))

        def make_plan(kernel: str, out: Tuple[Any, Any]) -> Any:
            return self.ops.SegmentWindowsPlan(
                merged, windows, head_size, scaled_hw, out_hw, out=out, class_bias=bias, sigmoid=True, stream=stream,
                bias_checked=True, kernel=kernel,
            )  # fmt: skip

        kernel = REFERENCE if self.kernels is None else self.kernels.kernel_for(geometry, self.memory, make_plan)
        key = (address(merged),) + geometry + (address(results[0]), address(results[1]), kernel)
        plan = self._plans.get(key)
        if plan is None:
            plan = make_plan(kernel, results)
            self._plans[key] = plan
            self.made += 1
            while len(self._plans) > self.capacity:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        plan.launch(stream)
        return results
