"""``Engine.in_flight`` / ``Engine.stream`` where frames cannot be in flight (runtime/device/in_flight.py): on the host
path every frame runs at ``submit`` through the Engine's own call, with the same results in the same order, and the
reason is said (``why_synchronous``); the arguments are refused in one line. The lanes themselves (two device
pipelines, frames in flight) are tested on CUDA memory: test_in_flight_cuda.py."""

from __future__ import annotations

import types

import numpy as np
import pytest

from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.device.in_flight import InFlight, lanes_unavailable

CLASSES = ["person", "bottle", "chair", "cat"]


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime")


def _frames(count=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48 + 8 * (i % 2), 64, 3), dtype=np.uint8) for i in range(count)]


def test_on_the_host_path_each_frame_runs_at_submit_in_order(engine):
    frames = _frames()
    with engine.in_flight(2) as flight:
        assert flight.lanes == 0 and "host path" in flight.why_synchronous
        numbers = [flight.submit(frame) for frame in frames]
        assert numbers == list(range(len(frames))) and len(flight) == len(frames)
        results = [flight.result() for _ in frames]
    for frame, got in zip(frames, results):
        want = engine(frame)
        np.testing.assert_array_equal(got.labels, want.labels)
        assert got.image is frame and got.class_names == want.class_names


def test_stream_yields_every_result_in_order_and_takes_paths_and_rgb(engine, tmp_path):
    import cv2

    frames = _frames(4, seed=1)
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), frames[0])
    results = list(engine.stream([str(path)] + frames[1:], in_flight=2))
    assert len(results) == 4 and results[0].path == str(path)
    for frame, got in zip(frames, results):
        np.testing.assert_array_equal(got.labels, engine(frame).labels)
    rgb = list(engine.stream(frames[1:2], in_flight=1, color_order="rgb"))[0]
    np.testing.assert_array_equal(rgb.labels, engine(frames[1], color_order="rgb").labels)
    assert rgb.color_order == "rgb"


def test_an_abandoned_stream_closes_its_in_flight(engine, monkeypatch):
    closed = []
    original = InFlight.close
    monkeypatch.setattr(InFlight, "close", lambda self: (closed.append(1), original(self))[1])
    results = engine.stream(_frames(5), in_flight=2)
    next(results)
    results.close()  # the caller stops early: the generator's lanes are freed
    assert closed == [1]


@pytest.mark.parametrize(
    "depth, message",
    [(0, "in_flight must be a whole number >= 1, got 0"), (True, "got True"), ("2", "got '2'"), (1.5, "got 1.5")],
)
def test_a_bad_depth_is_refused_in_one_line(engine, depth, message):
    with pytest.raises(ValueError, match=message) as caught:
        engine.in_flight(depth)
    assert "\n" not in str(caught.value)


def test_misuse_is_refused_in_one_line(engine):
    with pytest.raises(ValueError, match="color_order must be 'bgr' or 'rgb', got 'bgra'"):
        engine.in_flight(2, color_order="bgra")
    flight = engine.in_flight(2)
    with pytest.raises(RuntimeError, match="no frame submitted whose result was not taken"):
        flight.result()
    with pytest.raises(ValueError, match="color_order must be"):
        flight.submit(_frames(1)[0], color_order="yuv")
    flight.close()
    with pytest.raises(RuntimeError, match="InFlight.submit: this InFlight was closed"):
        flight.submit(_frames(1)[0])
    assert engine.in_flight(1).why_synchronous == "in_flight=1: each frame is waited for"


def test_why_frames_cannot_be_in_flight():
    def engine_with(device=None, mode="exact"):
        return types.SimpleNamespace(pipeline=types.SimpleNamespace(device=device, mode=mode))

    def device(kind="cuda", shares=False, **memory):
        executor = types.SimpleNamespace(shares_contexts=shares)
        return types.SimpleNamespace(memory=types.SimpleNamespace(kind=kind, **memory), executor=executor)

    assert "no device pipeline" in lanes_unavailable(engine_with(None))
    assert "mode='fast'" in lanes_unavailable(engine_with(device(), mode="fast"))
    assert "host buffers" in lanes_unavailable(engine_with(device(kind="host")))
    assert "host buffers" in lanes_unavailable(engine_with(device(kind="torch", cuda=False)))
    assert "TensorRT without cuda_graphs" in lanes_unavailable(engine_with(device(shares=True)))
    assert lanes_unavailable(engine_with(device())) is None  # control: a CUDA device pipeline of its own
    assert lanes_unavailable(engine_with(device(kind="torch", cuda=True))) is None
