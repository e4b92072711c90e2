"""CUDA similarity / relation_descriptor against the NumPy reference (fp32 with torch-free CUDA arrays: on a GPU and
on the emulated CUDA runtime in CI), fp16 against torch's own fp16 error, and DeviceArray interop with torch (GPU)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import EMULATED, device, requires_cuda, requires_torch_cuda, to_host

from zsseg_rt.ops import reference, relation_descriptor, similarity

pytestmark = [pytest.mark.cuda, requires_cuda]

SIMILARITY_SIZES = [(1, 1, 1, 1), (2, 70, 37, 96)]
if not EMULATED:  # 90M multiply-adds: too slow with a fiber per CUDA thread under ASan
    SIMILARITY_SIZES.append((1, 1024, 171, 512))


def _fp16_tolerance(expected: np.ndarray, torch_fp16: np.ndarray) -> float:
    # our fp16 path may be at most a few times worse than torch's own fp16 result vs the fp32 reference
    return 4.0 * float(np.abs(torch_fp16.astype(np.float64) - expected).max()) + 1e-3


@pytest.mark.parametrize("text_batched", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("batch,patches,classes,dim", SIMILARITY_SIZES)
def test_similarity_fp32_matches_reference(batch, patches, classes, dim, text_batched, normalize):
    rng = np.random.default_rng(patches + classes)
    p = (rng.random((batch, patches, dim)) - 0.5).astype(np.float32)
    t = (rng.random((*((batch,) if text_batched else ()), classes, dim)) - 0.5).astype(np.float32)
    out = similarity(device(p), device(t), normalize=normalize, scale=3.0)
    assert out.shape == (batch, classes, patches) and out.dtype == "float32"
    got = to_host(out)
    expected = reference.similarity(p, t, normalize, 3.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=3.0 * 2e-6 * np.sqrt(dim))


@requires_torch_cuda
def test_similarity_fp16_error_comparable_to_torch():
    import torch

    gen = torch.Generator().manual_seed(3)
    p = torch.randn(2, 200, 512, generator=gen)
    t = torch.randn(171, 512, generator=gen)
    expected = reference.similarity(p.numpy(), t.numpy(), True, 10.0)
    ph, th = p.cuda().half(), t.cuda().half()
    torch_fp16 = (
        10.0 * torch.nn.functional.normalize(th, dim=-1) @ torch.nn.functional.normalize(ph, dim=-1).transpose(1, 2)
    )
    out = similarity(ph, th, normalize=True, scale=10.0)
    assert out.dtype == "float16"
    got = torch.from_dlpack(out).float().cpu().numpy()
    tol = _fp16_tolerance(expected, torch_fp16.float().cpu().numpy())
    np.testing.assert_allclose(got, expected, atol=tol, rtol=0)


@pytest.mark.parametrize("out_dim,with_bias", [(None, False), (70, True), (512, False)])
def test_relation_fp32_matches_reference(out_dim, with_bias):
    rng = np.random.default_rng(5)
    t = (rng.random((37, 96)) - 0.5).astype(np.float32)
    g = (rng.random((3, 96)) - 0.5).astype(np.float32)
    w = None if out_dim is None else (rng.random((out_dim, 192)) - 0.5).astype(np.float32)
    b = (rng.random(out_dim) - 0.5).astype(np.float32) if with_bias else None
    cuda = lambda x: None if x is None else device(x)  # noqa: E731
    out = relation_descriptor(cuda(t), cuda(g), cuda(w), cuda(b))
    expected = reference.relation_descriptor(t, g, w, b)
    np.testing.assert_allclose(to_host(out), expected, rtol=1e-5, atol=2e-6 * np.sqrt(192))


@requires_torch_cuda
def test_relation_fp16_error_comparable_to_torch():
    import torch

    gen = torch.Generator().manual_seed(6)
    t, g = torch.rand(171, 512, generator=gen) - 0.5, torch.rand(2, 512, generator=gen) - 0.5
    w, b = (torch.rand(512, 1024, generator=gen) - 0.5) / 32, torch.rand(512, generator=gen) - 0.5
    expected = reference.relation_descriptor(t.numpy(), g.numpy(), w.numpy(), b.numpy())
    th, gh, wh, bh = (x.cuda().half() for x in (t, g, w, b))
    prod = th[None] * gh[:, None]
    torch_fp16 = torch.nn.functional.linear(torch.cat([prod, th[None].expand_as(prod)], -1), wh, bh)
    got = torch.from_dlpack(relation_descriptor(th, gh, wh, bh)).float().cpu().numpy()
    np.testing.assert_allclose(got, expected, atol=_fp16_tolerance(expected, torch_fp16.float().cpu().numpy()), rtol=0)


@requires_torch_cuda
def test_device_array_round_trips():
    import torch

    p = torch.rand(1, 5, 8, device="cuda")
    t = torch.rand(3, 8, device="cuda")
    out = similarity(p, t)
    expected = (t @ p[0].T)[None]
    via_dlpack = torch.from_dlpack(out)
    via_cai = torch.as_tensor(out, device="cuda")
    assert via_dlpack.shape == (1, 3, 5) and via_dlpack.device.type == "cuda"
    torch.testing.assert_close(via_dlpack, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(via_cai, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.numpy(), expected.cpu().numpy(), rtol=1e-5, atol=1e-6)
    cai = out.__cuda_array_interface__
    assert cai["version"] == 3 and cai["typestr"] == "<f4" and cai["shape"] == (1, 3, 5)
    assert out.__dlpack_device__() == (2, 0)


@requires_torch_cuda
def test_dlpack_capsule_keeps_memory_alive_after_device_array_is_gone():
    import torch

    p = torch.ones(1, 4, 2, device="cuda")
    t = torch.ones(3, 2, device="cuda")
    tensor = torch.from_dlpack(similarity(p, t))  # the DeviceArray itself is dropped right away
    torch.cuda.empty_cache()
    _ = torch.zeros(1 << 20, device="cuda")  # churn the allocator
    torch.testing.assert_close(tensor, torch.full((1, 3, 4), 2.0, device="cuda"))


@requires_torch_cuda
def test_device_array_feeds_back_into_the_ops():
    import torch

    t = torch.rand(3, 8, device="cuda")
    g = torch.rand(2, 8, device="cuda")
    concat = relation_descriptor(t, g)  # DeviceArray [2, 3, 16]
    again = similarity(concat, concat)  # DeviceArray in, via __dlpack__
    c = torch.from_dlpack(concat)
    torch.testing.assert_close(torch.from_dlpack(again), c @ c.transpose(1, 2), rtol=1e-5, atol=1e-5)


@requires_torch_cuda
def test_non_default_stream():
    import torch

    stream = torch.cuda.Stream()
    p = torch.rand(2, 33, 16, device="cuda")
    t = torch.rand(5, 16, device="cuda")
    torch.cuda.synchronize()
    out = similarity(p, t, stream=stream.cuda_stream)
    assert out.stream == stream.cuda_stream
    stream.synchronize()
    torch.testing.assert_close(torch.from_dlpack(out), torch.einsum("cd,bnd->bcn", t, p), rtol=1e-5, atol=1e-5)


@requires_torch_cuda
def test_cuda_array_interface_input_and_mixed_dtypes():
    import torch

    class CaiOnly:
        def __init__(self, tensor):
            self._t = tensor
            self.__cuda_array_interface__ = tensor.__cuda_array_interface__

    p = torch.rand(1, 4, 8, device="cuda")
    t = torch.rand(3, 8, device="cuda")
    torch.testing.assert_close(
        torch.from_dlpack(similarity(CaiOnly(p), CaiOnly(t))), (t @ p[0].T)[None], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(
        TypeError, match=r"arguments 'patches' \(float32\) and 'text' \(float16\) must have the same dtype"
    ):
        similarity(p, t.half())
    with pytest.raises(ValueError, match=r"argument 'text' must be C-contiguous"):
        similarity(p, torch.rand(8, 3, device="cuda").T)
