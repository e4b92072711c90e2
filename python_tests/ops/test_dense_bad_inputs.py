"""Every bad input to similarity / relation_descriptor raises TypeError/ValueError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import requires_torch_cuda

from zsseg_rt.ops import cuda_available, native_module, relation_descriptor, similarity

F32 = np.float32


def _p(b=2, n=5, d=8):
    return np.ones((b, n, d), F32)


def _t(c=3, d=8):
    return np.ones((c, d), F32)


class FakeCudaArray:
    """Claims to be a CUDA array through __cuda_array_interface__ without owning any memory."""

    def __init__(self, shape, typestr="<f4", ptr=0xDEAD0000, strides=None):
        self.__cuda_array_interface__ = {
            "shape": tuple(shape),
            "typestr": typestr,
            "data": (ptr, False),
            "strides": strides,
            "version": 3,
        }


# ---- similarity: shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patches,text,match",
    [
        (np.ones((5, 8), F32), _t(), r"similarity: argument 'patches' must have shape \[B, N, D\], got \[5, 8\]"),
        (
            _p(),
            np.ones((3, 64), F32),
            r"argument 'text' must have shape \[C, D\] or \[B, C, D\] with B=2, D=8 \(from 'patches' \[2, 5, 8\]\), got \[3, 64\]",
        ),
        (_p(), np.ones((3, 3, 8), F32), r"argument 'text' .* with B=2, D=8 .* got \[3, 3, 8\]"),
        (_p(), np.ones((8,), F32), r"argument 'text' .* got \[8\]"),
        (_p(), np.ones((1, 2, 3, 8), F32), r"argument 'text' .* got \[1, 2, 3, 8\]"),
    ],
)
def test_similarity_shape_errors(patches, text, match):
    with pytest.raises(ValueError, match=match):
        similarity(patches, text)


@pytest.mark.parametrize("shape", [(0, 5, 8), (2, 0, 8), (2, 5, 0)])
def test_zero_sized_patches(shape):
    with pytest.raises(
        ValueError, match=r"argument 'patches' must not have zero-sized .* got shape \[%d, %d, %d\]" % shape
    ):
        similarity(np.ones(shape, F32), _t(d=shape[2]))


def test_zero_sized_text():
    with pytest.raises(ValueError, match=r"argument 'text' must not have zero-sized .* \[0, 8\]"):
        similarity(_p(), np.ones((0, 8), F32))


# ---- dtypes and non-arrays -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype,name",
    [
        (np.float64, "float64"),
        (np.int32, "int32"),
        (np.float16, "float16"),
        (np.int64, "int64"),
        (np.bool_, "bool"),
        (object, "object"),
    ],
)
def test_wrong_dtype_is_type_error(dtype, name):
    with pytest.raises(TypeError, match=r"argument 'text' must have dtype float32 .*got %s on cpu" % name):
        similarity(_p(), _t().astype(dtype))


def test_big_endian_float32_is_refused():
    with pytest.raises(TypeError, match=r"argument 'patches' must have dtype float32.*got >f4"):
        similarity(_p().astype(">f4"), _t())


@pytest.mark.parametrize(
    "value,type_name", [(None, "NoneType"), ([[1.0] * 8] * 3, "list"), (3.0, "float"), ("text", "str")]
)
def test_non_arrays_are_type_errors(value, type_name):
    with pytest.raises(TypeError, match=r"argument 'text' must be an array .*got %s" % type_name):
        similarity(_p(), value)


# ---- layout ----------------------------------------------------------------------------------------


def test_non_contiguous_is_refused_with_strides():
    wide = np.ones((3, 16), F32)
    with pytest.raises(
        ValueError, match=r"argument 'text' must be C-contiguous, got shape \[3, 8\] with byte strides \[64, 8\]"
    ):
        similarity(_p(), wide[:, ::2])


def test_transposed_is_refused():
    with pytest.raises(ValueError, match=r"argument 'patches' must be C-contiguous"):
        similarity(np.ones((8, 5, 2), F32).transpose(2, 1, 0), _t())


def test_broadcast_view_is_refused_not_read_out_of_bounds():
    huge = np.broadcast_to(np.ones((1, 1, 8), F32), (2, 5, 8))  # zero strides
    with pytest.raises(ValueError, match=r"argument 'patches' must be C-contiguous"):
        similarity(huge, _t())


# ---- sizes -----------------------------------------------------------------------------------------


def test_output_larger_than_int32_is_refused_before_allocating():
    # inputs of 65536 floats each, output [1, 65536, 65536] = 2^32 elements (16 GiB) -> refused
    with pytest.raises(
        ValueError, match=r"output 'output' of shape \[1, 65536, 65536\] would have more than 2\^31 - 1"
    ):
        similarity(np.ones((1, 65536, 1), F32), np.ones((65536, 1), F32))


def test_relation_output_larger_than_int32_is_refused():
    with pytest.raises(ValueError, match=r"relation_descriptor: output 'output' of shape \[65536, 65536, 2\]"):
        relation_descriptor(np.ones((65536, 1), F32), np.ones((65536, 1), F32))


def test_absurd_claimed_input_shape_is_refused_before_touching_memory():
    fake = FakeCudaArray((1 << 20, 1 << 20, 512))
    with pytest.raises(
        ValueError, match=r"argument 'patches' has more than 2\^31 - 1 elements \(shape \[1048576, 1048576, 512\]\)"
    ):
        similarity(fake, _t(d=512))


def test_claimed_shape_overflowing_int64_is_refused():
    fake = FakeCudaArray((1 << 62, 1 << 62, 4))
    with pytest.raises(ValueError, match=r"argument 'patches' has more than 2\^31 - 1 elements"):
        similarity(fake, _t(d=4))


def test_cai_shape_beyond_int64_is_value_error():
    fake = FakeCudaArray((1 << 70, 1, 1))
    with pytest.raises(ValueError, match=r"argument 'text'.*does not fit in int64"):
        similarity(_p(d=1), fake)


# ---- devices and streams ---------------------------------------------------------------------------


@pytest.mark.skipif(cuda_available(), reason="checks the no-GPU message")
def test_fake_cuda_array_without_gpu_is_clear_value_error():
    with pytest.raises(
        # a CUDA-compiled build on a machine without a GPU, or a build without CUDA (tools/runtime_only_tests.sh)
        ValueError,
        match=r"argument 'text' is a CUDA array (\(__cuda_array_interface__\) but no CUDA device is usable"
        r"|but zsseg_rt was built without CUDA)",
    ):
        similarity(_p(), FakeCudaArray((3, 8)))


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs a GPU: a fake pointer is only checked where CUDA works")
def test_fake_cuda_pointer_with_gpu_is_refused():
    with pytest.raises(ValueError, match=r"argument 'text'.*(not device memory|not CUDA memory)"):
        similarity(_p(), FakeCudaArray((3, 8)))


def test_fake_cuda_array_with_bad_dtype_is_type_error():
    with pytest.raises(TypeError, match=r"argument 'text' must have dtype float32 or float16, got float64 on cuda"):
        similarity(_p(), FakeCudaArray((3, 8), typestr="<f8"))


def test_fake_cuda_array_with_strides_is_refused():
    with pytest.raises(ValueError, match=r"argument 'text' must be C-contiguous.*byte strides \[4, 12\]"):
        similarity(_p(), FakeCudaArray((3, 8), strides=(4, 12)))


@pytest.mark.parametrize(
    "cai",
    [
        None,
        {"shape": (3, 8)},
        {"shape": (3, 8), "typestr": "<f4", "data": 5},
        {"shape": ("a", 8), "typestr": "<f4", "data": (1, False)},
    ],
)
def test_malformed_cuda_array_interface(cai):
    class Bad:
        __cuda_array_interface__ = cai

    with pytest.raises(ValueError, match=r"similarity: argument 'text'.*__cuda_array_interface__"):
        similarity(_p(), Bad())


def test_cpu_arrays_with_stream_are_refused():
    with pytest.raises(
        ValueError, match=r"stream=12345 was given but the arrays are on the CPU \(argument 'patches' is on cpu\)"
    ):
        similarity(_p(), _t(), stream=12345)


def test_negative_stream_is_refused():
    with pytest.raises(ValueError, match=r"stream must be .* got -1"):
        relation_descriptor(_t(), np.ones((2, 8), F32), stream=-1)


@pytest.mark.cuda
@requires_torch_cuda
def test_mixed_devices_name_both_arguments():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"arguments 'patches' \(cpu\) and 'text' \(cuda:0\) are on different devices"):
        similarity(_p(), torch.ones(3, 8, device="cuda"))


# ---- relation_descriptor ---------------------------------------------------------------------------


def test_relation_bias_without_weight():
    with pytest.raises(ValueError, match=r"argument 'bias' was given without 'weight'"):
        relation_descriptor(_t(), np.ones((2, 8), F32), None, np.ones(4, F32))


@pytest.mark.parametrize(
    "text,glob,weight,bias,match",
    [
        (
            np.ones((3, 8, 1), F32),
            np.ones((2, 8), F32),
            None,
            None,
            r"argument 'text' must have shape \[C, D\], got \[3, 8, 1\]",
        ),
        (
            _t(),
            np.ones((2, 7), F32),
            None,
            None,
            r"argument 'image_global' must have shape \[B, D\] with D=8 \(from 'text' \[3, 8\]\), got \[2, 7\]",
        ),
        (_t(), np.ones((8,), F32), None, None, r"argument 'image_global' must have shape \[B, D\].*got \[8\]"),
        (
            _t(),
            np.ones((2, 8), F32),
            np.ones((4, 8), F32),
            None,
            r"argument 'weight' must have shape \[Dout, 2D\] with 2D=16 .* got \[4, 8\]",
        ),
        (
            _t(),
            np.ones((2, 8), F32),
            np.ones((4, 16), F32),
            np.ones(5, F32),
            r"argument 'bias' must have shape \[Dout\] with Dout=4 \(from 'weight' \[4, 16\]\), got \[5\]",
        ),
        (_t(), np.ones((2, 8), F32), np.ones((4, 16), F32), np.ones((4, 1), F32), r"argument 'bias' .* got \[4, 1\]"),
    ],
)
def test_relation_shape_errors(text, glob, weight, bias, match):
    with pytest.raises(ValueError, match=match):
        relation_descriptor(text, glob, weight, bias)


def test_relation_wrong_dtypes():
    with pytest.raises(TypeError, match=r"argument 'weight' must have dtype float32.*got float64"):
        relation_descriptor(_t(), np.ones((2, 8), F32), np.ones((4, 16)), None)
    with pytest.raises(TypeError, match=r"argument 'image_global' must be an array .*got list"):
        relation_descriptor(_t(), [[1.0] * 8])


def test_relation_non_contiguous_weight():
    with pytest.raises(ValueError, match=r"argument 'weight' must be C-contiguous"):
        relation_descriptor(_t(), np.ones((2, 8), F32), np.ones((16, 4), F32).T)


def test_errors_come_from_native_module_too():
    # the C++ entry point validates by itself (the Python wrapper adds no checks)
    with pytest.raises(TypeError, match=r"similarity: argument 'patches' must be an array"):
        native_module().similarity(None, _t())


# ---- DLPack producers that misbehave ---------------------------------------------------------------


class _DlpackFake:
    def __init__(self, device=(2, 0), result=5, error=None):
        self._device, self._result, self._error = device, result, error

    def __dlpack_device__(self):
        return self._device

    def __dlpack__(self, **kwargs):
        if self._error is not None:
            raise self._error
        return self._result


def test_dlpack_returning_a_non_capsule_is_type_error():
    with pytest.raises(
        TypeError, match=r"argument 'patches': __dlpack__\(\) returned int, not an unused DLPack capsule"
    ):
        similarity(_DlpackFake(), _t())


def test_dlpack_export_failure_is_value_error_with_the_producer_message():
    with pytest.raises(
        ValueError, match=r"argument 'text' could not be exported with __dlpack__: BufferError: no export"
    ):
        similarity(_p(), _DlpackFake(device=(1, 0), error=BufferError("no export")))


def test_dlpack_bad_device_tuple():
    with pytest.raises(ValueError, match=r"argument 'text': __dlpack_device__\(\) did not return \(int, int\)"):
        similarity(_p(), _DlpackFake(device="cuda"))


def test_cpu_dlpack_producer_with_classic_signature_is_accepted():
    class ClassicProducer:  # only understands __dlpack__(stream=None): max_version triggers a TypeError fallback
        def __init__(self, array):
            self._array = array

        def __dlpack_device__(self):
            return (1, 0)

        def __dlpack__(self, stream=None):
            return self._array.__dlpack__()

    out = similarity(ClassicProducer(_p(1, 2, 8)), _t())
    np.testing.assert_array_equal(out, np.full((1, 3, 2), 8.0, F32))
