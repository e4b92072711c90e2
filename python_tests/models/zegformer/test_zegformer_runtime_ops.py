"""The NumPy steps of the ZegFormer runtime (``zsseg_rt.runtime.pipelines.two_stage``) against the PyTorch model's own
(torchvision ``roi_align``, ``clip_branch``), on random data with edge cases: empty, one-pixel and border-touching
masks, boxes partly outside the image. The resize (Pillow, as detectron2) is tested in pipeline/test_resize.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torchvision.ops import roi_align as tv_roi_align  # noqa: E402

from zsseg_rt.models.zegformer import clip_branch  # noqa: E402
from zsseg_rt.runtime.pipelines import two_stage as Z  # noqa: E402


def _masks(rng, q, h, w):
    logits = rng.standard_normal((q, h, w)).astype(np.float32) * 3.0
    logits[0] = -1.0  # empty
    logits[1] = -1.0
    logits[1, 3, 5] = 1.0  # one pixel: degenerate box
    logits[2] = -1.0
    logits[2, :, -3:] = 1.0  # touches the right border, full height
    logits[3] = -1.0
    logits[3, 2:4, :] = 1.0  # two rows
    return logits


def test_mask_boxes_match_the_model():
    rng = np.random.default_rng(0)
    binary = _masks(rng, 9, 20, 27) > 0
    binary[5] = rng.random((20, 27)) > 0.97
    want = clip_branch.mask_boxes(torch.from_numpy(binary)).numpy()
    np.testing.assert_array_equal(Z.mask_boxes(binary), want)


@pytest.mark.parametrize("size", [7, 16, 32])
def test_roi_align_matches_torchvision(size):
    rng = np.random.default_rng(size)
    image = rng.standard_normal((3, 21, 34)).astype(np.float32)
    boxes = np.array(
        [
            [0, 0, 34, 21],  # the whole image (official fallback box)
            [3, 2, 9, 15],
            [10.5, 4.25, 30.75, 6.5],  # fractional, flat
            [-4, -3, 12, 8],  # partly outside
            [30, 18, 40, 26],  # mostly outside
            [5, 5, 5, 9],  # zero width
            [0, 0, 1, 1],
        ],
        dtype=np.float32,
    )
    masks = rng.random((len(boxes), 21, 34)) > 0.4
    index = torch.zeros(len(boxes), 1)
    for use_masks in (False, True):
        got = Z.roi_align(image, boxes, size, masks=masks if use_masks else None)
        want = []
        for k, box in enumerate(boxes):
            img = torch.from_numpy(image * masks[k] if use_masks else image)[None]
            rois = torch.cat((index[:1], torch.from_numpy(box)[None]), 1)
            want.append(tv_roi_align(img, rois, size, aligned=True)[0].numpy())
        np.testing.assert_allclose(got, np.stack(want), atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("style", ["cropmask", "crop", "mask"])
def test_clip_crops_match_the_model(style):
    rng = np.random.default_rng(1)
    image = rng.standard_normal((3, 64, 96)).astype(np.float32)
    masks = _masks(rng, 6, 64, 96)
    got = Z.clip_crops(image, masks, style, 32)
    want = clip_branch.clip_crops(torch.from_numpy(image)[None], torch.from_numpy(masks)[None], style, size=32)
    np.testing.assert_allclose(got, want.numpy(), atol=2e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="clip_cls_style"):
        Z.clip_crops(image, masks, "box", 32)


@pytest.mark.parametrize("mode", ["ensemble", "ensemble_all", "clip_only", "none"])
def test_fusion_matches_the_model(mode):
    rng = np.random.default_rng(2)
    zeg = (rng.standard_normal((8, 6)) * 10).astype(np.float32)
    clip = (rng.standard_normal((8, 5)) * 10).astype(np.float32)
    seen = np.array([True, False, True, False, False])
    got = Z.fuse_scores(zeg, clip, seen, mode, 2.0 / 3.0)
    want = clip_branch.fuse_scores(
        torch.from_numpy(zeg)[None], torch.from_numpy(clip)[None], torch.from_numpy(seen), mode
    )
    np.testing.assert_allclose(got, want[0].numpy(), rtol=2e-5, atol=1e-7)
    if mode != "none":
        with pytest.raises(ValueError, match="needs the CLIP branch"):
            Z.fuse_scores(zeg, None, seen, mode, 2.0 / 3.0)
