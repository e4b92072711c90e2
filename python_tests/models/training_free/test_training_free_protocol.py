"""The training-free methods' official per-dataset settings table and ``zsseg eval`` applying it to a training-free
bundle (logit scale, thresholds, PAMR, test size), with the deviations a fixed-size bundle cannot avoid."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import zsseg_rt
from zsseg_rt.models.training_free.evaluate import (
    apply_official_settings,
    bundle_deviations,
    dataset_key,
    load_settings_table,
    official_settings,
)

SAMPLES = Path(zsseg_rt.__file__).parent / "assets" / "samples"
BENCHMARKS = {"voc21", "context60", "coco_object", "voc20", "cityscapes", "context59", "ade20k", "coco_stuff164k"}


def test_table_holds_every_method_with_sources_and_the_official_values():
    table = load_settings_table()
    assert set(table["methods"]) == {"scclip", "naclip", "sclip", "clearclip", "maskclip"}
    for method, entry in table["methods"].items():
        assert len(entry["commit"]) == 40 and "/" in entry["repository"] and entry["defaults_source"]
        assert entry["published_miou"]["source"]
        if method != "maskclip":  # MaskCLIP's official configs cover four of the eight benchmarks
            assert set(entry["datasets"]) == BENCHMARKS
        for dataset, row in entry["datasets"].items():
            s = official_settings(method, dataset)
            assert s.short_side > 0 and s.logit_scale > 0 and 0.0 <= s.prob_thd < 1.0
            assert s.background == (dataset in ("voc21", "context60", "coco_object"))
            assert s.source.startswith(entry["repository"] + "@") and row["source"] in s.source
    # spot checks against the official configs (read at the commits recorded in the table)
    sc = official_settings("scclip", "voc21")
    assert (sc.logit_scale, sc.prob_thd, sc.area_thd, sc.pamr_iterations, sc.crop, sc.stride) == (
        50.0,
        0.15,
        0.1,
        0,
        224,
        112,
    )
    assert (
        official_settings("scclip", "coco_object").logit_scale,
        official_settings("scclip", "coco_object").prob_thd,
    ) == (
        55.0,
        0.35,
    )
    assert official_settings("scclip", "cityscapes").short_side == 560
    na = official_settings("naclip", "context59")
    assert (na.pamr_iterations, na.pamr_dilations, na.logit_scale, na.short_side) == (10, (8, 16), 40.0, 336)
    assert official_settings("naclip", "voc20").crop is None  # whole-image inference in NACLIP's VOC configs
    assert (
        official_settings("sclip", "voc21").logit_scale == 65.0
        and official_settings("sclip", "coco_stuff164k").short_side == 448
    )
    assert (
        official_settings("clearclip", "voc21").prob_thd == 0.5
        and official_settings("clearclip", "ade20k").short_side == 448
    )
    naclip = table["methods"]["naclip"]["published_miou"]
    assert abs(np.mean([naclip[k] for k in BENCHMARKS]) - naclip["average_8"]) < 0.01
    with pytest.raises(KeyError, match="known"):
        official_settings("gem", "voc20")
    with pytest.raises(KeyError, match="has no official setting"):
        official_settings("maskclip", "voc21")


def test_dataset_keys_of_the_readers():
    assert dataset_key("voc_val") == "voc20" and dataset_key("context59_val") == "context59"
    assert dataset_key("coco_stuff_val2017") == "coco_stuff164k" and dataset_key("ade150_validation") == "ade20k"
    assert dataset_key("coco_object_val2017") is None  # the reader ignores background; the protocol predicts it
    assert dataset_key("folder_mine") is None


@pytest.fixture(scope="module")
def naclip_bundle(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model

    torch.manual_seed(0)
    model = create_model("training_free_tiny_test", method="naclip").eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-trivial random weights (LayerNorm scales around 1)
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.2
            p.copy_(
                1.0 + noise
                if name.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight"))
                else noise
            )
    # max_classes 32: zsseg eval sets VOC20's official class file, 20 classes with 30 names (one row per name)
    return export_bundle(model, str(tmp_path_factory.mktemp("tf") / "bundle"), max_classes=32)


def test_apply_official_settings_to_an_engine(naclip_bundle):
    from zsseg_rt import Engine

    engine = Engine(naclip_bundle, backend="onnxruntime")
    assert engine.postprocessor.pamr_iterations == 0 and engine.pipeline.test_scale == [2048, 64]  # the bundle's own
    restore = apply_official_settings(engine, official_settings("naclip", "context60"))
    post = engine.postprocessor
    assert (post.pamr_iterations, post.pamr_dilations, post.background_threshold, post.area_threshold) == (
        10,
        (8, 16),
        0.1,
        None,
    )
    assert post.logit_scale == 1.0  # official 40, and the head already applies the bundle's 40
    assert engine.pipeline.test_scale == [2048, 336]
    deviations = bundle_deviations(engine.meta, official_settings("naclip", "context60"))
    assert any("64/32" in d and "224/112" in d for d in deviations) and any("background" in d for d in deviations)
    restore()
    assert engine.postprocessor.pamr_iterations == 0 and engine.pipeline.test_scale == [2048, 64]
    assert engine.pipeline.inference == "auto"
    voc = official_settings("naclip", "voc20")  # whole-image inference (slide_crop=0)
    restore = apply_official_settings(engine, voc)
    assert engine.pipeline.inference == "whole" and not any("whole" in d for d in bundle_deviations(engine.meta, voc))
    restore()
    assert engine.pipeline.inference == "auto"
    # a bundle with a fixed-size image graph (exported before whole-image inference) runs windows and says so
    fixed = dataclasses.replace(engine.meta, raw={k: v for k, v in engine.meta.raw.items() if k != "whole_image"})
    assert any("official whole-image inference" in d and "64/32 windows" in d for d in bundle_deviations(fixed, voc))
    apply_official_settings(engine, official_settings("sclip", "voc21"))
    assert engine.postprocessor.logit_scale == pytest.approx(65.0 / 40.0) and engine.postprocessor.area_threshold == 0.1
    assert engine.postprocessor.pamr_iterations == 0


def test_zsseg_eval_runs_a_training_free_bundle_with_the_official_settings(naclip_bundle, tmp_path, capsys):
    from zsseg_rt import Engine
    from zsseg_rt.cli.eval import main as eval_main
    from zsseg_rt.data import build_dataset
    from zsseg_rt.eval.evaluate import evaluate

    out = tmp_path / "m.json"
    args = [naclip_bundle, "--dataset", "voc", "--data-root", str(SAMPLES), "--backend", "onnxruntime"]
    assert eval_main(args + ["--json", str(out), "--no-progress", "--no-per-class"]) == 0
    printed = capsys.readouterr().out
    assert "official naclip settings for voc20" in printed and "pamr_iterations 10" in printed
    assert "whole-image" not in printed  # NACLIP's official VOC mode runs: the bundle's graph takes any size
    assert "class names: named vocabulary voc20" in printed
    metrics = json.loads(out.read_text())
    assert (
        metrics["evaluation_settings"]["settings"]["pamr_iterations"] == 10
        and metrics["evaluation_settings"]["dataset_key"] == "voc20"
    )
    # the same evaluation by hand: an Engine set to NACLIP's VOC20 settings gives the same metrics
    engine = Engine(naclip_bundle, backend="onnxruntime")
    own = evaluate(engine, build_dataset({"type": "voc", "root": str(SAMPLES)}), progress=False, settings="bundle")
    assert own["evaluation_settings"]["settings"] == "bundle" and engine.postprocessor.pamr_iterations == 0
    official = evaluate(engine, build_dataset({"type": "voc", "root": str(SAMPLES)}), progress=False)
    assert official["mIoU"] == metrics["mIoU"] and official["evaluation_settings"] == metrics["evaluation_settings"]
    assert not any("whole" in d for d in metrics["evaluation_settings"]["deviations"])
    assert engine.postprocessor.pamr_iterations == 0 and engine.pipeline.test_scale == [2048, 64]  # restored after
    ds = build_dataset({"type": "voc", "root": str(SAMPLES)})
    apply_official_settings(engine, official_settings("naclip", "voc20"))
    engine.set_classes("voc20")  # what zsseg eval sets: the official class file, its 20 classes in the reader's order
    assert len(engine.class_names) == len(ds.class_names) == 20
    rgb, _ = ds.load(0)
    assert engine.pipeline.inference == "whole"  # NACLIP on VOC: slide_crop=0 (configs/cfg_voc20.py)
    result = engine(rgb, color_order="rgb")
    assert result.inference == "whole"
    by_hand = result.labels
    plain = Engine(naclip_bundle, backend="onnxruntime", classes=ds.class_names)(rgb, color_order="rgb").labels
    assert not np.array_equal(by_hand, plain)  # the official settings (PAMR, short side 336) changed the result
