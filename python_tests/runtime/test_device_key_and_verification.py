"""Issue 15 item 6: the engine cache key tells Jetson modules apart (multiprocessor count, total memory, read through
the ctypes CUDA driver shim), and Engine() hashes only the files its backend opens, remembering verified files by
(size, mtime, ctime, inode, sha256) so a restart does not hash them again while a modified file is still caught."""

from __future__ import annotations

import ctypes
import os
import shutil
import time

import pytest

from zsseg_rt.bundle import BundleError, Files, load_meta
from zsseg_rt.runtime import file_verification
from zsseg_rt.runtime.device.cuda_driver import ATTR_MULTIPROCESSOR_COUNT, CudaDriver, DeviceInfo


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path):
    return str(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


# ------------------------------------------------------------------------------------------------ device key
class FakeLibcuda:
    """Driver entry points as ctypes would call them (values written through the byref pointers)."""

    def __init__(self, name=b"Orin", sm=(8, 7), multiprocessors=8, total_bytes=7_990_000_000):
        attributes = {75: sm[0], 76: sm[1], ATTR_MULTIPROCESSOR_COUNT: multiprocessors}
        self.calls = []

        def ok(*_):
            return 0

        def count(pointer):
            pointer._obj.value = 1
            return 0

        def get(pointer, index):
            pointer._obj.value = index
            return 0

        def get_name(buffer, length, device):
            ctypes.memmove(buffer, name, len(name))
            return 0

        def attribute(pointer, which, device):
            self.calls.append(("cuDeviceGetAttribute", which))
            pointer._obj.value = attributes[which]
            return 0

        def total_mem(pointer, device):
            self.calls.append(("cuDeviceTotalMem_v2", device))
            pointer._obj.value = total_bytes
            return 0

        for symbol in (
            "cuInit cuDevicePrimaryCtxRetain cuDevicePrimaryCtxRelease_v2 cuCtxSetCurrent cuMemAlloc_v2 cuMemFree_v2 "
            "cuMemcpyHtoDAsync_v2 cuMemcpyDtoHAsync_v2 cuMemcpyDtoDAsync_v2 cuStreamCreate cuStreamSynchronize "
            "cuStreamDestroy_v2 cuGetErrorString cuMemHostAlloc cuMemFreeHost cuMemHostGetDevicePointer_v2 "
            "cuMemGetInfo_v2 cuDriverGetVersion"
        ).split():
            setattr(self, symbol, _settable(ok))
        self.cuDeviceGetCount = _settable(count)
        self.cuDeviceGet = _settable(get)
        self.cuDeviceGetName = _settable(get_name)
        self.cuDeviceGetAttribute = _settable(attribute)
        self.cuDeviceTotalMem_v2 = _settable(total_mem)


def _settable(function):
    def wrapper(*args):
        return function(*args)

    return wrapper  # a plain function accepts the ``argtypes`` attribute the driver shim sets


def test_device_info_reads_multiprocessors_and_memory_through_the_driver():
    lib = FakeLibcuda(multiprocessors=8, total_bytes=16_000_000_000)
    info = CudaDriver(library=lib).device_info(0)
    assert info == DeviceInfo("Orin", (8, 7), multiprocessors=8, total_memory_mib=16_000_000_000 >> 20)
    assert ("cuDeviceGetAttribute", ATTR_MULTIPROCESSOR_COUNT) in lib.calls and ("cuDeviceTotalMem_v2", 0) in lib.calls


class FakeToolchain:
    """Writes fake engine files for ``device`` (the builder's toolchain interface)."""

    def __init__(self, device):
        self.version, self.device, self.jobs = "10.3.0", device, []

    def build(self, job):
        self.jobs.append(job)
        os.makedirs(os.path.dirname(job.engine_path), exist_ok=True)
        with open(job.engine_path, "wb") as handle:
            handle.write(f"engine for {self.device}".encode())


def test_jetson_modules_with_one_name_get_separate_engines(bundle_copy):
    from zsseg_rt.prepare.tensorrt import build as trt_build
    from zsseg_rt.runtime.engine_cache import EngineMismatchError

    agx = CudaDriver(library=FakeLibcuda(multiprocessors=16, total_bytes=64 << 30)).device_info()
    nano = CudaDriver(library=FakeLibcuda(multiprocessors=8, total_bytes=8 << 30)).device_info()
    assert (agx.name, agx.sm) == (nano.name, nano.sm)  # what cuDeviceGetName and the capability say alike
    bundle = bundle_copy
    on_agx = trt_build.build_engines(bundle, toolchain=FakeToolchain(device=agx), accuracy_gate=False)
    nano_toolchain = FakeToolchain(device=nano)
    on_nano = trt_build.build_engines(bundle, toolchain=nano_toolchain, accuracy_gate=False)
    assert len(nano_toolchain.jobs) == 3 and set(on_agx.values()).isdisjoint(on_nano.values())
    nx = DeviceInfo(nano.name, nano.compute_capability, multiprocessors=8, total_memory_mib=16 << 10)
    with pytest.raises(EngineMismatchError, match="gpu_memory_mib"):
        trt_build.find_engines(bundle, tensorrt_version="10.3.0", device=nx)
    with pytest.raises(EngineMismatchError, match="gpu_multiprocessors"):
        trt_build.check_engine_platform(on_agx["image"], "10.3.0", nano)


# ------------------------------------------------------------------------------------------------ verified files
@pytest.fixture()
def hashes(monkeypatch):
    """Counts real hashing (file_verification.sha256_file calls) per file name."""
    counted = []
    real = file_verification.sha256_file

    def counting(path, *args, **kwargs):
        counted.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(file_verification, "sha256_file", counting)
    return counted


def test_a_verified_file_is_not_hashed_again_until_it_changes(tmp_path, hashes):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 4096)
    first = file_verification.cached_sha256(str(path))
    assert file_verification.cached_sha256(str(path)) == first and hashes == ["weights.bin"]
    with open(path, "ab") as handle:  # size changes
        handle.write(b"y")
    assert file_verification.cached_sha256(str(path)) != first and len(hashes) == 2


