"""The engine check's wall time and frames in flight (checks/gpu_engine.py, issue 72 item 3) without a GPU: the
arithmetic of ``time_engine`` (a call's wall time beside its device time) and ``time_stream`` (the period of a
stream with two frames in flight) on stand-in engines and an injected clock that advances by known steps, so no
test depends on timing; and the verdict: the stream target (a frame at most every 1.2x the bare encoder graph) met,
missed, or not checked, and a stream whose frames were not replays or whose labels differ failing its row.

What only a GPU measures (the numbers themselves) runs in the engine stage of the acceptance (tools/gpu_check.sh).
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
gpu_engine: Any = None


@pytest.fixture(scope="module", autouse=True)
def _module():
    global gpu_engine
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "path", [*sys.path, str(ROOT)])
        gpu_engine = importlib.import_module("checks.gpu_engine")


class Clock:
    """A clock that advances by ``steps`` (seconds) in turn on each reading, from 100 s."""

    def __init__(self, *steps: float):
        self.steps, self.now, self.readings = steps, 100.0, 0

    def __call__(self) -> float:
        self.now += self.steps[self.readings % len(self.steps)]
        self.readings += 1
        return self.now


# ---- time_engine: the wall time of a call beside its device time --------------------------------------------------
class TimedEngine:
    """An Engine whose every call is a replay reporting fixed device stage times to its stage_hook."""

    STAGES = {"upload": 0.1e-3, "image_encoder": 2.0e-3, "head": 0.2e-3, "postprocess": 0.1e-3, "download": 0.1e-3}

    def __init__(self):
        self.stage_hook = None
        clock = types.SimpleNamespace(in_graph=True)
        graphs = types.SimpleNamespace(stats={"replayed": 0, "check_failed": 0})
        self.pipeline = types.SimpleNamespace(device=types.SimpleNamespace(graphs=graphs, stage_clock=lambda: clock))

    def __call__(self, image):
        self.pipeline.device.graphs.stats["replayed"] += 1
        if self.stage_hook is not None:
            for stage, seconds in self.STAGES.items():
                self.stage_hook(stage, seconds)
        return types.SimpleNamespace(labels=np.zeros((2, 2), np.int32))


def test_time_engine_reports_the_wall_time_of_a_call_beside_its_device_time():
    # one reading before each warm-up call, one before and one after each timed call: 0.5 s between timed calls,
    # 3.0 ms and 2.8 ms a timed call in turn (the two warm-up readings take the first two steps)
    clock = Clock(0.5, 2.8e-3, 0.5, 3.0e-3)
    row = gpu_engine.time_engine(TimedEngine(), np.zeros((4, 4, 3), np.uint8), frames=4, warmup=2, clock=clock)
    assert row["frame_median_ms"] == pytest.approx(2.5)  # the device stages' sum
    assert row["host_call_median_ms"] == pytest.approx(2.9)  # the median of 2.8, 3.0, 2.8, 3.0
    assert row["wall_over_device"] == pytest.approx(2.9 / 2.5)
    assert row["replayed_all"] and row["timed_replays"] == 4
    assert clock.readings == 2 + 2 * 4


# ---- time_stream: frames in flight ----------------------------------------------------------------------------------
class Flight:
    """``Engine.in_flight`` stand-in: records how many frames were in flight at most, replays every frame after
    ``captures`` frames (each lane's first), hands back numbered results in order."""

    def __init__(self, owner, depth, lanes=None, captures=2):
        self.owner, self.depth, self.lanes = owner, depth, depth if lanes is None else lanes
        self.why_synchronous = None if self.lanes else "the host path"
        self.captures, self.queue, self.count, self.most, self.closed = captures, [], 0, 0, False
        self.replayed = 0

    @property
    def graph_stats(self):
        return {"replayed": self.replayed, "captured": min(self.count, self.captures)}

    def submit(self, image):
        self.count += 1
        if self.count > self.captures and not self.owner.eager:
            self.replayed += 1
        self.queue.append(self.count)
        self.most = max(self.most, len(self.queue))

    def result(self):
        number = self.queue.pop(0)
        self.owner.order.append(number)
        labels = np.full((4, 4), 1 if self.owner.differ and number == self.count else 0, np.int32)
        return types.SimpleNamespace(labels=labels)

    def __len__(self):
        return len(self.queue)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True


class StreamEngine:
    def __init__(self, lanes=None, eager=False, differ=False):
        self.lanes, self.eager, self.differ = lanes, eager, differ
        self.stage_hook, self.flights, self.order = "the caller's hook", [], []

    def in_flight(self, depth):
        assert self.stage_hook is None  # measured untimed, as deployed
        self.flights.append(Flight(self, depth, self.lanes))
        return self.flights[-1]

    def __call__(self, image):
        return types.SimpleNamespace(labels=np.zeros((4, 4), np.int32))


def test_time_stream_measures_the_steady_period_with_two_frames_in_flight():
    engine = StreamEngine()
    clock = Clock(2.4e-3)  # a result every 2.4 ms
    row = gpu_engine.time_stream(engine, np.zeros((4, 4, 3), np.uint8), frames=60, clock=clock)
    assert row["period_ms"] == pytest.approx(2.4) and row["fps"] == pytest.approx(1e3 / 2.4)
    assert row["in_flight"] == 2 and row["frames"] == 60 and clock.readings == 60  # one reading per result
    assert row["replayed"] == 60 and row["replayed_all"] and row["labels_equal"] == 1.0
    flight = engine.flights[0]
    assert flight.most == 2 and flight.closed  # never more than two in flight; the lanes freed
    assert engine.order == list(range(1, 6 + 60 + 1))  # warm-up (3 x 2) then the measured frames, in order
    assert engine.stage_hook == "the caller's hook"  # restored


def test_time_stream_reports_what_fails_a_row():
    image = np.zeros((4, 4, 3), np.uint8)
    eager = gpu_engine.time_stream(StreamEngine(eager=True), image, frames=60, clock=Clock(1e-3))
    assert eager["replayed"] == 0 and not eager["replayed_all"]
    differ = gpu_engine.time_stream(StreamEngine(differ=True), image, frames=60, clock=Clock(1e-3))
    assert differ["labels_equal"] == 0.0
    with pytest.raises(RuntimeError, match="2 frames in flight need 2 lanes, got 0: the host path"):
        gpu_engine.time_stream(StreamEngine(lanes=0), image, frames=60, clock=Clock(1e-3))


def test_the_period_is_from_the_first_result_to_the_last():
    row = gpu_engine.stream_row([10.0, 10.003, 10.005, 10.009], frames=4, depth=2, replayed=4, labels_equal=1.0)
    assert row["period_ms"] == pytest.approx(3.0) and row["fps"] == pytest.approx(1e3 / 3.0)
    one = gpu_engine.stream_row([10.0], frames=1, depth=2, replayed=1, labels_equal=1.0)
    assert np.isnan(one["period_ms"]) and np.isnan(one["fps"])


# ---- the verdict --------------------------------------------------------------------------------------------------
def _report(period_ms=2.3, floor_ms=2.0, stream=True, **stream_fields) -> dict:
    rows = []
    for precision in ("fp16", "bf16"):
        for classes in (20, 171):
            row = {"precision": precision, "classes": classes, "post_over_encoder": 0.02, "frame_median_ms": 2.4,
                   "host_call_median_ms": 2.8, "wall_over_device": 2.8 / 2.4, "frames": 30, "timed_replays": 30,
                   "replayed_all": True, "graphs": {"check_failed": 0}}  # fmt: skip
            if stream:
                row["stream"] = {"in_flight": 2, "frames": 60, "period_ms": period_ms, "fps": 1e3 / period_ms,
                                 "replayed": 60, "replayed_all": True, "labels_equal": 1.0, **stream_fields}  # fmt: skip
            rows.append(row)
    kinds = {k: {"chosen": "tiled", "us": 0.02 * floor_ms * 1e3} for k in ("iid", "dominated", "label_map")}
    return {"labels": {"pass": True, "worst_labels_equal": 1.0}, "timing": rows, "floor": {"median_ms": floor_ms},
            "postprocess_kinds": {"kinds": kinds, "measured": True}}  # fmt: skip


@pytest.mark.parametrize("period_ms, code", [(2.3, 0), (2.4, 0), (2.41, 1), (2.9, 1)])
def test_the_stream_target_is_a_frame_every_1_2x_the_encoder_graph(period_ms, code):
    """Floor 2.0 ms: 2.4 ms a frame (416.7 fps) is the line; 2.3 passes (the control), 2.41 and 2.9 miss."""
    report = _report(period_ms=period_ms)
    assert gpu_engine.judge(report) == code
    target = report["stream_target"]
    assert target["status"] == ("pass" if code == 0 else "fail") and target["pass"] is (code == 0)
    assert target["target_fps"] == pytest.approx(1e3 / 2.4) and target["period_over_floor"] == pytest.approx(
        period_ms / 2.0
    )
    if code:
        assert any("frames in flight" in line and "fps <" in line for line in report["failed"]), report["failed"]


def test_every_row_gets_its_wall_time_over_the_floor_and_a_line_beside_its_device_time():
    report = _report()
    gpu_engine.judge(report)
    assert all(row["wall_over_floor"] == pytest.approx(1.4) for row in report["timing"])
    lines = gpu_engine.row_lines(report)
    assert len(lines) == 4
    assert lines[0] == (
        "fp16 C=20: device 2.400 ms a frame, wall 2.800 ms a call (1.17x device, 1.40x the encoder graph); "
        "2 in flight: 2.300 ms a frame, 434.8 fps"
    )


@pytest.mark.parametrize(
    "change, says",
    [({"stream": False}, "not measured"), ({"frames": 20}, "20 frames < 60")],
    ids=["no stream", "too few frames"],
)
def test_a_stream_not_measured_is_not_checked_never_passed(change, says):
    stream = change.pop("stream", True)
    report = _report(stream=stream, **change)
    assert gpu_engine.judge(report) == gpu_engine.NOT_CHECKED_RC
    assert report["pass"] is False and report["stream_target"]["status"] == "not checked"
    assert any("frames in flight" in what and says in what for what in report["not_checked"]), report["not_checked"]
    assert any(line.startswith("NOT CHECKED: fp16 C=171 with 2 frames") for line in gpu_engine.verdict_lines(report))


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"replayed": 50, "replayed_all": False}, "50 of 60 frames were graph replays"),
        ({"labels_equal": 0.99}, "labels 0.99 equal to the synchronous call's"),
        ({"labels_equal": float("nan")}, "labels nan equal"),
    ],
    ids=["not replayed", "labels differ", "labels nan"],
)
def test_a_stream_that_was_not_replayed_or_differs_fails_its_row(fields, says):
    report = _report(**fields)
    assert gpu_engine.judge(report) == 1
    assert sum(says in what for what in report["failed"]) == 4, report["failed"]  # every row


def test_a_stream_that_failed_fails_its_row_and_leaves_the_target_unchecked():
    report = _report()
    for row in report["timing"]:
        row["stream"] = {"error": {"type": "RuntimeError", "message": "2 frames in flight need 2 lanes, got 0"}}
    assert gpu_engine.judge(report) == 1
    assert "fp16 C=171 in flight: RuntimeError: 2 frames in flight need 2 lanes, got 0" in report["failed"]
    assert report["stream_target"]["status"] == "not checked"
    assert gpu_engine.row_lines(report)[1].endswith("; in flight: RuntimeError")
