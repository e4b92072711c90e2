"""Loading CLIP tower weights: OpenAI JIT archive, open_clip state dict, safetensors; clear errors."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn as nn
from zeg_helpers import TINY

from zsseg_rt.contract.common.clip import build_clip
from zsseg_rt.models import WeightsError, create_model, load_config
from zsseg_rt.models.zegclip.backbone import resize_pos_embed_official


@pytest.fixture(scope="module")
def clip224():
    """A tiny open_clip CLIP with the tiny config's towers at 224 px (14x14 grid, like real CLIP ViT-B/16)."""
    torch.manual_seed(11)
    cfg = load_config(TINY, image_size=224)
    clip = build_clip(cfg)
    return clip.state_dict()


def _check_loaded(model, sd):
    ms = model.state_dict()
    torch.testing.assert_close(ms["backbone.conv1.weight"], sd["visual.conv1.weight"].float())
    torch.testing.assert_close(ms["text_encoder.token_embedding.weight"], sd["token_embedding.weight"].float())
    torch.testing.assert_close(
        ms["backbone.transformer.resblocks.1.attn.in_proj_weight"],
        sd["visual.transformer.resblocks.1.attn.in_proj_weight"].float(),
    )
    # positional table resized the official way, 14x14 -> 4x4 (bilinear, align_corners=False)
    pe = sd["visual.positional_embedding"].float()
    assert pe.shape == (197, 64)
    torch.testing.assert_close(ms["backbone.positional_embedding"], resize_pos_embed_official(pe, (4, 4)))


def test_open_clip_state_dict_pt(tmp_path, clip224):
    path = tmp_path / "open_clip.pt"
    torch.save(clip224, path)
    model = create_model(TINY, pretrained=str(path))
    _check_loaded(model, clip224)
    # wrapped {'state_dict': {'module.'...}} also accepted
    torch.save({"state_dict": {"module." + k: v for k, v in clip224.items()}}, tmp_path / "wrapped.bin")
    _check_loaded(create_model(TINY, pretrained=str(tmp_path / "wrapped.bin")), clip224)


def test_safetensors(tmp_path, clip224):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in clip224.items()}, str(path))
    _check_loaded(create_model(TINY, pretrained=str(path)), clip224)


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _openai_jit_archive(sd, path):
    """A TorchScript archive whose state_dict has OpenAI CLIP key names (fp16 weights, int buffers)."""
    root = _Holder()
    for key, value in sd.items():
        parts = key.split(".")
        mod = root
        for p in parts[:-1]:
            if not hasattr(mod, p):
                mod.add_module(p, _Holder())
            mod = getattr(mod, p)
        t = value.half() if value.is_floating_point() and value.dim() >= 2 else value
        mod.register_parameter(parts[-1], nn.Parameter(t.clone(), requires_grad=False))
    for k, v in {"input_resolution": 224, "context_length": 77, "vocab_size": 49408}.items():
        root.register_buffer(k, torch.tensor(v))
    torch.jit.save(torch.jit.script(root), str(path))


def test_openai_jit_archive(tmp_path, clip224, monkeypatch):
    path = tmp_path / "ViT-tiny.pt"
    _openai_jit_archive(clip224, path)
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in torch.jit.load(str(path)).state_dict()
    # not an official OpenAI release: TorchScript (which compiles code from the file) is refused by default
    with pytest.raises(WeightsError, match=r"not one of OpenAI's published CLIP releases.*ZSSEG_TRUST_TORCHSCRIPT"):
        create_model(TINY, pretrained=str(path))
    monkeypatch.setenv("ZSSEG_TRUST_TORCHSCRIPT", "1")
    model = create_model(TINY, pretrained=str(path))
    ms = model.state_dict()
    torch.testing.assert_close(ms["backbone.conv1.weight"], clip224["visual.conv1.weight"].half().float())
    assert ms["backbone.conv1.weight"].dtype == torch.float32


def test_missing_and_mismatched_keys(tmp_path, clip224):
    sd = dict(clip224)
    del sd["visual.ln_post.weight"]
    del sd["ln_final.bias"]
    torch.save(sd, tmp_path / "trunc.pt")
    with pytest.raises(WeightsError, match=r"2 missing key\(s\): ln_final.bias, visual.ln_post.weight"):
        create_model(TINY, pretrained=str(tmp_path / "trunc.pt"))
    sd = dict(clip224)
    sd["visual.proj"] = torch.zeros(64, 16)
    sd["extra.thing"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=r"unexpected key\(s\): extra.thing.*shape-mismatched.*backbone.proj"):
        create_model(TINY, pretrained=str(tmp_path / "bad.pt"))


def test_nan_weights(tmp_path, clip224):
    sd = dict(clip224)
    sd["visual.ln_pre.bias"] = sd["visual.ln_pre.bias"].clone()
    sd["visual.ln_pre.bias"][3] = float("nan")
    torch.save(sd, tmp_path / "nan.pt")
    with pytest.raises(WeightsError, match="NaN or inf.*ln_pre.bias"):
        create_model(TINY, pretrained=str(tmp_path / "nan.pt"))


def test_no_arbitrary_unpickling(tmp_path):
    torch.save({"state_dict": {"a": torch.zeros(1)}, "args": argparse.Namespace(x=1)}, tmp_path / "obj.pt")
    with pytest.raises(WeightsError, match="weights_only=True"):
        create_model(TINY, pretrained=str(tmp_path / "obj.pt"))


def test_missing_file_and_offline_tag(monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_model(TINY, pretrained="/nonexistent/ViT-B-16.pt")
    with pytest.raises(ValueError, match="neither a local file nor an open_clip pretrained tag"):
        create_model(TINY, pretrained="not_a_tag")
    import open_clip.pretrained as ocp

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(ocp, "download_pretrained", offline)
    with pytest.raises(WeightsError, match="download failed.*no network.*Give a local file instead") as caught:
        create_model(TINY, pretrained="openai")
    assert "pretrained=" not in str(caught.value)  # plain words: the CLI user reads it


def test_official_openai_archives_are_recognised_by_their_published_hash(monkeypatch, tmp_path):
    from zsseg_rt.contract.common import weights

    hashes = weights._official_openai_archive_hashes()
    # ViT-B/16's archive, as published in OpenAI's download URL (and in open_clip's registry)
    assert "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f" in hashes
    fake = tmp_path / "ViT-B-16.pt"
    fake.write_bytes(b"not the release")
    from zsseg_rt.bundle import sha256_file

    monkeypatch.setattr(weights, "_official_openai_archive_hashes", lambda: {sha256_file(str(fake))})
    weights._check_torchscript_trusted(fake, None)  # a published hash: accepted without opt-in
