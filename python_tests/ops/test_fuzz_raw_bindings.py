"""The raw native functions (``zsseg_rt._C.*``, below the Python wrappers) given arbitrary arguments: the process
must never crash, and whatever the binding refuses it refuses with TypeError / ValueError / OverflowError (issues
25 and 29). The wrappers normalise arguments first (tuples of ints, torch CPU tensors to NumPy), so the binding
itself must be safe for everything its signature lets through: NumPy rows and scalars as sizes and windows, bools,
huge and negative ints, fake ``__cuda_array_interface__`` / ``__dlpack__`` objects. Derandomised hypothesis (the
same examples every run) in a subprocess, so that a segfault fails the test instead of killing pytest. Runs on
whatever build is loaded: in CI also on the emulated CUDA build under AddressSanitizer (``-m cuda`` selects it)."""

import os
import subprocess
import sys
import textwrap

import pytest

from zsseg_rt.ops import _loader

FUZZ = textwrap.dedent(
    """
    import numpy as np
    from hypothesis import HealthCheck, given, settings, strategies as st
    from zsseg_rt.ops import native_module

    _C = native_module()
    REFUSED = (TypeError, ValueError, OverflowError)
    counts = {"refused": 0, "ok": 0}

    class FakeCai:
        def __init__(self, cai):
            self.__cuda_array_interface__ = cai

    class BadDlpack:
        def __init__(self, device, result):
            self._device, self._result = device, result
        def __dlpack_device__(self):
            return self._device
        def __dlpack__(self, **kwargs):
            if isinstance(self._result, Exception):
                raise self._result
            return self._result

    class LyingList(list):
        # a list whose __len__ answers first `first`, then `then`: a count checked on __len__ and filled by
        # iterating overran fixed arrays (pamr's dilations: a segfault; preprocess's mean/std)
        def __init__(self, items, first, then):
            super().__init__(items)
            self._answers = [first]
            self._then = then
        def __len__(self):
            return self._answers.pop() if self._answers else self._then

    DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_]
    shapes = st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 9]), min_size=0, max_size=5).map(tuple)

    @st.composite
    def arrays(draw):
        shape = draw(shapes)
        a = np.zeros(shape, draw(st.sampled_from(DTYPES)))
        value = draw(st.sampled_from([0.0, 1.0, -3.0, np.nan, np.inf, 1e30]))
        if a.size:
            a[...] = value if a.dtype.kind == "f" else 1
        layout = draw(st.sampled_from(["c", "f", "strided", "readonly"]))
        if layout == "f" and a.ndim >= 2:
            a = np.asfortranarray(a)
        elif layout == "strided" and a.ndim >= 1 and a.shape[-1] > 1:
            a = a[..., ::2]
        elif layout == "readonly":
            a.flags.writeable = False
        return a

    ints = st.one_of(
        st.integers(-3, 70), st.sampled_from([2**31, 2**40, -(2**63), 2**63, 2**70]),
        st.integers(-3, 70).map(np.int64), st.integers(0, 70).map(np.uint8), st.booleans(), st.just(np.bool_(True)),
    )
    int_seqs = st.one_of(
        st.lists(ints, min_size=0, max_size=5).map(tuple), st.lists(ints, min_size=0, max_size=5),
        st.lists(st.integers(-2, 70), min_size=0, max_size=5).map(lambda v: np.array(v, np.int64)),
    )
    windows = st.one_of(
        st.lists(int_seqs, min_size=0, max_size=3),
        st.lists(st.lists(st.integers(-2, 40), min_size=4, max_size=4), min_size=1, max_size=3).map(np.array),
        st.lists(st.lists(st.integers(-2, 40), min_size=3, max_size=3), min_size=1, max_size=2).map(np.array),
    )
    cai = st.fixed_dictionaries(
        {"shape": st.one_of(shapes, st.just(("a", 2))), "typestr": st.sampled_from(["<f4", "<f2", "<f8", "|u1", "x"]),
         "data": st.one_of(st.tuples(st.sampled_from([0, 8, 0xDEAD0000, 2**64, -1]), st.booleans()), st.just(5)),
         "version": st.integers(0, 3)},
        optional={"strides": st.one_of(st.none(), shapes), "stream": st.one_of(st.none(), st.integers(-1, 3))},
    ).map(FakeCai)
    dlpack = st.builds(BadDlpack, st.sampled_from([(1, 0), (2, 0), (2, 7), (13, 0), (99, 0), "x"]),
                       st.sampled_from([None, 3, "capsule", ValueError("no"), TypeError("no")]))
    lying = st.builds(
        LyingList, st.lists(st.one_of(st.integers(-2, 40), st.floats(0, 2), windows), min_size=0, max_size=70),
        st.integers(0, 8), st.integers(0, 70),
    )
    anything = st.one_of(
        st.none(), ints, st.floats(allow_nan=True), st.text(max_size=3), int_seqs, windows, arrays(), cai, dlpack,
        lying,
    )
    maybe = st.one_of(st.none(), anything)

    def call(fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
            counts["ok"] += 1
        except REFUSED:
            counts["refused"] += 1

    fuzz = settings(derandomize=True, max_examples=int(__import__("os").environ["FUZZ_EXAMPLES"]), database=None,
                    deadline=None, suppress_health_check=list(HealthCheck))

    @fuzz
    @given(anything, anything, st.booleans(), anything, maybe, st.integers(0, 3))
    def similarity(patches, text, normalize, scale, out, stream):
        call(_C.similarity, patches, text, normalize, scale if isinstance(scale, float) else 1.0, out, stream)

    @fuzz
    @given(anything, anything, maybe, maybe, maybe)
    def relation(text, image_global, weight, bias, out):
        call(_C.relation_descriptor, text, image_global, weight, bias, out)

    @fuzz
    @given(anything, anything, maybe, st.booleans(), maybe, maybe)
    def upsample(logits, size, crop, sigmoid, bias, out):
        call(_C.upsample, logits, size, crop, sigmoid, bias, out)
        call(_C.segment, logits, size, bias, sigmoid, crop, out)

    @fuzz
    @given(anything, anything, anything, st.sampled_from([1, 8, 0, -1, 2**40]), anything, anything,
           st.sampled_from(["bgr", "rgb", "x"]), st.sampled_from(["float32", "float16", "int8"]), maybe)
    def preprocess(image, scaled, windows_, crop, mean, std, order, dtype, out):
        call(_C.preprocess, image, scaled, windows_, crop, mean, std, order, dtype, out)

    @fuzz
    @given(anything, windows, anything, anything, anything, maybe, st.booleans(), st.booleans(),
           st.sampled_from([1.0, 0.0, float("nan"), 1e39]), maybe, maybe)
    def segment_windows(logits, windows_, head, scaled, output, bias, sigmoid, softmax, scale, drop, out):
        call(_C.segment_windows, logits, windows_, head, scaled, output, bias, sigmoid, softmax, scale, drop, out)

    @fuzz
    @given(st.sampled_from([np.zeros((20, 20, 3), np.uint8), np.zeros((9, 7), np.uint8)]), windows)
    def preprocess_windows(image, windows_):
        # issue 29: a NumPy row in the message (np.array([[0, 0, 8]])) crashed the process; int64 rows raised
        call(_C.preprocess, image, [20, 20], windows_, 8, [0, 0, 0], [1, 1, 1])

    @fuzz
    @given(anything, anything, st.one_of(ints, st.sampled_from([0, 1, 3])), st.one_of(anything, int_seqs), maybe,
           st.integers(0, 3))
    def pamr(mask, image, iterations, dilations, out, stream):
        call(_C.pamr, mask, image, iterations, dilations, out, stream)

    @fuzz
    @given(st.sampled_from([(1, 2, 5, 6), (2, 3, 4, 4), (1, 1, 1, 1), (1, 2, 0, 3)]), st.sampled_from([1, 3, 4]),
           st.sampled_from([0, 1, 2, 10000, 10001, 2**31, -1]),
           st.one_of(int_seqs, st.just((0,)), st.just((2**40,)), st.just(tuple(range(1, 10)))))
    def pamr_shapes(shape, channels, iterations, dilations):
        # well-formed arrays, adversarial iteration counts and dilations (0, negative, huge, NumPy, bool, too many)
        mask = np.full(shape, 0.5, np.float32)
        image = np.ones((shape[0], channels) + shape[2:], np.float32)
        call(_C.pamr, mask, image, iterations, dilations)

    @fuzz
    @given(st.integers(0, 70), st.integers(0, 8), st.integers(0, 70), st.sampled_from(range(6)))
    def lying_lengths(items, first, then, where):
        # well-formed arguments except one sequence whose __len__ disagrees with its iteration
        seq = LyingList([1] * items if where in (0, 4, 5) else [0.5] * items, first, then)
        mask = np.full((1, 2, 5, 6), 0.5, np.float32)
        img = np.zeros((20, 20, 3), np.uint8)
        logits = np.zeros((1, 2, 4, 4), np.float32)
        if where == 0:
            call(_C.pamr, mask, np.ones((1, 3, 5, 6), np.float32), 2, seq)
        elif where == 1:
            call(_C.preprocess, img, [20, 20], [[0, 8, 0, 8]], 8, seq, [1, 1, 1])
        elif where == 2:
            call(_C.preprocess, img, [20, 20], [[0, 8, 0, 8]], 8, [0, 0, 0], seq)
        elif where == 3:
            call(_C.preprocess, img, seq, [[0, 8, 0, 8]], 8, [0, 0, 0], [1, 1, 1])
        elif where == 4:
            call(_C.upsample, logits, seq)
        else:
            call(_C.upsample, logits, (8, 8), seq)

    for test in (similarity, relation, upsample, preprocess, segment_windows, preprocess_windows, pamr, pamr_shapes,
                 lying_lengths):
        test()
    img = np.zeros((20, 20, 3), np.uint8)
    rows = _C.preprocess(img, [20, 20], np.array([[0, 8, 0, 8]], np.int64), 8, np.zeros(3), np.ones(3))
    assert rows.shape == (1, 3, 8, 8)  # integer NumPy rows (and NumPy mean/std) are accepted
    refined = _C.pamr(np.full((1, 2, 5, 6), 0.5, np.float32), np.ones((1, 3, 5, 6), np.float32), 2, np.array([1, 2]))
    assert refined.shape == (1, 2, 5, 6)  # NumPy dilations are accepted
    print("FUZZ", counts)
    """
)


def _run(examples: int):
    env = dict(os.environ, FUZZ_EXAMPLES=str(examples))
    out = subprocess.run([sys.executable, "-c", FUZZ], capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, f"exit {out.returncode}\nstdout:{out.stdout[-2000:]}\nstderr:{out.stderr[-6000:]}"
    counts = eval(out.stdout.split("FUZZ", 1)[1].strip())  # noqa: S307 - our own printed dict
    assert counts["refused"] > examples  # most arbitrary calls are invalid and were refused cleanly
    return counts


def test_raw_native_functions_never_crash_on_arbitrary_arguments():
    _run(150)


@pytest.mark.cuda
@pytest.mark.not_sanitized("the fuzz runs in a child process (a crash fails the test); the emulated build's only")
@pytest.mark.skipif(not _loader.emulated(), reason="the raw fuzz on the emulated CUDA build (ZSSEG_CUDA_EMULATION=1)")
def test_raw_native_functions_never_crash_on_the_emulated_cuda_build():
    _run(60)  # fake CUDA pointers reach cudaPointerGetAttributes here (no GPU build refuses them earlier)
