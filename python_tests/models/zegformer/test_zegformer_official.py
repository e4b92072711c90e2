"""Import of official ZegFormer (detectron2) checkpoints: key map, every used key present, unused ones reported,
``weights_only`` loading, family detection by keys (``zsseg convert``), tested on checkpoints written here in the
official key layout (``python_tests/data/reference/zegformer_official_keys.txt``, derived from the official code)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from zsseg_rt.contract.common.convert import convert_official  # noqa: E402
from zsseg_rt.contract.common.weights import WeightsError  # noqa: E402
from zsseg_rt.models import create_model, load_config  # noqa: E402
from zsseg_rt.models.cliprc.official import load_official_any, official_checkpoint_family  # noqa: E402
from zsseg_rt.models.zegformer.model import ZegFormer  # noqa: E402
from zsseg_rt.models.zegformer.official import (  # noqa: E402
    infer_config_name,
    load_official_zegformer,
    official_zegformer_to_native_key,
)

KEYS_FILE = Path(__file__).resolve().parents[2] / "data" / "reference" / "zegformer_official_keys.txt"


def official_layout():
    out = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split(" ", 1)
            out[key] = [int(x) for x in re.findall(r"\d+", shape)]
    return out


def to_official(native_sd, include_clip=False, num_seen=15):
    """Write a native state dict in the official layout (the inverse of the import map, checked below)."""
    out = {}
    for k, v in native_sd.items():
        m = re.match(r"^backbone\.layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.[01])\.(\w+)$", k)
        if k.startswith("backbone.conv1."):
            ok = "backbone.stem.conv1." + k.split(".")[-1]
        elif k.startswith("backbone.bn1."):
            ok = "backbone.stem.conv1.norm." + k.split(".")[-1]
        elif m:
            stage, idx, part, leaf = m.groups()
            base = f"backbone.res{int(stage) + 1}.{idx}"
            part = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}.get(part, part)
            part = re.sub(r"^bn(\d)$", r"conv\1.norm", part)
            ok = f"{base}.{part}.{leaf}"
        elif k.startswith("pixel_decoder."):
            ok = "sem_seg_head." + k
        elif k.startswith("predictor.decoder."):
            ok = "sem_seg_head.predictor.transformer.decoder." + k[len("predictor.decoder.") :]
        elif k.startswith("predictor."):
            ok = "sem_seg_head." + k
        elif k.startswith("clip_visual."):
            ok = "sem_seg_head.predictor.clip_model.visual." + k[len("clip_visual.") :]
        elif k == "clip_logit_scale":
            ok = "sem_seg_head.predictor.clip_model.logit_scale"
        elif k.startswith("text_encoder."):
            ok = "sem_seg_head.predictor.clip_model." + k[len("text_encoder.") :]
        else:
            raise AssertionError(k)
        if ok.startswith("sem_seg_head.predictor.clip_model.") and not include_clip:
            continue
        out[ok] = v.clone()
    out["criterion.empty_weight"] = torch.cat([torch.ones(num_seen), torch.tensor([0.1])])
    return out


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("zegformer_tiny_test")


def test_official_r101_layout_maps_onto_the_model_exactly():
    """Every key of the official R101 layout maps onto a native tensor of the same shape, and every native
    non-CLIP tensor is covered (full-size model built on the meta device)."""
    official = official_layout()
    model = ZegFormer(load_config("zegformer_r101_voc"), device="meta")
    target = {k: list(v.shape) for k, v in model.state_dict().items() if not model.is_clip_weight(k)}
    mapped = {}
    for k, shape in official.items():
        nk = official_zegformer_to_native_key(k)
        if nk is None:
            assert k == "criterion.empty_weight"
            continue
        assert nk in target, f"{k} -> {nk} is not a model tensor"
        assert target[nk] == shape, f"{k}: official {shape} vs model {target[nk]}"
        mapped[nk] = k
    assert set(mapped) == set(target)
    sd = {k: torch.empty(0) for k in official}
    sd.update({"criterion.empty_weight": torch.empty(16)})
    assert infer_config_name(sd) == "zegformer_r101_voc"


def test_tiny_checkpoint_layout_is_the_official_one(tiny):
    """The tiny checkpoint written by ``to_official`` has exactly the official names (restricted to the tiny
    depth: block 0 of each stage, decoder layers 0-1)."""
    written = set(to_official(tiny.state_dict()))
    official = set(official_layout())
    keep = {
        k
        for k in official
        if not re.match(r"^backbone\.res\d\.[1-9]", k) and not re.match(r".*decoder\.layers\.[2-9]\.", k)
    }
    assert written == keep


def test_import_round_trip_without_and_with_clip(tiny, tmp_path):
    images = torch.rand(1, 3, 40, 56) * 255
    names = ["cat", "road", "sheep"]
    want = tiny.segment(images, names)
    path = tmp_path / "model_final.pth"
    torch.save({"model": to_official(tiny.state_dict()), "iteration": 10000}, path)
    with pytest.raises(WeightsError, match="holds no CLIP weights"):
        load_official_zegformer(path, config="zegformer_tiny_test")
    model, report = load_official_zegformer(
        path, config="zegformer_tiny_test", allow_missing_clip=True, return_report=True
    )
    assert report.unused_official == ["criterion.empty_weight"] and not report.text_encoder_loaded
    nonclip = {k: v for k, v in tiny.state_dict().items() if not tiny.is_clip_weight(k)}
    for k, v in model.state_dict().items():
        if k in nonclip:
            assert torch.equal(v, nonclip[k]), k
    path2 = tmp_path / "with_clip.pth"
    torch.save({"model": to_official(tiny.state_dict(), include_clip=True)}, path2)
    model2, report2 = load_official_zegformer(path2, config="zegformer_tiny_test", return_report=True)
    assert report2.text_encoder_loaded and report2.loaded == len(tiny.state_dict())
    torch.testing.assert_close(model2.segment(images, names), want)


def test_missing_unexpected_and_pickled_objects_are_refused(tiny, tmp_path):
    sd = to_official(tiny.state_dict())
    bad = dict(sd)
    del bad["sem_seg_head.predictor.bg_feature"]
    p = tmp_path / "missing.pth"
    torch.save({"model": bad}, p)
    with pytest.raises(WeightsError, match="missing.*bg_feature"):
        load_official_zegformer(p, config="zegformer_tiny_test", allow_missing_clip=True)
    bad = dict(sd, **{"sem_seg_head.predictor.extra_head.weight": torch.zeros(2)})
    torch.save({"model": bad}, p)
    with pytest.raises(WeightsError, match="unexpected.*extra_head"):
        load_official_zegformer(p, config="zegformer_tiny_test", allow_missing_clip=True)
    torch.save({"model": sd, "cfg": object.__new__(_Opaque)}, p)
    with pytest.raises(WeightsError, match="refused to load"):
        load_official_zegformer(p, config="zegformer_tiny_test", allow_missing_clip=True)
    with pytest.raises(WeightsError, match="cannot infer"):
        torch.save({"model": sd}, p)
        load_official_zegformer(p, allow_missing_clip=True)


class _Opaque:
    pass


def test_family_detection_and_convert(tiny, tmp_path):
    path = tmp_path / "zegformer.pth"
    torch.save({"model": to_official(tiny.state_dict(), include_clip=True)}, path)
    assert official_checkpoint_family(path) == "zegformer"
    model = load_official_any(path, config="zegformer_tiny_test")
    assert isinstance(model, ZegFormer)
    out = convert_official(path, tmp_path / "native", config="zegformer_tiny_test")
    native = create_model(str(out))
    assert isinstance(native, ZegFormer)
    for k, v in tiny.state_dict().items():
        assert torch.equal(native.state_dict()[k], v), k


def test_backbone_imagenet_weights_from_a_torchvision_state_dict(tmp_path):
    from torchvision.models.resnet import Bottleneck, ResNet

    from zsseg_rt.models.zegformer.factory import load_backbone_weights

    torch.manual_seed(5)
    ref = ResNet(Bottleneck, [1, 1, 1, 1])
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    path = tmp_path / "resnet.pth"
    torch.save(ref.state_dict(), path)  # torchvision layout incl. fc.* and num_batches_tracked
    model = create_model("zegformer_tiny_test", backbone_pretrained=str(path))
    x = torch.randn(1, 3, 64, 64)
    ref.eval()
    with torch.no_grad():
        want = ref.layer4(ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))
        torch.testing.assert_close(model.backbone(x)["res5"], want, rtol=1e-5, atol=1e-5)
    sd = ref.state_dict()
    del sd["layer2.0.conv1.weight"]
    torch.save(sd, path)
    with pytest.raises(WeightsError, match="missing.*layer2.0.conv1.weight"):
        load_backbone_weights(model, str(path))
