"""Metrics against an independent per-class set computation; evaluation of checkpoints vs bundles."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.eval.metrics import ConfusionMatrix, format_table, harmonic_iou, summarize

VOC = str(SAMPLES_DIR)


def reference_metrics(preds, gts, num_classes, unseen, ignore=255):
    """Written independently of zsseg_rt.eval: per-class boolean masks, intersections and unions."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    correct = total = 0
    for p, g in zip(preds, gts):
        valid = g != ignore
        for c in range(num_classes):
            pc = (p == c) & valid
            gc = g == c
            inter[c] += np.logical_and(pc, gc).sum()
            union[c] += np.logical_or(pc, gc).sum()
        correct += np.logical_and(p == g, valid).sum()
        total += valid.sum()
    iou = [inter[c] / union[c] if union[c] > 0 else None for c in range(num_classes)]

    def mean(idx):
        vals = [iou[i] for i in idx if iou[i] is not None]
        return sum(vals) / len(vals) if vals else None

    seen = [c for c in range(num_classes) if c not in unseen]
    s, u = mean(seen), mean(unseen)
    h = 2 * s * u / (s + u) if s is not None and u is not None and s + u > 0 else None
    return {"iou": iou, "seen": s, "unseen": u, "h": h, "pacc": correct / total}


def _check(preds, gts, c, unseen, names=None):
    cm = ConfusionMatrix(c)
    for p, g in zip(preds, gts):
        cm.update(p, g)
    names = names or [f"c{i}" for i in range(c)]
    m = summarize(cm, names, unseen)
    ref = reference_metrics(preds, gts, c, unseen)
    for i, n in enumerate(names):
        if ref["iou"][i] is None:
            assert m["per_class"][n]["IoU"] is None
        else:
            assert m["per_class"][n]["IoU"] == pytest.approx(100 * ref["iou"][i], abs=1e-9)
    for key, rkey in [("mIoU_seen", "seen"), ("mIoU_unseen", "unseen"), ("hIoU", "h")]:
        if ref[rkey] is None:
            assert m[key] is None
        else:
            assert m[key] == pytest.approx(100 * ref[rkey], abs=1e-9)
    assert m["pAcc"] == pytest.approx(100 * ref["pacc"], abs=1e-9)
    return m


def test_metrics_match_independent_computation_on_voc_samples():
    from zsseg_rt.data import build_dataset

    ds = build_dataset({"type": "voc", "root": VOC, "split": "val"})
    rng = np.random.default_rng(0)
    preds, gts = [], []
    for i in range(len(ds)):
        gt = ds.load(i)[1]
        pred = np.where(gt == 255, rng.integers(0, 20, gt.shape), gt).astype(np.int64)
        pred = np.roll(pred, 7, axis=1)  # boundary errors
        noise = rng.random(gt.shape) < 0.1
        pred[noise] = rng.integers(0, 20, int(noise.sum()))
        preds.append(pred)
        gts.append(gt)
    assert any((g == 255).any() for g in gts)
    m = _check(preds, gts, 20, list(ds.split.unseen), ds.class_names)
    assert m["per_class"]["sofa"]["seen"] is False and m["valid_pixels"] == sum(int((g != 255).sum()) for g in gts)
    assert "mIoU_unseen" in format_table(m) and json.loads(json.dumps(m))["hIoU"] == m["hIoU"]


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_independent_computation_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 9))
    shape = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
    preds, gts = [], []
    for _ in range(3):
        g = rng.integers(0, c, shape)
        g[rng.random(shape) < 0.2] = 255
        gts.append(g.astype(np.uint8))
        preds.append(rng.integers(0, max(1, c - 1), shape))  # class c-1 never predicted
    unseen = sorted(rng.choice(c, size=int(rng.integers(0, c)), replace=False).tolist())
    _check(preds, gts, c, unseen)


