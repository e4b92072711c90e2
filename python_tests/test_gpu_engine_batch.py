"""The engine check's batched-call, wall and head lines (checks/_gpu_engine_batch.py, issue 86 items 3 and 5) without a
GPU: a stand-in Engine whose calls advance an injected clock (no test depends on timing), and the verdicts."""

import numpy as np
import pytest

from checks import _gpu_engine_batch as batch


class ClockedEngine:
    """``engine(image)`` costs ``single`` seconds of the clock; ``engine([image] * n)`` costs ``fixed + n * each``;
    labels are the image's first row (``wrong``: a batched call's labels differ)."""

    def __init__(self, single, fixed, each, wrong=False):
        self.now, self.single, self.fixed, self.each, self.wrong = 0.0, single, fixed, each, wrong

    def clock(self):
        return self.now

    def __call__(self, image):
        if isinstance(image, list):
            self.now += self.fixed + self.each * len(image)
            return [Labelled(im[0] + (1 if self.wrong else 0)) for im in image]
        self.now += self.single
        return Labelled(image[0])


class Labelled:
    def __init__(self, labels):
        self.labels = labels


IMAGE = np.zeros((4, 5, 3), np.uint8)


def test_a_batched_call_is_timed_against_single_calls_by_the_clock():
    engine = ClockedEngine(single=0.003, fixed=0.002, each=0.001)
    row = batch.time_batched(engine, IMAGE, 8, rounds=5, clock=engine.clock)
    assert (row["batched_ms"], row["singles_ms"], row["speedup"]) == pytest.approx((10.0, 24.0, 2.4))
    assert row["batched_images_per_s"] == pytest.approx(800.0) and row["labels_equal"] is True
    wrong = ClockedEngine(0.003, 0.002, 0.001, wrong=True)
    assert batch.time_batched(wrong, IMAGE, 2, rounds=3, clock=wrong.clock)["labels_equal"] is False


def _report(speedup, labels_equal=True):
    return {"batched": {"rows": [{"images": 8, "speedup": speedup, "labels_equal": labels_equal}]}}


def test_the_lines_are_recorded_met_missed_or_not_measured():
    c171 = {"stage_median_ms": {"image_encoder": 1.9, "head": 0.19}, "host_call_median_ms": 2.7}
    report = _report(2.5)
    batch.record(report, c171, 2.0)
    assert report["batch_target"] == {"target": 2.0, "status": "met", "pass": True, "value": 2.5,
                                      "labels_equal": True}  # fmt: skip
    assert report["wall_target"]["value"] == pytest.approx(1.35) and report["wall_target"]["status"] == "met"
    assert report["head_target"]["status"] == "missed" and report["head_target"]["pass"] is False  # 10 % > 5 %
    report = _report(2.5, labels_equal=False)
    batch.record(report, {"stage_median_ms": {"image_encoder": 2.0, "head": 0.05}, "host_call_median_ms": 2.8}, 2.0)
    assert report["batch_target"]["status"] == "missed" and report["head_target"]["status"] == "met"
    assert report["wall_target"]["status"] == "missed"
    report = {}
    batch.record(report, None, None)
    assert {report[k]["status"] for k in ("batch_target", "wall_target", "head_target")} == {"not measured"}
    clocked = ClockedEngine(0.003, 0.002, 0.001)
    report = {"batched": {"rows": [batch.time_batched(clocked, IMAGE, 8, 3, clocked.clock)]}}
    batch.record(report, c171, 2.0)
    lines = batch.lines(report)
    assert lines[0].startswith("batched call of 8:") and lines[-1] == (
        "fp16 C=171: the head <= 5 % of the image encoder: 0.100 (missed; recorded, not judged)"
    )
