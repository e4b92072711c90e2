"""Official CLIP-RC checkpoints: key layout, complete import, parity, family detection, clear errors, convert."""

from __future__ import annotations

import argparse
import json
from collections import OrderedDict

import pytest
import torch
from test_cliprc_helpers import (
    CLIPRC_TINY,
    make_tiny,
    official_key_list,
    official_layout_tiny,
    save_mmcv,
)
from zeg_helpers import refuses_checkpoint

from zsseg_rt.cli.convert import add_command as add_convert_command
from zsseg_rt.models import (
    CLIPRC,
    WeightsError,
    convert_official,
    create_model,
    load_cliprc_config,
    load_native,
    load_official_cliprc,
    load_official_zegclip,
)
from zsseg_rt.models.cliprc.official import _infer_config, official_checkpoint_family, official_cliprc_to_native_key


@pytest.fixture(scope="module")
def source_model():
    return make_tiny(seed=21)


@pytest.fixture()
def official_file(tmp_path, source_model):
    path = tmp_path / "iter_40000.pth"
    save_mmcv(path, official_layout_tiny(source_model))
    return path


def test_full_size_mapping_covers_the_documented_layout():
    model = CLIPRC(load_cliprc_config("cliprc_vitb16_voc_inductive"), device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    consumed, unused = set(), []
    for key, shape in official_key_list():
        nk = official_cliprc_to_native_key(key)
        if nk is None:
            unused.append(key)
            continue
        assert nk in ours, key
        assert ours[nk] == shape, (key, ours[nk], shape)
        consumed.add(nk)
    assert consumed == set(ours)  # every tensor the model uses comes from the official file
    assert len(unused) == 8 * 6  # self_attn (4) + norm1 (2) in 3 decoder_q + 3 decoder_v + 2 recovery layers


def test_tiny_layout_is_the_official_one_scaled_down(source_model):
    import re

    sd = official_layout_tiny(source_model)
    generic = lambda k: re.sub(r"\.\d+\.", ".N.", k)  # noqa: E731
    assert {generic(k) for k in sd} == {generic(k) for k, _ in official_key_list()}


def test_import_is_complete_and_reproduces_outputs(official_file, source_model):
    model, report = load_official_cliprc(official_file, config=CLIPRC_TINY, return_report=True)
    assert isinstance(model, CLIPRC)
    assert report.loaded == len(model.state_dict())
    assert len(report.unused_official) == 8 * 6
    assert all(".self_attn." in k or ".norm1." in k for k in report.unused_official)
    assert report.meta.get("mmcv_version") == "1.4.0"
    for k, v in source_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    x = torch.randn(2, 3, 64, 64)
    t = torch.randn(4, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), source_model(x, t), rtol=0, atol=0)


def test_family_detection_and_cross_family_refusal(tmp_path, official_file):
    assert official_checkpoint_family(official_file) == "cliprc"
    zeg = create_model("zegclip_tiny_test")
    zsd = OrderedDict(
        (k.replace("decode_head.layers.", "decode_head.decoder_1.layers."), v) for k, v in zeg.state_dict().items()
    )
    save_mmcv(tmp_path / "zeg.pth", zsd)
    assert official_checkpoint_family(tmp_path / "zeg.pth") == "zegclip"
    with pytest.raises(WeightsError, match="is an official ZegCLIP checkpoint.*load_official_zegclip"):
        load_official_cliprc(tmp_path / "zeg.pth", config=CLIPRC_TINY)
    # the other way round: the ZegCLIP importer refuses the CLIP-RC file (nothing half-loaded)
    with pytest.raises(WeightsError, match="region_level_bridge|decoder_q"):
        load_official_zegclip(official_file, config="zegclip_tiny_test")
    save_mmcv(tmp_path / "other.pth", {"foo.weight": torch.zeros(2)})
    with pytest.raises(WeightsError, match="not an official CLIP-RC checkpoint"):
        load_official_cliprc(tmp_path / "other.pth", config=CLIPRC_TINY)
    with pytest.raises(FileNotFoundError, match="uyzhang/CLIP-RC"):
        load_official_cliprc(tmp_path / "absent.pth")


