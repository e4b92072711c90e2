"""Random (mostly invalid) arguments to every native op: the process must never crash, and a rejected call
must raise TypeError or ValueError. Runs in a subprocess so that a segfault fails the test instead of pytest."""

import subprocess
import sys
import textwrap

FUZZ = textwrap.dedent(
    """
    import numpy as np
    from zsseg_rt import ops

    rng = np.random.default_rng(1234)
    DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, bool]

    def pick(seq):
        return seq[int(rng.integers(0, len(seq)))]

    def array():
        kind = rng.integers(0, 10)
        if kind == 0:
            return pick([None, 3, 2.5, "x", [1.0, 2.0], object(), (1, 2)])
        ndim = int(rng.integers(0, 6))
        shape = tuple(pick([0, 1, 2, 3, 5, 17]) for _ in range(ndim))
        a = (rng.standard_normal(shape) * pick([1, 1e30, 1e-30])).astype(pick(DTYPES))
        if kind == 1 and a.ndim >= 2 and a.shape[-1] > 1:
            a = a[..., ::2]                                   # non-contiguous
        if kind == 2 and a.size:
            a = a.astype(np.float32); a.flat[0] = np.nan      # NaN values
        if kind == 3 and a.ndim >= 2:
            a = np.asfortranarray(a)
        return a

    def size():
        return pick([(4, 4), (0, 3), (1, 1), (7, 2**31), (-1, 5), "big", (3,), (2**40, 2**40), None])

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def valid(op):
        b, c, n, d, h, w = (int(rng.integers(1, 5)) for _ in range(6))
        if op == 0:
            return (f32(b, n, d), f32(c, d)), {"normalize": True}
        if op == 1:
            return (f32(c, d), f32(b, d), f32(3, 2 * d), f32(3)), {}
        if op == 2:
            return (f32(b, c, h, w), (int(rng.integers(1, 9)), int(rng.integers(1, 9)))), {"class_bias": f32(c)}
        return (f32(b, c, h, w), (int(rng.integers(1, 9)), int(rng.integers(1, 9))), f32(c)), {}

    FUNCS = [ops.similarity, ops.relation_descriptor, ops.upsample, ops.segment]
    calls = {"TypeError": 0, "ValueError": 0, "ok": 0}
    for i in range(1500):
        op = i % 4
        if rng.random() < 0.4:  # a valid call, or a valid call with ONE argument replaced by garbage
            args, kwargs = valid(op)
            args = list(args)
            if rng.random() < 0.5:
                args[int(rng.integers(0, len(args)))] = array()
            try:
                FUNCS[op](*args, **kwargs)
                calls["ok"] += 1
            except (TypeError, ValueError) as exc:
                calls["TypeError" if isinstance(exc, TypeError) else "ValueError"] += 1
            continue
        try:
            if op == 0:
                ops.similarity(array(), array(), normalize=bool(rng.integers(0, 2)), scale=float(rng.standard_normal()))
            elif op == 1:
                ops.relation_descriptor(array(), array(), array(), array())
            elif op == 2:
                ops.upsample(array(), size(), crop=pick([None, (0, 0, 1, 1), (-1, 0, 2, 2), (0, 0, 99, 99)]),
                             sigmoid=bool(rng.integers(0, 2)), class_bias=pick([None, array()]))
            else:
                ops.segment(array(), size(), pick([None, array()]), sigmoid=bool(rng.integers(0, 2)))
            calls["ok"] += 1
        except (TypeError, ValueError) as exc:
            calls["TypeError" if isinstance(exc, TypeError) else "ValueError"] += 1
    print("FUZZ", calls)
    """
)


def test_random_arguments_never_crash_the_process():
    out = subprocess.run([sys.executable, "-c", FUZZ], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"exit {out.returncode}\nstdout:{out.stdout[-2000:]}\nstderr:{out.stderr[-4000:]}"
    assert "FUZZ" in out.stdout
    counts = eval(out.stdout.split("FUZZ", 1)[1].strip())  # noqa: S307 - our own printed dict
    assert counts["TypeError"] + counts["ValueError"] > 500  # most random calls are invalid and were refused
    assert counts["ok"] > 0  # and some valid ones ran
