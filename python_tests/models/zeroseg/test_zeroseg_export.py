"""ZeroSeg inference graph: ONNX export + ONNX Runtime parity with PyTorch (tiny random model, both map modes)."""

from __future__ import annotations

import pytest
import torch

from zsseg_rt.models import create_model
from zsseg_rt.models.zeroseg.export import export_zeroseg_onnx, verify_zeroseg_onnx


@pytest.mark.parametrize("maps", ["soft", "hard"])
def test_onnx_parity(tmp_path, maps):
    torch.manual_seed(0)
    model = create_model("zeroseg_tiny_test", assignment_maps=maps)
    report = export_zeroseg_onnx(model, tmp_path / "zeroseg.onnx")
    assert report["segment_features"] < 1e-4 and report["assignment_maps"] < 1e-5
    assert report["segment_flip_fraction"] <= 0.001


def test_verify_catches_a_different_model(tmp_path):
    torch.manual_seed(0)
    model = create_model("zeroseg_tiny_test")
    export_zeroseg_onnx(model, tmp_path / "z.onnx", verify=False)
    with torch.no_grad():
        model.projector.fc2.bias.add_(0.01)  # the graph no longer matches the model
    with pytest.raises(RuntimeError, match="disagrees with PyTorch"):
        verify_zeroseg_onnx(tmp_path / "z.onnx", model)
