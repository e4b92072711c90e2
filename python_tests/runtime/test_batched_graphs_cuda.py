"""Batched CUDA graphs (``runtime/device/frame_batches.py``, issue 86 item 3): several frames of one kind in one
call go through the image encoder together inside a graph captured per batch size (1, 2, 4, 8). On a real GPU and,
in CI, on the emulated CUDA runtime, whose stream capture records a graph that runs ONLY when launched: a slot whose
frame was not copied in before a replay, a slot reading another slot's logits rows, or results read before the
replay finished show as wrong labels here. The bundle's graphs are the capturable stand-in of
test_device_graphs_cuda.py (``CudaOpsModel``: CUDA ops only)."""

import numpy as np
import pytest
from cuda_support import CudaOpsModel, RuntimeDriver, requires_cuda

from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.device import frame_batches
from zsseg_rt.runtime.device.cuda_graphs import DriverCudaGraphs, FrameGraphs
from zsseg_rt.runtime.device.cuda_memory import CudaMemory
from zsseg_rt.runtime.device.device_pipeline import DevicePipeline

pytestmark = [pytest.mark.cuda, requires_cuda]


@pytest.fixture(scope="module")
def meta(tiny_bundle):
    return Engine(tiny_bundle, backend="onnxruntime").meta


@pytest.fixture
def pipes(meta):
    """(graphed, eager) pipelines over the stand-in model, the same vocabulary uploaded to both."""
    made = []
    rng = np.random.default_rng(0)
    text, bias = rng.normal(0, 0.3, (3, 1)).astype(np.float32), rng.uniform(-0.05, 0.05, 3).astype(np.float32)
    for graphs in (True, False):
        memory = CudaMemory(RuntimeDriver())
        frame_graphs = FrameGraphs(DriverCudaGraphs(memory)) if graphs else None
        pipe = DevicePipeline(meta, CudaOpsModel(memory, meta.grid), max_windows=2, graphs=frame_graphs)
        pipe.set_vocabulary(text, bias)
        made.append(pipe)
    yield made
    for pipe in made:
        pipe.memory.synchronize()
        if pipe.graphs is not None:
            pipe.graphs.clear(pipe)
        pipe.memory.close()


def _frames(seed, shape, count):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


def _equal_to_single_calls(batched, eager, frames):
    for index, ((labels, scores), frame) in enumerate(zip(batched, frames)):
        want_labels, want_scores = eager(frame)
        # the stand-in's windows do not depend on their batch: the same kernels on the same data, bit for bit
        np.testing.assert_array_equal(labels, want_labels, err_msg=f"frame {index}")
        np.testing.assert_array_equal(scores, want_scores, err_msg=f"frame {index}")


def test_a_batched_call_equals_single_calls_captured_once_then_replayed(pipes):
    graphed, eager = pipes
    small, large = (60, 90, 3), (70, 150, 3)  # the large one's windows take two of a single frame's encoder calls
    assert len(graphed.frame_plan(np.zeros(large, np.uint8))[1]) > graphed.max_windows
    for call in range(2):  # the first call runs each batch eagerly and captures it; the second replays
        frames = _frames(call, small, 5) + _frames(10 + call, large, 2) + _frames(20 + call, (30, 30, 3), 1)
        order = [0, 5, 1, 2, 6, 3, 7, 4]  # the kinds interleaved: results come back in the call's order
        listed = [frames[i] for i in order]
        out = graphed.segment_many(listed, ["bgr"] * len(listed))
        _equal_to_single_calls(out, eager, listed)
    stats = graphed.graphs.stats
    # 5 small frames: the graph of 8 (3 slots padded); 2 large: the graph of 2; the one 30x30 frame: a single graph
    assert stats["batch_captured"] == 2 and stats["batch_checked"] == 2 and stats["batch_replayed"] == 2
    assert stats["batch_padded"] == 3 and stats["captured"] == 1 and stats["replayed"] == 1
    assert stats["check_failed"] == stats["capture_failed"] == 0
    report = graphed.graphs.batches.report()
    assert sorted((r["size"], r["frame"][0]) for r in report) == [(2, 70), (8, 60)]
    assert all(r["buffer_bytes"] > 0 and r["replays"] == 2 for r in report)  # its first-replay check, then a call


def test_the_encoder_runs_once_over_all_the_frames_of_a_batch(pipes):
    graphed, eager = pipes
    sizes = []
    run = graphed.executor.run
    graphed.executor.run = lambda role, inputs: (sizes.append(inputs["image"].shape[0]) if role == "image" else 0,
                                                 run(role, inputs))[1]  # fmt: skip
    frames = _frames(3, (60, 90, 3), 4)
    windows = 4 * len(graphed.frame_plan(frames[0])[1])
    assert windows > graphed.max_windows  # more than a single frame's call takes
    out = graphed.segment_many(frames, ["rgb"] * 4)
    _equal_to_single_calls(out, lambda f: eager(f, "rgb"), frames)
    assert sizes == [windows] * 2  # one encoder call over the 4 frames' windows: the batch's eager run, its capture
    graphed.batch_windows = 2  # at most 2 windows a call: the batch's logits merged from several calls
    graphed.graphs.clear(graphed)
    sizes.clear()
    out = graphed.segment_many(frames, ["rgb"] * 4)
    _equal_to_single_calls(out, lambda f: eager(f, "rgb"), frames)
    assert sizes == [2] * (windows // 2) * 2


def test_a_first_replay_that_differs_turns_graphs_off_and_returns_the_eager_results(pipes, monkeypatch):
    """Control of the first-replay check: a replay that launches nothing leaves the poisoned staging buffers."""
    graphed, eager = pipes
    monkeypatch.setattr(graphed.graphs.backend, "replay", lambda handle: None)
    frames = _frames(5, (60, 90, 3), 3)
    with pytest.warns(RuntimeWarning, match="first replay of a CUDA graph of 4 frames"):
        out = graphed.segment_many(frames, ["bgr"] * 3)
    _equal_to_single_calls(out, eager, frames)
    assert graphed.graphs.enabled is False and graphed.graphs.stats["check_failed"] == 1
    assert len(graphed.graphs.batches) == 0
    _equal_to_single_calls(graphed.segment_many(frames, ["bgr"] * 3), eager, frames)  # eager from now on


def test_batched_graphs_are_bounded_and_dropped_with_the_vocabulary(pipes):
    graphed, eager = pipes
    for index, width in enumerate((40, 50, 60, 70, 80)):
        frames = _frames(index, (40, width, 3), 2)
        _equal_to_single_calls(graphed.segment_many(frames, ["bgr"] * 2), eager, frames)
    batches = graphed.graphs.batches
    assert len(batches) == batches.max_graphs == 4 and graphed.graphs.stats["dropped"] == 1
    graphed.set_vocabulary(*[np.ascontiguousarray(a) for a in (np.ones((3, 1), np.float32), np.zeros(3, np.float32))])
    assert len(batches) == 0 and graphed.graphs.stats["dropped"] == 5


def test_batch_sizes():
    assert [frame_batches.batch_size_for(n) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    with pytest.raises(ValueError, match="a batch holds 1 to 8 frames, got 9"):
        frame_batches.batch_size_for(9)
