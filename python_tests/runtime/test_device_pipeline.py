"""The device-resident pipeline: one upload per frame, one or two downloads, no intermediate copies, and the
same labels/scores as the Engine's host path. Run here with host memory (NumPy, ONNX Runtime) and with torch
tensors on the CPU; the CUDA/TensorRT forms share the same code and are exercised by tools/gpu_check.sh."""

import numpy as np
import pytest

from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.device.device_pipeline import DevicePipeline, OnnxRuntimeExecutor, TorchExecutor

CLASSES = ["person", "bottle", "chair", "sofa", "tv", "cat"]


def _frames():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    frames = [np.kron(base, np.ones((40, 40, 1), np.uint8))]  # 480x640: 2 windows after the test resize
    frames.append(rng.integers(0, 256, (50, 50), dtype=np.uint8))  # gray, one window
    frames.append(rng.integers(0, 256, (90, 40, 4), dtype=np.uint8))  # RGBA, tall
    return frames


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime")


def _check_frame(pipe, engine, frame, color_order="bgr", same_batches=True):
    pipe.memory.transfers.clear()
    labels, scores = pipe(frame, color_order=color_order)
    log = pipe.memory.transfers
    assert log.count("up") == 1 and [e[1] for e in log.entries if e[0] == "up"] == ["frame"]
    assert log.nbytes("up") == frame.nbytes
    assert [e[1] for e in log.entries if e[0] == "down"] == ["labels", "scores"]
    expected = engine(frame, color_order=color_order)
    if same_batches:
        np.testing.assert_array_equal(labels, expected.labels)
    else:  # fp32 differences of ~1e-7 can flip a pixel where two classes tie within them
        assert (labels == expected.labels).mean() >= 0.999
    if same_batches:  # same input bits, same graphs at the same batch size, same ops: bit-identical
        np.testing.assert_array_equal(scores, expected.scores)
    else:  # the encoder at another batch size (ONNX Runtime's GEMM blocking) moves scores by a few ulps
        np.testing.assert_allclose(scores, expected.scores, rtol=0, atol=1e-5)
    pipe.memory.transfers.clear()
    labels_only, none = pipe(frame, color_order=color_order, with_scores=False)
    assert none is None and pipe.memory.transfers.count("down") == 1
    np.testing.assert_array_equal(labels_only, labels)


def test_host_memory_counts_one_upload_and_matches_the_engine(engine):
    pipe = DevicePipeline(engine.meta, OnnxRuntimeExecutor(engine.backend), max_windows=4)
    pipe.set_vocabulary(engine._vocab[1], engine._vocab[2])
    assert [e[1] for e in pipe.memory.transfers.entries] == ["text_embeddings", "class_bias"]
    for frame in _frames():
        _check_frame(pipe, engine, frame)
    _check_frame(pipe, engine, _frames()[0], color_order="rgb")


def test_chunks_of_windows_give_the_same_result(engine):
    pipe = DevicePipeline(engine.meta, OnnxRuntimeExecutor(engine.backend), max_windows=1)
    pipe.set_vocabulary(engine._vocab[1], engine._vocab[2])
    _check_frame(pipe, engine, _frames()[0], same_batches=False)


def test_torch_tensors_stay_torch_tensors(tiny_bundle, engine):
    torch = pytest.importorskip("torch")
    from zsseg_rt.export.torch_backend import TorchBackend

    backend = TorchBackend(engine.meta, device="cpu")
    executor = TorchExecutor(backend)
    seen = []
    original = executor.run

    def recording_run(role, inputs):
        assert all(isinstance(v, torch.Tensor) for v in inputs.values()), role
        outputs = original(role, inputs)
        seen.append(role)
        return outputs

    executor.run = recording_run
    pipe = DevicePipeline(engine.meta, executor, max_windows=4)
    pipe.set_vocabulary(engine._vocab[1], engine._vocab[2])
    _check_frame(pipe, engine, _frames()[0], same_batches=False)  # torch vs ONNX Runtime: fp32 rounding
    assert seen[-2:] == ["image", "head"]


def test_bad_frames_and_missing_vocabulary(engine):
    pipe = DevicePipeline(engine.meta, OnnxRuntimeExecutor(engine.backend))
    with pytest.raises(RuntimeError, match="vocabulary"):
        pipe(_frames()[0])
    pipe.set_vocabulary(engine._vocab[1], engine._vocab[2])
    with pytest.raises(TypeError, match="uint8"):
        pipe(_frames()[0].astype(np.float32))
    with pytest.raises(ValueError, match="class_bias"):
        pipe.set_vocabulary(engine._vocab[1], engine._vocab[2][:-1])


