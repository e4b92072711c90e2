"""``zsseg_rt.scale.records``: the one description of a segmented image that batch manifest rows and serve answers
share (names and units of the package's results). Torch-free and Ray-free: no cluster is started here."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest

from zsseg_rt.scale.records import image_record, label_png_bytes, milliseconds, random_weights


def test_areas_and_pixels_are_most_frequent_first_and_absent_classes_are_left_out():
    labels = np.array([[2, 2, 2], [0, 2, 0]], np.int32)  # class 1 absent
    record = image_record(labels, ["cat", "dog", "sky"], timing_s={"segment": 0.0123456, "write": 0.5})
    assert (record["height"], record["width"]) == (2, 3)
    assert list(record["pixels"].items()) == [("sky", 4), ("cat", 2)]
    assert list(record["areas"]) == ["sky", "cat"] and record["areas"]["sky"] == pytest.approx(4 / 6, abs=1e-6)
    assert sum(record["areas"].values()) == pytest.approx(1.0, abs=1e-5)
    assert record["timing_ms"] == {"segment": 12.346, "write": 500.0}
    assert "backend" not in record and "random_weights" not in record  # only what is known


def test_the_unknown_label_is_named_and_keeps_its_id_in_the_label_png():
    """``--unknown-below`` on zsseg batch / serve: the reserved id (255) is "unknown" in areas and pixels (it
    indexed past the classes: an IndexError before), and survives the label PNG (8-bit up to 255 classes, 16-bit
    when the classes and the unknown label need more than 256 ids)."""
    labels = np.array([[255, 0], [255, 1]], np.int32)
    record = image_record(labels, ["cat", "dog"])
    assert record["pixels"] == {"unknown": 2, "cat": 1, "dog": 1}
    png = cv2.imdecode(np.frombuffer(label_png_bytes(labels, 3), np.uint8), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8 and int(png[0, 0]) == 255
    wide = np.array([[65535, 255]], np.int32)
    png = cv2.imdecode(np.frombuffer(label_png_bytes(wide, 257), np.uint8), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.tolist() == [[65535, 255]]


def test_ties_keep_class_order_and_milliseconds_round_to_microseconds():
    record = image_record(np.array([[1, 0]], np.uint8), ["a", "b"], backend="onnxruntime")
    assert list(record["pixels"]) == ["a", "b"] and record["backend"] == "onnxruntime"
    assert milliseconds({"x": 1.23456789e-3}) == {"x": 1.235}


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"weights": {"random": True}}, True),
        ({"weights": {"random": False}}, False),
        ({"weights": {"random": "yes"}}, None),  # not a bool: not reported rather than guessed
        ({"source_checkpoint": None}, None),  # a bundle that does not record its weights
        ({}, None),
    ],
)
def test_random_weights_is_reported_only_where_the_bundle_records_it(raw, expected):
    meta = types.SimpleNamespace(raw=raw)
    assert random_weights(meta) is expected
    record = image_record(np.zeros((1, 1), np.uint8), ["a"], meta=meta)
    assert record.get("random_weights") is expected


@pytest.mark.parametrize("num_classes, dtype", [(3, np.uint8), (256, np.uint8), (257, np.uint16), (5000, np.uint16)])
def test_label_png_is_8_bit_up_to_256_classes_and_16_bit_above(num_classes, dtype):
    labels = (np.arange(12).reshape(3, 4) * (num_classes - 1) // 11).astype(np.int64)
    decoded = cv2.imdecode(np.frombuffer(label_png_bytes(labels, num_classes), np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, labels)
