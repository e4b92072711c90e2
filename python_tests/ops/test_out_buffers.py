"""Issue 13 (CUDA op correctness, allocation item): every op that returns new arrays takes ``out=`` preallocated
outputs. On the CPU: results written in place are those of the allocating call (bit for bit), the very object
given is returned, and a bad ``out`` gets a one-line error naming the op, the argument, what was expected and what
was given. The CUDA side (DLPack / ``__cuda_array_interface__`` outputs) goes through the same C++ checks; the
device cases skip without a usable GPU."""

from __future__ import annotations

import numpy as np
import pytest

from zsseg_rt import ops

RNG = np.random.default_rng(13)
LOGITS = RNG.standard_normal((2, 3, 5, 7)).astype(np.float32)
BIAS = np.array([0.1, 0.0, -0.05], np.float32)
PATCHES = RNG.standard_normal((2, 6, 8)).astype(np.float32)
TEXT = RNG.standard_normal((4, 8)).astype(np.float32)
GLOBAL = RNG.standard_normal((2, 8)).astype(np.float32)
WEIGHT = RNG.standard_normal((5, 16)).astype(np.float32)
WIN_LOGITS = RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)
WINDOWS = [(0, 8, 0, 8), (0, 8, 4, 12)]
IMAGE = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)
FLOW = (RNG.standard_normal((2, 5, 7, 2)) * 2.0).astype(np.float32)
RNG_LABELS = RNG.integers(0, 3, (5, 7)).astype(np.int32)


# op -> (call(out=...), [(shape, dtype) of each output]); single-output ops take an array, two-output ops a pair
SINGLE = {
    "upsample": (
        lambda out=None: ops.upsample(LOGITS, (9, 11), sigmoid=True, class_bias=BIAS, out=out),
        ((2, 3, 9, 11), np.float32),
    ),
    "similarity": (
        lambda out=None: ops.similarity(PATCHES, TEXT, normalize=True, scale=3.0, out=out),
        ((2, 4, 6), np.float32),
    ),
    "relation_descriptor": (
        lambda out=None: ops.relation_descriptor(TEXT, GLOBAL, WEIGHT, np.ones(5, np.float32), out=out),
        ((2, 4, 5), np.float32),
    ),
    "preprocess": (
        lambda out=None: ops.preprocess(IMAGE, (6, 7), [(0, 6, 0, 4), (0, 6, 3, 7)], 6, (1, 2, 3), (2, 3, 4), out=out),
        ((2, 3, 6, 6), np.float32),
    ),
    "pamr": (
        lambda out=None: ops.pamr(LOGITS, LOGITS[:, :2] * 2.0, 3, (1, 2), out=out),
        ((2, 3, 5, 7), np.float32),
    ),
    "warp": (
        lambda out=None: ops.warp(LOGITS, FLOW, out=out),
        ((2, 3, 5, 7), np.float32),
    ),
    "class_state": (
        lambda out=None: ops.class_state(WIN_LOGITS, WINDOWS, (8, 8), (8, 12), (3, 5), class_bias=BIAS, out=out),
        ((3, 3, 5), np.float32),
    ),
}
PAIR = {
    "segment": (
        lambda out=None: ops.segment(LOGITS, (9, 11), class_bias=BIAS, out=out),
        ((2, 9, 11), np.int32),
        ((2, 9, 11), np.float32),
    ),
    "segment_windows": (
        lambda out=None: ops.segment_windows(WIN_LOGITS, WINDOWS, (8, 8), (8, 12), (10, 13), class_bias=BIAS, out=out),
        ((10, 13), np.int32),
        ((10, 13), np.float32),
    ),
    "temporal_propagate": (
        lambda out=None: ops.temporal_propagate(RNG_LABELS, LOGITS[0, 0], FLOW[0], out=out),
        ((5, 7), np.int32),
        ((5, 7), np.float32),
    ),
}


def _poisoned(shape, dtype):
    fill = -7 if np.dtype(dtype).kind == "i" else np.nan
    return np.full(shape, fill, dtype)


def test_every_array_returning_op_is_covered():
    assert set(SINGLE) | set(PAIR) == set(ops.__all__) - {
        "cuda_available",
        "cuda_unavailable_reason",
        "native_module",
        "reference",
        "SegmentWindowsPlan",  # returns no array: it writes into its required out= (test_segment_windows_plan.py)
        "segment_windows_kernels",  # not an op: the names of segment_windows' CUDA kernels
        "temporal_hold",  # returns no array: it changes its labels and scores in place (test_temporal_ops.py)
        "temporal_blend",  # four outputs, out= a 4-tuple (test_temporal_ops.py)
    }


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_single_output_written_in_place_equals_the_allocating_call(name):
    call, (shape, dtype) = SINGLE[name]
    expected = call()
    out = _poisoned(shape, dtype)
    result = call(out=out)
    assert result is out
    np.testing.assert_array_equal(out, expected)  # bit for bit (NaN poison would show)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(PAIR))
def test_pair_written_in_place_equals_the_allocating_call(name):
    call, labels_spec, scores_spec = PAIR[name]
    labels, scores = call()
    out = (_poisoned(*labels_spec), _poisoned(*scores_spec))
    result = call(out=out)
    assert result[0] is out[0] and result[1] is out[1]
    np.testing.assert_array_equal(out[0], labels)
    np.testing.assert_array_equal(out[1], scores)
    assert (out[0] >= 0).all()


