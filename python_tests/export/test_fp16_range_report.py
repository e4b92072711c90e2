"""checks/fp16_range.py (`python -m checks fp16_range`), the measurement behind the fp16 precision policy: on the tiny bundle it finds every
L2 normalisation, measures its input's norm, and detects an fp16 overflow of the sum of squares when there is one."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("fp16_range_report", os.path.join(REPO, "checks", "fp16_range.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fp16_sum_of_squares_overflows_exactly_past_norm_255_9(tool):
    x = np.full((2, 512), 1.0, np.float32)
    x[0] *= 255.0 / np.sqrt(512)  # norm 255: sum of squares 65025 < 65504
    x[1] *= 257.0 / np.sqrt(512)  # norm 257: 66049 > 65504
    sums = tool._fp16_sum_of_squares(x)
    assert np.isfinite(sums[0]) and np.isinf(sums[1])


def test_report_finds_the_l2_norms_of_the_tiny_bundle(tool, tiny_bundle):
    pytest.importorskip("onnx", reason="the report rewrites the ONNX graph's outputs")
    from zsseg_rt.bundle import Files, Names, load_meta

    meta = load_meta(tiny_bundle)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((1, 3, meta.image_size, meta.image_size)).astype(np.float32)
    report = tool.graph_report(meta.file(Files.IMAGE_ENCODER), [{Names.IMAGE: images}])
    assert len(report["reduce_l2"]) == 2  # image_global and patches
    for entry in report["reduce_l2"].values():
        assert 0.1 < entry["max_norm"] < 255.9 and not entry["fp16_inf"]
    assert report["over_fp16_max"] == [] and report["max_intermediate"][0][1] > 0
    scaled = tool.graph_report(meta.file(Files.IMAGE_ENCODER), [{Names.IMAGE: images * 1e4}], ops={"Add"})
    assert isinstance(scaled["reduce_l2"], dict) and len(scaled["reduce_l2"]) == 2  # the op filter keeps the L2 inputs
