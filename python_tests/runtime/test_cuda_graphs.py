"""CUDA-graph bookkeeping of the device pipeline (runtime/device/cuda_graphs.py), on the CPU with a stand-in for
``torch.cuda.CUDAGraph``: each kind of frame runs eagerly once and is captured, then replayed; a new vocabulary drops
every graph before its buffers go; graphs own their frame kind's buffers; a failing capture goes eager, loudly.
The real capture runs where torch has CUDA (skipped here): ``test_real_cuda_graphs_match_the_eager_pipeline`` ran
on the H200 (2026-11-26, ops stage: tiny bundle, fp32, 2 replays checked); the timed graph's test (stage events
inside the graph) has not run on a GPU yet."""

import re

import numpy as np
import pytest

from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.device.cuda_graphs import FrameGraphs, TorchCudaGraphs
from zsseg_rt.runtime.device.device_pipeline import DevicePipeline, HostMemory, OnnxRuntimeExecutor

CLASSES = ["person", "bottle", "chair", "sofa", "tv", "cat"]


class StandInGraphs:
    """``TorchCudaGraphs`` without a GPU. Capturing runs the body once (a capture runs the Python of the frame: here
    it also does the work); a replay runs the recorded body again, after checking what a real graph would make
    wrong: a released graph, or vocabulary/input buffers that are no longer the ones captured (a real graph keeps
    reading the captured addresses, whatever they hold by then)."""

    def __init__(self, fail_capture=None):
        self.pipe, self.fail_capture, self.events = None, fail_capture, []

    def capture(self, body):
        if self.fail_capture:
            raise self.fail_capture
        pipe = self.pipe
        handle = {"body": body, "text": pipe._text, "bias": pipe._bias, "image": pipe._image, "released": False}
        handle["id"] = sum(1 for e in self.events if e[0] == "capture")
        body()
        self.events.append(("capture", handle["id"]))
        return handle

    def replay(self, handle):
        assert not handle["released"], "replayed a released graph"
        pipe = self.pipe
        stale = [k for k in ("text", "bias", "image") if getattr(pipe, "_" + k) is not handle[k]]
        assert not stale, f"replayed a graph whose captured {stale} buffers were replaced"
        handle["body"]()
        self.events.append(("replay", handle["id"]))

    def release(self, handle):
        handle["released"] = True
        self.events.append(("release", handle["id"]))


class ReleasingMemory(HostMemory):
    """Host memory that records what is released (by identity)."""

    def __init__(self):
        super().__init__()
        self.released = []

    def release(self, buffer):
        self.released.append(id(buffer))


def _frames():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    wide = np.kron(base, np.ones((40, 40, 1), np.uint8))  # 480x640: 2 windows after the test resize
    gray = rng.integers(0, 256, (50, 50), dtype=np.uint8)  # one window
    return wide, gray


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime")


def _pipes(engine, max_windows=4, max_graphs=8, stand_in=None):
    """(a pipeline with stand-in graphs, the same pipeline without graphs), both with the engine's vocabulary."""
    stand_in = stand_in or StandInGraphs()
    graphs = FrameGraphs(stand_in, max_graphs=max_graphs)
    pipe = DevicePipeline(engine.meta, OnnxRuntimeExecutor(engine.backend, ReleasingMemory()), max_windows, graphs)
    stand_in.pipe = pipe
    eager = DevicePipeline(engine.meta, OnnxRuntimeExecutor(engine.backend), max_windows)
    for p in (pipe, eager):
        p.set_vocabulary(engine._vocab[1], engine._vocab[2])
    return pipe, eager, stand_in


def _same(pipe, eager, frame, **kwargs):
    pipe.memory.transfers.clear()
    labels, scores = pipe(frame, **kwargs)
    log = list(pipe.memory.transfers.entries)
    want_labels, want_scores = eager(frame, **kwargs)
    np.testing.assert_array_equal(labels, want_labels)
    if want_scores is None:
        assert scores is None
    else:
        np.testing.assert_array_equal(scores, want_scores)
    return log, labels


