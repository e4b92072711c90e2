"""What one frame of the device pipeline costs the host, in CUDA runtime API calls, counted by the emulated runtime
(csrc/emu/cuda_emu_api_calls.h): after warm-up a frame makes no allocation, creates no event and synchronises once
(for its labels); replayed as a CUDA graph it is one launch and that synchronisation. A GPU's profiler would count
the same calls; here a test fails on one extra ``cudaEventCreate`` per frame without a GPU.

The pipeline is the device pipeline over ``CudaMemory`` (the TensorRT path's memory) with a stand-in model made of
CUDA ops (``CudaOpsModel``, test_device_graphs_cuda.py), so every call counted is the library's own: the upload, the
pre-processing, the model's ops, the post-processing (a prepared launch: ``ops.SegmentWindowsPlan``), the downloads
into the staging buffers, the synchronisation and, with graphs, the graph's launch. torch's share of a torch-backend
frame is counted by its profiler on a lent GPU (checks/gpu_probe.py).

The controls show the test can fail on what the library did before (b991c98): a completion event created per launch
(``_C._emulation.set_event_pool(False)`` restores that), and the post-processing as a generic op call per frame
(parsed, its bias checked by a kernel of its own on the device).
"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import RuntimeDriver, cuda_emulation, requires_emulation
from test_device_graphs_cuda import CudaOpsModel

from zsseg_rt import ops
from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.device.cuda_graphs import DriverCudaGraphs, FrameGraphs
from zsseg_rt.runtime.device.cuda_memory import CudaMemory
from zsseg_rt.runtime.device.device_pipeline import DevicePipeline

pytestmark = [pytest.mark.cuda, requires_emulation]

ALLOCATIONS = ("cudaMalloc", "cudaMallocAsync", "cudaMallocFromPoolAsync", "cudaMallocManaged", "cudaMallocHost",
               "cudaHostAlloc", "cudaFree", "cudaFreeAsync", "cudaFreeHost")  # fmt: skip
EVENT_LIFETIME = ("cudaEventCreate", "cudaEventCreateWithFlags", "cudaEventDestroy")
SYNCHRONISATIONS = ("cudaStreamSynchronize", "cudaEventSynchronize", "cudaDeviceSynchronize", "cudaMemcpy")
# The kernels of one eager frame: the pre-processing, the stand-in model (its image encoder resizes, its head resizes
# with a class bias, which the op checks on the device with a kernel of its own) and the post-processing: one
# prepared segment_windows launch, whose bias was checked on the host (no check kernel of its own).
EAGER_KERNELS = {"preprocess_kernel<float>": 1, "upsample_columns_kernel": 2, "bias_check_kernel": 1,
                 "segment_windows_tiled_kernel": 1}  # fmt: skip


@pytest.fixture(scope="module")
def meta(tiny_bundle):
    return Engine(tiny_bundle, backend="onnxruntime").meta


def _pipeline(meta, graphs: bool) -> DevicePipeline:
    memory = CudaMemory(RuntimeDriver(), zero_copy=False)
    frame_graphs = FrameGraphs(DriverCudaGraphs(memory)) if graphs else None
    pipe = DevicePipeline(meta, CudaOpsModel(memory, meta.grid), max_windows=2, graphs=frame_graphs)
    rng = np.random.default_rng(0)
    pipe.set_vocabulary(rng.normal(0, 0.3, (3, 1)).astype(np.float32), np.zeros(3, np.float32))
    return pipe


def _close(pipe: DevicePipeline) -> None:
    pipe.memory.synchronize()
    if pipe.graphs is not None:
        pipe.graphs.clear(pipe)
    pipe.memory.close()


def frame_calls(pipe: DevicePipeline, frame: np.ndarray, warmup: int = 3) -> dict:
    """The API calls of one frame after ``warmup`` frames of the same kind (the first runs eagerly and, with graphs,
    is captured and its replay checked)."""
    emu = cuda_emulation()
    for _ in range(warmup):
        pipe(frame)
    emu.settle()
    emu.reset_api_calls()
    pipe(frame)
    return emu.api_calls()


def _count(calls: dict, names) -> int:
    return sum(n for name, n in calls.items() if name in names)


def _kernels(calls: dict, prefix: str = "kernel ") -> dict:
    return {name[len("kernel ") :]: n for name, n in calls.items() if name.startswith(prefix)}


def frame_cost_problems(calls: dict, graphed: bool) -> list:
    """What a warm frame's API calls break of the rules (see the module docstring); [] when it keeps them."""
    problems = []
    if _count(calls, ALLOCATIONS):
        problems.append(f"allocations or frees: { {k: v for k, v in calls.items() if k in ALLOCATIONS} }")
    if _count(calls, EVENT_LIFETIME):
        problems.append(f"events created or destroyed: { {k: v for k, v in calls.items() if k in EVENT_LIFETIME} }")
    if _count(calls, SYNCHRONISATIONS) != 1:
        problems.append(f"{_count(calls, SYNCHRONISATIONS)} synchronisations, not 1: "
                        f"{ {k: v for k, v in calls.items() if k in SYNCHRONISATIONS} }")  # fmt: skip
    if graphed:
        if calls.get("cudaGraphLaunch", 0) != 1 or calls.get("cudaLaunchKernel", 0) != 0:
            problems.append(f"{calls.get('cudaGraphLaunch', 0)} graph launches and "
                            f"{calls.get('cudaLaunchKernel', 0)} kernel launches, not 1 and 0")  # fmt: skip
    elif _kernels(calls) != EAGER_KERNELS:
        problems.append(f"kernels {_kernels(calls)}, not the frame's {EAGER_KERNELS}")
    return problems


