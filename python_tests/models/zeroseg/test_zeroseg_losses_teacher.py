"""ZeroSeg losses against independent per-element formulas, the grid views, the CLIP teacher (tiny, random) and
the teacher-feature cache."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from zsseg_rt.models import load_config
from zsseg_rt.models.zeroseg.losses import (
    ZeroSegLoss,
    distillation_loss,
    reconstruction_loss,
    segment_matching_loss,
)
from zsseg_rt.models.zeroseg.teacher import CLIPTeacher, TeacherFeatureCache, grid_boxes, grid_views

TINY = "zeroseg_tiny_test"


def _np_l1(a, b, how):
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return d.mean() if how == "mean" else d.sum()


@pytest.mark.parametrize("l1, red", list(itertools.product(["mean", "sum"], ["mean", "sum"])))
def test_distillation_and_matching_match_loops(l1, red):
    rng = np.random.default_rng(0)
    z, v = rng.normal(size=(3, 6)), rng.normal(size=(3, 5, 6))  # B=3, n=5 views, E=6
    g = rng.normal(size=(3, 4, 6))  # m=4 segment tokens
    expect_d = np.mean(
        [(np.mean if red == "mean" else np.sum)([_np_l1(z[b], v[b, k], l1) for k in range(5)]) for b in range(3)]
    )
    got_d = distillation_loss(torch.tensor(z), torch.tensor(v), l1, red)
    assert abs(float(got_d) - expect_d) < 1e-9
    crops = v[:, 1:]
    per_b = []
    for b in range(3):
        mins = [min(_np_l1(g[b, i], crops[b, j], l1) for j in range(4)) for i in range(4)]
        per_b.append(np.mean(mins) if red == "mean" else np.sum(mins))
    got_m = segment_matching_loss(torch.tensor(g), torch.tensor(crops), l1, red)
    assert abs(float(got_m) - np.mean(per_b)) < 1e-9


def test_matching_gradient_only_through_nearest_crop():
    g = torch.tensor([[[0.0, 0.0]]], requires_grad=True)
    crops = torch.tensor([[[1.0, 1.0], [0.2, -0.1], [5.0, 5.0]]], requires_grad=True)
    segment_matching_loss(g, crops, "sum", "sum").backward()
    assert torch.equal(crops.grad[0, 0], torch.zeros(2)) and torch.equal(crops.grad[0, 2], torch.zeros(2))
    torch.testing.assert_close(crops.grad[0, 1], torch.tensor([1.0, -1.0]))  # d|0-c|/dc = sign(c)
    torch.testing.assert_close(g.grad[0, 0], torch.tensor([-1.0, 1.0]))


@pytest.mark.parametrize("norm_pix", [False, True])
def test_reconstruction_loss_matches_loop(norm_pix):
    rng = np.random.default_rng(1)
    patch, b = 4, 2
    img = rng.normal(size=(b, 3, 8, 8))
    pred = rng.normal(size=(b, 4, patch * patch * 3))
    mask = np.array([[1, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
    num = den = 0.0
    for i in range(b):
        for r in range(2):
            for c in range(2):
                block = img[i, :, r * 4 : r * 4 + 4, c * 4 : c * 4 + 4].transpose(1, 2, 0).reshape(-1)  # (p, q, ch)
                if norm_pix:
                    block = (block - block.mean()) / np.sqrt(block.var(ddof=1) + 1e-6)
                err = np.mean((pred[i, r * 2 + c] - block) ** 2)
                num += err * mask[i, r * 2 + c]
                den += mask[i, r * 2 + c]
    got = reconstruction_loss(torch.tensor(pred), torch.tensor(img), torch.tensor(mask), patch, norm_pix)
    assert abs(float(got) - num / den) < 1e-9


def test_total_loss_weights_and_options():
    cfg = load_config(TINY)
    torch.manual_seed(0)
    b, m, e, n = 2, cfg.num_segments, cfg.embed_dim, cfg.num_views
    out = {
        "global_feature": torch.randn(b, e),
        "segment_features": torch.randn(b, m, e),
        "pred_patches": torch.randn(b, cfg.grid_size**2, cfg.patch_size**2 * 3),
        "mask": (torch.rand(b, cfg.grid_size**2) > 0.4).float(),
    }
    images, views = torch.randn(b, 3, cfg.image_size, cfg.image_size), torch.randn(b, n, e)
    base = ZeroSegLoss(cfg)(out, images, views)
    torch.testing.assert_close(base["loss"], base["loss_rec"] + base["loss_distill"] + base["loss_match"])
    nz = torch.nn.functional.normalize
    torch.testing.assert_close(
        base["loss_distill"], distillation_loss(nz(out["global_feature"], dim=-1), nz(views, dim=-1), l1="sum")
    )
    # Eq. 1 as written: sum over the tokens of the L1 distance (a sum over the dims) to the nearest local crop
    g, v = nz(out["segment_features"], dim=-1), nz(views, dim=-1)[:, 1:]
    eq1 = torch.stack(
        [sum(min((g[i, t] - v[i, j]).abs().sum() for j in range(n - 1)) for t in range(m)) for i in range(b)]
    )
    torch.testing.assert_close(base["loss_match"], eq1.mean())
    weighted = ZeroSegLoss(load_config(TINY, loss={"match_weight": 3.0, "reconstruction_weight": 0.5}))(
        out, images, views
    )
    torch.testing.assert_close(weighted["loss"], 0.5 * base["loss_rec"] + base["loss_distill"] + 3 * base["loss_match"])
    full_only = ZeroSegLoss(load_config(TINY, loss={"distill_views": "full", "l2_normalize": False}))(
        out, images, views
    )
    expect = (out["global_feature"] - views[:, 0]).abs().sum(-1).mean()
    torch.testing.assert_close(full_only["loss_distill"], expect)
    per_element = ZeroSegLoss(load_config(TINY, loss={"l1_reduction": "mean", "token_reduction": "mean"}))(
        out, images, views
    )  # nn.L1Loss-style option: 1/E of the distillation, 1/(m E) of the matching
    torch.testing.assert_close(per_element["loss_distill"] * e, base["loss_distill"])
    torch.testing.assert_close(per_element["loss_match"] * e * m, base["loss_match"])


def test_loss_functions_default_to_the_configs_reductions():
    """The functions' own defaults are Eq. 1's reading the config defaults to (docs/zeroseg.md), so a direct call
    computes what training computes."""
    import inspect

    from zsseg_rt.models.zeroseg.config import _LOSS_DEFAULTS
    from zsseg_rt.models.zeroseg.losses import pairwise_l1

    assert (_LOSS_DEFAULTS["l1_reduction"], _LOSS_DEFAULTS["token_reduction"]) == ("sum", "sum")
    assert _LOSS_DEFAULTS["view_reduction"] == "mean"
    assert inspect.signature(pairwise_l1).parameters["reduction"].default == _LOSS_DEFAULTS["l1_reduction"]
    d = inspect.signature(distillation_loss).parameters
    assert (d["l1"].default, d["over_views"].default) == (
        _LOSS_DEFAULTS["l1_reduction"],
        _LOSS_DEFAULTS["view_reduction"],
    )
    m = inspect.signature(segment_matching_loss).parameters
    assert (m["l1"].default, m["over_tokens"].default) == (
        _LOSS_DEFAULTS["l1_reduction"],
        _LOSS_DEFAULTS["token_reduction"],
    )


def test_grid_boxes_tile_the_image_and_views_are_the_cells():
    boxes = grid_boxes(10, 7, [1, 2, 3, 4])
    assert len(boxes) == 30 and boxes[0] == (0, 10, 0, 7)
    for g, start in ((2, 1), (3, 5), (4, 14)):
        cover = np.zeros((10, 7), int)
        for t, b_, left, r in boxes[start : start + g * g]:
            cover[t:b_, left:r] += 1
        assert (cover == 1).all()  # non-overlapping, complete
    img = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    v = grid_views(img, [1, 2], 4, mode="nearest")
    assert v.shape == (2, 5, 3, 4, 4)
    assert torch.equal(v[:, 1], img[:, :, :4, :4]) and torch.equal(v[:, 4], img[:, :, 4:, 4:])  # 2x2 cells, no resize
    assert torch.equal(v[:, 0], img[:, :, ::2, ::2])  # full image, nearest downsample


def test_tiny_teacher_views_and_cache(tmp_path):
    cfg = load_config(TINY)
    torch.manual_seed(0)
    teacher = CLIPTeacher(cfg)
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.clip.training  # stays in eval mode
    images = torch.randint(0, 256, (2, 3, cfg.image_size, cfg.image_size)).float()
    feats = teacher(images)
    assert feats.shape == (2, cfg.num_views, cfg.embed_dim) and feats.std() > 1e-3
    # view 5 (first cell of the 3x3 grid) = the teacher on that crop alone
    top, bottom, left, right = grid_boxes(cfg.image_size, cfg.image_size, cfg.teacher_grids)[5]
    alone = teacher.clip.encode_image(
        grid_views((images[:1, :, top:bottom, left:right] - teacher.mean) / teacher.std, [1], cfg.teacher_image_size)[
            :, 0
        ]
    )
    torch.testing.assert_close(feats[0, 5], alone[0].float(), rtol=1e-4, atol=1e-5)
    cache = TeacherFeatureCache(tmp_path / "c", teacher.fingerprint, dtype="float32")
    key = TeacherFeatureCache.key_of_bytes(b"abc")
    assert key not in cache and cache.get(key) is None
    cache.put(key, feats[0])
    assert key in cache and torch.equal(cache.get(key), feats[0])
    TeacherFeatureCache(tmp_path / "c", teacher.fingerprint, dtype="float32")  # same fingerprint reopens
    other = dict(teacher.fingerprint, teacher_grids=[1, 2])
    with pytest.raises(ValueError, match="was written for"):
        TeacherFeatureCache(tmp_path / "c", other, dtype="float32")


def test_folder_reader_and_precompute(tmp_path):
    from PIL import Image

    from zsseg_rt.models.zeroseg.data import UnlabeledImageFolder
    from zsseg_rt.models.zeroseg.precompute import precompute_teacher_features

    cfg = load_config(TINY)
    rng = np.random.default_rng(0)
    for cls in ("n01", "n02"):  # ImageNet layout
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (48 + i * 30, 90, 3), dtype=np.uint8)).save(
                tmp_path / "train" / cls / f"{i}.JPEG"
            )
    (tmp_path / "train" / "n02" / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        UnlabeledImageFolder(tmp_path / "nope")
    strict = UnlabeledImageFolder(tmp_path / "train", cfg.image_size)
    assert len(strict) == 5
    with pytest.raises(ValueError, match="cannot decode image"):
        strict[4]  # sorted: n02/bad.jpg comes after n02/1.JPEG
    data = UnlabeledImageFolder(tmp_path / "train", cfg.image_size, on_corrupt="skip")
    with pytest.warns(RuntimeWarning, match="skipping"):
        item = data[4]
    assert item["index"] == 0 and item["image"].shape == (3, cfg.image_size, cfg.image_size)
    assert item["image"].dtype == torch.uint8
    torch.manual_seed(0)
    teacher = CLIPTeacher(cfg)
    cache = TeacherFeatureCache(tmp_path / "cache", teacher.fingerprint)
    data4 = UnlabeledImageFolder(tmp_path / "train", cfg.image_size, limit=4)
    assert precompute_teacher_features(data4, teacher, cache, batch_size=3, progress=False) == {
        "computed": 4,
        "cached": 0,
    }
    assert precompute_teacher_features(data4, teacher, cache, batch_size=3, progress=False) == {
        "computed": 0,
        "cached": 4,
    }
    it = data4[2]
    assert cfg.teacher_view_source == "image"  # the views come from the file at its own resolution
    pixels = data4.views_of(2, cfg.teacher_grids, cfg.teacher_image_size)
    torch.testing.assert_close(cache.get(it["key"]), teacher.encode_views(pixels[None])[0], rtol=2e-3, atol=2e-3)
    crop_views = teacher(it["image"][None].float())[0]  # the "crop" source: other pixels, other features
    assert (cache.get(it["key"]) - crop_views).abs().max() > 1e-2


def test_image_views_are_cells_of_the_students_region_at_source_resolution():
    """[P] §3.2 multi-scale views of the image: the centre square (what the student's centre crop shows) at the
    image's own resolution, cut into the grids, each cell resized to the teacher input with PIL bicubic."""
    from PIL import Image

    from zsseg_rt.models.zeroseg.teacher import image_views

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (90, 150, 3), dtype=np.uint8)  # landscape: the square is columns 30..119
    views = image_views(rgb, [1, 2, 3], 16)
    assert views.shape == (14, 3, 16, 16) and views.dtype == torch.uint8
    square = rgb[:, 30:120]
    bicubic = Image.Resampling.BICUBIC
    want0 = np.asarray(Image.fromarray(np.ascontiguousarray(square)).resize((16, 16), bicubic))
    np.testing.assert_array_equal(views[0].permute(1, 2, 0).numpy(), want0)  # the 1x1 view: CLIP's preprocessing
    cell = np.ascontiguousarray(square[45:90, 45:90])  # bottom-right cell of the 2x2 grid
    np.testing.assert_array_equal(
        views[4].permute(1, 2, 0).numpy(), np.asarray(Image.fromarray(cell).resize((16, 16), bicubic))
    )
    tall = image_views(rng.integers(0, 256, (101, 40, 3), dtype=np.uint8), [1], 8)  # portrait: rows 30..69
    assert tall.shape == (1, 3, 8, 8)