def test_truncated_mismatched_and_nan_checkpoints_fail_clearly(tmp_path, source_model):
    def load(path):
        return load_official_cliprc(path, config=CLIPRC_TINY)

    sd = official_layout_tiny(source_model)
    del sd["decode_head.decoder_v.layers.2.linear2.weight"], sd["backbone.region_level_bridge"]
    missing = (
        r"2 missing key\(s\): backbone.region_level_bridge, decode_head.decoder_v.layers.2.linear2.weight.*truncated"
    )
    refuses_checkpoint(tmp_path / "trunc.pth", sd, save_mmcv, load, missing)
    sd = official_layout_tiny(source_model)
    sd["backbone.region_level_bridge"], sd["decode_head.something_new"] = torch.zeros(9, 64), torch.zeros(1)
    unexpected = (
        r"unexpected key\(s\): decode_head.something_new.*shape-mismatched.*region_level_bridge: file \(9, 64\)"
    )
    refuses_checkpoint(tmp_path / "mism.pth", sd, save_mmcv, load, unexpected)
    sd = official_layout_tiny(source_model)
    sd["decode_head.lateral_proj.bias"] = sd["decode_head.lateral_proj.bias"].clone()
    sd["decode_head.lateral_proj.bias"][0] = float("nan")
    refuses_checkpoint(tmp_path / "nan.pth", sd, save_mmcv, load, "NaN or inf.*lateral_proj.bias")
    raw = (tmp_path / "nan.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightsError, match="refused to load"):
        load_official_cliprc(tmp_path / "cut.pth", config=CLIPRC_TINY)
    save_mmcv(tmp_path / "obj.pth", official_layout_tiny(source_model), meta={"args": argparse.Namespace(a=1)})
    with pytest.raises(WeightsError, match="never loaded.*re-save"):
        load_official_cliprc(tmp_path / "obj.pth", config=CLIPRC_TINY)
    # tokens do not say which config: inference refuses instead of guessing
    with pytest.raises(WeightsError, match="prompt tokens"):
        load_official_cliprc(tmp_path / "trunc.pth")  # 4 tiny prompt tokens, no config given


def test_missing_text_encoder_only_when_allowed(tmp_path, source_model):
    sd = OrderedDict((k, v) for k, v in official_layout_tiny(source_model).items() if not k.startswith("text_encoder."))
    save_mmcv(tmp_path / "notext.pth", sd)
    with pytest.raises(WeightsError, match="missing"):
        load_official_cliprc(tmp_path / "notext.pth", config=CLIPRC_TINY)
    model, rep = load_official_cliprc(
        tmp_path / "notext.pth", config=CLIPRC_TINY, allow_missing_text_encoder=True, return_report=True
    )
    assert rep.text_encoder_loaded is False
    torch.testing.assert_close(model.backbone.region_level_bridge, source_model.backbone.region_level_bridge)


def test_config_inference():
    sd10 = {"backbone.prompt_embeddings": torch.zeros(1, 10, 1)}
    sd100 = {"backbone.prompt_embeddings": torch.zeros(1, 100, 1)}
    with pytest.warns(UserWarning, match="assuming the inductive"):
        assert _infer_config(sd10, {}) == "cliprc_vitb16_voc_inductive"
    assert (
        _infer_config(sd100, {"config": "model = dict(\n    self_training=True,\n)"})
        == "cliprc_vitb16_coco_transductive"
    )
    assert _infer_config(sd10, {"config": "novel_class = []\nboth_class = base_class"}) == "cliprc_vitb16_voc_fully"
    assert _infer_config(sd100, {"config": "novel_class = [19, 23]"}) == "cliprc_vitb16_coco_inductive"


def test_convert_detects_cliprc_and_native_roundtrip(tmp_path, official_file, source_model):
    out = convert_official(official_file, tmp_path / "native", config=CLIPRC_TINY)
    meta = json.loads((out / "config.json").read_text())
    assert meta["format"] == "zsseg_rt.cliprc.v1" and meta["config"]["family"] == "cliprc"
    assert len(meta["import_report"]["unused_official"]) == 48
    x = torch.randn(1, 3, 64, 64)
    t = torch.randn(3, 32)
    with torch.no_grad():
        want = source_model(x, t)
        for model in (load_native(out), create_model(str(out))):
            assert isinstance(model, CLIPRC)
            torch.testing.assert_close(model(x, t), want, rtol=0, atol=0)
    parser = argparse.ArgumentParser(prog="zsseg")
    add_convert_command(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["convert", str(official_file), str(out), "--config", CLIPRC_TINY, "--overwrite"])
    assert args.func(args) == 0
    # a native CLIP-RC checkpoint with a damaged tensor is refused
    from safetensors.torch import load_file, save_file

    st = load_file(str(out / "model.safetensors"))
    del st["backbone.region_level_bridge"]
    save_file(st, str(out / "model.safetensors"), metadata={"format": "zsseg_rt.cliprc.v1"})
    with pytest.raises(WeightsError, match="missing.*region_level_bridge"):
        load_native(out)


def test_load_official_any_dispatches_on_the_keys(official_file, source_model):
    from zsseg_rt.models.cliprc.official import load_official_any

    model = load_official_any(official_file, config=CLIPRC_TINY)
    assert isinstance(model, CLIPRC)
    assert torch.equal(model.backbone.region_level_bridge, source_model.backbone.region_level_bridge)
