"""``create_model``: a model of any registered family from a config name/path, optionally with pretrained weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from . import registry
from .config import load_zegclip_config

__all__ = ["create_model", "create_zegclip", "load_model_config"]


def load_model_config(name: Union[str, os.PathLike, Dict[str, Any], Any], **overrides):
    """The config of any registered model family by name, alias, path, dict, config or native directory."""
    return registry.load_config(name, **overrides)


def create_model(
    name: Union[str, os.PathLike] = "zegclip_vitb16_voc_inductive",
    pretrained: Optional[str] = None,
    device: Optional[Union[str, torch.device]] = None,
    **overrides,
):
    """Build a model of any registered family (returned in eval mode, CLIP towers frozen).

    The family comes from the spec (``"family"`` in the JSON; none = ZegCLIP; a native checkpoint's format)
    through :mod:`zsseg_rt.models.registry`.

    Args:
        name: bundled config name (``"zegclip_vitb16_voc_inductive"``, see ``list_configs()``), a config
            JSON path, or a native checkpoint directory (``model.safetensors`` + ``config.json``).
        pretrained: None (random init; prompts/head always start at the official init), an open_clip tag of the
            config's CLIP model (e.g. ``"openai"``; downloaded by open_clip, needs network), or a local file:
            OpenAI CLIP JIT archive, open_clip state dict (.pt/.bin/.pth) or .safetensors. These fill the CLIP
            towers only. For official ZegCLIP checkpoints use ``load_official_zegclip``.
        overrides: config fields to replace (e.g. ``fix_double_class_embedding=True``, ``calibration_bias=0``).
    """
    return registry.create_model(name, pretrained=pretrained, device=device, **overrides)


def create_zegclip(
    name: Union[str, os.PathLike, Dict[str, Any], Any] = "zegclip_vitb16_voc_inductive",
    pretrained: Optional[str] = None,
    device: Optional[Union[str, torch.device]] = None,
    **overrides,
):
    """The ZegCLIP family's factory (registry entry ``"zegclip"``); arguments as in :func:`create_model`."""
    from .convert import CONFIG_FILE, WEIGHTS_FILE, load_native
    from .weights import load_clip_weights
    from .zegclip import ZegCLIP

    p = Path(str(name)) if isinstance(name, (str, os.PathLike)) else None
    if p is not None and p.is_dir() and (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file():
        if pretrained is not None:
            raise ValueError(f"{p} is a native checkpoint that already holds weights; drop pretrained=")
        return load_native(p, device=device, **overrides)
    config = load_zegclip_config(name, **overrides)
    model = ZegCLIP(config)
    if pretrained is not None:
        pp = Path(os.path.expanduser(str(pretrained)))
        if pp.is_dir() and (pp / CONFIG_FILE).is_file():
            raise ValueError(f"{pp} is a native ZegCLIP checkpoint; use create_model({str(pp)!r}) or load_native")
        load_clip_weights(model, str(pretrained))
    if device is not None:
        model = model.to(device)
    return model.eval()
