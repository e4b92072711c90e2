"""The accuracy gate of TensorRT builds, on the tiny exported bundle. TensorRT cannot run here, so the "engines"
are a fake runner: ONNX Runtime whose outputs the tests perturb. Identical outputs must pass, small noise must
pass with its error recorded, and label flips or non-finite outputs must be refused (the gate can fail)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from zsseg_rt.bundle import load_meta
from zsseg_rt.prepare.gate import MIN_LABEL_AGREEMENT, EngineAccuracyError, run_accuracy_gate
from zsseg_rt.prepare.tensorrt import build as trt_build
from zsseg_rt.runtime.backends import Backend, open_reference
from zsseg_rt.runtime.device.cuda_driver import DeviceInfo
from zsseg_rt.runtime.engine_cache import EngineMismatchError

ORIN = DeviceInfo("Orin (nvgpu)", (8, 7), multiprocessors=8, total_memory_mib=7620)


class PerturbedBackend(Backend):
    """ONNX Runtime with a perturbation applied to one graph's output: ``perturb(role, output) -> output``."""

    name = "fake-tensorrt"

    def __init__(self, meta, perturb=None):
        self.inner, self.perturb = open_reference(meta), perturb or (lambda role, out: out)

    def encode_image(self, images):
        return self.perturb("image", self.inner.encode_image(images))

    def head(self, text, features):
        return self.perturb("head", np.array(self.inner.head(text, features), copy=True))

    def encode_text(self, tokens):
        return self.perturb("text", np.array(self.inner.encode_text(tokens), copy=True))


class GatedFakeToolchain:
    """Writes fake engine files; its ``backend`` (what the gate runs) is the perturbed ONNX Runtime runner."""

    def __init__(self, perturb=None, version="10.3.0", device=ORIN):
        self.version, self.device, self.perturb, self.jobs = version, device, perturb, []

    def build(self, job):
        self.jobs.append(job)
        os.makedirs(os.path.dirname(job.engine_path), exist_ok=True)
        with open(job.engine_path, "wb") as handle:
            handle.write(f"engine {job.key.digest()} #{len(self.jobs)}".encode())

    def backend(self, meta, engine_paths):
        assert sorted(engine_paths) == ["head", "image", "text"]
        return PerturbedBackend(meta, self.perturb)


