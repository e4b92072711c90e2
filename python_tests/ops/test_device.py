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
