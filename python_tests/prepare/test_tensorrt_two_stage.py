"""TensorRT serves two-stage bundles (ZegFormer: mask branch, CLIP crop encoder, text encoder), proved without a GPU or
TensorRT: the real ``TensorRTToolchain`` builds the three engines on the fake TensorRT module (``fake_tensorrt``,
the bundle's real graphs lowered by ``fake_onnx_importer``), with optimisation profiles from the graphs' dynamic axes;
the engines are then opened by the real ``TrtRunner`` / ``TensorRTRunner`` as ``OrtEngine`` stand-ins
(``host_cuda``: the graph under ONNX Runtime, with the profiles recorded in each engine.json enforced as TensorRT
does), gated against ONNX Runtime by the two-stage gate, and run by ``Engine(bundle, backend="tensorrt")``, which
gives ONNX Runtime's labels. Controls: an engine that computes something else fails the gate and is refused."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the fake importer reads the exported graphs with onnx")
pytest.importorskip("torch", reason="the tiny two-stage bundle is exported from its PyTorch model")
from fake_onnx_importer import lower_bundle  # noqa: E402
from fake_tensorrt import make_module  # noqa: E402
from host_cuda import engine_files_on_stand_ins  # noqa: E402

from zsseg_rt import Engine  # noqa: E402
from zsseg_rt.assets import sample_images  # noqa: E402
from zsseg_rt.bundle import TWO_STAGE_GRAPH_FILES, Names, load_meta  # noqa: E402
from zsseg_rt.prepare.gate import EngineAccuracyError  # noqa: E402
from zsseg_rt.prepare.tensorrt import build as trt_build  # noqa: E402
from zsseg_rt.runtime.backends import TrtRunner  # noqa: E402
from zsseg_rt.runtime.backends.tensorrt import engines as trt_run  # noqa: E402
from zsseg_rt.runtime.device.cuda_driver import DeviceInfo  # noqa: E402
from zsseg_rt.runtime.engine_cache import DEFAULT_MAX_CROPS, EngineMismatchError  # noqa: E402
from zsseg_rt.runtime.pipelines import TwoStagePipeline  # noqa: E402

ORIN = DeviceInfo("Orin (nvgpu)", (8, 7), multiprocessors=8, total_memory_mib=7620)
CLASSES = ["cat", "dog", "person", "sofa", "chair"]


class FakeCuda:
    """The CUDA driver shim's surface the toolchain uses (a discrete GPU)."""

    def device_info(self, index=0):
        return ORIN

    def use_primary_context(self, index=0):
        pass

    def device_attribute(self, attribute, index=0):
        return 0

    def mem_get_info(self):
        return 3 << 30, ORIN.total_memory_mib << 20


@pytest.fixture(scope="module")
def exported(family_bundles):
    return family_bundles["zegformer"]  # the session's: each test copies it (the bundle fixture)


@pytest.fixture()
def bundle(exported, tmp_path):
    return str(shutil.copytree(exported, tmp_path / "bundle"))


def _corrupt(role_to_break):
    """An engine of ``role_to_break`` computes something else (what a wrong fp16 kernel or binding would do): the
    mask branch's class logits reversed over the classes, the crop embeddings negated (a sign error)."""

    def transform(role, data, outputs):
        if role != role_to_break:
            return outputs
        if role == "mask":
            logits = outputs[Names.CLASS_LOGITS]
            logits[..., :-1] = logits[..., -2::-1].copy()
        elif role == "clip_image":
            outputs[Names.CROP_EMBEDDINGS] = -outputs[Names.CROP_EMBEDDINGS]
        return outputs

    return transform


def _setup(monkeypatch, bundle, transform=None):
    """The fake TensorRT module holding the bundle's lowered graphs, and the engine files on stand-ins."""
    fake = make_module("10.3.0", lower_bundle(bundle, sorted(TWO_STAGE_GRAPH_FILES.values())))
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_run, "_LOGGERS", {})
    opened = engine_files_on_stand_ins(monkeypatch, load_meta(bundle), "10.3.0", ORIN, transform)
    return fake, opened


def _profiles(fake, name):
    return [args[1:] for call, args in fake.calls if call == "IOptimizationProfile.set_shape" and args[0] == name]


