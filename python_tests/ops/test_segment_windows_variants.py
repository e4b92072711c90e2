"""The sigmoid path's kernel candidates of CUDA ``segment_windows`` (issue 72 item 1: ``_C._testing
.segment_windows_variant``; a GPU lease times them with ``python -m checks postprocess_variants``): each gives the
CPU op's decisions on the logits the lease times them on (i.i.d., one class dominating per region), at the Engine
check's geometry scaled down (two windows side by side, a 16x head upsampling, an output smaller than the rescaled
image), with and without a class bias, fp32 and fp16; the setter refuses an unknown name and restores the default.
On the emulated build (CI) and on a GPU the same test runs."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import cuda_testing, device, requires_cuda, to_host

from zsseg_rt import ops, pipeline

# the photo case at 1/8: logits 4x4 -> head 64 (16x), rescaled 64x85, output 47x63 (the Engine's 32 -> 512, 512x683,
# 375x500); 2 windows side by side with a stride of 2/3 of the head
HEAD, SCALED, OUT = (64, 64), (64, 85), (47, 63)


def _logits(kind: str, classes: int, rng: np.random.Generator) -> np.ndarray:
    windows = len(pipeline.sliding_windows(SCALED[0], SCALED[1], HEAD[0], 43))
    if kind == "iid":
        return (rng.standard_normal((windows, classes, 4, 4)) * 3).astype(np.float32)
    logits = rng.uniform(-9, -4, (windows, classes, 4, 4)).astype(np.float32)  # "dominated": a winner per region
    for k in range(windows):
        for by in range(0, 4, 2):
            for bx in range(0, 4, 2):
                logits[k, rng.integers(classes), by : by + 2, bx : bx + 2] = 3.0
    return logits


@pytest.fixture
def variants():
    testing = cuda_testing()
    names = testing.segment_windows_variants()
    before = testing.segment_windows_variant()
    yield testing, names
    testing.segment_windows_variant(before)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["iid", "dominated"])
@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
def test_every_variant_gives_the_cpu_decisions(variants, kind, half):
    testing, names = variants
    assert names[0] == "tiled" and len(names) == len(set(names)) >= 3
    rng = np.random.default_rng(72)
    classes = 24
    logits = _logits(kind, classes, rng)
    if half:
        logits = logits.astype(np.float16)
    windows = [tuple(w) for w in pipeline.sliding_windows(SCALED[0], SCALED[1], HEAD[0], 43)]
    assert len(windows) == 2
    bias = np.where(np.arange(classes) % 3 == 0, 0.1, 0.0).astype(np.float32)  # ZegCLIP's seen/unseen shape
    want = ops.segment_windows(logits.astype(np.float32), windows, HEAD, SCALED, OUT, class_bias=bias)
    d_logits, d_bias = device(logits), device(bias)
    for name in names:
        testing.segment_windows_variant(name)
        labels, scores = (
            to_host(a) for a in ops.segment_windows(d_logits, windows, HEAD, SCALED, OUT, class_bias=d_bias)
        )
        np.testing.assert_allclose(scores, want[1], rtol=0, atol=2e-6, err_msg=name)  # as the GPU tests of the op
        agree = float((labels == want[0]).mean())
        assert agree >= 0.99, f"{name}: {agree:.4f} of the labels equal the CPU's"
        assert len(np.unique(labels)) > 3, f"{name}: several classes win (not a trivial map)"


@requires_cuda
@pytest.mark.cuda
def test_the_variant_setter_names_what_it_takes(variants):
    testing, names = variants
    assert testing.segment_windows_variant() == "tiled"  # the default: what the library runs
    assert testing.segment_windows_variant(names[-1]) == "tiled"  # returns the one before
    assert testing.segment_windows_variant() == names[-1]
    with pytest.raises(ValueError, match="one of tiled, columns, columns_chain, got 'fastest'"):
        testing.segment_windows_variant("fastest")
    assert testing.segment_windows_variant() == names[-1]  # a refused name changes nothing


@requires_cuda
@pytest.mark.cuda
def test_chained_exponentials_add_no_error_on_steep_logits(variants):
    """The chain's worst case (the review of 0981ef7): one class, logit rows alternating near +-39.5 (every logit
    within the +-40 where the chain runs, the steepest rows it meets). Its ratio 2^(t(row+1) - t(row)) made from two
    rounded exponents (|t| up to 57) put the rounding of t into every chained row: up to 9.2e-7 on a score here
    against 4.8e-7 unchained; made from the rows' difference times the exact step of the weights, its error is the
    unchained variants' (on the emulator: exact exp2; a GPU's ex2.approx adds the same to every variant)."""
    testing, names = variants
    windows = [tuple(w) for w in pipeline.sliding_windows(SCALED[0], SCALED[1], HEAD[0], 43)]
    rng = np.random.default_rng(3)
    worst = dict.fromkeys(names, 0.0)
    for _ in range(8):
        logits = rng.uniform(-39.5, 39.5, (len(windows), 1, 4, 4)).astype(np.float32)
        logits[:, :, ::2, :] = np.sign(logits[:, :, ::2, :]) * 39.5
        want = ops.segment_windows(logits, windows, HEAD, SCALED, OUT)[1]
        d_logits = device(logits)
        for name in names:
            testing.segment_windows_variant(name)
            got = to_host(ops.segment_windows(d_logits, windows, HEAD, SCALED, OUT)[1])
            worst[name] = max(worst[name], float(np.abs(got - want).max()))
    unchained = max(worst["tiled"], worst["columns"])
    assert 0 < unchained < 1e-6, worst
    assert worst["columns_chain"] <= unchained + 2e-7, worst