def test_engine_uses_the_device_pipeline_when_asked(tiny_bundle, engine):
    pytest.importorskip("torch")
    dev = Engine(tiny_bundle, classes=CLASSES, backend="torch", device="cpu", device_pipeline=True)
    assert dev.pipeline.device is not None
    frame = _frames()[0]
    result = dev(frame)
    memory = dev.pipeline.device.memory
    assert [e[1] for e in memory.transfers.entries] == ["text_embeddings", "class_bias", "frame", "labels", "scores"]
    expected = engine(frame)
    assert (result.labels == expected.labels).mean() >= 0.999  # torch vs ONNX Runtime fp32
    np.testing.assert_allclose(result.scores, expected.scores, rtol=0, atol=1e-5)
    dev.set_classes(CLASSES[:3])
    memory.transfers.clear()
    dev(frame)
    dev(frame)
    names = [e[1] for e in memory.transfers.entries]
    assert names.count("text_embeddings") == 1 and names.count("frame") == 2  # vocabulary uploaded once


def test_device_pipeline_settings(tiny_bundle):
    auto = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime")
    assert auto.pipeline.device is None  # ONNX Runtime on the host: the host path
    forced = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device_pipeline=True)
    assert forced.pipeline.device.memory.kind == "host"  # the same pipeline on host buffers (its CPU form)
    with pytest.raises(ValueError, match="device_pipeline"):
        Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device_pipeline="yes")


def test_result_buffers_are_reused_while_the_frame_size_stays(engine):
    # issue 13: segment_windows writes into the pipeline's own (labels, scores) via out=, allocated once per size
    pipe = DevicePipeline(engine.meta, OnnxRuntimeExecutor(engine.backend), max_windows=4)
    pipe.set_vocabulary(engine._vocab[1], engine._vocab[2])
    shapes = []
    original = pipe.memory.empty

    def recording_empty(shape, dtype):
        shapes.append((tuple(shape), np.dtype(dtype)))
        return original(shape, dtype)

    pipe.memory.empty = recording_empty
    frame = _frames()[1]
    first = pipe(frame)
    assert ((50, 50), np.dtype(np.int32)) in shapes and ((50, 50), np.dtype(np.float32)) in shapes
    buffers = pipe._result[1:]
    shapes.clear()
    second = pipe(frame)
    assert shapes == []  # nothing allocated for the second frame of the same size
    assert pipe._result[1] is buffers[0] and pipe._result[2] is buffers[1]
    np.testing.assert_array_equal(second[0], first[0])
    np.testing.assert_array_equal(second[1], first[1])
    assert second[0] is not buffers[0]  # the caller gets host copies, not the reused buffers
    pipe(_frames()[2])
    assert pipe._result[0] == (90, 40)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_bias_is_refused_on_the_host_at_upload(engine, value):
    pipe = DevicePipeline(engine.meta, OnnxRuntimeExecutor(engine.backend), max_windows=4)
    bias = np.array(engine._vocab[2], np.float32).copy()
    bias[2] = value
    with pytest.raises(ValueError, match=r"class_bias must be finite, got -?(nan|inf) at class 2"):
        pipe.set_vocabulary(engine._vocab[1], bias)
    assert pipe.memory.transfers.entries == []  # refused before anything went to the device


def test_the_engine_reports_the_device_pipelines_stages(tiny_bundle):
    # issue 25: the GPU check's Engine step saw one opaque "device_pipeline" stage, so its post/encoder check was NaN
    dev = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device_pipeline=True)
    synced = []
    original = dev.pipeline.device.memory.synchronize
    dev.pipeline.device.memory.synchronize = lambda: (synced.append(1), original())[1]
    dev(_frames()[1])  # first frame: vocabulary upload
    synced.clear()
    dev(_frames()[1])
    assert synced == [1]  # without a hook: only the pipeline's own final synchronisation
    seen = []
    dev.stage_hook = lambda stage, seconds: seen.append((stage, seconds))
    dev(_frames()[0])  # two windows
    names = [s for s, _ in seen]
    assert names == ["upload", "preprocess", "image_encoder", "head", "postprocess", "download"]
    assert all(seconds >= 0 for _, seconds in seen)
    pipe = DevicePipeline(dev.meta, OnnxRuntimeExecutor(dev.backend), max_windows=1)
    pipe.set_vocabulary(dev._vocab[1], dev._vocab[2])
    seen.clear()
    pipe(_frames()[0], stage_hook=lambda stage, seconds: seen.append((stage, seconds)))
    assert [s for s, _ in seen].count("image_encoder") == 2  # once per chunk of max_windows


def test_torch_memory_follows_torch_s_current_stream(monkeypatch):
    """Without a stream of its own, the ops go to torch's current stream as it is at each call: work under a later
    ``with torch.cuda.stream(s):`` is ordered with torch's kernels on ``s`` (c783dbf froze the stream current when
    the memory was made). torch's CUDA streams are stood in for (no GPU here)."""
    torch = pytest.importorskip("torch")
    import types

    from zsseg_rt.runtime.device.device_pipeline import TorchMemory

    current = {"handle": 0x11}
    asked = []

    def current_stream(device=None):
        asked.append(torch.device(device))
        return types.SimpleNamespace(cuda_stream=current["handle"])

    monkeypatch.setattr(torch.cuda, "current_stream", current_stream)
    memory = TorchMemory("cuda")
    assert memory.stream == 0x11
    current["handle"] = 0x22  # the caller entered `with torch.cuda.stream(s):`
    assert memory.stream == 0x22
    assert set(asked) == {torch.device("cuda")}
    assert TorchMemory("cpu").stream == 0
