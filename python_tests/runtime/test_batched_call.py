"""``engine([img1, img2, ...])``: the batched call against per-image calls, its packing, memory bound and errors.

Equality: a window's scores depend on the batch it ran in only through the backend's kernels (fp32 summation order
of a batched GEMM / convolution may differ with the batch size). With ``max_batch=1`` every window runs alone in
both calls, so the batched call must be bit-identical. With larger batches the windows of several images share
encoder/head calls that a per-image call would have run with other companions: labels must be equal and scores within
``SCORE_ATOL``: an fp32 rounding bound, not a tuned number (scores are probabilities in [0, 1]; a few ulps of
1.0 are ~1e-7, and reordered sums over the tiny model's few hundred terms stay orders of magnitude under 1e-5).
"""

import os
import shutil
import threading
import weakref

import numpy as np
import pytest
from support import VOCAB10, require_backend

from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.runtime import Engine

SAMPLES = str(SAMPLES_DIR / "JPEGImages")
SCORE_ATOL = 1e-5
# "onnxruntime+device": the device pipeline's CPU form (device_pipeline=True: DevicePipeline on host buffers), the
# path torch on CUDA and TensorRT take, here in CI
BACKENDS = ["onnxruntime", "onnxruntime+device", "openvino", "torch"]


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory):
    """A private copy of the session's tiny bundle: the OpenVINO engines write their compiled-model cache into its
    engines/ folder, which the session bundle must not get (test_bundle_meta checks its files)."""
    return shutil.copytree(tiny_bundle, str(tmp_path_factory.mktemp("batched") / "bundle"))


def _inputs():
    """Paths, BGR arrays and PIL images of mixed sizes: photos (several windows each), one smaller than a window,
    one elongated (several windows along one side)."""
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(3)
    return [
        os.path.join(SAMPLES, "2011_000003.jpg"),
        rng.integers(0, 255, (20, 20, 3), dtype=np.uint8),
        Image.open(os.path.join(SAMPLES, "2011_000006.jpg")),
        rng.integers(0, 255, (48, 300, 3), dtype=np.uint8),
        os.path.join(SAMPLES, "2011_000025.jpg"),
    ]


def _engine(bundle, backend, max_batch):
    backend, _, device = backend.partition("+")
    require_backend(backend)
    options = {"device_pipeline": True} if device else {}
    engine = Engine(bundle, classes=VOCAB10, backend=backend, max_batch=max_batch, **options)
    assert (engine.pipeline.device is not None) == bool(device) or backend == "torch"  # torch: on CUDA where one is
    return engine


class _Recorder:
    """A backend wrapper that records the batch size of every image-encoder call."""

    def __init__(self, backend):
        self._backend, self.sizes = backend, []

    def encode_image(self, batch):
        self.sizes.append(len(batch))
        return self._backend.encode_image(batch)

    def __getattr__(self, name):
        return getattr(self._backend, name)


class _ExecutorRecorder:
    """The same for the device pipeline (torch on CUDA, TensorRT), whose executor runs the image graph itself."""

    def __init__(self, executor, sizes):
        self._executor, self.sizes = executor, sizes

    def run(self, role, inputs):
        if role == "image":
            self.sizes.append(len(inputs["image"]))
        return self._executor.run(role, inputs)

    def __getattr__(self, name):
        return getattr(self._executor, name)


def _record(engine):
    """The batch sizes of the image encoder's calls from now on, on whichever path the engine takes."""
    engine.backend = recorder = _Recorder(engine.backend)
    device = getattr(engine.pipeline, "device", None)  # a DevicePipeline where the frame stays on the GPU
    if device is not None:
        device.executor = _ExecutorRecorder(device.executor, recorder.sizes)
    return recorder


def _windows(engine, items):
    return [len(engine.pipeline.plan(np.asarray(r.image), engine.pipeline.class_bias(VOCAB10, None))[2]) for r in items]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("max_batch", [1, 2, 3, 4])
