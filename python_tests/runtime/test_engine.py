"""Engine on a tiny exported bundle: parity with PyTorch, run-time vocabularies, bad input, thread safety.

The backend tests (the ``engine`` fixture's and those parametrised with ``BACKENDS``) run on every CPU backend:
ONNX Runtime and OpenVINO (skipped with the reason when OpenVINO is not installed; a failure instead where
``ZSSEG_REQUIRE_OPENVINO=1``, as tools/run_tests.sh sets it). OpenVINO's own tests: test_openvino_backend.py."""

import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from support import GOLDEN, VOCAB10, assert_segmentations_agree, distinct_labels, perturbed_head, require_backend

from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.bundle import BundleError
from zsseg_rt.runtime import Engine

SAMPLES = str(SAMPLES_DIR / "JPEGImages")


def _photo(name="2011_000003.jpg"):
    cv2 = pytest.importorskip("cv2")
    path = os.path.join(SAMPLES, name)
    assert os.path.isfile(path), f"the sample photo {path} ships with the package"
    return cv2.imread(path, cv2.IMREAD_COLOR)


# the CPU backends every Engine test below runs on
BACKENDS = ["onnxruntime", "openvino"]


@pytest.fixture(scope="module", params=BACKENDS)
def engine(tiny_bundle, request):
    require_backend(request.param)
    return Engine(tiny_bundle, classes=["person", "bottle", "chair", "sofa"], backend=request.param)


def test_the_engine_fixture_runs_the_backend_it_names(engine):
    """Control for the parametrisation: a fixture that silently fell back to ONNX Runtime would fail here."""
    assert engine.backend.name in BACKENDS
    assert (
        type(engine.backend.runner).__name__
        == {"onnxruntime": "OrtRunner", "openvino": "OpenVinoRunner"}[engine.backend.name]
    )


def test_result_types_and_sizes(engine):
    image = _photo()
    result = engine(image)
    assert result.labels.shape == image.shape[:2] and result.labels.dtype == np.int32
    assert result.scores.shape == image.shape[:2] and result.scores.dtype == np.float32
    assert result.labels.min() >= 0 and result.labels.max() < 4
    assert result.class_names == ["person", "bottle", "chair", "sofa"]
    assert result.to_color().shape == image.shape and result.overlay(image).shape == image.shape


def test_onnxruntime_equals_torch_backend_and_model_predict(tiny_bundle):
    pytest.importorskip("torch")
    from zsseg_rt.contract.common.predict import predict
    from zsseg_rt.models import load_native

    image = _photo("2011_000025.jpg")
    ort_engine = Engine(tiny_bundle, classes=VOCAB10, backend="onnxruntime")
    ort_result = ort_engine(image)
    assert distinct_labels(ort_result.labels) >= 3  # a model that says one label everywhere proves nothing
    torch_engine = Engine(tiny_bundle, classes=VOCAB10, backend="torch")
    torch_result = torch_engine(image)
    assert_segmentations_agree(
        torch_result.labels, torch_result.scores, ort_result.labels, ort_result.scores, what="torch vs onnxruntime"
    )
    meta = json.load(open(os.path.join(tiny_bundle, "meta.json")))
    model = load_native(meta["source_checkpoint"]).eval()
    labels, scores = predict(model, image[:, :, ::-1].copy(), class_names=VOCAB10, mode="slide")
    assert_segmentations_agree(labels, scores, ort_result.labels, ort_result.scores, what="predict vs onnxruntime")
    # mutation self-check: 0.05 added to the logits of one winning class on one side must fail the comparison
    winner = int(np.bincount(ort_result.labels.reshape(-1)).argmax())
    with perturbed_head(ort_engine, winner, 0.05):
        mutated = ort_engine(image)
    with pytest.raises(AssertionError):
        assert_segmentations_agree(torch_result.labels, torch_result.scores, mutated.labels, mutated.scores)


