"""Helpers for the CLIP-RC tests (tiny random model: ViT width 64, 2 layers, patch 8, 64 px -> 8x8 grid,
4x4 region bridges of 2x2 patches, 4 prompt tokens)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from zeg_helpers import randomize_

CLIPRC_TINY = "cliprc_tiny_test"
CLIPRC_KEYS_FILE = Path(__file__).resolve().parents[2] / "data" / "reference" / "cliprc_official_keys.txt"


def make_tiny(seed: int = 1, **overrides):
    from zsseg_rt.models import create_model

    torch.manual_seed(0)
    return randomize_(create_model(CLIPRC_TINY, **overrides), seed=seed).eval()


def official_key_list():
    """(key, shape) pairs of the official full-size layout."""
    out = []
    for line in CLIPRC_KEYS_FILE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split(" ", 1)
        out.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    return out


def _layer_limits(model):
    return {
        "backbone.transformer.resblocks.": len(model.backbone.transformer.resblocks),
        "text_encoder.transformer.resblocks.": len(model.text_encoder.transformer.resblocks),
        "decode_head.decoder_q.layers.": len(model.decode_head.decoder_q.layers),
        "decode_head.decoder_v.layers.": len(model.decode_head.decoder_v.layers),
        "decode_head.recovery_decoder.decouple_q.": len(model.decode_head.recovery_decoder.decouple_q),
        "decode_head.recovery_decoder.decouple_v.": len(model.decode_head.recovery_decoder.decouple_v),
    }


def official_layout_tiny(model) -> "OrderedDict[str, torch.Tensor]":
    """An official-layout state_dict scaled to the tiny model, generated from ``cliprc_official_keys.txt``:
    every official key whose layer index exists at tiny size; tensors the model has are copied from it, the
    official-but-unused ones (``self_attn``/``norm1``) get random values of the tiny width."""
    ms = model.state_dict()
    d = model.config.embed_dim
    g = torch.Generator().manual_seed(7)
    limits = _layer_limits(model)
    sd = OrderedDict()
    for key, _ in official_key_list():
        skip = False
        for prefix, n in limits.items():
            if key.startswith(prefix) and int(key[len(prefix) :].split(".", 1)[0]) >= n:
                skip = True
        if skip:
            continue
        if key in ms:
            sd[key] = ms[key].clone()
        elif ".self_attn.in_proj_weight" in key:
            sd[key] = torch.randn(3 * d, d, generator=g)
        elif ".self_attn.in_proj_bias" in key:
            sd[key] = torch.randn(3 * d, generator=g)
        elif ".self_attn.out_proj.weight" in key:
            sd[key] = torch.randn(d, d, generator=g)
        elif key.endswith((".self_attn.out_proj.bias", ".norm1.bias")):
            sd[key] = torch.randn(d, generator=g)
        elif key.endswith(".norm1.weight"):
            sd[key] = torch.ones(d)
        else:
            raise AssertionError(f"official key {key} has no tiny counterpart")
    return sd


def save_mmcv(path, sd, meta=None):
    torch.save(
        {
            "meta": meta
            if meta is not None
            else {
                "CLASSES": ("a", "b"),
                "iter": 40000,
                "mmcv_version": "1.4.0",
                "config": "model = dict(type='CLIPRC')",
            },
            "state_dict": sd,
            "optimizer": {"state": {}, "param_groups": [{"lr": 2e-5}]},
        },
        path,
    )