@pytest.mark.parametrize("max_windows", [4, 1])  # 1: the 640x480 frame runs in two chunks (merged logits buffer)
def test_each_kind_of_frame_is_captured_once_then_replayed(engine, max_windows):
    pipe, eager, stand_in = _pipes(engine, max_windows=max_windows)
    wide, gray = _frames()
    first, _ = _same(pipe, eager, wide)
    assert pipe.graphs.stats == {
        "eager": 1, "captured": 1, "replayed": 0, "dropped": 0, "capture_failed": 0, "checked": 1, "check_failed": 0,
        "batch_captured": 0, "batch_replayed": 0, "batch_checked": 0, "batch_padded": 0,  # frame_batches.py's
    }  # fmt: skip
    _same(pipe, eager, gray)
    replay_log, labels = _same(pipe, eager, wide)
    _same(pipe, eager, gray)
    changed = wide.copy()
    changed[:240] = 255 - changed[:240]  # a new frame of the same kind: the replay reads the new pixels
    _, new_labels = _same(pipe, eager, changed)
    assert not np.array_equal(new_labels, labels)
    assert pipe.graphs.stats["captured"] == 2 and pipe.graphs.stats["replayed"] == 3
    assert pipe.graphs.stats["checked"] == 2  # each graph's first replay, on its capture frame
    kinds = [e[0] for e in stand_in.events]
    assert kinds == ["capture", "replay", "capture", "replay", "replay", "replay", "replay"]
    assert [(d, n) for d, n, _ in replay_log] == [("up", "frame"), ("down", "labels"), ("down", "scores")]
    # a replay logs the copies it makes: the capture frame's eager run, the check's overwrites and its replay
    check = [("up", "graph_check_frame"), ("up", "graph_check_labels"), ("up", "graph_check_scores")]
    assert [(d, n) for d, n, _ in first] == [(d, n) for d, n, _ in replay_log] + check + [
        (d, n) for d, n, _ in replay_log
    ]


def test_returned_arrays_are_the_callers_own(engine):
    pipe, eager, _ = _pipes(engine)
    wide, _ = _frames()
    pipe(wide)
    labels, scores = pipe(wide)  # replayed
    labels[:] = -1
    again, _ = pipe(wide)
    assert (again >= 0).all()


def test_scores_and_colour_order_are_kinds_of_their_own(engine):
    pipe, eager, _ = _pipes(engine)
    wide, _ = _frames()
    _same(pipe, eager, wide)
    _same(pipe, eager, wide, with_scores=False)
    _same(pipe, eager, wide, color_order="rgb")
    _same(pipe, eager, wide, with_scores=False)
    assert pipe.graphs.stats["captured"] == 3 and pipe.graphs.stats["replayed"] == 1
    assert pipe.graphs.stats["checked"] == 3
    log, _ = _same(pipe, eager, wide, with_scores=False)
    assert [n for _, n, _ in log] == ["frame", "labels"]


def test_a_new_vocabulary_drops_every_graph_before_its_buffers_go(engine):
    pipe, eager, stand_in = _pipes(engine)
    wide, gray = _frames()
    for frame in (wide, gray, wide):
        _same(pipe, eager, frame)
    handles = [e for e in stand_in.events if e[0] == "capture"]
    fewer = Engine(engine.meta.path, classes=CLASSES[:3], backend="onnxruntime")
    for p in (pipe, eager):
        p.set_vocabulary(fewer._vocab[1], fewer._vocab[2])
    assert len(pipe.graphs) == 0 and pipe.graphs.stats["dropped"] == len(handles)
    assert [e[0] for e in stand_in.events[-2:]] == ["release", "release"]
    _, labels = _same(pipe, eager, wide)  # captured again: a stale graph would have failed in the stand-in
    assert labels.max() < 3 and pipe.graphs.stats["captured"] == 3 and pipe.graphs.stats["checked"] == 3
    _same(pipe, eager, wide)
    assert [e[0] for e in stand_in.events[-3:]] == ["capture", "replay", "replay"]  # the check, then the frame