def test_fast_mode_on_single_window(tiny_bundle):
    from zsseg_rt import pipeline

    names = VOCAB10
    exact = Engine(tiny_bundle, classes=names, backend="onnxruntime", mode="exact")
    fast = Engine(tiny_bundle, classes=names, backend="onnxruntime", mode="fast")
    rng = np.random.default_rng(0)
    # image == one 64x64 window, output size == window size: both modes compute the same function; labels may
    # differ only at near-ties (fast compares the group winners in fp64, exact rounds the calibrated scores to
    # fp32 first), i.e. where both winners' calibrated scores are within 1e-6 of each other
    square = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    a, b = fast(square), exact(square)
    differ = a.labels != b.labels
    assert differ.mean() < 0.005
    assert np.abs(a.scores - b.scores)[differ].max(initial=0.0) < 1e-6
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-6)
    # a 48x48 frame (rescaled to one 64x64 window): fast = the fused op straight from the logits to 48x48
    small = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    result = fast(small)
    chw = pipeline.normalize_image(
        pipeline.rescale_keep_ratio(pipeline.to_rgb_uint8(small), fast.meta.test_scale), fast.meta.mean, fast.meta.std
    )
    logits = fast.backend.head(fast._vocab[1], fast.backend.encode_image(chw[None]))
    labels, scores = pipeline.segment_fast(logits, (48, 48), fast._vocab[2])
    np.testing.assert_array_equal(result.labels, labels[0])
    np.testing.assert_allclose(result.scores, scores[0], rtol=0, atol=1e-7)
    # Fast vs the official order, derived bound: the official order takes sigmoid at 64x64 then resizes to 48x48;
    # fast resizes the logits to 48x48 then takes sigmoid. Either value at an output pixel is a convex combination
    # (of logits, or of sigmoids of logits) drawn from the logit cells within one cell of the pixel's position on
    # the 4x4 grid, so it lies in [sigmoid(lo_c), sigmoid(hi_c)] - bias_c with lo_c/hi_c the min/max of class c's
    # logits there. Both winning scores must lie in their class's interval, and the labels may differ only
    # where the two winners' intervals overlap.
    official = exact(small)
    bias = fast._vocab[2].astype(np.float64)
    grid = logits.shape[-1]
    centre = np.clip(np.floor((np.arange(48) + 0.5) * grid / 48 - 0.5).astype(int), 0, grid - 1)
    lo = np.empty((logits.shape[1], 48, 48))
    hi = np.empty_like(lo)
    for y in range(48):
        rows = slice(max(centre[y] - 1, 0), min(centre[y] + 3, grid))
        for x in range(48):
            cols = slice(max(centre[x] - 1, 0), min(centre[x] + 3, grid))
            block = logits[0, :, rows, cols].reshape(logits.shape[1], -1).astype(np.float64)
            lo[:, y, x], hi[:, y, x] = block.min(axis=1), block.max(axis=1)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    low, high = sig(lo) - bias[:, None, None], sig(hi) - bias[:, None, None]
    yy, xx = np.mgrid[:48, :48]
    for res in (result, official):
        assert np.all(res.scores >= low[res.labels, yy, xx] - 1e-6) and np.all(
            res.scores <= high[res.labels, yy, xx] + 1e-6
        )
    differ = result.labels != official.labels
    a, b = result.labels[differ], official.labels[differ]
    ys, xs = yy[differ], xx[differ]
    assert np.all(high[a, ys, xs] >= low[b, ys, xs] - 1e-6) and np.all(high[b, ys, xs] >= low[a, ys, xs] - 1e-6)
    assert distinct_labels(official.labels) >= 2  # the comparison is not between two constant maps


def test_vocabulary_change_needs_no_rebuild_and_classes_are_independent(engine):
    image = _photo()
    names = ["person", "bottle", "chair", "sofa"]
    engine.set_classes(names)
    full = engine.backend.head(engine._vocab[1], engine.backend.encode_image(np.zeros((1, 3, 64, 64), np.float32)))
    for idx, name in enumerate(names):
        engine.set_classes([name])
        single = engine.backend.head(
            engine._vocab[1], engine.backend.encode_image(np.zeros((1, 3, 64, 64), np.float32))
        )
        # independent up to fp32 rounding: GEMM blocking changes with C (logits of a few units: ~1e-6 relative)
        np.testing.assert_allclose(single[:, 0], full[:, idx], rtol=0, atol=1e-5)
    engine.set_classes(names)
    assert engine(image).class_names == names


def test_text_embeddings_are_cached_per_vocabulary(engine):
    calls = []
    original = engine.backend.encode_text
    engine.backend.encode_text = lambda tokens: calls.append(len(tokens)) or original(tokens)
    try:
        engine.set_classes(["zebra", "lamp"])
        engine.set_classes(["zebra", "lamp"])
    finally:
        engine.backend.encode_text = original
    assert len(calls) == 1


def test_seen_class_calibration_follows_bundle_meta(engine):
    meta = engine.meta
    seen = meta.seen_class_names[0]
    engine.set_classes([seen, "definitely not a training class"])
    assert engine._vocab[2].tolist() == pytest.approx([meta.calibration_bias, 0.0])


@pytest.mark.parametrize(
    "names, match",
    [
        ([], "empty"),
        (["cat", "cat"], "duplicate"),
        (["cat", " "], "empty strings"),
        (["c%d" % i for i in range(33)], "at most 32"),
    ],
)
def test_bad_vocabularies(engine, names, match):
    with pytest.raises(ValueError, match=match):
        engine.set_classes(names)


@pytest.mark.parametrize(
    "image, error, match",
    [
        (np.zeros((10, 10, 3), np.float64), TypeError, "uint8"),
        (np.zeros((0, 10, 3), np.uint8), ValueError, "empty"),
        (np.zeros((10, 10, 5), np.uint8), ValueError, "channels"),
        ("no_such_photo.jpg", ValueError, "does not exist"),  # a path is read (ImageReadError, a ValueError)
        (b"photo.jpg", TypeError, "numpy"),
    ],
)
def test_bad_images(engine, image, error, match):
    with pytest.raises(error, match=match):
        engine(image)


