"""The video filter on the device (issue 65): the filter's state in a device pipeline's memory (``CudaMemory``, the
TensorRT path's, over the runtime-API stand-in of its driver), its arithmetic the ops' CUDA kernels, the flow's part
computed on the host. Against the CPU filter on the same frames, with the host<->device copies of each frame counted
(``Memory.transfers``): the flow's inputs go up once, the labels come down once, nothing else crosses. Runs on a GPU
and, in CI, on the emulated CUDA runtime (``-m cuda``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from cuda_support import RuntimeDriver, requires_cuda

from zsseg_rt.stream.video_filter.filter_arrays import DeviceArrays
from zsseg_rt.stream.video_filter.temporal import StreamFilter, TemporalOptions


def _video_fakes():
    """python_tests/video_fakes.py (the video tests' scenes and score engine), loaded by its path: this file
    lives with the device pipeline's tests, which the GPU acceptance's ops stage runs."""
    path = Path(__file__).resolve().parents[1] / "video_fakes.py"
    spec = importlib.util.spec_from_file_location("stream_video_fakes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_fakes = _video_fakes()
ScoreEngine, moving_square = _fakes.ScoreEngine, _fakes.moving_square

pytestmark = [pytest.mark.cuda, requires_cuda]

SIZE = (96, 128)


class DeviceScores:
    """ScoreEngine's class scores put on the device (a stand-in for the device pipeline's ``ops.class_state``;
    logged as the "scores" upload, which the test leaves out of the filter's own copies)."""

    def __init__(self, arrays: DeviceArrays):
        self.arrays = arrays

    def __call__(self, class_scores):
        import dataclasses

        buffer = self.arrays.empty("current", class_scores.scores.shape, np.float32)
        self.arrays.memory.upload("scores", np.ascontiguousarray(class_scores.scores), buffer)
        return dataclasses.replace(class_scores, scores=buffer)

    def labels(self, labels, scores):
        own = self.arrays.empty("labels", labels.shape, np.int32), self.arrays.empty("scores", labels.shape, np.float32)
        self.arrays.memory.upload("scores", np.ascontiguousarray(labels, np.int32), own[0])
        self.arrays.memory.upload("scores", np.ascontiguousarray(scores, np.float32), own[1])
        return own


def run(frames, truths, options, memory=None, noise=0.3):
    """The filter's labels per frame, on the host (``memory`` None) or on the device; with the device, each
    frame's copies (direction, name) other than the stand-in's "scores"."""
    engine = ScoreEngine(frames, truths, noise=noise)
    arrays = DeviceArrays(memory) if memory is not None else None
    flt = StreamFilter(TemporalOptions(**options), arrays=arrays)
    put = DeviceScores(arrays) if arrays is not None else None
    labels, copies = [], []
    for frame in frames:
        if memory is not None:
            memory.transfers.clear()
        plan = flt.plan(frame, "v")
        if plan.keyframe:
            result = engine.segment_with_class_scores([frame], 4)[0]
            class_scores, own = result.class_scores, (result.labels, result.scores)
            if put is not None:
                class_scores = put(class_scores) if options.get("stabilize") else class_scores
                own = own if options.get("stabilize") else put.labels(*own)
            out = flt.keyframe(plan, own[0], own[1], class_scores, "v")
        else:
            out = flt.propagate(plan)
        labels.append(out[0])
        if memory is not None:
            assert out[1] is None  # the scores stay on the device
            copies.append([(d, n) for d, n, _ in memory.transfers.entries if n != "scores"])
    return labels, copies


@pytest.mark.parametrize(
    "options",
    [dict(stabilize=True), dict(keyframe_every=3), dict(stabilize=True, keyframe_every=3)],
    ids=["stabilize", "keyframes", "both"],
)
def test_the_device_filter_is_the_cpu_filter(options):
    """Every frame's labels equal the CPU filter's, pixel for pixel, and each frame copies: up, the flow's inputs
    once ("flow"; a keyframe that starts afresh uploads its zero jitter instead: "zeros"); down, the labels once."""
    from zsseg_rt.runtime.device.cuda_memory import CudaMemory

    frames, truths = moving_square(frames=8, size=SIZE, side=32, step=3)
    host, _ = run(frames, truths, options)
    memory = CudaMemory(RuntimeDriver())
    try:
        device, copies = run(frames, truths, options, memory)
    finally:
        memory.close()
    for k, (a, b) in enumerate(zip(host, device)):
        assert np.array_equal(a, b), f"frame {k}: {(a != b).sum()} pixels differ"
    assert copies[0] == ([("up", "zeros"), ("down", "labels")] if options.get("stabilize") else [("down", "labels")])
    for k, frame_copies in enumerate(copies[1:], 1):
        keyframe = k % options.get("keyframe_every", 1) == 0
        if keyframe and not options.get("stabilize"):
            assert frame_copies == [("down", "labels")], k  # the Engine's own labels: nothing of the flow needed
        else:
            assert frame_copies == [("up", "flow"), ("down", "labels")], k
    assert any((a != t).any() for a, t in zip(host, truths))  # the noise makes the labels something to filter


def test_the_control_a_wrong_flow_on_the_device_differs():
    """Control for the equality above: the same device filter given another flow (zero motion) gives other labels,
    so the comparison can fail."""
    from zsseg_rt.runtime.device.cuda_memory import CudaMemory

    frames, truths = moving_square(frames=6, size=SIZE, side=32, step=3)
    host, _ = run(frames, truths, dict(keyframe_every=3))
    memory = CudaMemory(RuntimeDriver())
    try:
        engine = ScoreEngine(frames, truths, noise=0.3)
        arrays = DeviceArrays(memory)
        flt = StreamFilter(TemporalOptions(keyframe_every=3), arrays=arrays)
        flt.flow._calc = lambda current, previous: np.zeros(current.shape + (2,), np.float32)
        put = DeviceScores(arrays)
        labels = []
        for frame in frames:
            plan = flt.plan(frame, "v")
            if plan.keyframe:
                result = engine.segment_with_class_scores([frame], 4)[0]
                labels.append(flt.keyframe(plan, *put.labels(result.labels, result.scores), None, "v")[0])
            else:
                labels.append(flt.propagate(plan)[0])
    finally:
        memory.close()
    assert any((a != b).any() for a, b in zip(host, labels))


@pytest.fixture(scope="module")
def device_engine(tiny_bundle):
    """The tiny bundle's Engine (ONNX Runtime) with a device pipeline on ``CudaMemory`` (its graphs run by ONNX
    Runtime on host copies of the device buffers, which ``memory.transfers`` does not see: what it logs is the
    pipeline's and the filter's own copies)."""
    from test_device_pipeline_cuda import HostGraphExecutor

    from zsseg_rt.runtime import Engine
    from zsseg_rt.runtime.device.cuda_memory import CudaMemory
    from zsseg_rt.runtime.device.device_pipeline import DevicePipeline

    engine = Engine(tiny_bundle, classes=["person", "bottle", "chair", "sofa", "tv", "cat"], backend="onnxruntime")
    memory = CudaMemory(RuntimeDriver())
    engine.pipeline.device = DevicePipeline(engine.meta, HostGraphExecutor(engine.backend, memory), max_windows=4)
    engine.pipeline._device_vocab = None
    yield engine, memory
    memory.close()


@pytest.mark.parametrize("options", [dict(stabilize=True), dict(keyframe_every=2)], ids=["stabilize", "keyframes"])
def test_video_segmenter_on_the_device_pipeline(device_engine, options):
    """``VideoSegmenter`` on an Engine with a device pipeline: the keyframes' class scores made on the device
    (``ops.class_state`` on the window logits), the filter there; the labels agree with the host path's filter
    on the same frames (the device's class scores are the host's within float rounding: near-ties may flip a
    pixel), and per frame the copies are the frame up (a keyframe), the flow up (but on a fresh keyframe), the
    labels down (the vocabulary once, before the first frame)."""
    from zsseg_rt.stream import VideoSegmenter

    engine, memory = device_engine
    frames, _ = moving_square(frames=5, size=(72, 88), side=24, step=3)
    on_device = VideoSegmenter(engine, device=True, **options)
    on_host = VideoSegmenter(engine, device=False, **options)
    assert on_device.on_device and not on_host.on_device
    for k, frame in enumerate(frames):
        memory.transfers.clear()
        got = on_device(frame)
        copies = [(d, n) for d, n, _ in memory.transfers.entries]
        vocabulary = [c for c in copies if c[1] in ("text_embeddings", "class_bias")]  # once per vocabulary
        assert not vocabulary or (k == 0 and vocabulary == [("up", "text_embeddings"), ("up", "class_bias")])
        copies = [c for c in copies if c not in vocabulary]
        want = on_host(frame)
        assert got.scores is None and got.keyframe == want.keyframe and got.index == k
        assert (got.labels == want.labels).mean() >= 0.995, k
        expected = [("up", "frame")] if got.keyframe else []
        if options.get("stabilize"):
            expected.append(("up", "zeros" if k == 0 else "flow"))
        elif not got.keyframe:
            expected.append(("up", "flow"))
        assert copies == expected + [("down", "labels")], (k, copies)
    held = len(memory._host)  # the pipeline's pinned buffers and the device filter's staging ones
    on_host.close()  # control: the host filter holds no pinned memory
    assert len(memory._host) == held
    on_device.close()  # the filter's device and pinned buffers go with it (a review found them never freed)
    assert len(memory._host) < held
    on_device.close()  # twice: nothing left, nothing raised


def test_a_state_larger_than_the_rescaled_image(device_engine):
    """The H200 probe's P9 (b235fde): a 480x640 frame on the tiny bundle (64-px input: rescaled to 64x85) at the
    filter's stride 4 has a state (120x160) larger than the rescaled image. The host path enlarges it
    (``cv2.resize(INTER_AREA)``: OpenCV's linear coefficients); the device refused the frame mid-stream. Now the
    device's class scores are the host's (within the float rounding of its sigmoid) and the device filter gives the
    host filter's labels, frame by frame."""
    from zsseg_rt.stream import VideoSegmenter

    engine, memory = device_engine
    frames, _ = moving_square(frames=2, size=(480, 640), side=160, step=12)  # a keyframe, then one blended
    scaled = engine.pipeline.device.frame_plan(frames[0])[0]
    assert tuple(scaled)[0] < 120 and tuple(scaled)[1] < 160, scaled  # the geometry: the state is larger
    arrays = DeviceArrays(memory)
    try:
        got = engine.segment_on_device([frames[0]], arrays, 4)[0].class_scores
        want = engine.segment_with_class_scores([frames[0]], 4)[0].class_scores
        assert want.scores.shape[1:] == (120, 160)
        state = np.empty(want.scores.shape, np.float32)
        memory.download("state", got.scores, state)
        memory.synchronize()
        np.testing.assert_allclose(state, want.scores, atol=2e-6)
    finally:
        arrays.close()
    on_device = VideoSegmenter(engine, device=True, stabilize=True)
    on_host = VideoSegmenter(engine, device=False, stabilize=True)
    assert on_device.on_device and on_device.options.score_stride == 4
    for k, frame in enumerate(frames):
        got, want = on_device(frame), on_host(frame)
        assert (got.labels == want.labels).mean() >= 0.995, k
    on_device.close()
    on_host.close()


def test_the_live_options_on_the_device_pipeline(tiny_bundle):
    """``zsseg camera --live`` on a device pipeline: the Engine's one-window test_scale in the device pipeline and the
    live filter (a keyframe every 4, the flow at 1/4) on the device give the host filter's labels; a keyframe's
    frame goes up once and runs one window (the frame is 72x88: two windows at the bundle's scale)."""
    from test_device_pipeline_cuda import HostGraphExecutor

    from zsseg_rt.runtime import Engine
    from zsseg_rt.runtime.device.cuda_memory import CudaMemory
    from zsseg_rt.runtime.device.device_pipeline import DevicePipeline
    from zsseg_rt.stream import LIVE_TEST_SCALE, VideoSegmenter, live_options

    engine = Engine(tiny_bundle, classes=["person", "bottle", "cat"], backend="onnxruntime", test_scale=LIVE_TEST_SCALE)
    memory = CudaMemory(RuntimeDriver())
    try:
        engine.pipeline.device = DevicePipeline(
            engine.meta, HostGraphExecutor(engine.backend, memory), test_scale=engine.pipeline.test_scale
        )
        engine.pipeline._device_vocab = None
        frames, _ = moving_square(frames=6, size=(72, 88), side=24, step=3)
        assert len(engine.pipeline.device.frame_plan(frames[0])[1]) == 1
        on_device = VideoSegmenter(engine, device=True, **live_options())
        on_host = VideoSegmenter(engine, device=False, **live_options())
        assert on_device.on_device and on_device.options.flow_stride == 4
        for k, frame in enumerate(frames):
            got, want = on_device(frame), on_host(frame)
            assert got.keyframe == want.keyframe == (k % 4 == 0), k
            assert (got.labels == want.labels).mean() >= 0.995, k
        on_device.close()
        on_host.close()
    finally:
        memory.close()


def test_segment_on_device_takes_one_frame_a_call(device_engine):
    """The stream's buffers alternate two a name: two or three frames in one call would have the third's results
    overwrite the first's (a review's finding); refused in one line before anything runs. Control: one frame."""
    from zsseg_rt.stream.video_filter.filter_arrays import DeviceArrays

    engine, memory = device_engine
    frames, _ = moving_square(frames=3, size=(72, 88), side=24, step=3)
    arrays = DeviceArrays(memory)
    with pytest.raises(ValueError, match="expected one frame a call .* got 3"):
        engine.segment_on_device(list(frames), arrays, 8)
    assert len(engine.segment_on_device([frames[0]], arrays, 8)) == 1
    arrays.close()


def test_device_true_without_a_device_pipeline_is_refused(tiny_bundle):
    from zsseg_rt.runtime import Engine
    from zsseg_rt.stream import VideoSegmenter

    engine = Engine(tiny_bundle, classes=["person", "cat"], backend="onnxruntime")
    with pytest.raises(ValueError, match=r"device=True is not possible: the Engine runs on the host"):
        VideoSegmenter(engine, stabilize=True, device=True)
    assert not VideoSegmenter(engine, stabilize=True).on_device  # "auto": the host, silently
