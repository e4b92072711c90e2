"""TensorRT engine building/caching. Key, cache, refusal and validation logic run everywhere (a fake toolchain
stands in for TensorRT); real builds need TensorRT and a GPU and skip otherwise."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from zsseg_rt.bundle import BUNDLE_FORMAT_VERSION, Files, Names, load_meta, sha256_file, write_meta
from zsseg_rt.prepare.tensorrt import build as trt_build
from zsseg_rt.runtime.backends.tensorrt import engines as trt_run
from zsseg_rt.runtime.device.cuda_driver import CudaDriver, CudaError, DeviceInfo
from zsseg_rt.runtime.engine_cache import EngineKey, EngineMismatchError

ORIN = DeviceInfo("Orin (nvgpu)", (8, 7), multiprocessors=16, total_memory_mib=62800)  # AGX Orin 64GB
ORIN_NX = DeviceInfo("Orin (nvgpu)", (8, 7), multiprocessors=8, total_memory_mib=15388)  # same name and sm
RTX = DeviceInfo("NVIDIA GeForce RTX 4090", (8, 9), multiprocessors=128, total_memory_mib=24210)


def _build(bundle, **kwargs):
    """build_engines on a fake bundle (fake ONNX bytes): the accuracy gate cannot run there, so it is skipped
    (and recorded as skipped); python_tests/prepare/test_accuracy_gate.py tests the gate on a real bundle."""
    return trt_build.build_engines(bundle, accuracy_gate=False, **kwargs)


def _write_bundle(path, max_classes=256, image_size=32, patch_size=16):
    os.makedirs(path, exist_ok=True)
    hashes = {}
    for index, name in enumerate((Files.IMAGE_ENCODER, Files.HEAD, Files.TEXT_ENCODER, Files.TOKENIZER)):
        with open(os.path.join(path, name), "wb") as handle:
            handle.write(f"fake bundle file {index}".encode())
        hashes[name] = sha256_file(os.path.join(path, name))
    meta = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "architecture": {"name": "tiny"},
        "image_size": image_size,
        "patch_size": patch_size,
        "embed_dim": 8,
        "context_length": 77,
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
        "templates": ["a photo of a {}.", "a {}."],
        "calibration_bias": 0.0,
        "seen_class_names": [],
        "training_class_names": [],
        "max_classes": max_classes,
        "crop_size": image_size,
        "stride": image_size,
        "opset": 18,
        "files": hashes,
    }
    write_meta(os.path.join(path, Files.META), meta)  # with meta_sha256, as every exported bundle
    return str(path)


class FakeToolchain:
    """Stands in for TensorRTToolchain: records build jobs and writes a fake engine."""

    def __init__(self, version="10.3.0", device=ORIN):
        self.version, self.device, self.jobs = version, device, []

    def build(self, job):
        self.jobs.append(job)
        os.makedirs(os.path.dirname(job.engine_path), exist_ok=True)
        with open(job.engine_path, "wb") as handle:
            handle.write(f"engine {job.key.digest()} #{len(self.jobs)}".encode())


@pytest.fixture()
def bundle(tmp_path):
    return _write_bundle(tmp_path / "bundle")


def _key(**overrides):
    base = dict(
        graph=Files.HEAD,
        onnx_sha256="ab" * 32,
        precision="fp16",
        profile=((Names.BATCH, (1, 1, 1)), (Names.NUM_CLASSES, (1, 20, 256))),
        tensorrt_version="10.3.0",
        gpu_name=ORIN.name,
        compute_capability=ORIN.sm,
        gpu_multiprocessors=ORIN.multiprocessors,
        gpu_memory_mib=ORIN.total_memory_mib,
    )
    base.update(overrides)
    return EngineKey(**base)


# ------------------------------------------------------------------------------------------------ keys
def test_key_digest_is_stable_and_roundtrips():
    assert _key().digest() == _key().digest()
    assert EngineKey.from_dict(json.loads(json.dumps(_key().as_dict()))) == _key()
    assert EngineKey.from_dict(_key().as_dict()).digest() == _key().digest()


@pytest.mark.parametrize(
    "field, value",
    [
        ("graph", Files.IMAGE_ENCODER),
        ("onnx_sha256", "cd" * 32),
        ("precision", "fp32"),
        ("profile", ((Names.BATCH, (1, 4, 4)), (Names.NUM_CLASSES, (1, 20, 256)))),
        ("tensorrt_version", "10.7.0"),
        ("gpu_name", RTX.name),
        ("compute_capability", RTX.sm),
        ("gpu_multiprocessors", ORIN_NX.multiprocessors),
        ("gpu_memory_mib", ORIN_NX.total_memory_mib),
        ("recipe", 99),
    ],
)
def test_changing_any_key_field_changes_the_digest(field, value):
    changed = dataclasses.replace(_key(), **{field: value})
    assert changed.digest() != _key().digest()
    assert [d.split(":")[0] for d in changed.differences(_key())] == [field]


def test_every_key_field_is_covered_by_the_parametrisation():
    covered = {
        "graph",
        "onnx_sha256",
        "precision",
        "profile",
        "tensorrt_version",
        "gpu_name",
        "compute_capability",
        "gpu_multiprocessors",
        "gpu_memory_mib",
        "recipe",
    }
    assert {f.name for f in dataclasses.fields(EngineKey)} == covered


def test_graph_keys_use_only_their_own_axes(bundle):
    meta = load_meta(bundle)
    few = trt_build.axis_ranges(meta, max_batch=1, opt_classes=10)
    many = trt_build.axis_ranges(meta, max_batch=1, opt_classes=50)
    image = [trt_build.make_engine_key(meta, "image", "fp16", r, "10.3.0", ORIN) for r in (few, many)]
    head = [trt_build.make_engine_key(meta, "head", "fp16", r, "10.3.0", ORIN) for r in (few, many)]
    assert image[0] == image[1] and head[0] != head[1]
    assert image[0].onnx_sha256 == meta.files[Files.IMAGE_ENCODER]


def test_profile_shapes_fill_static_dims_and_reject_static_batch():
    ranges = {Names.BATCH: (1, 4, 4)}
    assert trt_build.profile_shapes("image", (-1, 3, 32, 32), {0: Names.BATCH}, ranges) == (
        (1, 3, 32, 32),
        (4, 3, 32, 32),
        (4, 3, 32, 32),
    )
    with pytest.raises(trt_build.EngineBuildError, match="static"):
        trt_build.profile_shapes("image", (1, 3, 32, 32), {0: Names.BATCH}, ranges)
    with pytest.raises(trt_build.EngineBuildError, match="dynamic"):
        trt_build.profile_shapes("image", (-1, 3, -1, 32), {0: Names.BATCH}, ranges)


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("precision", ["fp8", "FP16", "", "half", "fp16-obey"])
def test_unknown_precision_is_rejected(bundle, precision):
    with pytest.raises(ValueError, match="precision must be one of"):
        _build(bundle, precision=precision, toolchain=FakeToolchain())


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"opt_classes": 0}, {"opt_classes": 257}, {"max_prompts": 0}])
def test_profile_arguments_are_validated(bundle, kwargs):
    with pytest.raises(ValueError):
        _build(bundle, toolchain=FakeToolchain(), **kwargs)


def test_build_without_tensorrt_raises_import_error_with_guidance(bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    monkeypatch.setattr(trt_run, "_on_jetson", lambda: False)
    monkeypatch.setattr(trt_run, "CudaDriver", _no_driver)  # no driver to ask: both wheels and JetPack are named
    with pytest.raises(ImportError, match="JetPack 6.1 or 6.2") as info:
        trt_build.build_engines(bundle)
    message = str(info.value)
    assert "pypi.nvidia.com" in message and "tensorrt-cu12" in message and "tensorrt-cu13" in message
    assert "r580" in message and "TensorRT 8.5" in message and "TensorRT 10.3" in message


def _no_driver():
    raise CudaError("no driver")


@pytest.mark.parametrize(
    "driver, jetson, wanted, unwanted",
    [
        (13000, False, 'pip install "tensorrt-cu13>=10.13,<11"', "JetPack"),  # r580+: CUDA 13 wheels run
        (12080, False, 'pip install "tensorrt-cu12>=10,<11"', "tensorrt-cu13>"),  # r570: the CUDA 12 wheel only
        (11040, False, "update the NVIDIA driver", "JetPack"),
        (12060, True, "JetPack 6.1 or 6.2 (both ship TensorRT 10.3", "pip install"),  # a Jetson: apt, not pip
    ],
)
def test_install_hint_names_the_wheel_for_this_driver(driver, jetson, wanted, unwanted):
    hint = trt_run.install_hint(driver_cuda_version=driver, jetson=jetson)
    assert wanted in hint and unwanted not in hint, hint


@pytest.mark.parametrize(
    "version, why",
    [("8.5.2.2", "too old"), ("8.6.1", "too old"), ("11.0.0.114", "not supported"), ("11.4.0.106", "not supported")],
)
def test_tensorrt_outside_10_x_is_refused_with_one_line(monkeypatch, version, why):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))
    with pytest.raises(ImportError) as info:
        trt_build.import_tensorrt()
    message = str(info.value)
    assert "\n" not in message and why in message and version in message
    assert 'pip install "tensorrt-cu12>=10,<11"' in message and "JetPack 6.1/6.2 (TensorRT 10.3)" in message
    assert 'pip install "tensorrt>=10' not in message  # resolves to the CUDA 13 variant: r580+ drivers only


@pytest.mark.parametrize("version", ["10.0.1.6", "10.3.0.30", "10.13.3.9"])
def test_tensorrt_10_x_is_accepted(monkeypatch, version):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))
    assert trt_build.import_tensorrt().__version__ == version


def test_import_does_not_import_tensorrt():
    code = (
        "import sys\n"
        "class Spy:\n"
        "    seen = []\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'tensorrt': Spy.seen.append(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Spy())\n"
        "import zsseg_rt.prepare.tensorrt.build, zsseg_rt.runtime.backends.tensorrt.engines, zsseg_rt.runtime.engine_cache\n"
        "import zsseg_rt.runtime.device.cuda_driver\n"
        "print('seen', Spy.seen)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "seen []"


def test_missing_cuda_driver_gives_a_clear_error(monkeypatch):
    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr("ctypes.CDLL", no_library)
    with pytest.raises(CudaError, match="NVIDIA GPU with its driver"):
        CudaDriver()


# ------------------------------------------------------------------------------------------------ cache behaviour
def test_build_then_reuse_then_rebuild_on_changes(bundle):
    toolchain = FakeToolchain()
    first = _build(bundle, toolchain=toolchain)
    assert sorted(first) == ["head", "image", "text"] and len(toolchain.jobs) == 3
    for role, path in first.items():
        key, record = trt_build.read_engine_record(path)
        assert key.graph == trt_build.GRAPH_FILES[role] and record["engine_sha256"] == sha256_file(path)
        assert os.path.basename(os.path.dirname(path)) == key.digest()
        assert os.path.dirname(os.path.dirname(path)) == os.path.join(load_meta(bundle).path, Files.ENGINE_DIR)

    assert _build(bundle, toolchain=toolchain) == first and len(toolchain.jobs) == 3  # reused
    _build(bundle, opt_classes=50, toolchain=toolchain)
    # C's opt changes the head and the prompt opt (opt_classes x templates), never the image encoder
    assert [job.role for job in toolchain.jobs[3:]] == ["head", "text"]
    _build(bundle, force=True, toolchain=toolchain)
    assert len(toolchain.jobs) == 8

    other_gpu = FakeToolchain(device=RTX)
    moved = _build(bundle, toolchain=other_gpu)
    assert len(other_gpu.jobs) == 3 and set(moved.values()).isdisjoint(first.values())


def test_corrupted_or_mismatching_cached_engine_is_rebuilt(bundle):
    toolchain = FakeToolchain()
    paths = _build(bundle, toolchain=toolchain)
    with open(paths["image"], "ab") as handle:
        handle.write(b"truncated/modified")
    record_path = os.path.join(os.path.dirname(paths["head"]), trt_build.ENGINE_RECORD)
    with open(record_path, "r", encoding="utf-8") as handle:
        record = json.load(handle)
    record["key"]["tensorrt_version"] = "10.0.0"  # stale record in the same directory
    with open(record_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    _build(bundle, toolchain=toolchain)
    assert sorted(job.role for job in toolchain.jobs[3:]) == ["head", "image"]
    meta = load_meta(bundle)
    head_key = trt_build.make_engine_key(meta, "head", "fp16", trt_build.axis_ranges(meta), "10.3.0", ORIN)
    assert trt_build.check_engine(paths["head"], head_key) == head_key  # the rebuilt record is valid again


def test_modified_onnx_is_refused_at_build(bundle):
    from zsseg_rt.bundle import BundleError

    with open(os.path.join(bundle, Files.HEAD), "ab") as handle:
        handle.write(b"edited")
    with pytest.raises(BundleError, match="corrupted or was modified"):
        _build(bundle, toolchain=FakeToolchain())


# ------------------------------------------------------------------------------------------------ refusal
def test_load_engine_refuses_a_mismatching_engine_before_touching_tensorrt(bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    paths = _build(bundle, toolchain=FakeToolchain(version="10.3.0", device=ORIN))
    meta = load_meta(bundle)
    ranges = trt_build.axis_ranges(meta)
    expected = trt_build.make_engine_key(meta, "head", "fp16", ranges, "10.7.0", RTX)
    with pytest.raises(EngineMismatchError) as info:
        trt_build.load_engine(paths["head"], expected)
    message = str(info.value)
    for text in ("tensorrt_version", "'10.3.0'", "'10.7.0'", "gpu_name", RTX.name, "zsseg build-engine"):
        assert text in message
    matching = trt_build.make_engine_key(meta, "head", "fp16", ranges, "10.3.0", ORIN)
    with pytest.raises(ImportError, match="cannot import tensorrt"):  # key accepted: only the missing TensorRT stops it
        trt_build.load_engine(paths["head"], matching)


def test_engine_sha_and_missing_record_are_refused(bundle):
    paths = _build(bundle, toolchain=FakeToolchain())
    key, _ = trt_build.read_engine_record(paths["text"])
    with open(paths["text"], "wb") as handle:
        handle.write(b"another engine")
    with pytest.raises(EngineMismatchError, match="sha256"):
        trt_build.check_engine(paths["text"], key)
    os.remove(os.path.join(os.path.dirname(paths["image"]), trt_build.ENGINE_RECORD))
    with pytest.raises(EngineMismatchError, match="engine record"):
        trt_build.check_engine_platform(paths["image"], "10.3.0", ORIN)


def test_check_engine_platform(bundle):
    paths = _build(bundle, toolchain=FakeToolchain())
    assert trt_build.check_engine_platform(paths["head"], "10.3.0", ORIN).graph == Files.HEAD
    with pytest.raises(EngineMismatchError, match="compute_capability"):
        trt_build.check_engine_platform(paths["head"], "10.3.0", DeviceInfo(ORIN.name, (7, 2)))


def test_find_engines_picks_matching_engines_and_explains_misses(bundle):
    built = _build(bundle, max_batch=4, toolchain=FakeToolchain())
    _build(bundle, max_batch=1, toolchain=FakeToolchain())
    found = trt_build.find_engines(bundle, tensorrt_version="10.3.0", device=ORIN)
    assert found == built  # the largest profile wins
    with pytest.raises(EngineMismatchError, match="tensorrt_version='10.3.0' \\(need '10.7.0'\\)"):
        trt_build.find_engines(bundle, tensorrt_version="10.7.0", device=ORIN)
    with pytest.raises(EngineMismatchError, match="zsseg build-engine"):
        trt_build.find_engines(bundle, precision="fp32", tensorrt_version="10.3.0", device=ORIN)


# ------------------------------------------------------------------------------------------------ real TensorRT
def test_real_build_and_run_tiny_graph(tmp_path):
    """Needs TensorRT 10 and a GPU: builds a tiny graph through TensorRTToolchain and runs it."""
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (JetPack 6.1+ / pip install tensorrt)")
    onnx = pytest.importorskip("onnx", reason="builds a tiny ONNX graph")
    try:
        CudaDriver().device_info(0)
    except CudaError as exc:
        pytest.skip(f"no usable GPU: {exc}")
    from onnx import TensorProto, helper

    assert int(trt.__version__.split(".")[0]) >= 10
    node = helper.make_node("Softmax", [Names.TOKENS], [Names.TEXT_EMBEDDINGS], axis=-1)
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info(Names.TOKENS, TensorProto.FLOAT, [Names.NUM_PROMPTS, 8])],
        [helper.make_tensor_value_info(Names.TEXT_EMBEDDINGS, TensorProto.FLOAT, [Names.NUM_PROMPTS, 8])],
    )
    bundle = _write_bundle(tmp_path / "bundle")
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), os.path.join(bundle, Files.TEXT_ENCODER)
    )
    meta_path = os.path.join(bundle, Files.META)
    with open(meta_path, encoding="utf-8") as handle:
        meta = json.load(handle)
    meta["files"][Files.TEXT_ENCODER] = sha256_file(os.path.join(bundle, Files.TEXT_ENCODER))
    write_meta(meta_path, meta)
    # the gate needs every graph of a real bundle; this bundle's other graphs are fake (the gate is tested in
    # test_accuracy_gate.py), so it is skipped here and the output is compared with numpy instead
    paths = _build(bundle, precision="fp16", graphs=["text"], max_prompts=16)
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    with trt_build.TensorRTRunner(paths["text"]) as runner:
        y = runner.run({Names.TOKENS: x})[Names.TEXT_EMBEDDINGS]
    expected = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    np.testing.assert_allclose(y, expected, rtol=2e-3, atol=1e-3)  # plain fp16: ~1e-3 relative (10-bit mantissa)
