"""The end-of-run speed summary (``zsseg_rt.console.speed``; issue 75 item 4): the mean milliseconds an image spent in each
stage, the stages in the pipeline's order, an image without a stage counting 0 for it, what ran and the size."""

from __future__ import annotations

import json

import pytest

from zsseg_rt.console.speed import SpeedMeter, speed_line


def test_the_line_holds_each_stages_mean_per_image_what_ran_and_the_size():
    meter = SpeedMeter()
    meter.add({"postprocess": 2.0, "preprocess": 3.0, "image_encoder": 40.0, "total": 46.0}, (480, 640))
    meter.add({"postprocess": 2.4, "preprocess": 3.2, "image_encoder": 42.0, "total": 48.0}, (480, 640))
    assert meter.per_image() == pytest.approx(
        {"preprocess": 3.1, "image_encoder": 41.0, "postprocess": 2.2, "total": 47.0}
    )
    assert list(meter.per_image()) == ["preprocess", "image_encoder", "postprocess", "total"]  # pipeline order
    assert meter.line("onnxruntime", "fp32") == (
        "Speed: 3.1 ms preprocess, 41.0 ms encoder, 2.2 ms post-processing, 47.0 ms in all per image "
        "(onnxruntime fp32, 640x480)"
    )
    record = meter.as_dict("onnxruntime", "fp32")
    assert record["images"] == 2 and record["size"] == "640x480" and record["ms_per_image"]["total"] == 47.0


def test_a_stage_some_images_did_not_run_counts_0_for_them_and_sizes_that_vary_are_said():
    """A propagated video frame runs no encoder: the encoder's mean is over every frame, so the stages add up to
    the mean total; a total not given is the stages' sum; several sizes: the most frequent and how many others."""
    meter = SpeedMeter()
    meter.add({"image_encoder": 30.0, "total": 30.0}, (10, 20))
    meter.add({"flow": 4.0, "propagate": 2.0}, (10, 20))
    meter.add({"flow": 4.0, "propagate": 2.0}, (11, 20))
    means = meter.per_image()
    assert means == pytest.approx({"image_encoder": 10.0, "flow": 8 / 3, "propagate": 4 / 3, "total": 14.0})
    assert sum(value for name, value in means.items() if name != "total") == pytest.approx(means["total"])
    assert meter.size_text() == "20x10 and 1 other size"
    assert meter.line(unit="frame").endswith("per frame (20x10 and 1 other size)")


def test_nothing_measured_says_nothing_and_an_unknown_stage_keeps_its_name():
    assert SpeedMeter().line("onnxruntime", "fp32") == "" and SpeedMeter().as_dict()["ms_per_image"] == {}
    assert speed_line({"my_stage": 1.25, "total": 1.25}) == "Speed: 1.2 ms my stage per image"


def test_merged_states_equal_one_meter_fed_every_image():
    """``zsseg eval --ray``'s driver adds its actors' meters (SpeedMeter.state/merge): the same line as one meter."""
    images = [({"preprocess": 1.0, "image_encoder": 4.0}, (375, 500)), ({"image_encoder": 6.0}, (338, 500))]
    images += [({"preprocess": 2.0, "image_encoder": 5.0, "total": 9.0}, (375, 500))]
    whole, first, second = SpeedMeter(), SpeedMeter(), SpeedMeter()
    for index, (timing, size) in enumerate(images):
        whole.add(timing, size)
        (first if index < 2 else second).add(timing, size)
    merged = SpeedMeter()
    for part in (first, second):
        merged.merge(json.loads(json.dumps(part.state())))  # through JSON, as the actors hand it over
    assert merged.as_dict("onnxruntime", "fp32") == whole.as_dict("onnxruntime", "fp32")
    assert merged.images == 3 and merged.per_image()["total"] == pytest.approx((5.0 + 6.0 + 9.0) / 3)
    assert merged.size_text() == "500x375 and 1 other size"