def test_build_engine_builds_gates_and_runs_the_two_stage_roles(monkeypatch, bundle):
    fake, opened = _setup(monkeypatch, bundle)
    meta = load_meta(bundle)
    toolchain = trt_build.TensorRTToolchain(cuda=FakeCuda())
    report = trt_build.build_engine_set(bundle, "fp16", 3, 4, toolchain=toolchain)  # 3 crops per CLIP call
    assert sorted(report.paths) == ["clip_image", "mask", "text"] and sorted(report.built) == sorted(report.paths)
    gate = report.gate
    assert gate["passed"] and gate["accepted"] and gate["label_agreement"] == 1.0 and gate["photos"] == 4
    assert set(gate["random_max_abs_error"]) == {"mask", "clip_image", "text"}
    assert max(gate["random_max_abs_error"].values()) < 1e-5  # the same fp32 graphs under ONNX Runtime
    assert gate["max_abs_logit_error"] < 1e-5
    # profiles from the graphs' dynamic axes: one image of any size the pipeline makes (wide and tall), crops
    z = meta.section("two_stage")
    div, short, cap = int(z["size_divisibility"]), int(z["test_short_side"]), int(z["test_max_size"])
    side = (lambda v: -(-v // div) * div)(short), (lambda v: -(-v // div) * div)(cap)
    wide, tall = _profiles(fake, Names.IMAGE)
    assert wide[0] == (1, 3, div, div) and wide[2] == (1, 3, side[0], side[1]) and tall[2] == (1, 3, side[1], side[0])
    size = int(z["clip_image_size"])
    assert _profiles(fake, Names.CROPS) == [((1, 3, size, size), (3, 3, size, size), (3, 3, size, size))]
    # the gate's candidate ran the engines (stand-ins), not ONNX Runtime's graphs
    ran = {engine.role for engine in opened if engine.contexts_made}
    assert ran == {"mask", "clip_image", "text"}
    # Engine(backend="tensorrt") finds the gated engines and gives ONNX Runtime's labels, on the host path
    import cv2

    photo = cv2.imread(str(sample_images()[0]))
    tall_photo = np.ascontiguousarray(photo.transpose(1, 0, 2)[:, :100])  # a portrait image: the tall profile
    ours = Engine(bundle, CLASSES, backend="tensorrt", max_batch=50)  # 50 crops per call: split at the profile's 3
    reference = Engine(bundle, CLASSES, backend="onnxruntime", max_batch=50)
    assert isinstance(ours.backend.runner, TrtRunner) and ours.pipeline.device is None
    for image in (photo, tall_photo):
        got, want = ours(image), reference(image)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-5)  # fp32, the same graphs
    mask_log = ours.backend.runner._runners["mask"].context.log
    assert any(entry[:2] == ("set_optimization_profile_async", 1) for entry in mask_log)  # the portrait's profile
    crop_runs = [e for e in ours.backend.runner._runners["clip_image"].context.log if e[0] == "set_input_shape"]
    queries = int(meta.raw["architecture"]["config"]["num_queries"])
    assert queries > 3 and {shape[0] for _, _, shape in crop_runs} == {3, queries % 3 or 3}  # the profile's chunks


@pytest.mark.parametrize("role", ["mask", "clip_image"])
def test_an_engine_that_computes_something_else_fails_the_gate_and_is_refused(monkeypatch, bundle, role):
    _setup(monkeypatch, bundle, _corrupt(role))
    toolchain = trt_build.TensorRTToolchain(cuda=FakeCuda())
    with pytest.raises(EngineAccuracyError, match="accuracy gate FAILED"):
        trt_build.build_engine_set(bundle, "fp16", 32, 4, toolchain=toolchain)
    records = []
    for root, _, files in os.walk(os.path.join(bundle, "engines")):
        if "engine.json" in files:
            with open(os.path.join(root, "engine.json"), encoding="utf-8") as handle:
                records.append(json.load(handle)["accuracy_gate"])
    assert len(records) == 3 and not any(r["accepted"] for r in records)
    assert records[0]["label_agreement"] < records[0]["min_label_agreement"]
    assert records[0]["random_max_abs_error"][role] > 1e-3  # the random inputs see it too
    with pytest.raises(EngineMismatchError, match="failed the accuracy gate"):
        Engine(bundle, CLASSES, backend="tensorrt")


def test_cli_build_engine_defaults_to_32_crops_and_int8_is_refused(monkeypatch, bundle, capsys):
    from zsseg_rt.cli import main

    fake, _ = _setup(monkeypatch, bundle)
    real = trt_build.TensorRTToolchain
    monkeypatch.setattr(trt_build, "TensorRTToolchain", lambda: real(cuda=FakeCuda()))
    assert main(["build-engine", bundle, "--opt-classes", "4"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("fp16 engines mask+clip_image+text (batch <= 32)") and "accuracy gate passed" in summary
    size = int(load_meta(bundle).section("two_stage")["clip_image_size"])  # default: 32 crops per CLIP call
    assert _profiles(fake, Names.CROPS) == [((1, 3, size, size), (32, 3, size, size), (32, 3, size, size))]
    assert DEFAULT_MAX_CROPS == TwoStagePipeline.default_max_batch == 32
    assert main(["build-engine", bundle, "--precision", "int8"]) == 2
    assert "two-stage bundles build fp16, fp16-pinned or fp32" in capsys.readouterr().err


def test_the_device_pipeline_stays_windowed(bundle):
    """Two-stage bundles run the host path on TensorRT: the device-resident pipeline is refused, not faked."""
    with pytest.raises(ValueError, match="no device-resident pipeline"):
        Engine(bundle, CLASSES, backend="tensorrt", device_pipeline=True)


def test_a_pipeline_whose_roles_tensorrt_does_not_open_is_refused_in_one_line():
    """A registered pipeline with a graph no TensorRT engine is built for: a ValueError naming the backends that do
    serve it (on c6058e0 an AttributeError: the message read a ``backends`` attribute pipelines no longer have)."""
    from types import SimpleNamespace

    from zsseg_rt.runtime import pipelines

    class DepthPipeline(pipelines.Pipeline):
        kind = "toy_depth"
        description = "a toy pipeline"
        roles = ("mask", "depth")

    pipelines.register_pipeline(DepthPipeline)
    try:
        with pytest.raises(ValueError, match="toy_depth pipeline.*TensorRT engines are not built for it"):
            trt_build.refuse_unsupported_family(SimpleNamespace(pipeline="toy_depth", path="bundle"))
    finally:
        pipelines._PIPELINES.pop("toy_depth", None)
