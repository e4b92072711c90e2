"""The Python API a user reads a result with: ``Engine(bundle, classes, *, ...)`` with a real signature, inputs as a
path, a NumPy array (BGR by default, RGB on request) or a PIL image, and the ``Result`` (areas, views, files, JSON,
per-stage timing, a short repr, the random-weights banner) with every attribute the earlier result type had."""

import inspect
import json
import os
import pathlib
import warnings

import numpy as np
import pytest

from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.runtime import Engine, Result, SegmentationResult

cv2 = pytest.importorskip("cv2")

PHOTO = str(SAMPLES_DIR / "JPEGImages" / "2011_000003.jpg")
CLASSES = ["person", "cat", "dog", "car", "chair", "sofa", "table", "plant", "bottle", "tv"]


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return Engine(tiny_bundle, CLASSES, backend="onnxruntime", device="cpu")


def test_engine_signature_is_explicit():
    import zsseg_rt

    params = inspect.signature(zsseg_rt.Engine).parameters
    kinds = {p.kind for p in params.values()}
    assert inspect.Parameter.VAR_POSITIONAL not in kinds and inspect.Parameter.VAR_KEYWORD not in kinds
    assert list(params)[:2] == ["bundle", "classes"]
    assert all(
        p.kind is inspect.Parameter.KEYWORD_ONLY for name, p in params.items() if name not in ("bundle", "classes")
    )
    assert {"backend", "device", "mode", "max_pixels"} <= set(params)
    from zsseg_rt.options import ENGINE_OPTIONS  # the signature is the table's (Engine checks **options there)

    assert list(params)[3:] == ENGINE_OPTIONS.names() and params["precision"].default is None
    assert zsseg_rt.Result is Result and SegmentationResult is Result  # the former name keeps working


def test_path_array_and_pil_inputs_give_the_same_labels(engine, tiny_bundle):
    Image = pytest.importorskip("PIL.Image")
    bgr = cv2.imread(PHOTO, cv2.IMREAD_COLOR)
    from_array = engine(bgr)  # NumPy: BGR by default, as OpenCV reads it
    from_path = engine(PHOTO)
    from_pathlib = engine(pathlib.Path(PHOTO))
    from_pil = engine(Image.open(PHOTO))  # PIL: RGB
    from_rgb = engine(bgr[:, :, ::-1].copy(), color_order="rgb")
    assert len(np.unique(from_array.labels)) >= 2  # a real segmentation, so a channel swap would show
    for other in (from_path, from_pathlib, from_pil, from_rgb):
        assert np.array_equal(other.labels, from_array.labels)
    swapped = engine(bgr[:, :, ::-1].copy())  # an RGB array read as BGR: another image, other labels
    assert not np.array_equal(swapped.labels, from_array.labels)
    assert from_path.path == PHOTO and from_array.path is None
    assert from_pil.color_order == "rgb" and from_path.color_order == "bgr"
    assert Engine(pathlib.Path(tiny_bundle), "cat,dog", backend="onnxruntime").class_names == ["cat", "dog"]


def test_result_areas_views_timing_and_repr(engine):
    result = engine(PHOTO)
    areas = result.areas()
    assert list(areas) == [result.class_names[i] for i in result.present_classes()]
    assert sum(areas.values()) == pytest.approx(1.0)
    counts = np.bincount(result.labels.ravel(), minlength=len(CLASSES))
    assert areas == {CLASSES[i]: counts[i] / result.labels.size for i in np.flatnonzero(counts)}
    assert set(result.areas(all_classes=True)) == set(CLASSES)
    assert result.overlay().shape == result.image.shape  # the input image is kept: no argument needed
    assert np.array_equal(result.overlay(), result.overlay(result.image))
    assert result.mask().shape == result.image.shape
    assert {"read", "preprocess", "image_encoder", "head", "postprocess", "total"} <= set(result.timing)
    assert result.speed is result.timing and all(ms >= 0 for ms in result.timing.values())
    assert result.timing["total"] >= result.timing["image_encoder"] + result.timing["head"]
    text = repr(result)
    assert text.startswith("Result(500x") and "array" not in text and len(text) < 200, text
    assert result.banner == "" and result.backend == "onnxruntime"  # the tiny bundle records its checkpoint


def test_result_json_and_save(engine, tmp_path):
    result = engine(PHOTO)
    data = json.loads(result.to_json())
    assert data["image"] == PHOTO and data["classes"] == CLASSES and data["class_map"]["0"] == "person"
    assert data["areas"] == {k: round(v, 6) for k, v in result.areas().items()} and "timing_ms" in data
    paths = result.save(str(tmp_path / "out"))
    stem = "2011_000003"
    assert sorted(os.path.basename(p) for p in paths.values()) == sorted(
        [f"{stem}_overlay.png", f"{stem}_mask.png", f"{stem}_labels.png", f"{stem}.json"]
    )
    labels = cv2.imread(paths["labels"], cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint8 and np.array_equal(labels, result.labels)  # 8-bit: ids as they are
    assert cv2.imread(paths["mask"]).shape == result.image.shape
    with open(paths["json"], encoding="utf-8") as handle:
        assert json.load(handle)["files"]["labels"] == paths["labels"]
    with pytest.raises(FileExistsError):
        result.save(str(tmp_path / "out"))  # never replaced silently
    assert result.save(str(tmp_path / "out"), overwrite=True) == paths
    bare = Result(result.labels, result.scores, result.class_names)  # built without the image: still works
    assert bare.save(str(tmp_path / "bare"), views=("mask", "labels"))["mask"].endswith("result_mask.png")
    with pytest.raises(ValueError, match="input image"):
        bare.overlay()


def test_sixteen_bit_labels_above_256_classes():
    labels = np.array([[0, 300], [299, 1]], dtype=np.int32)
    result = Result(labels, np.zeros(labels.shape, np.float32), [f"c{i}" for i in range(301)])
    from zsseg_rt.runtime.result import label_image

    assert label_image(result.labels, 301).dtype == np.uint16 and label_image(result.labels, 256).dtype == np.uint8


def test_random_weight_results_carry_the_banner(random_bundle):
    engine = Engine(random_bundle, CLASSES, backend="onnxruntime")
    result = engine(PHOTO)
    assert "RANDOM WEIGHTS" in result.banner and "RANDOM WEIGHTS" in repr(result)
    assert json.loads(result.to_json())["random_weights"] is True
    plain = result.overlay(banner=False)
    marked = result.overlay()
    changed = np.any(plain != marked, axis=2)
    rows = np.flatnonzero(changed.any(axis=1))
    assert rows.size and rows.min() > result.labels.shape[0] * 0.8  # a strip along the bottom edge
    bottom = marked[-3, :, :].astype(int)  # BGR: red dominates where the strip is
    assert (bottom[:, 2] > bottom[:, 0] + 100).mean() > 0.5


def test_auto_backend_without_tensorrt_is_quiet(tiny_bundle):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here: 'auto' may choose it")
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a CPU run is the normal case: no warning recommending TensorRT
        engine = Engine(tiny_bundle, "cat,dog", backend="auto")
        engine(PHOTO)
    assert engine.backend.name == "onnxruntime"


def test_trailing_comma_in_classes_is_ignored(engine):
    from zsseg_rt.vocabulary import validate_class_names

    assert validate_class_names("cat, dog,") == ["cat", "dog"] and validate_class_names("cat, dog, ") == ["cat", "dog"]
    with pytest.raises(ValueError, match="empty"):
        validate_class_names("cat,,dog")
    with pytest.raises(ValueError, match="empty"):
        validate_class_names(",")
