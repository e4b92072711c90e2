"""The device-placement guard's controls (python_tests/fake_cuda.py, ``pytest --fake-cuda``): its fake CUDA device
refuses what a GPU refuses (an op mixing a CUDA and a CPU tensor, ``.numpy()`` of a CUDA tensor) and allows what a
GPU allows, computes what the CPU computes, and is gone after its block; and it fails the test lines of c783dbf
that failed on the first GPU (issue 50, review #1): a CPU sample fed to a model the Trainer put on CUDA, and the
ZegFormer learning test's ``.numpy()`` of scores on the model's device. (These run in the ordinary pass: each
enters the fake device itself.)"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fake_cuda import FakeCudaTensor, FakeCudaUnsupported, fake_cuda  # noqa: E402

MIXED = "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu"


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))


def test_the_fake_device_refuses_a_mixed_device_call_as_cuda_does():
    real = torch.cuda.is_available()
    image = torch.randn(1, 3, 8, 8)
    with fake_cuda():
        assert torch.cuda.is_available() and torch.cuda.device_count() == 1
        model = _model().to("cuda")
        weight = model[0].weight
        assert isinstance(weight, FakeCudaTensor) and isinstance(weight, torch.nn.Parameter)
        assert weight.device == torch.device("cuda", 0) and weight.is_cuda
        with pytest.raises(RuntimeError, match=MIXED):
            model(image)  # the control: a CPU batch into a model on CUDA
        with pytest.raises(RuntimeError, match=MIXED):
            torch.cat([image.to("cuda"), image])
        with pytest.raises(RuntimeError, match=MIXED):  # a 1-D CPU bias with CUDA operands (not only 4-D images)
            torch.nn.functional.conv2d(image.to("cuda"), model[0].weight, torch.zeros(4))
        with pytest.raises(RuntimeError, match=MIXED):
            model[0].weight.flatten() + torch.zeros(4 * 3 * 3 * 3)
        out = model(image.to("cuda"))
        with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
            out.numpy()
        host = out.cpu()
        assert type(host) is torch.Tensor and host.device.type == "cpu"
        # what CUDA allows: CPU scalars (0-dim tensors), copies across devices, CPU index tensors
        scaled = out * torch.tensor(2.0)
        out.copy_(host)
        picked = out[torch.tensor([0])]
        assert {scaled.device.type, picked.device.type} == {"cuda"}
        assert torch.zeros(2, device="cuda").is_cuda and torch.tensor([1.0], device="cuda").is_cuda
        with pytest.raises(FakeCudaUnsupported, match="streams"):
            torch.cuda.current_stream()
        expected = _model()(image)
    np.testing.assert_array_equal(host.detach().numpy(), expected.detach().numpy())  # the CPU's numbers
    assert torch.cuda.is_available() == real and type(torch.zeros(1)) is torch.Tensor  # gone after the block


def test_training_on_the_fake_device_matches_the_cpu():
    """Forward, backward and an AdamW step on the fake device give the CPU's weights (autograd and the optimizer
    run through the wrappers)."""

    def step(device):
        model = _model().to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        image = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)).to(device)
        loss = torch.nn.functional.interpolate(model(image), scale_factor=2.0, mode="bilinear").square().mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return [p.detach().cpu() for p in model.parameters()]

    want = step("cpu")
    with fake_cuda():
        got = step("cuda")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_guard_fails_c783dbfs_cliprc_training_test(tmp_path):
    """c783dbf's test_cliprc_trains_through_the_same_trainer_with_its_recovery_loss fed the training stream's CPU
    sample to ``tr.model`` (on CUDA wherever one is visible): on the fake device that line raises, as on the GPU;
    the fixed line (the sample on the trainer's device) runs."""
    from zsseg_rt.train import Trainer, load_train_config

    with fake_cuda():
        cfg = load_train_config(
            "tiny_test", work_dir=str(tmp_path), model="cliprc_tiny_test", iterations=1, batch_size=2, save_native=False
        )
        tr = Trainer(cfg, progress=False)
        assert tr.device == torch.device("cuda", 0)
        images, labels, _ = tr.stream[0]
        tr.model.train()
        with pytest.raises(RuntimeError, match=MIXED):
            tr.model(torch.as_tensor(images)[None], tr.text_train)  # c783dbf's line
        logits = tr.model(torch.as_tensor(images)[None].to(tr.device), tr.text_train)  # the fixed one
        assert logits.is_cuda


def test_the_guard_fails_c783dbfs_zegformer_learning_check(tmp_path):
    """c783dbf's ZegFormer learning tests scored held-out images with ``model.segment`` on the Trainer's model (on
    CUDA wherever one is visible) and read ``.numpy()`` of the result: on the fake device, as on the GPU, that read
    raises (and c783dbf's ``segment`` refused the CPU image first: it now moves the images to the model's device)."""
    from zsseg_rt.models import create_model

    with fake_cuda():
        model = create_model("zegformer_tiny_test", test_short_side=64, test_max_size=128).to("cuda").eval()
        image = torch.rand(1, 3, 64, 64) * 255  # a host image, as the test's dataset gives it
        names = list(model.config.class_names)
        with torch.no_grad():
            scores = model.segment(image, names, fusion="none", calibration_bias=0.0)
        assert scores.is_cuda
        with pytest.raises(TypeError, match="numpy"):
            scores[0].argmax(0).numpy()  # c783dbf's line
        assert scores[0].argmax(0).cpu().numpy().shape == (64, 64)  # the fixed one


@pytest.mark.parametrize("device, backend", [("cpu", "gloo"), ("auto", "nccl")])
def test_the_default_process_group_backend_follows_the_training_device(tmp_path, monkeypatch, device, backend):
    """Under torchrun with no --dist-backend: nccl only when the model trains on CUDA. With `--device cpu` on a
    machine that has a GPU, 13c668e took nccl (which cannot reduce CPU tensors): found by the first H200 run."""
    from support import record_process_groups

    from zsseg_rt.train import Trainer, load_train_config

    seen = record_process_groups(monkeypatch)
    with fake_cuda():
        cfg = load_train_config("tiny_test", work_dir=str(tmp_path), iterations=1, batch_size=2, save_native=False)
        with pytest.raises(RuntimeError, match="process group recorded"):
            Trainer(cfg, device=device, progress=False)
    assert seen == [backend]
