"""similarity on the tensor cores (sm_80+; csrc/cuda/similarity_mma.cuh), through the binding, against the NumPy
reference and the CPU op: fp16 (HMMA) at tile edges, batched text and normalised, and fp32 (3xTF32) with infinite and
NaN inputs, whose outputs must be the CPU's (an infinity makes 3xTF32's remainder NaN: such outputs are recomputed
exactly). On the emulated runtime the warp's fragment registers are exchanged as the PTX ISA lays them out
(csrc/emu/cuda_emu_intrinsics.h); on a GPU the same tests run the device's HMMA."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import cuda_emulation, device, requires_cuda, requires_emulation, to_host

from zsseg_rt import ops
from zsseg_rt.ops import reference

pytestmark = [pytest.mark.cuda, requires_cuda]


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("batch,patches,classes,dim,text_batched", [(1, 1, 1, 8, False), (2, 67, 33, 40, True),
                                                                   (1, 70, 37, 24, False)])  # fmt: skip
def test_fp16_matches_the_reference(batch, patches, classes, dim, text_batched, normalize):
    rng = np.random.default_rng(patches * 7 + classes)
    p = (rng.random((batch, patches, dim)) - 0.5).astype(np.float16)
    t = (rng.random((*((batch,) if text_batched else ()), classes, dim)) - 0.5).astype(np.float16)
    out = ops.similarity(device(p), device(t), normalize=normalize, scale=2.0)
    assert out.dtype == "float16" and out.shape == (batch, classes, patches)
    want = reference.similarity(p.astype(np.float32), t.astype(np.float32), normalize, 2.0)
    # fp16 operands are exact, the products too; the sum is fp32; the output one fp16 rounding
    np.testing.assert_allclose(to_host(out).astype(np.float32), want, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("normalize", [False, True])
def test_fp32_non_finite_inputs_give_the_cpus_outputs(normalize):
    rng = np.random.default_rng(75)
    p = (rng.random((1, 20, 32)) - 0.5).astype(np.float32)
    t = (rng.random((9, 32)) - 0.5).astype(np.float32)
    p[0, 3, 5], p[0, 4, 6], t[2, 7] = np.inf, np.nan, -np.inf
    p[0, 5] *= 1e30  # beyond the range the normalised path scales at the end: the exact path (normalize)
    with np.errstate(all="ignore"):
        want = ops.similarity(p, t, normalize=normalize, scale=3.0)  # the CPU op
    got = to_host(ops.similarity(device(p), device(t), normalize=normalize, scale=3.0))
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want)) and np.array_equal(got[np.isinf(got)], want[np.isinf(want)])
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-5)


@requires_emulation
@pytest.mark.parametrize("dim, kernel", [(32, "similarity_mma_vector"), (33, "similarity_mma_scalar")])
def test_the_tensor_core_kernel_is_the_one_that_runs(dim, kernel):
    """The emulated device is an sm_90 (cudaDevAttrComputeCapabilityMajor 9): the launcher takes the tensor-core
    kernel, its 16-byte loads where the rows allow them (dim a multiple of 4 fp32), element loads otherwise."""
    emu = cuda_emulation()
    p, t = np.ones((1, 5, dim), np.float32), np.ones((3, dim), np.float32)
    emu.settle()
    emu.reset_api_calls()
    out = ops.similarity(device(p), device(t))
    calls = emu.api_calls()
    assert calls.get(f"kernel {kernel}") == 1 and not any(k.startswith("kernel kernel") for k in calls), calls
    np.testing.assert_array_equal(to_host(out), np.full((1, 3, 5), dim, np.float32))
