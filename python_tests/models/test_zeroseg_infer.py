"""ZeroSeg inference: segment classification (cosine / top-k softmax), background threshold, pixel labels from
upsampled assignment maps, and the end-to-end predict on the tiny model."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zsseg_rt.models import create_model, load_config
from zsseg_rt.models.zeroseg import DATASET_BACKGROUND_THRESHOLDS
from zsseg_rt.models.zeroseg.infer import labels_from_segments, predict, segment_class_scores

TINY = "zeroseg_tiny_test"


def test_paper_thresholds():
    assert DATASET_BACKGROUND_THRESHOLDS == {"voc": 0.95, "context": 0.05, "coco_object": 0.35}
    assert load_config("zeroseg_vitb16_in1k").background_threshold == 0.95


def test_segment_scores_cosine_softmax_and_topk():
    text = torch.eye(4, 8)  # 4 classes along the first axes
    segments = torch.tensor([[[2.0, 0.1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 3.0, 0, 0, 0, 0]]])  # [1, 2, 8]
    glob = torch.tensor([[1.0, 0.5, 0.0, 0.0, 0, 0, 0, 0]])  # ranks classes 0 and 1 highest
    cos_cfg = load_config(TINY, score_mode="cosine")
    cos = segment_class_scores(segments, glob, text, cos_cfg)
    torch.testing.assert_close(cos, F.normalize(segments, dim=-1) @ text.t())
    sm = segment_class_scores(segments, glob, text, load_config(TINY, topk_classes=0, logit_scale=100.0))
    torch.testing.assert_close(sm, (100 * cos).softmax(-1))
    top2 = segment_class_scores(segments, glob, text, load_config(TINY, topk_classes=2))
    assert torch.equal(top2[0, :, 2:], torch.zeros(2, 2))  # classes 2, 3 filtered out by the global ranking
    torch.testing.assert_close(top2.sum(-1), torch.ones(1, 2))


def test_labels_follow_maps_and_threshold():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0, :, 0] = 1.0  # left column -> segment 0
    maps[0, 1, :, 1] = 1.0  # right column -> segment 1
    scores = torch.tensor([[[0.1, 0.9, 0.0], [0.5, 0.3, 0.2]]])  # seg 0 -> class 1 (0.9), seg 1 -> class 0 (0.5)
    labels, score = labels_from_segments(maps, scores, (4, 4), background_threshold=None)
    assert torch.equal(labels[0, :, :2], torch.full((4, 2), 2)) and torch.equal(labels[0, :, 2:], torch.full((4, 2), 1))
    torch.testing.assert_close(score[0, 0], torch.tensor([0.9, 0.9, 0.5, 0.5]))
    labels, _ = labels_from_segments(maps, scores, (4, 4), background_threshold=0.6)
    assert torch.equal(labels[0, :, 2:], torch.zeros(4, 2, dtype=torch.long))  # 0.5 < 0.6 -> background
    assert torch.equal(labels[0, :, :2], torch.full((4, 2), 2))


def test_predict_end_to_end_tiny():
    torch.manual_seed(0)
    model = create_model(TINY)
    text = torch.randn(5, model.config.embed_dim)
    out = predict(model, torch.randn(2, 3, 64, 64), text, background_threshold=0.0)
    assert out["labels"].shape == (2, 64, 64) and out["labels"].min() >= 1 and out["labels"].max() <= 5
    assert out["segment_scores"].shape == (2, model.config.num_segments, 5)
    # every pixel's label is the label of its arg-max segment
    seg_label = out["segment_scores"].argmax(-1) + 1
    up = F.interpolate(out["maps"], size=(64, 64), mode="bilinear", align_corners=False).argmax(1)
    assert torch.equal(out["labels"], torch.gather(seg_label, 1, up.flatten(1)).view(2, 64, 64))
    everything_bg = predict(model, torch.randn(1, 3, 64, 64), text, background_threshold=1.01)
    assert int(everything_bg["labels"].max()) == 0