def test_at_most_max_graphs_are_kept_and_the_dropped_ones_release_their_buffers(engine):
    pipe, eager, stand_in = _pipes(engine, max_graphs=1)
    wide, gray = _frames()
    _same(pipe, eager, wide)
    owned = pipe.graphs._entries[next(iter(pipe.graphs._entries))].state
    ids = {id(owned["_frame_host"]), id(owned["_result"][1]), id(owned["_result"][2])}
    _same(pipe, eager, gray)  # evicts the wide frame's graph
    assert len(pipe.graphs) == 1 and pipe.graphs.stats["dropped"] == 1
    assert ids <= set(pipe.memory.released)
    _same(pipe, eager, wide)
    assert pipe.graphs.stats["captured"] == 3 and pipe.graphs.stats["replayed"] == 0


def test_a_failing_capture_runs_eagerly_from_then_on_and_says_so(engine):
    pipe, eager, _ = _pipes(engine, stand_in=StandInGraphs(fail_capture=RuntimeError("operation not permitted")))
    wide, gray = _frames()
    with pytest.warns(RuntimeWarning, match="capture failed.*operation not permitted"):
        _same(pipe, eager, wide)
    for frame in (wide, gray):
        log, _ = _same(pipe, eager, frame)
        assert [n for _, n, _ in log] == ["frame", "labels", "scores"]
    assert not pipe.graphs.enabled and len(pipe.graphs) == 0 and pipe.graphs.stats["eager"] == 3


def test_a_capture_that_would_write_into_new_buffers_is_refused(engine, monkeypatch):
    pipe, eager, _ = _pipes(engine)
    wide, _ = _frames()
    original = pipe._host_output
    calls = []

    def reallocating(name, shape, dtype):  # a defect: the second frame of a kind gets new staging buffers
        calls.append(name)
        if len(calls) > 2:
            pipe._staging.pop(name, None)
        return original(name, shape, dtype)

    monkeypatch.setattr(pipe, "_host_output", reallocating)
    with pytest.warns(RuntimeWarning, match="reallocated while the frame was captured"):
        _same(pipe, eager, wide)
    assert len(pipe.graphs) == 0


class MisreplayingGraphs(StandInGraphs):
    """A stand-in whose replays give another result than the run it captured: ``change(labels, scores)`` alters the
    staging buffers a replay wrote, or ``skip`` leaves out the replay's work entirely (a graph that lost its
    kernels and copies)."""

    def __init__(self, change=None, skip=False):
        super().__init__()
        self.change, self.skip = change, skip

    def replay(self, handle):
        if self.skip:
            self.events.append(("replay", handle["id"]))
            return
        super().replay(handle)
        entry = next(e for e in self.pipe.graphs._entries.values() if e.handle is handle)
        self.change(*entry.outputs)


def _shift_scores(delta):
    def change(labels, scores):
        scores += delta

    return change


