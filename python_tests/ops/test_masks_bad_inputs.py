"""upsample / segment refuse bad arguments with messages naming the argument, what was expected and what was
given (validation lives in csrc/bindings/array_args.h + resize_args.h; nothing is checked in Python)."""

from __future__ import annotations

import numpy as np
import pytest

from zsseg_rt.ops import segment, upsample

X = np.zeros((1, 3, 4, 4), np.float32)  # [B, C, h, w]


def both_ops():
    return [
        pytest.param(lambda x, **kw: upsample(x, **kw), id="upsample"),
        pytest.param(lambda x, **kw: segment(x, **kw), id="segment"),
    ]


@pytest.mark.parametrize("op", both_ops())
@pytest.mark.parametrize(
    "logits,size,kwargs,error,match",
    [
        (
            np.zeros((3, 4, 4), np.float32),
            (2, 2),
            {},
            ValueError,
            r"'logits' must have shape \[B, C, h, w\].*got \[3, 4, 4\]",
        ),
        (np.zeros((1, 0, 4, 4), np.float32), (2, 2), {}, ValueError, r"'logits'.*zero-sized.*\[1, 0, 4, 4\]"),
        (X, (0, 5), {}, ValueError, r"'size' must be \(H, W\) with H >= 1 and W >= 1, got \(0, 5\)"),
        (X, (5, -1), {}, ValueError, r"'size'.*got \(5, -1\)"),
        (X, 5, {}, TypeError, r"'size' must be a tuple of 2 ints \(H, W\), got int"),
        (X, (1, 2, 3), {}, ValueError, r"'size' must be a tuple of 2 ints.*got \(1, 2, 3\)"),
        (X, (2.5, 3), {}, TypeError, r"'size' must be a tuple of 2 ints.*got \(2.5, 3\)"),
        (X, (100000, 100000), {}, ValueError, r"100000, 100000\] would have more than 2\^31 - 1 elements"),
        (
            np.zeros((1, 3, 4, 8), np.float32)[..., ::2],
            (2, 2),
            {},
            ValueError,
            r"'logits' must be C-contiguous, got shape \[1, 3, 4, 4\]",
        ),
        (X.astype(np.float64), (2, 2), {}, TypeError, r"'logits' must have dtype float32.*got float64"),
        (X.astype(np.int32), (2, 2), {}, TypeError, r"'logits' must have dtype float32.*got int32"),
        ([[1.0]], (2, 2), {}, TypeError, r"'logits' must be an array.*got list"),
        (
            X,
            (2, 2),
            {"crop": (1, 1, 4, 4)},
            ValueError,
            r"'crop'.*inside the logits map of size h x w = 4 x 4, got \(1, 1, 4, 4\)",
        ),
        (X, (2, 2), {"crop": (-1, 0, 2, 2)}, ValueError, r"'crop'.*top, left >= 0.*got \(-1, 0, 2, 2\)"),
        (X, (2, 2), {"crop": (0, 0, 0, 2)}, ValueError, r"'crop'.*height, width >= 1.*got \(0, 0, 0, 2\)"),
        (
            X,
            (2, 2),
            {"crop": (0, 0, 2)},
            ValueError,
            r"'crop' must be a tuple of 4 ints \(top, left, height, width\), got \(0, 0, 2\)",
        ),
        (
            X,
            (2, 2),
            {"stream": 7},
            ValueError,
            r"stream=7 was given but the arrays are on the CPU \(argument 'logits' is on cpu\)",
        ),
    ],
)
def test_bad_common_arguments(op, logits, size, kwargs, error, match):
    with pytest.raises(error, match=match):
        op(logits, size=size, **kwargs)


@pytest.mark.parametrize("op", ["upsample", "segment"])
@pytest.mark.parametrize(
    "bias,error,match",
    [
        (np.zeros(4, np.float32), ValueError, r"'class_bias' must have shape \[C\] = \[3\].*got \[4\]"),
        (np.zeros(2, np.float32), ValueError, r"'class_bias' must have shape \[C\] = \[3\].*got \[2\]"),
        (np.zeros((1, 3), np.float32), ValueError, r"'class_bias' must have shape \[C\] = \[3\].*got \[1, 3\]"),
        (np.zeros(3, np.float64), TypeError, r"'class_bias' must have dtype float32.*got float64"),
        (np.zeros(3, np.float16), TypeError, r"'class_bias' must have dtype float32.*got float16"),
        (np.zeros(3, np.int64), TypeError, r"'class_bias' must have dtype float32.*got int64"),
        (np.zeros(6, np.float32)[::2], ValueError, r"'class_bias' must be C-contiguous"),
        ([0.1, 0.0, 0.0], TypeError, r"'class_bias' must be an array.*got list"),
        (np.array([0.0, np.nan, 0.0], np.float32), ValueError, r"'class_bias' must be finite, got NaN at class 1"),
        (np.array([0.0, 0.0, np.nan], np.float32), ValueError, r"'class_bias' must be finite, got NaN at class 2"),
    ],
)
def test_bad_class_bias(op, bias, error, match):
    with pytest.raises(error, match=rf"^{op}: argument {match}"):
        if op == "upsample":
            upsample(X, (2, 2), sigmoid=True, class_bias=bias)
        else:
            segment(X, (2, 2), class_bias=bias)


@pytest.mark.parametrize("value, word", [(np.inf, "inf"), (-np.inf, "-inf"), (np.nan, "NaN")])
def test_non_finite_bias_is_refused_by_both_ops(value, word):
    # Infinite biases make whole groups of classes tie at +/-inf, where a fused argmax cannot follow torch's
    # lowest-index rule cheaply: refused, with the class named.
    x = np.zeros((1, 3, 2, 2), np.float32)
    bias = np.array([0.0, value, 0.1], np.float32)
    with pytest.raises(ValueError, match=rf"class_bias' must be finite, got {word} at class 1"):
        segment(x, (3, 3), class_bias=bias)
    with pytest.raises(ValueError, match=rf"class_bias' must be finite, got {word} at class 1"):
        upsample(x, (3, 3), sigmoid=True, class_bias=bias)


def test_absurd_size_raises_before_allocating():
    # 2^31 output pixels of int32 + float32 would be 16 GiB: the call must fail at once, not try to allocate.
    with pytest.raises(ValueError, match=r"output 'labels' of shape \[1, 65536, 32768\]"):
        segment(X, (65536, 32768))


def test_torch_tensors_with_lazy_negation_are_refused():
    torch = pytest.importorskip("torch")
    from zsseg_rt.ops import native_module

    _C = native_module()  # the build under test (ZSSEG_NATIVE_MODULE / the emulated one), not always zsseg_rt._C
    t = torch.randn(1, 2, 3, 3)
    # DLPack would hand over the un-negated memory: refuse instead of computing on the wrong values
    with pytest.raises(TypeError, match=r"'logits' is a torch tensor with the lazy neg bit set.*resolve_neg"):
        _C.upsample(t._neg_view(), (4, 4))
    out = _C.upsample(t._neg_view().resolve_neg(), (4, 4))
    np.testing.assert_allclose(np.asarray(out), upsample(-t.numpy(), (4, 4)), rtol=1e-6, atol=1e-6)