@pytest.mark.parametrize("name", sorted(PAIR))
@pytest.mark.parametrize("given", [0, 1])
def test_pair_with_one_entry_none_allocates_the_other(name, given):
    call, labels_spec, scores_spec = PAIR[name]
    expected = call()
    specs = (labels_spec, scores_spec)
    out = [None, None]
    out[given] = _poisoned(*specs[given])
    result = call(out=tuple(out))
    assert result[given] is out[given]
    assert isinstance(result[1 - given], np.ndarray) and result[1 - given] is not None
    np.testing.assert_array_equal(result[0], expected[0])
    np.testing.assert_array_equal(result[1], expected[1])


def test_torch_cpu_tensor_as_out():
    torch = pytest.importorskip("torch")
    expected = ops.upsample(LOGITS, (9, 11), sigmoid=True, class_bias=BIAS)
    out = torch.full((2, 3, 9, 11), float("nan"))
    result = ops.upsample(LOGITS, (9, 11), sigmoid=True, class_bias=BIAS, out=out)
    assert result is out
    np.testing.assert_array_equal(out.numpy(), expected)
    labels = torch.full((2, 9, 11), -1, dtype=torch.int32)
    scores = torch.empty((2, 9, 11))
    exp_labels, exp_scores = ops.segment(LOGITS, (9, 11))
    ops.segment(LOGITS, (9, 11), out=(labels, scores))
    np.testing.assert_array_equal(labels.numpy(), exp_labels)
    np.testing.assert_array_equal(scores.numpy(), exp_scores)


def _bad_outs(shape, dtype, arg):
    """(out, exception, message regex) cases for one output of ``shape``/``dtype`` named ``arg`` in messages."""
    other = np.float32 if np.dtype(dtype) == np.int32 else np.int32
    wrong_shape = tuple(shape[:-1]) + (shape[-1] + 1,)
    big = np.zeros(tuple(shape[:-1]) + (shape[-1] * 2,), dtype)
    readonly = np.zeros(shape, dtype)
    readonly.setflags(write=False)
    esc = arg.replace("[", r"\[").replace("]", r"\]")
    shape_text = r"\[" + ", ".join(str(d) for d in shape) + r"\]"
    wrong_text = r"\[" + ", ".join(str(d) for d in wrong_shape) + r"\]"
    return [
        (np.zeros(wrong_shape, dtype), ValueError, f"argument '{esc}' must have shape {shape_text}, got {wrong_text}"),
        (np.zeros(shape, other), TypeError, f"argument '{esc}' must have dtype {np.dtype(dtype).name}, got"),
        (
            np.zeros(shape, np.float64),
            TypeError,
            f"argument '{esc}' must have dtype {np.dtype(dtype).name}, got float64",
        ),
        (big[..., ::2], ValueError, f"argument '{esc}' must be C-contiguous"),
        (readonly, ValueError, f"argument '{esc}' is read-only"),
        ([[0.0]], TypeError, f"argument '{esc}' must be an array"),
    ]


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_single_output_bad_out_is_refused_in_one_line(name):
    call, (shape, dtype) = SINGLE[name]
    for out, error, message in _bad_outs(shape, dtype, "out"):
        with pytest.raises(error, match=f"^{name}: {message}") as info:
            call(out=out)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", sorted(PAIR))
@pytest.mark.parametrize("index", [0, 1])
def test_pair_bad_entry_is_refused_in_one_line(name, index):
    call, *specs = PAIR[name]
    shape, dtype = specs[index]
    for bad, error, message in _bad_outs(shape, dtype, f"out[{index}]"):
        out = [None, None]
        out[index] = bad
        with pytest.raises(error, match=f"^{name}: {message}") as info:
            call(out=tuple(out))
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", sorted(PAIR))
@pytest.mark.parametrize("out", [np.zeros(3, np.float32), (None,), (None, None, None), "ab"])
def test_pair_out_must_be_a_pair(name, out):
    with pytest.raises(TypeError, match=rf"^{name}: argument 'out' must be None or a tuple \(labels, scores\)"):
        PAIR[name][0](out=out)


@pytest.mark.parametrize("name", sorted(PAIR))
def test_pair_entries_sharing_memory_are_refused(name):
    call, (shape, _), _ = PAIR[name]
    buffer = np.zeros(shape, np.int32)
    with pytest.raises(ValueError, match=rf"^{name}: arguments 'out\[0\]' and 'out\[1\]' share memory"):
        call(out=(buffer, buffer.view(np.float32)))


def test_out_overlapping_an_input_is_refused():
    # in place over the input would read values already overwritten
    logits = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"^upsample: argument 'out' overlaps the memory of input 'logits'"):
        ops.upsample(logits, (4, 4), out=logits)
    patches = np.zeros((1, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"^similarity: argument 'out' overlaps the memory of input 'patches'"):
        ops.similarity(patches, np.zeros((2, 4), np.float32), out=patches.reshape(-1)[4:].reshape(1, 2, 2))
    bias = np.zeros(2, np.float32)
    scores_over_bias = np.zeros(16 + 2, np.float32)
    with pytest.raises(ValueError, match=r"^segment: argument 'out\[1\]' overlaps the memory of input 'logits'"):
        ops.segment(
            scores_over_bias[:16].reshape(1, 2, 2, 4),
            (2, 4),
            class_bias=bias,
            out=(None, scores_over_bias[8:16].reshape(1, 2, 4)),
        )