def _run_frames(pipe, eager, frames):
    """Each frame through ``pipe`` (compared with the eager pipeline); the RuntimeWarnings they raised."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for frame in frames:
            _same(pipe, eager, frame)
    return [w for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize(
    "stand_in, why",
    [
        (lambda: MisreplayingGraphs(_shift_scores(0.05)), r"scores differ by up to 0\.05 \(bound 0\.0001 at fp32\)"),
        (lambda: MisreplayingGraphs(skip=True), r"307200 of 307200 labels differ"),  # the check's overwrites stay
    ],
    ids=["scores off", "work skipped"],
)
def test_a_graph_whose_first_replay_differs_is_dropped_with_one_warning(engine, stand_in, why):
    pipe, eager, graphs = _pipes(engine, stand_in=stand_in())
    wide, gray = _frames()
    warned = _run_frames(pipe, eager, [wide, gray, wide, gray, wide])  # every result the eager one
    assert len(warned) == 1, [str(w.message) for w in warned]
    message = str(warned[0].message)
    assert re.search(
        r"first replay of a CUDA graph differs from the eager run of the same frame \[480, 640, 3\] \(" + why, message
    )
    assert "CUDA graphs are off for this pipeline" in message
    stats = pipe.graphs.stats
    assert not pipe.graphs.enabled and len(pipe.graphs) == 0
    assert (stats["captured"], stats["check_failed"], stats["checked"], stats["dropped"]) == (1, 1, 0, 1)
    assert (stats["replayed"], stats["eager"]) == (0, 5)
    assert [e[0] for e in graphs.events] == ["capture", "replay", "release"]  # released, never replayed again


def test_a_graph_whose_first_replay_is_within_the_bound_is_kept(engine):
    from zsseg_rt.runtime.device.cuda_graphs import REPLAY_SCORE_ATOL

    pipe, eager, _ = _pipes(engine, stand_in=MisreplayingGraphs(_shift_scores(REPLAY_SCORE_ATOL["fp32"] / 2)))
    wide, gray = _frames()
    assert _run_frames(pipe, eager, [wide]) == []
    assert pipe.graphs.enabled and len(pipe.graphs) == 1 and pipe.graphs.stats["checked"] == 1
    labels, scores = pipe(wide)  # the replay serves the next frame of the kind (with its shift)
    want_labels, want_scores = eager(wide)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(scores, want_scores + REPLAY_SCORE_ATOL["fp32"] / 2, rtol=0, atol=1e-7)
    assert pipe.graphs.stats["replayed"] == 1


def test_the_replay_bound():
    from zsseg_rt.runtime.device.cuda_graphs import (
        REPLAY_LABEL_FRACTION,
        REPLAY_SCORE_ATOL,
        REPLAY_SCORE_ATOL_REDUCED,
        replay_mismatch,
    )

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (100, 100)).astype(np.int32)
    scores = rng.random((100, 100)).astype(np.float32)
    assert replay_mismatch((labels, scores), (labels.copy(), scores.copy())) is None
    flipped = labels.copy()
    flipped.flat[: int(REPLAY_LABEL_FRACTION * labels.size)] += 1  # 10 of 10000: allowed
    assert replay_mismatch((labels, None), (flipped, None)) is None
    flipped.flat[int(REPLAY_LABEL_FRACTION * labels.size)] += 1
    assert replay_mismatch((labels, None), (flipped, None)) == "11 of 10000 labels differ (at most 10 may)"
    assert replay_mismatch((labels, scores), (labels, scores + 0.9 * REPLAY_SCORE_ATOL["fp32"])) is None
    assert "bound 0.0001 at fp32" in replay_mismatch((labels, scores), (labels, scores + 2e-4))
    assert replay_mismatch((labels, scores), (labels, scores + 2e-4), "fp16") is None  # a reduced precision's bound
    assert f"bound {REPLAY_SCORE_ATOL_REDUCED:g} at bf16" in replay_mismatch(
        (labels, scores), (labels, scores + 0.1), "bf16"
    )
    nan = scores.copy()
    nan[0, 0] = np.nan
    assert replay_mismatch((labels, nan), (labels, nan.copy())) is None
    assert replay_mismatch((labels, scores), (labels, nan)) == "1 scores are NaN in one run only"


def test_graphs_need_cuda(tiny_bundle):
    pytest.importorskip("torch")
    from zsseg_rt.runtime.device.device_pipeline import TorchMemory

    with pytest.raises(ValueError, match="own stream"):
        TorchCudaGraphs(TorchMemory("cpu"))
    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device"):
        Engine(tiny_bundle, classes=CLASSES, backend=_torch_backend(tiny_bundle, cuda_graphs=True))
    with pytest.raises(ValueError, match="cuda_graphs must be"):
        _torch_backend(tiny_bundle, cuda_graphs="yes")
    assert not _torch_backend(tiny_bundle).cuda_graphs  # "auto" on the CPU: eager


def _torch_backend(bundle, device="cpu", **kwargs):
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.export.torch_backend import TorchBackend

    return TorchBackend(load_meta(bundle), device=device, **kwargs)


def test_real_cuda_graphs_match_the_eager_pipeline(tiny_bundle):  # GPU only: ran on the H200 (2026-11-26)
    torch = pytest.importorskip("torch")
    from zsseg_rt import ops

    if not (torch.cuda.is_available() and ops.cuda_available()):
        pytest.skip("needs a CUDA GPU and zsseg_rt's CUDA ops (never run here: no GPU)")
    graphs = Engine(tiny_bundle, classes=CLASSES, backend=_torch_backend(tiny_bundle, "cuda"))
    eager = Engine(tiny_bundle, classes=CLASSES, backend=_torch_backend(tiny_bundle, "cuda", cuda_graphs=False))
    assert graphs.pipeline.device.graphs is not None and eager.pipeline.device.graphs is None
    for frame in _frames() + _frames():
        a, b = graphs(frame), eager(frame)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-6)
    stats = graphs.pipeline.device.graphs.stats
    assert stats["replayed"] == 2 and stats["checked"] == 2 and stats["check_failed"] == 0


def test_real_cuda_graphs_time_the_stages_inside_the_graph(tiny_bundle):  # GPU only: has not run yet
    """A timed frame on torch CUDA with graphs is replayed (its own graph, with external timing events as nodes),
    synchronised once, and every stage reaches the hook from the events the replay recorded; labels as eager."""
    torch = pytest.importorskip("torch")
    from zsseg_rt import ops

    if not (torch.cuda.is_available() and ops.cuda_available()):
        pytest.skip("needs a CUDA GPU and zsseg_rt's CUDA ops (never run here: no GPU)")
    graphs = Engine(tiny_bundle, classes=CLASSES, backend=_torch_backend(tiny_bundle, "cuda"))
    eager = Engine(tiny_bundle, classes=CLASSES, backend=_torch_backend(tiny_bundle, "cuda", cuda_graphs=False))
    device = graphs.pipeline.device
    seen, synced = [], []
    original = device.memory.synchronize
    device.memory.synchronize = lambda: (synced.append(1), original())[1]
    wide, _ = _frames()
    graphs(wide)  # untimed: the vocabulary's upload (a host stage of its own) and the untimed graph
    graphs.stage_hook = lambda stage, seconds: seen.append((stage, seconds))
    want = ["upload", "preprocess", "image_encoder", "head", "postprocess", "download"]
    for index in range(3):  # the timed kind: eager, captured and checked, then replayed twice
        seen.clear()
        synced.clear()
        a, b = graphs(wide), eager(wide)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert [stage for stage, _ in seen] == want, index
        assert all(np.isfinite(s) and s >= 0 for _, s in seen), seen
        if index > 0:
            assert synced == [1], (index, synced)  # the replay's own: none per stage
    stats = device.graphs.stats
    assert (stats["captured"], stats["replayed"], stats["checked"], stats["check_failed"]) == (2, 2, 2, 0)


def test_the_accuracy_gate_records_every_head_run_eagerly(tiny_bundle):
    """The gate keeps the head's logits per run (a download + synchronise after each head call): impossible inside a
    capture and skipped by a replay, so an engine with graphs is gated eagerly, one record per head run."""
    pytest.importorskip("torch")  # the gate lives in the export layer
    from zsseg_rt.prepare.gate import _record_head_logits

    engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device_pipeline=True)
    device = engine.pipeline.device
    stand_in = StandInGraphs()
    device.graphs, device.static_outputs, stand_in.pipe = FrameGraphs(stand_in), True, device
    wide, gray = _frames()
    engine(wide)  # captured before the gate starts: dropped by it
    logits = _record_head_logits(engine)
    for frame in (wide, wide, gray):
        engine(frame)
    # one head run per frame (the wide frame's two windows in one call): a capture would add a run, a replay drop one
    assert [x.shape[0] for x in logits] == [2, 2, 1]
    assert len(device.graphs) == 0 and not device.graphs.enabled
    assert device.graphs.stats["captured"] == 1 and device.graphs.stats["replayed"] == 0
