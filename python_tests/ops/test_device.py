"""Importing zsseg_rt and asking about CUDA never fails, with or without a GPU/driver."""

from __future__ import annotations

import importlib

import pytest


def test_import_and_cuda_queries_do_not_raise():
    zsseg_rt = importlib.import_module("zsseg_rt")
    from zsseg_rt.ops import cuda_available, native_module

    assert zsseg_rt is not None
    native = native_module()
    available = cuda_available()
    assert isinstance(available, bool)
    count = native.cuda_device_count()
    assert isinstance(count, int) and count >= 0
    assert available == (native.cuda_compiled() and count > 0)
    assert isinstance(native.cuda_status(), str) and native.cuda_status()


def test_no_gpu_on_this_machine_means_not_available():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: covered by test_dense_cuda.py")
    from zsseg_rt.ops import cuda_available, native_module

    assert cuda_available() is False
    assert native_module().cuda_device_count() == 0


def test_device_array_class_is_exposed_but_not_constructible_from_python():
    native = importlib.import_module("zsseg_rt.ops").native_module()
    assert hasattr(native, "DeviceArray")
    with pytest.raises(TypeError):
        native.DeviceArray()


def test_unavailable_cuda_has_a_reason():
    from zsseg_rt.ops import cuda_available, cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if cuda_available():
        assert reason == ""
    else:  # here: no driver (the static cudart says so), a CPU-only build, or no code for this GPU's architecture
        assert reason and isinstance(reason, str)


# ---- a visible GPU that the CUDA build cannot use says so, once (ops/driver_probe.py) ------------------------------
class FakeLibcuda:
    """``libcuda`` of a driver for CUDA ``cuda_version`` with ``devices`` GPUs (the three entry points the probe
    calls; ctypes passes the out-parameters byref)."""

    def __init__(self, cuda_version: int, devices: int):
        self.version, self.devices = cuda_version, devices

    def cuDriverGetVersion(self, out):
        out._obj.value = self.version
        return 0

    def cuInit(self, flags):
        return 0 if self.devices else 100  # CUDA_ERROR_NO_DEVICE

    def cuDeviceGetCount(self, out):
        out._obj.value = self.devices
        return 0


class FakeModule:
    """The native module of a CUDA build whose device probe failed with ``status``."""

    def __init__(self, status, path=None):
        self.status, self.__file__ = status, path

    def cuda_available(self):
        return False

    def cuda_compiled(self):
        return True

    def cuda_status(self):
        return self.status


def _warnings_of_cuda_available(monkeypatch, module, library, calls=2):
    import warnings

    from zsseg_rt.ops import _loader, driver_probe

    monkeypatch.setattr(_loader, "native_module", lambda: module)
    monkeypatch.setattr(_loader, "_WARNED_UNUSABLE", [])
    monkeypatch.setattr(driver_probe, "load_driver_library", lambda: library)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [_loader.cuda_available() for _ in range(calls)] == [False] * calls
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.fixture()
def cuda13_module(tmp_path):
    """A native module file stamped as nvcc 13.0 stamps its fatbinaries."""
    path = tmp_path / "_C.so"
    path.write_bytes(b"\x7fELF...\x00Cuda compilation tools, release 13.0, V13.0.88\x00...")
    return str(path)


def test_a_driver_too_old_for_the_cuda_runtime_gives_one_warning_naming_the_driver(monkeypatch, cuda13_module):
    from zsseg_rt.ops.driver_probe import INSUFFICIENT_DRIVER

    module = FakeModule(INSUFFICIENT_DRIVER, cuda13_module)
    messages = _warnings_of_cuda_available(monkeypatch, module, FakeLibcuda(12080, 1))
    assert messages == [
        "zsseg_rt's CUDA kernels were built with CUDA 13.0 and need an NVIDIA driver r580 or newer, but this "
        "machine's driver supports CUDA 12.8 only: the native ops run on the CPU; update the NVIDIA driver to r580 "
        "or newer"
    ]  # one line, once however often it is asked


def test_a_gpu_the_build_has_no_code_for_is_named_too(monkeypatch, cuda13_module):
    status = "cuda:0 cannot run this build's kernels: no kernel image is available for execution on the device"
    messages = _warnings_of_cuda_available(monkeypatch, FakeModule(status, cuda13_module), FakeLibcuda(13000, 2))
    assert len(messages) == 1 and messages[0].startswith("a CUDA GPU is visible (2 device(s), driver for CUDA 13.0)")
    assert status in messages[0]


def test_no_driver_or_no_gpu_is_no_warning(monkeypatch, cuda13_module):
    from zsseg_rt.ops.driver_probe import INSUFFICIENT_DRIVER

    class NoLibrary:  # what the probe gets where libcuda is missing: the CUDA runtime still says "insufficient"
        def __getattr__(self, name):
            raise OSError("libcuda.so.1: cannot open shared object file")

    module = FakeModule(INSUFFICIENT_DRIVER, cuda13_module)
    assert _warnings_of_cuda_available(monkeypatch, module, NoLibrary()) == []
    assert _warnings_of_cuda_available(monkeypatch, module, FakeLibcuda(12080, 0)) == []  # a driver, no GPU


def test_the_build_s_cuda_version_is_read_from_the_module(cuda13_module, tmp_path):
    from zsseg_rt.ops import native_module
    from zsseg_rt.ops.driver_probe import built_cuda_version

    assert built_cuda_version(cuda13_module) == (13, 0)
    plain = tmp_path / "cpu_only.so"
    plain.write_bytes(b"\x7fELF no CUDA here")
    assert built_cuda_version(str(plain)) is None and built_cuda_version(None) is None
    if native_module().cuda_compiled():  # this build's own stamp (nvcc 13.0 in CI)
        assert built_cuda_version(native_module().__file__) is not None


def test_an_engine_that_could_use_a_gpu_asks(monkeypatch, tiny_bundle):
    """The Engine asks on construction (device "auto"/"cuda"), so a default Engine on a machine with an old driver
    warns instead of silently running on the CPU; device="cpu" does not ask."""
    from zsseg_rt import Engine
    from zsseg_rt.runtime import engine as engine_module

    asked = []
    monkeypatch.setattr(engine_module.ops, "cuda_available", lambda: asked.append(True) or False)
    Engine(tiny_bundle, backend="onnxruntime", device="cpu")
    assert asked == []
    Engine(tiny_bundle, backend="onnxruntime")
    assert asked == [True]
