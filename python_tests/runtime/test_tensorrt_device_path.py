"""The TensorRT device path (``TensorRTExecutor`` + ``CudaMemory`` + ``DevicePipeline``) end to end on the host:
TensorRT's execution contexts and the CUDA driver are stand-ins (``python_tests/host_cuda.py``: ONNX Runtime runs each
graph on the buffers bound by address, allocations are host memory and counted), everything else is the code a GPU
runs. Each test here failed before the fix it guards:

* the device pipeline asked the engine for more windows per call than its profile holds (an API-built engine has
  ``max_batch=1``, a CLI-built one the windows of a 4:3 frame; ``Engine.max_batch`` defaults to 4);
* a frame of several chunks got the last chunk's logits for every chunk (one output buffer per graph output,
  reused by the next head run);
* every frame allocated page-locked result buffers (and, for frames of several chunks, device memory for the
  joined logits) that were freed only when the pipeline closed;
* the vocabulary upload (``set_vocabulary``, on the first frame after ``set_classes``) ran without making the CUDA
  context current, so from a thread that had not run a frame yet the driver refused it (issue 36);
* the device executor used the host path's execution contexts, whose scratch memory the host path's calls then
  shared with device work still running (issue 36); its fix, a second context per engine, then held TensorRT's
  activation memory twice (issue 50): the contexts are shared again, the two paths taking turns on them.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the stand-in engines run the graphs with ONNX Runtime")
from host_cuda import (  # noqa: E402
    HostCudaDriver,
    StandInTensorRTBackend,
    install_host_gpu,
    tensorrt_backend_on_stand_ins,
)

from zsseg_rt import pipeline  # noqa: E402
from zsseg_rt.bundle import Names  # noqa: E402
from zsseg_rt.prepare.tensorrt import build as trt_build  # noqa: E402
from zsseg_rt.runtime import Engine  # noqa: E402
from zsseg_rt.runtime.device import device_pipeline  # noqa: E402
from zsseg_rt.runtime.device.cuda_memory import TensorRTExecutor  # noqa: E402

CLASSES = ["person", "bottle", "chair", "sofa", "tv", "cat"]
API_MAX_BATCH = inspect.signature(trt_build.build_engine_set).parameters["max_batch"].default  # 1 today


@pytest.fixture()
def host_gpu(monkeypatch):
    """TensorRT and the CUDA ops as the device pipeline sees them, on the host."""
    install_host_gpu(monkeypatch)


@pytest.fixture(scope="module")
def reference(tiny_bundle):
    return Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime")


def _frame(height, width, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 40, width // 40, 3), dtype=np.uint8)
    return np.kron(base, np.ones((40, 40, 1), np.uint8))


def _device_engine(tiny_bundle, max_batch_built, driver=None):
    driver = driver if driver is not None else HostCudaDriver()
    meta = Engine(tiny_bundle, backend="onnxruntime").meta
    backend = StandInTensorRTBackend(meta, max_batch_built, driver)
    engine = Engine(tiny_bundle, classes=CLASSES, backend=backend, device_pipeline=True)  # max_batch: default 4
    assert engine.pipeline.device is not None and isinstance(engine.pipeline.device.executor, TensorRTExecutor)
    return engine, backend, driver


def _assert_same_segmentation(result, expected):
    # the encoder at another batch size than the host path's moves scores by a few float32 ulps (ONNX Runtime's
    # GEMM blocking): labels may flip only where two classes tie within that
    assert (result.labels == expected.labels).mean() >= 0.999
    np.testing.assert_allclose(result.scores, expected.scores, rtol=0, atol=1e-5)


def test_an_api_built_engine_runs_a_640x480_frame_in_chunks_it_accepts(tiny_bundle, host_gpu, reference):
    engine, backend, _ = _device_engine(tiny_bundle, API_MAX_BATCH)
    assert API_MAX_BATCH == 1 and engine.max_batch == 4
    frame = _frame(480, 640)
    result = engine(frame)
    shapes = [e[2] for c in backend.contexts.values() for e in c.log if e[0] == "set_input_shape" and e[1] == "image"]
    scaled = pipeline.preprocess.rescaled_size(480, 640, engine.meta.test_scale)
    windows = len(pipeline.sliding_windows(scaled[0], scaled[1], engine.meta.crop_size, engine.meta.stride))
    assert len(shapes) == windows >= 2 and all(shape[0] == 1 for shape in shapes)  # one window per call
    assert engine.pipeline.device.max_windows == 1
    _assert_same_segmentation(result, reference(frame))


def test_a_cli_built_engine_runs_a_wide_frame_in_chunks(tiny_bundle, host_gpu, reference):
    cli_max_batch = trt_build.frame_windows(reference.meta)  # zsseg build-engine's default: a 4:3 frame's windows
    engine, backend, _ = _device_engine(tiny_bundle, cli_max_batch)
    frame = _frame(480, 1920)  # more windows than the profile holds
    result = engine(frame)
    batches = [e[2][0] for e in backend.contexts["image"].log if e[0] == "set_input_shape"]
    assert sum(batches) >= 3 and max(batches) <= cli_max_batch and len(batches) >= 2
    _assert_same_segmentation(result, reference(frame))


class ReusingExecutor(device_pipeline.Executor):
    """The ONNX Runtime graphs on host memory, with one output buffer per (graph, output) reused by every run, as
    ``TensorRTExecutor`` does on the GPU."""

    def __init__(self, backend):
        self.inner = device_pipeline.OnnxRuntimeExecutor(backend)
        self.memory = self.inner.memory
        self.buffers = {}

    def run(self, role, inputs):
        outputs = {}
        for name, value in self.inner.run(role, inputs).items():
            buffer = self.buffers.get((role, name))
            if buffer is None or buffer.size < value.size:
                buffer = self.buffers[(role, name)] = np.empty(value.size, np.float32)
            outputs[name] = buffer[: value.size].reshape(value.shape)
            np.copyto(outputs[name], value)
        return outputs


def test_every_chunk_keeps_its_own_logits_with_a_buffer_reusing_executor(reference):
    executor = ReusingExecutor(reference.backend)
    pipe = device_pipeline.DevicePipeline(reference.meta, executor, max_windows=1)
    pipe.set_vocabulary(reference._vocab[1], reference._vocab[2])
    frame = _frame(480, 1920, seed=3)
    labels, scores = pipe(frame)
    assert len(executor.buffers) == 3  # image_global, patches, mask_logits: one buffer each, reused per chunk
    expected = reference(frame)
    assert (labels == expected.labels).mean() >= 0.999
    np.testing.assert_allclose(scores, expected.scores, rtol=0, atol=1e-5)


def test_repeated_frames_do_not_grow_pinned_or_device_memory(tiny_bundle, host_gpu):
    engine, _, driver = _device_engine(tiny_bundle, 4)  # a profile that fits Engine.max_batch: no batch-limit issue
    frame = _frame(480, 1920, seed=1)  # 5 windows: two chunks of at most 4
    first = engine(frame)
    held = driver.live_bytes("host"), driver.live_bytes("device")
    allocations = dict(driver.allocations)
    for _ in range(4):
        again = engine(frame)
        np.testing.assert_array_equal(again.labels, first.labels)
    assert (driver.live_bytes("host"), driver.live_bytes("device")) == held
    assert driver.allocations == allocations  # nothing allocated at all for a frame of the same size
    assert engine.pipeline.device.memory.pinned_bytes == driver.live_bytes("host")
    other = engine(_frame(480, 1800, seed=2))  # a new size: the old size's buffers are released, not kept
    assert other.labels.shape == (480, 1800)
    assert driver.live_bytes("host") <= held[0] + 1024


def test_the_results_returned_are_the_callers_own(tiny_bundle, host_gpu):
    engine, _, _ = _device_engine(tiny_bundle, API_MAX_BATCH)
    first = engine(_frame(480, 640, seed=4))
    kept = first.labels.copy()
    engine(_frame(480, 640, seed=5))  # reuses the staging buffers
    np.testing.assert_array_equal(first.labels, kept)


class RecordingLibcuda:
    """A ``libcuda`` stand-in for ``CudaDriver``: every entry point returns CUDA_SUCCESS; stream flags are kept."""

    def __init__(self):
        self.stream_flags = []

    def __getattr__(self, name):
        def call(*args):
            if name == "cuStreamCreate":
                self.stream_flags.append(args[1])
            return 0

        call.__name__ = name
        setattr(self, name, call)
        return call


def test_streams_are_created_non_blocking():
    from zsseg_rt.runtime.device.cuda_driver import STREAM_NON_BLOCKING, CudaDriver

    library = RecordingLibcuda()
    CudaDriver(library).stream_create()
    assert STREAM_NON_BLOCKING == 1 and library.stream_flags == [STREAM_NON_BLOCKING]  # CU_STREAM_NON_BLOCKING


class PerThreadContextDriver(HostCudaDriver):
    """``HostCudaDriver`` whose calls need the context current on the calling thread, as the CUDA driver's do
    (a thread starts with none: ``make_current`` sets it)."""

    def __init__(self):
        super().__init__()
        import threading

        self._current = threading.local()

    def make_current(self):
        self._current.ok = True

    def _need_context(self):
        if not getattr(self._current, "ok", False):
            raise RuntimeError("CUDA_ERROR_INVALID_CONTEXT: no context is current on this thread")

    def mem_alloc(self, nbytes):
        self._need_context()
        return super().mem_alloc(nbytes)

    def copy_to_device(self, pointer, array, stream):
        self._need_context()
        super().copy_to_device(pointer, array, stream)


def test_a_vocabulary_is_uploaded_from_a_thread_that_ran_no_frame_before(tiny_bundle, host_gpu, reference):
    import threading

    engine, _, _ = _device_engine(tiny_bundle, 4, driver=PerThreadContextDriver())
    frame = _frame(480, 640, seed=6)
    engine(frame)  # this thread made the context current
    engine.set_classes(list(reversed(CLASSES)))  # uploaded on the next frame, from whichever thread runs it
    results, errors = [], []

    def other_thread():
        try:
            results.append(engine(frame))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert not errors, errors  # e66ca60: CUDA_ERROR_INVALID_CONTEXT from set_vocabulary's allocation
    expected = Engine(tiny_bundle, classes=list(reversed(CLASSES)), backend="onnxruntime")(frame)
    _assert_same_segmentation(results[0], expected)


class StreamRecordingDriver(HostCudaDriver):
    """``HostCudaDriver`` with a handle of its own per stream, recording stream synchronisations in ``events``."""

    def __init__(self):
        super().__init__()
        self.events = []

    def stream_create(self, flags: int = 1) -> int:
        self.stream_flags.append(flags)
        return 100 + len(self.stream_flags)

    def stream_synchronize(self, stream: int) -> None:
        self.events.append(("sync", stream))


def _record_executions(backend, driver, roles=("image", "head")):
    """Log each execution of the backend's runners' contexts, with its stream, into ``driver.events``."""
    for role in roles:
        context = backend._runners[role].context
        original = context.execute_async_v3

        def execute(stream_handle, original=original, role=role):
            driver.events.append(("execute", role, stream_handle))
            return original(stream_handle)

        context.execute_async_v3 = execute


def test_the_device_path_runs_the_host_path_s_execution_contexts(tiny_bundle, host_gpu, monkeypatch, reference):
    """One execution context per engine, so TensorRT's activation memory for it is held once (c783dbf made a second
    context per engine for the device path: twice the activation memory, on an 8 GB Jetson too); the device and
    host paths of one backend take turns on it with the right results."""
    driver = StreamRecordingDriver()
    backend, engines = tensorrt_backend_on_stand_ins(monkeypatch, reference.meta, 4, driver)
    device = Engine(tiny_bundle, classes=CLASSES, backend=backend, device_pipeline=True)
    host = Engine(tiny_bundle, classes=CLASSES, backend=backend, device_pipeline=False)
    executor = device.pipeline.device.executor
    assert isinstance(executor, TensorRTExecutor) and host.pipeline.device is None
    for role in ("image", "head"):
        assert executor.contexts[role] is backend._runners[role].context
    for seed in (7, 8):
        frame = _frame(480, 640, seed=seed)
        _assert_same_segmentation(device(frame), reference(frame))
        _assert_same_segmentation(host(frame), reference(frame))
    assert {role: engine.contexts_made for role, engine in engines.items()} == {"image": 1, "head": 1, "text": 1}


def test_the_host_path_waits_for_device_work_on_a_shared_context(tiny_bundle, host_gpu, monkeypatch, reference):
    """Device work is enqueued and not waited for; the host path's next run on the same context first synchronises
    the device pipeline's stream (a context's scratch memory must not serve two streams at once)."""
    driver = StreamRecordingDriver()
    backend, _ = tensorrt_backend_on_stand_ins(monkeypatch, reference.meta, 4, driver)
    executor = backend.device_executor()
    _record_executions(backend, driver)
    size = reference.meta.image_size
    executor.run("image", {Names.IMAGE: executor.memory.empty((1, 3, size, size), np.float32)})  # enqueued
    assert driver.events[-1] == ("execute", "image", executor.memory.stream)
    mark = len(driver.events)
    backend.encode_image(np.zeros((1, 3, size, size), np.float32))
    runner_stream = backend._runners["image"]._stream
    assert driver.events[mark] == ("sync", executor.memory.stream)  # before the host path touches the context
    assert ("execute", "image", runner_stream) in driver.events[mark + 1 :]


def test_with_cuda_graphs_the_device_path_has_contexts_of_its_own(monkeypatch, reference, host_gpu):
    """A CUDA graph replays the state its context had at the capture, which the host path must not change: with
    ``cuda_graphs=True`` the executor makes a second context per engine (the documented cost: a second activation
    memory)."""
    backend, engines = tensorrt_backend_on_stand_ins(monkeypatch, reference.meta, 4, HostCudaDriver(), cuda_graphs=True)
    executor = backend.device_executor()
    for role in ("image", "head"):
        assert executor.contexts[role] is not backend._runners[role].context
        assert executor.contexts[role].engine is backend._runners[role].engine
    assert {role: engine.contexts_made for role, engine in engines.items()} == {"image": 2, "head": 2, "text": 1}


def test_the_driver_graph_api_is_declared_on_first_use_and_explains_an_old_driver():
    from zsseg_rt.runtime.device.cuda_driver import CudaDriver, CudaError

    class OldDriver(RecordingLibcuda):  # a CUDA 10.2 driver (JetPack 4): no cuGraphInstantiateWithFlags
        def __getattr__(self, name):
            if name.startswith(("cuGraph", "cuStreamBeginCapture", "cuStreamEndCapture")):
                raise AttributeError(name)
            return super().__getattr__(name)

    driver = CudaDriver(OldDriver())  # everything but graphs still works
    assert driver.stream_create() == 0
    with pytest.raises(CudaError, match=r"no CUDA graph API.*CUDA 11.4"):
        driver.begin_capture(7)
    current = CudaDriver(RecordingLibcuda())
    current.begin_capture(7)
    assert current.end_capture(7) == 0 and current.graph_instantiate(0) == 0