def test_windowed_batched_call_equals_per_image_calls(bundle, backend, max_batch):
    engine = _engine(bundle, backend, max_batch)
    singles = [engine(item) for item in _inputs()]
    recorder = _record(engine)
    hooked: list = []
    engine.stage_hook = lambda stage, seconds: hooked.append(stage)
    batched = engine(_inputs())
    if engine.pipeline.device is not None:  # the hook gets the pipeline's own stages, never the umbrella around them
        assert "image_encoder" in hooked and "device_pipeline" not in hooked, hooked
    windows = _windows(engine, singles)
    assert max(windows) > 1 and min(windows) == 1, f"the inputs must mix one- and many-window images: {windows}"
    # packed across images: every call full but the last, never over the limit
    total = sum(windows)
    assert recorder.sizes == [max_batch] * (total // max_batch) + ([total % max_batch] if total % max_batch else [])
    assert len(batched) == len(singles)
    for index, (one, many) in enumerate(zip(singles, batched)):
        assert many.labels.shape == one.labels.shape, index
        np.testing.assert_array_equal(many.labels, one.labels, err_msg=f"image {index}")
        if max_batch == 1:
            np.testing.assert_array_equal(many.scores, one.scores, err_msg=f"image {index}")
        else:
            np.testing.assert_allclose(many.scores, one.scores, rtol=0, atol=SCORE_ATOL, err_msg=f"image {index}")
        assert many.path == one.path and many.class_names == one.class_names
        assert np.array_equal(np.asarray(many.image), np.asarray(one.image))
        once = {"vocabulary_upload"}  # the device pipeline's, in the first call after set_classes (a single one here)
        assert set(many.timing) - once == set(one.timing) - once, index
        assert all(v >= 0 for v in many.timing.values())
        assert many.timing["total"] == pytest.approx(sum(v for k, v in many.timing.items() if k != "total"))


def test_fast_mode_batched_equals_per_image(bundle):
    engine = Engine(bundle, classes=VOCAB10, backend="onnxruntime", mode="fast", max_batch=1)
    singles = [engine(item) for item in _inputs()]
    for one, many in zip(singles, engine(_inputs())):
        np.testing.assert_array_equal(many.labels, one.labels)
        np.testing.assert_array_equal(many.scores, one.scores)


def test_memory_is_bounded_by_the_chunk_not_the_number_of_images(bundle):
    """At most the images of one chunk are held rescaled (with their logits), however many images the list has."""
    engine = Engine(bundle, classes=VOCAB10, backend="onnxruntime", max_batch=2)
    pipe = engine.pipeline
    live, peak = [0], [0]
    rescale, finish = pipe._rescale, pipe._finish

    def counting_rescale(*args):
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        return rescale(*args)

    def counting_finish(*args):
        live[0] -= 1
        return finish(*args)

    pipe._rescale, pipe._finish = counting_rescale, counting_finish
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(12)]  # one window each
    results = engine(images)
    assert len(results) == 12 and live[0] == 0
    assert peak[0] <= 2, f"{peak[0]} images held at once with max_batch=2"


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (42, TypeError, None),
        ("no/such/image.jpg", ValueError, None),
        (np.zeros((10, 10, 4, 2), np.uint8), (TypeError, ValueError), None),
    ],
)
def test_a_bad_item_is_named_by_its_index_with_the_single_calls_message(bundle, bad, error, match):
    engine = Engine(bundle, classes=VOCAB10, backend="onnxruntime")
    with pytest.raises(error) as single:
        engine(bad)
    recorder = _record(engine)
    rng = np.random.default_rng(1)
    items = [rng.integers(0, 255, (30, 30, 3), dtype=np.uint8), rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)]
    with pytest.raises(type(single.value)) as batched:
        engine(items + [bad])
    assert str(batched.value) == f"image 3 of the list (index 2): {single.value}"
    assert recorder.sizes == [], "an item is checked before any image of the list runs"


def test_an_image_over_the_pixel_limit_is_named_by_its_index(bundle):
    engine = Engine(bundle, classes=VOCAB10, backend="onnxruntime", max_pixels=5000)
    big = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError) as single:
        engine(big)
    with pytest.raises(type(single.value)) as batched:
        engine([np.zeros((20, 20, 3), np.uint8), big])
    assert str(batched.value) == f"image 2 of the list (index 1): {single.value}"


def test_an_empty_list_gives_an_empty_list(bundle):
    assert Engine(bundle, classes=VOCAB10, backend="onnxruntime")([]) == []


@pytest.fixture(scope="module")
def zegformer_bundle(family_bundles, tmp_path_factory):
    """A private copy of the session's tiny ZegFormer bundle (OpenVINO writes its cache into engines/)."""
    return shutil.copytree(family_bundles["zegformer"], str(tmp_path_factory.mktemp("zegformer") / "bundle"))


@pytest.mark.host_only  # ONNX Runtime and OpenVINO on the CPU (the GPU image: no CUDA provider, no OpenVINO)
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("max_batch", [1, 3])
def test_two_stage_batched_call_equals_per_image_calls(zegformer_bundle, backend, max_batch):
    engine = _engine(zegformer_bundle, backend, max_batch)
    singles = [engine(item) for item in _inputs()]
    batched = engine(_inputs())
    for index, (one, many) in enumerate(zip(singles, batched)):
        np.testing.assert_array_equal(many.labels, one.labels, err_msg=f"image {index}")
        np.testing.assert_allclose(many.scores, one.scores, rtol=0, atol=SCORE_ATOL, err_msg=f"image {index}")
        assert many.path == one.path and set(many.timing) == set(one.timing)


