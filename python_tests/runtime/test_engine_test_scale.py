"""``Engine(test_scale=...)`` (issue 65, ``zsseg camera --live``): another keep-ratio test resize than the bundle's.
``"window"`` fits a frame in one window of the graph's size: one image-encoder row per frame where the official resize
(the short side to the graph size) gives two; the device pipeline (its CPU form here: ``device_pipeline=True`` on ONNX
Runtime) resizes the same way as the host path; bad values and a two-stage bundle are refused in one line."""

import numpy as np
import pytest

from zsseg_rt import Engine

CLASSES = ["person", "bottle", "chair", "sofa", "tv", "cat"]


class _Rows:
    """A backend wrapper that counts the image encoder's rows (windows), as test_batched_call's recorder."""

    def __init__(self, backend):
        self._backend, self.rows = backend, 0

    def encode_image(self, batch):
        self.rows += len(batch)
        return self._backend.encode_image(batch)

    def __getattr__(self, name):
        return getattr(self._backend, name)


def _frame(height=120, width=160):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    frame[:, : width // 2] //= 3  # two halves: labels with structure, not only noise
    return frame


@pytest.fixture(scope="module")
def engines(tiny_bundle):
    return {
        scale: Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", mode="exact", test_scale=scale)
        for scale in (None, "window")
    }


def test_window_fits_a_frame_in_one_window(engines):
    """The tiny bundle's graph is 64 px: a 120x160 frame is 64x85 in two windows by the bundle's resize (the control),
    48x64 in one by ``"window"``; the labels keep the frame's size either way."""
    size = engines[None].meta.crop_size
    assert engines["window"].pipeline.test_scale == [size, size]
    assert engines[None].pipeline.test_scale == list(engines[None].meta.test_scale)
    rows = {}
    for scale, engine in engines.items():
        original = engine.backend
        engine.backend = counter = _Rows(original)
        try:
            result = engine(_frame())
        finally:
            engine.backend = original
        rows[scale] = counter.rows
        assert result.labels.shape == (120, 160)
        windows = engine.pipeline.plan(_frame(), engine.pipeline.class_bias(CLASSES, None))[2]
        assert len(windows) == counter.rows
    assert rows == {None: 2, "window": 1}


@pytest.mark.parametrize("scale", ["window", (96, 48)])
def test_the_device_pipeline_resizes_as_the_host_path(tiny_bundle, engines, scale):
    """The device pipeline takes the Engine's test_scale (it used to read the bundle's): its labels equal the host
    path's at the same scale, and differ from the bundle's-scale labels (the control: the scale is not a no-op here)."""
    device = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device_pipeline=True, test_scale=scale)
    host = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device_pipeline=False, test_scale=scale)
    assert device.pipeline.device is not None and host.pipeline.device is None
    frame = _frame()
    on_device, on_host = device(frame), host(frame)
    assert (on_device.labels == on_host.labels).mean() >= 0.999  # fused vs unfused sigmoid: a tie may flip a pixel
    np.testing.assert_allclose(on_device.scores, on_host.scores, rtol=0, atol=1e-5)
    assert not np.array_equal(on_host.scores, engines[None](frame).scores)


def test_a_switched_backend_keeps_the_test_scale(tiny_bundle):
    """The Engine's upgrade between frames (``replace_backend``) builds the device pipeline again: with the Engine's
    test_scale, not the bundle's (the device pipeline's labels stay the host path's after the switch)."""
    device = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device_pipeline=True, test_scale="window")
    host = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device_pipeline=False, test_scale="window")
    device.pipeline.replace_backend(device.backend, device.pipeline.backend_plan)
    size = device.meta.crop_size
    assert device.pipeline.device.test_scale == [size, size]
    frame = _frame()
    np.testing.assert_allclose(device(frame).scores, host(frame).scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize("value", ["whole", (64,), (0, 64), (64, None), (True, 64), 64, [64.0, 64], "64,64"], ids=repr)
def test_a_bad_test_scale_is_refused_in_one_line(tiny_bundle, value):
    with pytest.raises(ValueError) as caught:
        Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", test_scale=value)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("test_scale: expected (long_max or None, short)")
    assert "'window'" in message and f"got {value!r}" in message


@pytest.mark.host_only  # a refusal of an ONNX Runtime engine on the CPU (no CUDA provider on the GPU image)
def test_a_two_stage_bundle_refuses_test_scale(family_bundles):
    bundle = family_bundles["zegformer"]
    with pytest.raises(
        ValueError, match=r"test_scale=.window.: an option of windowed bundles, and this bundle.s pipeline is two_stage"
    ):
        Engine(bundle, classes=CLASSES, backend="onnxruntime", test_scale="window")


@pytest.mark.host_only  # a refusal of an ONNX Runtime engine on the CPU (no CUDA provider on the GPU image)
def test_a_two_stage_bundle_refuses_the_live_preset_naming_it(family_bundles):
    """Issue 79, F14: ``camera --bundle ZF --live`` was refused naming test_scale='window', which the user never
    gave ("(leave it unset)"): the refusal names the preset and --live."""
    with pytest.raises(ValueError) as caught:
        Engine(family_bundles["zegformer"], classes=CLASSES, backend="onnxruntime", preset="live")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("preset 'live' (zsseg camera --live) sets test_scale='window'")
    assert "drop --live" in message and "leave it unset" not in message, message


@pytest.mark.host_only  # ONNX Runtime on the CPU (no CUDA provider on the GPU image): CI's, not the lease's
def test_whole_image_inference_takes_the_test_scale(family_bundles):
    """A whole-image bundle (the training-free family's) plans its one pass at the Engine's test_scale: a limit on the
    rescaled pixels that the bundle's resize passes over is met at a smaller test_scale (the control: refused at the
    bundle's)."""
    from zsseg_rt.pipeline.limits import InputLimitError
    from zsseg_rt.pipeline.preprocess import rescaled_size

    bundle = family_bundles["training_free"]
    frame = _frame()
    official = Engine(bundle, classes=CLASSES, backend="onnxruntime", inference="whole")
    scaled = rescaled_size(*frame.shape[:2], official.pipeline.test_scale)
    limit = scaled[0] * scaled[1] - 1
    options = dict(classes=CLASSES, backend="onnxruntime", inference="whole", max_rescaled_pixels=limit)
    with pytest.raises(InputLimitError):
        Engine(bundle, **options)(frame)
    small = Engine(bundle, test_scale=(64, 48), **options)(frame)
    assert small.inference == "whole" and small.labels.shape == frame.shape[:2]