@pytest.fixture()
def bundle(tiny_bundle, tmp_path):
    return str(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def _boost_class(delta, where=(slice(None), slice(None))):
    """Head perturbation: + ``delta`` on class 0's logits at grid positions ``where``."""

    def perturb(role, out):
        if role == "head":
            out[(slice(None), 0) + where] += np.float32(delta)
        return out

    return perturb


def _gate_record(path):
    with open(os.path.join(os.path.dirname(path), "engine.json"), encoding="utf-8") as handle:
        return json.load(handle)["accuracy_gate"]


def test_identical_engines_pass_and_the_result_is_recorded(bundle):
    report = trt_build.build_engine_set(bundle, toolchain=GatedFakeToolchain(), opt_classes=8)
    gate = report.gate
    assert gate["passed"] and gate["accepted"] and gate["label_agreement"] == 1.0
    assert gate["max_abs_logit_error"] == 0.0 and set(gate["random_max_abs_error"]) == {"image", "head", "text"}
    assert gate["photos"] == 4 and gate["pixels"] > 4 * 100_000  # the four shipped VOC photos, every pixel
    for path in report.paths.values():
        assert _gate_record(path) == gate
    assert "accuracy gate passed: 100.00% labels" in report.summary()
    found = trt_build.find_engines(bundle, tensorrt_version="10.3.0", device=ORIN)
    assert found == report.paths


def test_small_noise_passes_with_its_error_recorded(bundle, monkeypatch):
    """Noise of 1e-4 on the head's logits passes and is recorded, judged with the VOC names: the tiny model's first
    32 COCO-Stuff classes (the other vocabulary a gate judges) tie within that noise on most pixels, so that
    vocabulary alone would refuse it (python_tests/prepare/test_gate_vocabularies.py tests the vocabularies)."""
    from zsseg_rt.prepare import gate

    monkeypatch.setattr(gate, "GATE_VOCABULARIES", (("voc20", None),))
    rng = np.random.default_rng(0)

    def noise(role, out):
        if role == "head":
            out += rng.normal(0, 1e-4, out.shape).astype(np.float32)
        return out

    gate = trt_build.build_engine_set(bundle, toolchain=GatedFakeToolchain(noise), opt_classes=8).gate
    assert gate["passed"] and gate["label_agreement"] >= MIN_LABEL_AGREEMENT["fp16"]
    assert 1e-5 < gate["max_abs_logit_error"] < 1e-2 and 1e-5 < gate["random_max_abs_error"]["head"] < 1e-2


def test_label_flips_are_refused_and_the_engines_are_not_used(bundle):
    toolchain = GatedFakeToolchain(_boost_class(50.0, where=(0, 0)))  # one grid cell of 16 wins class 0
    with pytest.raises(EngineAccuracyError, match="accuracy gate FAILED") as info:
        trt_build.build_engine_set(bundle, toolchain=toolchain, opt_classes=8)
    assert "--accept-below-gate" in str(info.value) and "fp16-pinned" in str(info.value)
    paths = {job.role: job.engine_path for job in toolchain.jobs}
    gate = _gate_record(paths["head"])
    assert not gate["passed"] and not gate["accepted"] and gate["label_agreement"] < MIN_LABEL_AGREEMENT["fp16"]
    assert gate["max_abs_logit_error"] >= 49.0
    with pytest.raises(EngineMismatchError, match="failed the accuracy gate"):
        trt_build.find_engines(bundle, tensorrt_version="10.3.0", device=ORIN)
    # a later build does not reuse refused engines: it rebuilds and gates again
    trt_build.build_engine_set(bundle, toolchain=GatedFakeToolchain(), opt_classes=8)
    assert trt_build.find_engines(bundle, tensorrt_version="10.3.0", device=ORIN) == paths


def test_the_override_keeps_a_failing_build_and_says_so(bundle):
    toolchain = GatedFakeToolchain(_boost_class(50.0))
    report = trt_build.build_engine_set(bundle, toolchain=toolchain, opt_classes=8, accept_below_gate=True)
    assert not report.gate["passed"] and report.gate["accepted"]
    assert "FAILED (accepted by override)" in report.summary()
    assert trt_build.find_engines(bundle, tensorrt_version="10.3.0", device=ORIN) == report.paths


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the inf row normalises to NaN downstream
def test_non_finite_outputs_fail(bundle):
    def overflow(role, out):
        if role == "text":
            out[0, 0] = np.inf  # an fp16 overflow in one random prompt's embedding
        return out

    meta = load_meta(bundle)
    reference = open_reference(meta)
    report = run_accuracy_gate(meta, PerturbedBackend(meta, overflow), reference, "fp16", images=[_photo()])
    assert not report.finite and not report.passed and not report.accepted


def test_threshold_depends_on_precision_and_is_applied(bundle):
    meta = load_meta(bundle)
    reference = open_reference(meta)
    candidate = PerturbedBackend(meta, _boost_class(50.0, where=(0, 0)))
    report = run_accuracy_gate(meta, candidate, reference, "fp16", images=[_photo()])
    assert 0.5 < report.label_agreement < MIN_LABEL_AGREEMENT["fp16"] and not report.passed
    assert MIN_LABEL_AGREEMENT["fp32"] > MIN_LABEL_AGREEMENT["fp16"] == 0.995


class DeviceFakeToolchain(GatedFakeToolchain):
    """Its engines run like TensorRT engines on a GPU: the gate's Engine takes the device pipeline (on the host
    stand-ins of python_tests/host_cuda.py), where ``device_transform`` alters the engines' outputs; the host path
    (``encode_image``/``head``) stays exact ONNX Runtime."""

    def __init__(self, device_transform=None):
        super().__init__()
        self.device_transform = device_transform
        self.backends = []

    def backend(self, meta, engine_paths):
        from host_cuda import StandInTensorRTBackend

        backend = StandInTensorRTBackend(meta, max_batch=1, device_transform=self.device_transform)
        self.backends.append(backend)
        return backend


def _boost_device_head(role, outputs):
    """Only on the device path: + 50 on class 0's logits at one grid cell of every window (what a wrong engine
    binding or a chunking bug does to the labels users get)."""
    if role == "head":
        outputs["mask_logits"][:, 0, 0, 0] += np.float32(50.0)
    return outputs


def test_the_gate_runs_the_device_pipeline_users_run(bundle, monkeypatch):
    from host_cuda import install_host_gpu

    install_host_gpu(monkeypatch)
    toolchain = DeviceFakeToolchain()
    report = trt_build.build_engine_set(bundle, toolchain=toolchain, opt_classes=8)
    assert report.gate["passed"] and report.gate["candidate_path"] == "device pipeline"
    assert "device pipeline path" in report.summary()
    executed = [e for e in toolchain.backends[0].contexts["head"].log if e[0] == "execute_async_v3"]
    assert len(executed) >= report.gate["photos"]  # the photos' head ran on the stand-in engines
    assert report.gate["max_abs_logit_error"] < 1e-4  # same graphs, same fp32 numerics, other batch split


def test_the_gate_refuses_engines_wrong_only_on_the_device_path(bundle, monkeypatch):
    from host_cuda import install_host_gpu

    install_host_gpu(monkeypatch)
    toolchain = DeviceFakeToolchain(_boost_device_head)
    with pytest.raises(EngineAccuracyError, match="accuracy gate FAILED"):
        trt_build.build_engine_set(bundle, toolchain=toolchain, opt_classes=8)
    gate = _gate_record(toolchain.jobs[0].engine_path)
    assert gate["candidate_path"] == "device pipeline" and gate["max_abs_logit_error"] >= 49.0


def _photo():
    import cv2

    from zsseg_rt.assets import sample_image

    return cv2.imread(str(sample_image()), cv2.IMREAD_COLOR)


# ------------------------------------------------------------------------------------------------ zsseg build-engine
def test_cli_build_engine_flags_and_one_line_summary(bundle, monkeypatch, capsys):
    from zsseg_rt.cli import main

    toolchain = GatedFakeToolchain()
    monkeypatch.setattr(trt_build, "TensorRTToolchain", lambda: toolchain)
    assert main(["build-engine", bundle, "--opt-classes", "8", "--workspace", "2", "--precision", "fp16"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = lines[-1]
    windows = trt_build.frame_windows(load_meta(bundle))
    assert summary.startswith(f"fp16 engines image+head+text (batch <= {windows}) for TensorRT 10.3.0 on Orin")
    assert "built image+head+text" in summary and "MiB" in summary and "accuracy gate passed" in summary
    image_job = next(job for job in toolchain.jobs if job.role == "image")
    assert image_job.ranges["batch"] == (1, windows, windows)  # default --max-batch: a 4:3 frame's windows
    assert image_job.workspace_bytes == 2 << 30
    head_job = next(job for job in toolchain.jobs if job.role == "head")
    assert head_job.ranges["num_classes"][1] == 8

    monkeypatch.setattr(trt_build, "TensorRTToolchain", lambda: GatedFakeToolchain(_boost_class(50.0)))
    assert main(["build-engine", bundle, "--max-batch", "1", "--force"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]  # after the bars of the builds and the gate (progress)
    assert error.startswith("zsseg build-engine: error: accuracy gate FAILED") and "--accept-below-gate" in error


def test_default_max_batch_is_the_windows_of_a_4_3_frame():
    from types import SimpleNamespace

    vitb16 = SimpleNamespace(test_scale=(2048, 512), crop_size=512, stride=341)  # ZegCLIP VOC test pipeline
    assert trt_build.frame_windows(vitb16) == 2  # 640x480 -> 683x512 -> two 512 windows side by side
    assert trt_build.frame_windows(vitb16, width=1920, height=1080) == 3  # 16:9: 910x512 -> three
    square = SimpleNamespace(test_scale=(2048, 512), crop_size=512, stride=341)
    assert trt_build.frame_windows(square, width=512, height=512) == 1