def test_metric_edge_cases():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1]), np.array([0, 255, 1]))
    iou = cm.iou()
    assert iou[0] == 1.0 and iou[1] == 1.0 and math.isnan(iou[2])
    assert harmonic_iou(0.5, 0.25) == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert math.isnan(harmonic_iou(0.0, 0.0))
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.array([0]), np.array([7]))
    with pytest.raises(ValueError, match="prediction holds"):
        cm.update(np.array([5]), np.array([0]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros(3), np.zeros(4))


def test_checkpoint_and_bundle_give_the_same_numbers(tiny_bundle, tmp_path):
    """The same weights through predict() (torch) and through Engine (ONNX Runtime) on the real photos."""
    pytest.importorskip("onnxruntime")
    from zsseg_rt.data import build_dataset
    from zsseg_rt.eval import evaluate
    from zsseg_rt.models import load_native

    native = Path(tiny_bundle).parent / "native"
    model = load_native(native)
    ds = build_dataset({"type": "voc", "root": VOC, "split": "val"})
    rng = np.random.default_rng(0)  # distinct embeddings so the random model predicts several classes
    text = rng.standard_normal((20, model.embed_dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    from zsseg_rt.eval.evaluate import Segmenter, load_for_eval

    seg_t = Segmenter("native", model, ds.class_names, text, "slide")
    seg_b = Segmenter(
        "bundle", load_for_eval(str(tiny_bundle), backend="onnxruntime")[1], ds.class_names, text, "slide"
    )
    distinct = 0
    for i in range(len(ds)):
        rgb = ds.load(i)[0]
        la, lb = seg_t(rgb), seg_b(rgb)
        assert la.shape == lb.shape == rgb.shape[:2]
        assert (la == lb).mean() >= 0.999  # fp32 ONNX vs torch: only exact argmax ties may flip
        distinct = max(distinct, len(np.unique(la)))
    assert distinct >= 2
    a = evaluate(str(native), ds, mode="slide", text_embeddings=text, progress=False)
    b = evaluate(str(tiny_bundle), ds, mode="slide", text_embeddings=text, backend="onnxruntime", progress=False)
    assert a["source"] == "native" and b["source"] == "bundle" and a["images"] == b["images"] == 4
    for key in ("pAcc", "mIoU", "mIoU_seen"):
        assert a[key] == pytest.approx(b[key], abs=0.05), key


def test_eval_skips_corrupt_images_with_a_count(tmp_path):
    pytest.importorskip("torch")
    from zsseg_rt.data import build_dataset, write_synthetic_dataset
    from zsseg_rt.eval import evaluate
    from zsseg_rt.models import create_model

    root = write_synthetic_dataset(tmp_path / "s", length=3, size=(64, 64), num_classes=4)
    (root / "images" / "00001.png").write_bytes(b"broken")
    model = create_model("zegclip_tiny_test", class_names=["a", "b", "c", "d"], seen_classes=[0, 1])
    ds = build_dataset({"type": "folder", "root": str(root), "on_corrupt": "skip"})
    text = np.eye(4, model.embed_dim, dtype=np.float32)
    with pytest.warns(RuntimeWarning, match="skipping corrupt"):
        m = evaluate(model, ds, mode="whole", text_embeddings=text, progress=False)
    assert m["images"] == 2 and m["skipped"] == 1 and "00001" in m["skipped_files"][0]


@pytest.mark.parametrize("model", ["cliprc_tiny_test", "zegclip_tiny_p8_test"])
def test_training_checkpoint_of_either_family_evaluates(tmp_path, model):
    """A training checkpoint (.pt) is rebuilt in its own family (CLIP-RC or ZegCLIP) and gives the same metrics
    as the in-memory model that wrote it."""
    torch = pytest.importorskip("torch")
    from zsseg_rt.data import SyntheticDataset
    from zsseg_rt.eval import evaluate
    from zsseg_rt.eval.evaluate import load_for_eval
    from zsseg_rt.train import Trainer, load_train_config

    cfg = load_train_config(
        "tiny_test", model=model, work_dir=str(tmp_path), iterations=1, batch_size=2, save_native=False
    )
    tr = Trainer(cfg, progress=False)
    ckpt = tr.train()["checkpoint"]
    assert ckpt is not None and ckpt.suffix == ".pt"
    kind, loaded = load_for_eval(str(ckpt))
    assert kind == "train" and type(loaded) is type(tr.model) and not loaded.training
    for k, v in tr.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k].cpu(), v.cpu()), k
    ds = SyntheticDataset(length=3, size=(64, 64), num_classes=6, seed=5, unseen=["cyan checker"])
    text = tr.text_all.cpu().numpy()  # on the trainer's device (CUDA where one is)
    # both on the CPU: equal metrics mean the same model, not the same numerics of two devices (the trainer's model
    # is on CUDA where one is)
    a = evaluate(str(ckpt), ds, mode="whole", text_embeddings=text, progress=False, device="cpu")
    b = evaluate(tr.model.cpu().eval(), ds, mode="whole", text_embeddings=text, progress=False, device="cpu")
    assert a["source"] == "train" and a["images"] == 3
    for key in ("pAcc", "mIoU", "mIoU_seen", "mIoU_unseen"):
        assert a[key] == b[key], key
