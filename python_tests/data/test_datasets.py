"""Dataset readers, splits, label remapping and the training augmentation, on the real VOC samples."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.data import (
    CorruptFileError,
    DatasetLayoutError,
    SyntheticDataset,
    TrainAugmentation,
    build_dataset,
    inductive_lut,
    load_split,
    make_synthetic_sample,
    transductive_lut,
    write_synthetic_dataset,
)
from zsseg_rt.data.labels import apply_lut, reduce_zero_label
from zsseg_rt.data.loader import PositionSampler, TrainStream

VOC = str(SAMPLES_DIR)


def test_voc_reader_reduces_zero_label_exactly():
    ds = build_dataset({"type": "voc", "root": VOC, "split": "val"})
    assert len(ds) == 4 and ds.num_classes == 20
    for i in range(len(ds)):
        rgb, lab = ds.load(i)
        raw = np.array(Image.open(ds.items[i][1]))  # palette indices
        assert rgb.shape[:2] == lab.shape == raw.shape and rgb.dtype == np.uint8
        expected = np.where(raw == 0, 255, np.where(raw == 255, 255, raw.astype(np.int32) - 1))
        np.testing.assert_array_equal(lab, expected.astype(np.uint8))
    # 2011_000006 holds chair (9), person (15), sofa (18) in VOC ids -> 8, 14, 17
    idx = [ds.image_id(i) for i in range(len(ds))].index("2011_000006")
    assert set(np.unique(ds.load(idx)[1]).tolist()) == {8, 14, 17, 255}


def test_voc_inductive_and_transductive_remap_match_official_tables():
    torch = pytest.importorskip("torch")
    from zsseg_rt.models.zegclip.losses import remap_labels_inductive, remap_labels_transductive

    ds = build_dataset({"type": "voc", "root": VOC, "split": "val"})
    seen = list(ds.split.seen)
    assert ds.split.unseen_names == ["pottedplant", "sheep", "sofa", "train", "tvmonitor"]
    for i in range(len(ds)):
        lab = ds.load(i)[1]
        ind = apply_lut(lab, inductive_lut(seen))
        tra = apply_lut(lab, transductive_lut(seen, 20))
        np.testing.assert_array_equal(ind, remap_labels_inductive(torch.from_numpy(lab), seen).numpy())
        np.testing.assert_array_equal(tra, remap_labels_transductive(torch.from_numpy(lab), seen).numpy())
        unseen_px = np.isin(lab, ds.split.unseen)
        assert (ind[unseen_px] == 255).all() and (tra[unseen_px] == -1).all()
        assert set(np.unique(ind).tolist()) <= set(range(15)) | {255}
    sofa = ds.load([ds.image_id(i) for i in range(4)].index("2011_000006"))[1]
    assert (sofa == 17).any() and not (apply_lut(sofa, inductive_lut(seen)) == 17).any()


def test_train_stream_remaps_after_augmentation_and_is_deterministic():
    ds = build_dataset({"type": "voc", "root": VOC, "split": "val"})
    aug = TrainAugmentation(crop_size=(256, 256), img_scale=(1024, 256))
    lut = inductive_lut(ds.split.seen)
    plain, mapped = TrainStream(ds, aug, None, seed=3), TrainStream(ds, aug, lut, seed=3)
    for pos in range(6):
        img_a, lab_a, idx_a = plain[pos]
        img_b, lab_b, idx_b = mapped[pos]
        assert idx_a == idx_b and tuple(img_a.shape) == (3, 256, 256) and tuple(lab_b.shape) == (256, 256)
        assert (img_a == img_b).all()
        np.testing.assert_array_equal(lab_b.numpy(), lut[lab_a.numpy()])
    again = TrainStream(ds, aug, lut, seed=3)[4]
    assert (again[0] == mapped[4][0]).all() and (again[1] == mapped[4][1]).all()
    assert not (TrainStream(ds, aug, lut, seed=4)[4][0] == mapped[4][0]).all()
    # every dataset index appears once per epoch
    assert sorted(plain.index_of(p) for p in range(4)) == [0, 1, 2, 3]


def test_augmentation_pads_with_zero_and_ignore():
    rgb = np.full((40, 30, 3), 200, np.uint8)
    lab = np.zeros((40, 30), np.uint8)
    aug = TrainAugmentation(crop_size=(64, 64), img_scale=(40, 30), ratio_range=None, photometric=False, flip_prob=0.0)
    img, out = aug(rgb, lab, np.random.default_rng(0))
    assert img.shape == (3, 64, 64) and out.shape == (64, 64)
    assert (out[40:] == 255).all() and (out[:, 30:] == 255).all() and (out[:40, :30] == 0).all()
    assert (img[:, 40:] == 0).all() and (img[:, :, 30:] == 0).all()
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    np.testing.assert_allclose(img[:, 0, 0], (200 - mean) / std, rtol=1e-6)


def test_random_crop_respects_cat_max_ratio_when_possible():
    lab = np.zeros((200, 200), np.uint8)
    lab[:, 100:] = 1  # any 100-wide crop straddling x=100 has two classes
    rgb = np.zeros((200, 200, 3), np.uint8)
    aug = TrainAugmentation(
        crop_size=(100, 100),
        img_scale=(200, 200),
        ratio_range=None,
        photometric=False,
        flip_prob=0.0,
        cat_max_ratio=0.75,
    )
    ok = 0
    for s in range(30):
        out = aug(rgb, lab, np.random.default_rng(s))[1]
        ok += (np.bincount(out.ravel(), minlength=2)[:2].max() / out.size) < 0.75
    assert ok >= 28  # 10 retries: failure needs 10 misses in a row (p ~ 0.5^10)


def test_splits_match_the_paper_and_model_configs():
    from zsseg_rt.models import load_config

    voc = load_split("voc20")
    assert (len(voc.seen), len(voc.unseen)) == (15, 5)
    assert list(voc.seen) == load_config("zegclip_vitb16_voc_inductive").seen_classes
    coco = load_split("coco_stuff171")
    assert (len(coco.seen), len(coco.unseen)) == (156, 15)
    assert list(coco.unseen) == [19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160]
    assert list(coco.seen) == load_config("zegclip_vitb16_coco_inductive").seen_classes
    ctx = load_split("context59")
    assert (len(ctx.seen), len(ctx.unseen)) == (49, 10)
    assert list(ctx.unseen) == sorted([19, 33, 48, 14, 7, 24, 6, 54, 31, 0])
    ade = load_split("ade150")
    assert ade.num_classes == 150 and len(set(ade.class_names)) == 150 and not ade.unseen
    assert load_split("voc20", unseen=["cat", 0]).unseen_names == ["aeroplane", "cat"]
    with pytest.raises(ValueError, match="unknown classes"):
        load_split("voc20", unseen=["unicorn"])


def test_missing_or_malformed_dataset_names_the_layout(tmp_path):
    for kind, needle in [
        ("voc", "JPEGImages"),
        ("coco_stuff", "_labelTrainIds.png"),
        ("context59", "SegmentationClassContext"),
        ("ade150", "ADEChallengeData2016"),
        ("folder", "classes.txt"),
    ]:
        with pytest.raises(DatasetLayoutError, match="Expected layout") as err:
            build_dataset({"type": kind, "root": str(tmp_path / "nope")})
        assert needle in str(err.value)
    (tmp_path / "voc" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="ImageSets/Segmentation"):
        build_dataset({"type": "voc", "root": str(tmp_path / "voc")})
    with pytest.raises(ValueError, match="unknown keys"):
        build_dataset({"type": "voc", "root": VOC, "splitt": "val"})
    with pytest.raises(ValueError, match="dataset type"):
        build_dataset({"type": "imagenet", "root": VOC})


def test_folder_dataset_corrupt_files_and_bad_labels(tmp_path):
    root = write_synthetic_dataset(tmp_path / "synth", length=4, size=(32, 32), num_classes=5, unseen=["blue water"])
    ds = build_dataset({"type": "folder", "root": str(root)})
    assert len(ds) == 4 and ds.split.unseen_names == ["blue water"]
    rgb, lab = ds.load(1)
    exp_rgb, exp_lab = make_synthetic_sample(0, 1, (32, 32), 5)
    np.testing.assert_array_equal(lab, exp_lab)
    np.testing.assert_array_equal(rgb, exp_rgb)  # PNG is lossless
    (root / "images" / "00002.png").write_bytes(b"\x89PNG\r\n garbage")
    with pytest.raises(CorruptFileError, match="00002"):
        build_dataset({"type": "folder", "root": str(root)}).load_safe(2)
    skip = build_dataset({"type": "folder", "root": str(root), "on_corrupt": "skip"})
    with pytest.warns(RuntimeWarning, match="skipping corrupt"):
        assert skip.load_safe(2) is None
    assert len(skip.skipped) == 1 and skip.load_safe(3) is not None
    bad = lab.copy()
    bad[0, :3] = 9  # outside the 5 classes
    Image.fromarray(bad).save(root / "labels" / "00001.png")
    with pytest.raises(ValueError, match=r"values \[9\]"):
        build_dataset({"type": "folder", "root": str(root)}).load(1)
    ign = build_dataset({"type": "folder", "root": str(root), "on_bad_label": "ignore"})
    assert (ign.load(1)[1][0, :3] == 255).all() and ign.bad_label_pixels == 3


def test_train_stream_skips_corrupt_samples(tmp_path):
    root = write_synthetic_dataset(tmp_path / "s", length=3, size=(32, 32), num_classes=4)
    (root / "labels" / "00000.png").write_bytes(b"not a png")
    ds = build_dataset({"type": "folder", "root": str(root), "on_corrupt": "skip"})
    stream = TrainStream(ds, TrainAugmentation(crop_size=(32, 32), img_scale=(32, 32)), None, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idx = [stream[p][2] for p in range(6)]
    assert 0 not in idx and len(ds.skipped) == 1


def test_position_sampler_partitions_the_global_batch():
    b = 8
    seen = []
    for world, accum in [(1, 1), (2, 1), (2, 2), (1, 4)]:
        pos = []
        for rank in range(world):
            s = PositionSampler(b, world, rank, accum, start_iter=3)
            it = iter(s)
            pos += [next(it) for _ in range(b // world)]
        seen.append(sorted(pos))
    assert all(p == list(range(24, 32)) for p in seen)
    with pytest.raises(ValueError, match="divisible"):
        PositionSampler(6, 4, 0, 1)


def test_synthetic_generator_is_deterministic_and_labelled():
    a = make_synthetic_sample(5, 7)
    b = make_synthetic_sample(5, 7)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    ds = SyntheticDataset(length=10, num_classes=6, seed=1, unseen=[5])
    labs = np.concatenate([ds.load(i)[1].ravel() for i in range(10)])
    assert set(np.unique(labs).tolist()) <= set(range(6)) and len(np.unique(labs)) >= 4
    assert ds.split.unseen == (5,)
    assert reduce_zero_label(np.array([0, 1, 20, 255], np.uint8)).tolist() == [255, 0, 19, 255]


def test_synthetic_dataset_keeps_its_samples_and_hands_out_copies(monkeypatch):
    """A SyntheticDataset makes each sample once (a training run reads each many times) and every load is the
    generator's arrays, as a copy: a caller changing what it got changes no later load; past
    ``SAMPLE_CACHE_BYTES`` nothing is kept."""
    import zsseg_rt.data.synthetic as synthetic

    made = []
    real = synthetic.make_synthetic_sample
    monkeypatch.setattr(synthetic, "make_synthetic_sample", lambda *a: made.append(a[1]) or real(*a))
    ds = SyntheticDataset(length=4, size=(16, 24), num_classes=5, seed=3)
    for _ in range(3):
        for i in (2, 0, 2):
            rgb, label = ds.load(i)
            exp_rgb, exp_label = real(3, i, (16, 24), 5)
            assert rgb.shape == (16, 24, 3) and (rgb == exp_rgb).all() and (label == exp_label).all()
            rgb[:] = 0  # the caller's copy
            label[:] = 255
    assert made == [2, 0]
    monkeypatch.setattr(synthetic, "SAMPLE_CACHE_BYTES", 4 * 16 * 24 * 4 - 1)
    made.clear()
    big = SyntheticDataset(length=4, size=(16, 24), num_classes=5, seed=3)
    for i in (1, 1):
        assert (big.load(i)[0] == real(3, i, (16, 24), 5)[0]).all()
    assert made == [1, 1]


# ------------------------------------------------------------------ official tables, restated independently
def _official_visiable_mask(seen_classes):
    """ZegCLIP models/segmentor/zegclip.py ``_visiable_mask`` + decode_seg ``gt[gt == -1] = 255``, verbatim."""
    seen_map = np.array([-1] * 256)
    seen_map[255] = 255
    for i, n in enumerate(list(seen_classes)):
        seen_map[n] = i
    seen_map[seen_map == -1] = 255
    return seen_map


def _official_visiable_mask_st(seen_classes):
    """ZegCLIP models/segmentor/zegclip.py ``_visiable_mask_st``, verbatim."""
    seen_map = np.array([-1] * 256)
    seen_map[255] = 255
    for i, n in enumerate(list(seen_classes)):
        seen_map[n] = n
    seen_map[200] = 200  # pixels of padding will be excluded
    return seen_map


@pytest.mark.parametrize("name", ["voc20", "coco_stuff171", "context59"])
def test_training_luts_equal_the_official_tables_for_every_value(name):
    torch = pytest.importorskip("torch")
    from zsseg_rt.models.zegclip.losses import remap_labels_inductive, remap_labels_transductive

    split = load_split(name)
    seen = list(split.seen)
    every = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(apply_lut(every, inductive_lut(seen)), _official_visiable_mask(seen))
    st = apply_lut(every, transductive_lut(seen, split.num_classes))
    np.testing.assert_array_equal(st, _official_visiable_mask_st(seen))
    assert st[200] == 200 and st[255] == 255 and (st[list(split.unseen)] == -1).all()
    # the model-side (losses) remaps agree with the data-side tables on all 256 values
    t = torch.arange(256)
    np.testing.assert_array_equal(remap_labels_inductive(t, seen).numpy(), _official_visiable_mask(seen))
    np.testing.assert_array_equal(remap_labels_transductive(t, seen).numpy(), _official_visiable_mask_st(seen))
    with pytest.raises(ValueError, match="outside"):
        transductive_lut([0, 25], 20)


# ------------------------------------------------------------------ VOC train_aug (official ann_dir/split pairs)
def _fake_voc(root, train_ids, aug_ids, fine, sbd, trainaug=None):
    """VOC2012 tree; ``fine``/``sbd``: {id: label value} written to SegmentationClass / SegmentationClassAug."""
    for d in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in sorted(set(train_ids) | set(aug_ids) | set(fine) | set(sbd)):
        Image.fromarray(np.full((8, 10, 3), 90, np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
    for d, labels in (("SegmentationClass", fine), ("SegmentationClassAug", sbd)):
        for i, v in labels.items():
            Image.fromarray(np.full((8, 10), v, np.uint8)).save(root / d / f"{i}.png")
    sets = root / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("".join(f"{i}\n" for i in train_ids))
    (sets / "aug.txt").write_text("".join(f"{i}\n" for i in aug_ids))
    (sets / "val.txt").write_text("v0\n")
    if trainaug is not None:
        (sets / "trainaug.txt").write_text("".join(f"{i}\n" for i in trainaug))
    return root


def test_voc_train_aug_pairs_train_with_fine_masks_and_aug_with_sbd_masks(tmp_path):
    # "both" has a fine mask (class 3 -> 2 after reduce_zero_label) AND an SBD mask (class 7 -> 6), and is
    # listed in train.txt and aug.txt (as in mmseg's aug.txt, which includes the train ids)
    root = _fake_voc(
        tmp_path / "VOC2012",
        train_ids=["both", "t1"],
        aug_ids=["a1", "both"],
        fine={"both": 3, "t1": 4, "v0": 1, "a1": 9},
        sbd={"both": 7, "a1": 5, "t1": 11},
        trainaug=["zzz"],
    )  # a merged list, ignored when the official train.txt + aug.txt exist
    ds = build_dataset({"type": "voc", "root": str(root), "split": "train_aug"})
    got = [
        (ds.image_id(i), os.path.basename(os.path.dirname(ds.items[i][1])), int(ds.load(i)[1][0, 0]))
        for i in range(len(ds))
    ]
    # official ConcatDataset order and no de-duplication: train.txt with SegmentationClass, then aug.txt with
    # SegmentationClassAug
    assert got == [
        ("both", "SegmentationClass", 2),
        ("t1", "SegmentationClass", 3),
        ("a1", "SegmentationClassAug", 4),
        ("both", "SegmentationClassAug", 6),
    ]
    # train.txt ids need their fine mask (no silent switch to the SBD one)
    (root / "SegmentationClass" / "t1.png").unlink()
    with pytest.raises(DatasetLayoutError, match="t1"):
        build_dataset({"type": "voc", "root": str(root), "split": "train_aug"})
    # the other splits keep reading SegmentationClass
    assert (
        build_dataset({"type": "voc", "root": str(root), "split": "val"})
        .items[0][1]
        .endswith(os.path.join("SegmentationClass", "v0.png"))
    )


def test_voc_merged_trainaug_list_prefers_sbd_masks(tmp_path):
    root = _fake_voc(
        tmp_path / "VOC2012", train_ids=[], aug_ids=[], fine={"x": 3, "y": 4}, sbd={"x": 7}, trainaug=["x", "y"]
    )
    for f in ("train.txt", "aug.txt"):
        (root / "ImageSets" / "Segmentation" / f).unlink()
    ds = build_dataset({"type": "voc", "root": str(root), "split": "train_aug"})
    assert [int(ds.load(i)[1][0, 0]) for i in range(len(ds))] == [6, 3]