def test_grayscale_rgba_and_tiny_images_work(engine):
    gray = np.full((37, 53), 128, np.uint8)
    assert engine(gray).labels.shape == (37, 53)
    rgba = np.zeros((20, 30, 4), np.uint8)
    assert engine(rgba).labels.shape == (20, 30)
    assert engine(np.zeros((1, 1, 3), np.uint8)).labels.shape == (1, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_of_images_equals_one_by_one(tiny_bundle, backend):
    require_backend(backend)
    engine = Engine(tiny_bundle, classes=VOCAB10, backend=backend)
    images = [
        _photo(),
        np.random.default_rng(5).integers(0, 255, (40, 90, 3), dtype=np.uint8),
        _photo("2011_000006.jpg"),
    ]
    results = engine(images)
    assert [r.labels.shape for r in results] == [im.shape[:2] for im in images]
    for image, batched in zip(images, results):
        single = engine(image)
        np.testing.assert_array_equal(batched.labels, single.labels)
        np.testing.assert_array_equal(batched.scores, single.scores)
    assert distinct_labels(results[2].labels) >= 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupted_bundle_is_refused(tiny_bundle, tmp_path, backend):
    copy = str(tmp_path / "bundle")
    shutil.copytree(tiny_bundle, copy)
    with open(os.path.join(copy, "head.onnx"), "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match="corrupted"):  # checked before the backend is even imported
        Engine(copy, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shared_engine_across_threads_gives_the_single_threaded_pixels(tiny_bundle, backend):
    require_backend(backend)
    engine = Engine(tiny_bundle, classes=VOCAB10, backend=backend)
    images = [_photo("2011_000006.jpg"), np.random.default_rng(1).integers(0, 255, (80, 120, 3), dtype=np.uint8)]
    vocabularies = [VOCAB10, ["sofa", "person", "chair"], ["tv", "bottle", "plant", "cat", "dog"]]
    expected = {}
    for vocabulary in vocabularies:  # single-threaded references, per (vocabulary, image)
        engine.set_classes(vocabulary)
        expected[tuple(vocabulary)] = [engine(image) for image in images]
    assert distinct_labels(expected[tuple(VOCAB10)][0].labels) >= 3
    errors, checked = [], []

    def worker(i):
        try:
            for j in range(6):
                if i == 0:
                    engine.set_classes(vocabularies[j % 3])
                k = (i + j) % len(images)
                result = engine(images[k])
                reference = expected[tuple(result.class_names)][k]
                np.testing.assert_array_equal(result.labels, reference.labels)
                np.testing.assert_array_equal(result.scores, reference.scores)
                checked.append(1)
        except Exception as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert len(checked) == 24


@pytest.mark.parametrize("backend", BACKENDS)
def test_runtime_runs_where_torch_cannot_be_imported(tiny_bundle, backend):
    require_backend(backend)
    code = f"""
import sys
sys.modules['torch'] = None        # any `import torch` now raises ImportError
sys.modules['open_clip'] = None
import numpy as np
from zsseg_rt.runtime import Engine
engine = Engine({tiny_bundle!r}, classes='cat, sofa, floor', backend={backend!r})
result = engine(np.zeros((50, 70, 3), np.uint8))
assert result.labels.shape == (50, 70)
print('ok', engine.backend.name)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"ok {backend}" in out.stdout


def test_elongated_image_follows_the_official_min_size_resize(tmp_path):
    """Official ZegCLIP test resize (min_size rule): short side exactly S, long side uncapped. The Engine reads
    the rule from meta.json and must give the labels of the PyTorch reference path on a 1:10 image."""
    pytest.importorskip("torch")
    import cv2

    from zsseg_rt.contract.common.predict import predict
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import load_official_zegclip

    model = load_official_zegclip(
        GOLDEN / "zegclip_tiny" / "official_tiny.safetensors",
        config="zegclip_tiny_test",
        decoder_ffn_dim=128,
        test_scale=[None, 64],
    ).eval()
    bundle = export_bundle(model, str(tmp_path / "b"), max_classes=12)
    engine = Engine(bundle, classes=VOCAB10, backend="onnxruntime")
    assert engine.meta.test_scale == [None, 64]
    image = cv2.resize(_photo("2011_000006.jpg"), (500, 50), interpolation=cv2.INTER_AREA)  # 1:10
    result = engine(image)
    labels, scores = predict(model, image[:, :, ::-1].copy(), class_names=VOCAB10, mode="slide")
    assert distinct_labels(labels) >= 2
    assert_segmentations_agree(labels, scores, result.labels, result.scores, what="elongated: Engine vs predict")
    assert result.labels.shape == (50, 500)