@pytest.mark.parametrize("graphed", [False, True], ids=["eager", "graph"])
def test_a_warm_frame_allocates_nothing_creates_no_event_and_synchronises_once(meta, graphed):
    pipe = _pipeline(meta, graphed)
    frame = np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    try:
        calls = frame_calls(pipe, frame)
    finally:
        _close(pipe)
    print(calls)
    assert frame_cost_problems(calls, graphed) == [], calls
    if graphed:
        assert pipe.graphs.stats["replayed"] >= 2 and pipe.graphs.stats["check_failed"] == 0
    else:  # the frame's own work was counted: its kernels ran (a control on the counter itself)
        assert calls.get("cudaLaunchKernel", 0) >= 4 and calls.get("cudaMemcpyAsync", 0) >= 2, calls


def test_control_a_new_event_per_launch_fails_the_rule(meta):
    """b991c98 created a completion event per op launch (and per device-side bias check): the rule sees it."""
    emu = cuda_emulation()
    pipe = _pipeline(meta, graphs=False)
    frame = np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    emu.set_event_pool(False)
    try:
        calls = frame_calls(pipe, frame)
    finally:
        emu.set_event_pool(True)
        _close(pipe)
    problems = frame_cost_problems(calls, graphed=False)
    assert any(p.startswith("events created or destroyed") for p in problems), (problems, calls)


def test_control_the_generic_post_processing_call_fails_the_rule(meta, monkeypatch):
    """b991c98's post-processing: ``ops.segment_windows`` per frame, whose CUDA class_bias is checked by a kernel of
    its own on the device every frame; the rule sees the extra launch."""
    pipe = _pipeline(meta, graphs=False)
    frame = np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8)

    def generic(merged, windows, head, scaled, out_hw, bias, results, stream):
        return ops.segment_windows(merged, [tuple(w) for w in windows], head, scaled, out_hw, class_bias=bias,
                                   sigmoid=True, stream=stream, out=results)  # fmt: skip

    pipe.memory.synchronize()
    try:
        with monkeypatch.context() as patched:
            from zsseg_rt.runtime.device import postprocess_plans

            patched.setattr(postprocess_plans.PostprocessPlans, "run", lambda self, *a: generic(*a))
            calls = frame_calls(pipe, frame)
    finally:
        _close(pipe)
    problems = frame_cost_problems(calls, graphed=False)
    assert any(p.startswith("kernels ") and "'bias_check_kernel': 2" in p for p in problems), (problems, calls)