@pytest.mark.host_only  # ONNX Runtime on the CPU (the GPU image's has no CUDA provider): CI's, not the lease's
def test_two_stage_packs_the_crops_of_several_images_into_one_clip_call(zegformer_bundle):
    engine = Engine(zegformer_bundle, classes=VOCAB10, backend="onnxruntime", max_batch=7)
    sizes = []
    encode = engine.backend.encode_crops
    engine.backend.encode_crops = lambda crops: sizes.append(len(crops)) or encode(crops)
    items = _inputs()
    engine(items)
    queries = engine.pipeline.meta.raw["architecture"].get("config", {}).get("num_queries", 100)
    total = queries * len(items)
    assert queries % 7, "the crops of one image must not fill whole calls, or nothing is packed across images"
    assert sizes == [7] * (total // 7) + ([total % 7] if total % 7 else [])


class _ProfileRunner:
    """Stands in for ``tensorrt.TensorRTRunner``: runs an ONNX Runtime session, refusing (as TensorRT does) a leading
    dimension past its optimisation profile's maximum."""

    def __init__(self, session, outputs, limit):
        self.session, self.outputs, self.limit, self.batches = session, list(outputs), limit, []

    def input_profile(self, name):
        return (1,), (1,), (self.limit,)

    def run(self, feeds):
        from zsseg_rt.bundle import Names

        batch = len(next(v for k, v in feeds.items() if k != Names.TEXT_EMBEDDINGS))
        assert batch <= self.limit, f"a batch of {batch} past the engine profile's {self.limit}"
        self.batches.append(batch)
        return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))


def test_tensorrt_host_path_batched_call_stays_within_the_engine_profile(bundle):
    """The TensorRT backend's host path (its runners replaced by ONNX Runtime sessions behind a 3-window profile;
    TensorRT cannot run here): a list packed into max_batch=4 calls runs in profile-sized parts and equals the
    per-image calls (same graphs, so the fp32 bound; on TensorRT itself its precision's tolerance)."""
    from zsseg_rt.runtime.backends import TrtRunner, WindowedGraphs

    engine = Engine(bundle, classes=VOCAB10, backend="onnxruntime", max_batch=4)
    ort = engine.backend.runner
    trt = object.__new__(TrtRunner)  # the real runner's run / batch_limit, on stand-in engines
    trt._lock, trt.cuda_graphs, trt._sharing = threading.Lock(), False, weakref.WeakSet()
    trt._runners = {
        role: _ProfileRunner(ort._sessions[role], engine.meta.io[role]["outputs"], 3) for role in ort._sessions
    }
    engine.backend = WindowedGraphs(trt, engine.meta)
    singles = [engine(item) for item in _inputs()]
    trt._runners["image"].batches.clear()
    batched = engine(_inputs())
    total = sum(_windows(engine, singles))
    assert sum(trt._runners["image"].batches) == total and max(trt._runners["image"].batches) == 3
    for index, (one, many) in enumerate(zip(singles, batched)):
        np.testing.assert_array_equal(many.labels, one.labels, err_msg=f"image {index}")
        np.testing.assert_allclose(many.scores, one.scores, rtol=0, atol=SCORE_ATOL, err_msg=f"image {index}")


@pytest.mark.parametrize("max_windows", [1, 3])
def test_device_pipeline_segment_many_on_host_memory_equals_per_frame_calls(bundle, max_windows):
    """``DevicePipeline.segment_many`` with its CPU executor (host memory): the windows of all frames packed into
    batches of ``max_windows``, each frame's result the per-frame call's (bit-identical with one window per call)."""
    from zsseg_rt.runtime.device.device_pipeline import DevicePipeline, OnnxRuntimeExecutor

    engine = Engine(bundle, classes=VOCAB10, backend="onnxruntime", device_pipeline=False)
    pipe = DevicePipeline(engine.meta, OnnxRuntimeExecutor(engine.backend), max_windows=max_windows)
    pipe.set_vocabulary(engine._vocab.text, engine._vocab.bias)
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((50, 50, 3), (40, 150, 3), (20, 20, 3))]
    orders = ["bgr", "rgb", "bgr"]
    singles = [pipe(frame, order) for frame, order in zip(frames, orders)]
    for index, ((labels, scores), (one_labels, one_scores)) in enumerate(
        zip(pipe.segment_many(frames, orders), singles)
    ):
        np.testing.assert_array_equal(labels, one_labels, err_msg=f"frame {index}")
        if max_windows == 1:
            np.testing.assert_array_equal(scores, one_scores, err_msg=f"frame {index}")
        else:
            np.testing.assert_allclose(scores, one_scores, rtol=0, atol=SCORE_ATOL, err_msg=f"frame {index}")


def test_a_truncated_file_in_a_list_is_named_by_its_index(bundle, tmp_path):
    from support import write_bilevel_png

    from zsseg_rt.image_io import ImageReadError

    path = str(tmp_path / "cut.png")
    write_bilevel_png(path, 64, 48, complete=False)
    engine = Engine(bundle, classes=VOCAB10, backend="onnxruntime")
    with pytest.raises(ImageReadError) as single:
        engine(path)
    with pytest.raises(type(single.value)) as batched:
        engine([os.path.join(SAMPLES, "2011_000003.jpg"), path])
    assert str(batched.value) == f"image 2 of the list (index 1): {single.value}"