def test_a_same_size_edit_with_restored_mtime_is_still_caught(tmp_path, hashes):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 4096)
    original = file_verification.cached_sha256(str(path))
    stat = os.stat(path)
    time.sleep(0.01)
    with open(path, "r+b") as handle:  # same size, one byte changed
        handle.write(b"b")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime restored; the ctime still moves
    assert os.stat(path).st_size == stat.st_size and os.stat(path).st_mtime_ns == stat.st_mtime_ns
    assert file_verification.cached_sha256(str(path)) != original and len(hashes) == 2


def test_an_unwritable_cache_only_costs_rehashing(tmp_path, hashes, monkeypatch):
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where the cache directory would be")
    monkeypatch.setenv("ZSSEG_RT_CACHE_DIR", str(blocker / "zsseg_rt"))
    path = tmp_path / "weights.bin"
    path.write_bytes(b"z" * 100)
    assert file_verification.cached_sha256(str(path)) == file_verification.cached_sha256(str(path))
    assert len(hashes) == 2


def test_engine_restart_hashes_nothing_and_a_tampered_graph_is_caught(bundle_copy, hashes):
    from zsseg_rt import Engine

    Engine(bundle_copy, backend="onnxruntime", device="cpu", device_pipeline=False)
    assert sorted(hashes) == sorted([Files.TOKENIZER, Files.IMAGE_ENCODER, Files.HEAD, Files.TEXT_ENCODER])
    hashes.clear()
    Engine(bundle_copy, backend="onnxruntime", device="cpu", device_pipeline=False)  # a restart
    assert hashes == []
    with open(os.path.join(bundle_copy, Files.HEAD), "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(BundleError, match="corrupted or was modified"):
        Engine(bundle_copy, backend="onnxruntime", device="cpu", device_pipeline=False)
    assert hashes == [Files.HEAD]


def test_tensorrt_backend_does_not_hash_the_onnx_graphs(bundle_copy, hashes, monkeypatch):
    from zsseg_rt import Engine
    from zsseg_rt.runtime.backends import Backend
    from zsseg_rt.runtime.backends.tensorrt import runner as tensorrt_runner

    class EnginesOnly(Backend):  # stands in for TensorRTBackend, which opens engine files only
        name = "tensorrt-fake"

        def __init__(self, meta, precision="fp16"):
            self.meta = meta

    monkeypatch.setattr(tensorrt_runner, "open_tensorrt", lambda meta, roles, **options: EnginesOnly(meta))
    with open(os.path.join(bundle_copy, Files.IMAGE_ENCODER), "ab") as handle:
        handle.write(b"an ONNX graph the TensorRT backend never opens")
    engine = Engine(bundle_copy, backend="tensorrt", device_pipeline=False)
    assert isinstance(engine.backend, EnginesOnly) and hashes == [Files.TOKENIZER]
    with pytest.raises(BundleError, match=Files.IMAGE_ENCODER):
        Engine(bundle_copy, backend="onnxruntime", device="cpu", device_pipeline=False)
    assert load_meta(bundle_copy).files[Files.IMAGE_ENCODER]  # nothing was rewritten
