"""TensorRT for a bundle whose image graph takes any size (whole-image inference, meta.json ``whole_image``), without
TensorRT: the optimisation profiles span every input the bundle declares (sides up to ``max_side``, the shorter up to
``max_short_side``) in two profiles, a wide and a tall one, since one profile of ``max_side x max_side`` would make
TensorRT plan its memory for a square of 16x the tokens; the real ``TensorRTToolchain`` builds them (on the fake
TensorRT module, with the bundle's real graphs lowered as TensorRT's ONNX importer would: ``fake_onnx_importer``),
and ``TensorRTRunner`` switches its execution context to the profile that holds each input (``host_cuda.OrtEngine``:
ONNX Runtime behind TensorRT's engine and context API). Each test fails on the code before whole-image inference (no
size axes, one profile, a runner bound to profile 0)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="the fake importer reads the exported graphs with onnx")
from fake_onnx_importer import lower_bundle  # noqa: E402
from fake_tensorrt import make_module  # noqa: E402
from host_cuda import HostCudaDriver, OrtEngine  # noqa: E402
from test_tensorrt_builder_real_graphs import FakeCuda  # noqa: E402

from zsseg_rt.bundle import GRAPH_FILES, Names, load_meta  # noqa: E402
from zsseg_rt.prepare.tensorrt import build as trt_build  # noqa: E402
from zsseg_rt.runtime.backends.tensorrt import engines as trt_run  # noqa: E402
from zsseg_rt.runtime.engine_cache import axis_ranges, profile_count, profile_ranges, read_engine_record  # noqa: E402


@pytest.fixture(scope="module")
def whole_bundle(tmp_path_factory):
    """A tiny MaskCLIP bundle (random weights): image graph of any size, sides up to 2048, the shorter up to 528."""
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model

    torch.manual_seed(0)
    model = create_model("training_free_tiny_test", method="maskclip").eval()  # open_clip's random initialisation
    return export_bundle(model, str(tmp_path_factory.mktemp("whole") / "bundle"), max_classes=8, verify_images=())


def _profiles(meta, max_batch=2):
    ranges = axis_ranges(meta, max_batch, opt_classes=4)
    return [profile_ranges(ranges, i) for i in range(profile_count(ranges))]


def _holds(profile, height, width):
    return all(
        profile[axis][0] <= value <= profile[axis][2] for axis, value in ((Names.HEIGHT, height), (Names.WIDTH, width))
    )


def test_two_profiles_span_every_declared_input(whole_bundle, tiny_bundle):
    meta = load_meta(whole_bundle)
    assert (meta.whole_image["max_side"], meta.whole_image["max_short_side"], meta.patch_size) == (2048, 528, 16)
    wide, tall = _profiles(meta)
    # opt: a 4:3 image at the bundle's test scale (short side 64: 64 x 80 after rounding to the patch)
    assert wide[Names.HEIGHT] == (16, 64, 528) and wide[Names.WIDTH] == (16, 80, 2048)
    assert tall[Names.HEIGHT] == (16, 80, 2048) and tall[Names.WIDTH] == (16, 64, 528)
    assert wide[Names.GRID_HEIGHT] == (1, 4, 33) and tall[Names.GRID_HEIGHT] == (1, 5, 128)
    assert wide[Names.BATCH] == tall[Names.BATCH] == (1, 2, 2)
    declared = [(h, w) for h in range(16, 2049, 16) for w in range(16, 2049, 16) if min(h, w) <= 528]
    assert all(_holds(wide, h, w) or _holds(tall, h, w) for h, w in declared)
    assert _holds(wide, 64, 64)  # the window size runs on profile 0 (the device pipeline's)
    assert not any(_holds(p, 544, 544) for p in (wide, tall))  # beyond the declared shorter side
    assert Names.HEIGHT not in axis_ranges(load_meta(tiny_bundle))  # a fixed-size image graph: no size axes


def test_the_toolchain_builds_a_wide_and_a_tall_profile(whole_bundle, tmp_path, monkeypatch):
    import shutil

    bundle = str(shutil.copytree(whole_bundle, tmp_path / "bundle"))
    fake = make_module("10.3.0", lower_bundle(bundle, sorted(GRAPH_FILES.values())))
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_run, "_LOGGERS", {})
    toolchain = trt_build.TensorRTToolchain(cuda=FakeCuda())
    report = trt_build.build_engine_set(
        bundle, "fp16", max_batch=2, opt_classes=4, toolchain=toolchain, accuracy_gate=False
    )
    shapes = [args for name, args in fake.calls if name == "IOptimizationProfile.set_shape"]
    image = [s for s in shapes if s[0] == Names.IMAGE]
    assert image == [
        (Names.IMAGE, (1, 3, 16, 16), (2, 3, 64, 80), (2, 3, 528, 2048)),
        (Names.IMAGE, (1, 3, 16, 16), (2, 3, 80, 64), (2, 3, 2048, 528)),
    ]
    grids = [s[1:] for s in shapes if s[0] == Names.PATCH_GRID]
    assert [(lo[1:3], hi[1:3]) for lo, _, hi in grids] == [((1, 1), (33, 128)), ((1, 1), (128, 33))]
    assert [s[0] for s in shapes].count(Names.TOKENS) == 1  # the text encoder keeps one profile
    added = [name for name, _ in fake.calls if name == "IBuilderConfig.add_optimization_profile"]
    assert len(added) == 2 + 2 + 1
    key, _ = read_engine_record(report.paths["image"])
    assert dict(key.profile)["height@1"] == (16, 80, 2048)  # the cache key holds both profiles


def _runner(meta, role="image", max_batch=2):
    """A TensorRTRunner on the host stand-ins (what it holds: engine, context, driver, stream, buffers)."""
    engine = OrtEngine(meta, role, axis_ranges(meta, max_batch, opt_classes=4))
    runner = object.__new__(trt_run.TensorRTRunner)
    runner._trt = types.SimpleNamespace()
    runner._cuda, runner._stream, runner._buffers, runner.engine_path = HostCudaDriver(), 7, {}, "stand-in"
    runner.engine, runner.context = engine, engine.create_execution_context()
    runner.input_names, runner.output_names = list(engine.inputs), list(engine.outputs)
    runner.dtypes = {name: np.dtype(np.float32) for name in engine.inputs + engine.outputs}
    runner.profiles, runner._profile = engine.num_optimization_profiles, 0
    return runner


def test_the_runner_switches_to_the_profile_that_holds_each_input(whole_bundle):
    meta = load_meta(whole_bundle)
    runner = _runner(meta)
    assert runner.profiles == 2
    rng = np.random.default_rng(0)
    from zsseg_rt.runtime.backends import open_reference

    reference = open_reference(meta)
    for height, width, profile in ((64, 96, 0), (560, 32, 1), (48, 2048, 0), (64, 64, 0), (2048, 16, 1)):
        image = rng.standard_normal((1, 3, height, width)).astype(np.float32)
        out = runner.run({Names.IMAGE: image})[Names.PATCH_GRID]
        assert runner._profile == profile and runner.context.active_profile == profile, (height, width)
        assert out.shape == (1, height // 16, width // 16, meta.embed_dim)
        np.testing.assert_allclose(out, reference.encode_image(image)[Names.PATCH_GRID], rtol=0, atol=1e-6)
    switches = [entry[1] for entry in runner.context.log if entry[0] == "set_optimization_profile_async"]
    assert switches == [1, 0, 1]  # only when the input leaves the current profile
    with pytest.raises(ValueError, match=r"outside the engine's optimisation profiles \(profile 0: image"):
        runner.run({Names.IMAGE: np.zeros((1, 3, 544, 544), np.float32)})
    head = _runner(meta, "head")  # the head's patch-grid input follows the same two profiles
    text = rng.standard_normal((3, meta.embed_dim)).astype(np.float32)
    grid = reference.encode_image(rng.standard_normal((1, 3, 1024, 48)).astype(np.float32))[Names.PATCH_GRID]
    logits = head.run({Names.TEXT_EMBEDDINGS: text, Names.PATCH_GRID: grid})[Names.MASK_LOGITS]
    assert head._profile == 1 and logits.shape == (1, 3, 64, 3)


def test_the_static_profile_check_covers_both_profiles(whole_bundle):
    from zsseg_rt.prepare.tensorrt.profile_check import check_bundle_profiles, check_grid_follows_image

    meta = load_meta(whole_bundle)
    assert check_bundle_profiles(meta) == []
    tall = _profiles(meta)[1]
    assert check_grid_follows_image(meta, tall, 1) == []
    planted = dict(tall, **{Names.GRID_HEIGHT: (1, 5, 64)})  # a head narrower than the encoder's output
    findings = check_grid_follows_image(meta, planted, 1)
    assert [f.code for f in findings] == ["grid_profile_mismatch"] and "profile 1: grid_height" in findings[0].message
