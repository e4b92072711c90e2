"""Engine on a tiny exported bundle: parity with PyTorch, run-time vocabularies, bad input, thread safety."""
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from zsseg_rt.bundle import BundleError
from zsseg_rt.runtime import Engine

from zsseg_rt.assets import SAMPLES_DIR

SAMPLES = str(SAMPLES_DIR / "JPEGImages")


def _photo(name="2011_000003.jpg"):
    cv2 = pytest.importorskip("cv2")
    path = os.path.join(SAMPLES, name)
    assert os.path.isfile(path), f"the sample photo {path} ships with the package"
    return cv2.imread(path, cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return Engine(tiny_bundle, classes=["person", "bottle", "chair", "sofa"], backend="onnxruntime")


def test_result_types_and_sizes(engine):
    image = _photo()
    result = engine(image)
    assert result.labels.shape == image.shape[:2] and result.labels.dtype == np.int32
    assert result.scores.shape == image.shape[:2] and result.scores.dtype == np.float32
    assert result.labels.min() >= 0 and result.labels.max() < 4
    assert result.class_names == ["person", "bottle", "chair", "sofa"]
    assert result.to_color().shape == image.shape and result.overlay(image).shape == image.shape


def test_onnxruntime_equals_torch_backend_and_model_predict(tiny_bundle, engine):
    pytest.importorskip("torch")
    from zsseg_rt.models import load_native
    from zsseg_rt.models.predict import predict

    image = _photo("2011_000025.jpg")
    names = engine.class_names
    ort_result = engine(image)
    torch_engine = Engine(tiny_bundle, classes=names, backend="torch")
    torch_result = torch_engine(image)
    np.testing.assert_array_equal(torch_result.labels, ort_result.labels)
    np.testing.assert_allclose(torch_result.scores, ort_result.scores, atol=1e-5)
    meta = json.load(open(os.path.join(tiny_bundle, "meta.json")))
    model = load_native(meta["source_checkpoint"]).eval()
    labels, scores = predict(model, image[:, :, ::-1].copy(), class_names=names, mode="slide")
    np.testing.assert_array_equal(labels, ort_result.labels)
    np.testing.assert_allclose(scores, ort_result.scores, atol=1e-5)


def test_fast_mode_on_single_window(tiny_bundle):
    from zsseg_rt import pipeline

    names = ["a", "b", "c"]
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
    chw = pipeline.normalize_image(pipeline.rescale_keep_ratio(pipeline.to_rgb_uint8(small), fast.meta.test_scale),
                                   fast.meta.mean, fast.meta.std)
    logits = fast.backend.head(fast._vocab[1], fast.backend.encode_image(chw[None]))
    labels, scores = pipeline.segment_fast(logits, (48, 48), fast._vocab[2])
    np.testing.assert_array_equal(result.labels, labels[0])
    np.testing.assert_allclose(result.scores, scores[0], rtol=0, atol=1e-7)
    # and it stays close to the official order (they differ only where two classes nearly tie)
    assert (result.labels == exact(small).labels).mean() > 0.9


def test_vocabulary_change_needs_no_rebuild_and_classes_are_independent(engine):
    image = _photo()
    names = ["person", "bottle", "chair", "sofa"]
    engine.set_classes(names)
    full = engine.backend.head(engine._vocab[1], engine.backend.encode_image(np.zeros((1, 3, 64, 64), np.float32)))
    for idx, name in enumerate(names):
        engine.set_classes([name])
        single = engine.backend.head(engine._vocab[1], engine.backend.encode_image(np.zeros((1, 3, 64, 64), np.float32)))
        np.testing.assert_allclose(single[:, 0], full[:, idx], atol=1e-6)
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
    [([], "empty"), (["cat", "cat"], "duplicate"), (["cat", " "], "empty strings"), (["c%d" % i for i in range(33)], "at most 32")],
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
        ("photo.jpg", TypeError, "numpy"),
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


def test_batch_of_images(engine):
    images = [_photo(), np.zeros((40, 90, 3), np.uint8)]
    results = engine(images)
    assert [r.labels.shape for r in results] == [images[0].shape[:2], (40, 90)]


def test_corrupted_bundle_is_refused(tiny_bundle, tmp_path):
    copy = str(tmp_path / "bundle")
    shutil.copytree(tiny_bundle, copy)
    with open(os.path.join(copy, "head.onnx"), "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match="corrupted"):
        Engine(copy, backend="onnxruntime")


def test_shared_engine_across_threads(tiny_bundle):
    engine = Engine(tiny_bundle, classes=["a", "b"], backend="onnxruntime")
    image = np.random.default_rng(1).integers(0, 255, (80, 120, 3), dtype=np.uint8)
    vocabularies = [["a", "b"], ["c", "d", "e"], ["f"]]
    errors = []

    def worker(i):
        try:
            for j in range(6):
                if i == 0:
                    engine.set_classes(vocabularies[j % 3])
                result = engine(image)
                assert result.labels.max() < len(result.class_names)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_runtime_runs_where_torch_cannot_be_imported(tiny_bundle):
    code = f"""
import sys
sys.modules['torch'] = None        # any `import torch` now raises ImportError
sys.modules['open_clip'] = None
import numpy as np
from zsseg_rt.runtime import Engine
engine = Engine({tiny_bundle!r}, classes='cat, sofa, floor', backend='onnxruntime')
result = engine(np.zeros((50, 70, 3), np.uint8))
assert result.labels.shape == (50, 70)
print('ok', engine.backend.name)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ok onnxruntime" in out.stdout


def test_elongated_image_follows_the_official_min_size_resize(tmp_path):
    """Official ZegCLIP test resize (min_size rule): short side exactly S, long side uncapped. The Engine reads
    the rule from meta.json and must give the labels of the PyTorch reference path on a 1:10 image."""
    pytest.importorskip("torch")
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model
    from zsseg_rt.models.predict import predict

    model = create_model("zegclip_tiny_test", test_scale=[None, 64]).eval()
    bundle = export_bundle(model, str(tmp_path / "b"), max_classes=4)
    engine = Engine(bundle, classes=["sky", "road", "car"], backend="onnxruntime")
    assert engine.meta.test_scale == [None, 64]
    image = np.random.default_rng(3).integers(0, 255, (30, 300, 3), dtype=np.uint8)
    result = engine(image)
    labels, _ = predict(model, image[:, :, ::-1].copy(), class_names=["sky", "road", "car"], mode="slide")
    np.testing.assert_array_equal(result.labels, labels)
    assert result.labels.shape == (30, 300)
