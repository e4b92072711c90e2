"""``create_model``: a ZegCLIP from a config name/path, optionally with pretrained weights."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch

from .config import load_config

__all__ = ["create_model", "load_model_config"]


def load_model_config(name: Union[str, os.PathLike], **overrides):
    """The config of any model family (ZegCLIP, CLIP-RC, training-free) by name, path or native directory."""
    from .cliprc_config import is_cliprc_spec, load_cliprc_config
    from .training_free_config import load_training_free_config, training_free_config_path

    if is_cliprc_spec(name):
        return load_cliprc_config(name, **overrides)
    if training_free_config_path(name) is not None:
        return load_training_free_config(name, **overrides)
    return load_config(name, **overrides)


def create_model(
    name: Union[str, os.PathLike] = "zegclip_vitb16_voc_inductive",
    pretrained: Optional[str] = None,
    device: Optional[Union[str, torch.device]] = None,
    **overrides,
):
    """Build a ZegCLIP model (returned in eval mode, CLIP towers frozen).

    Args:
        name: bundled config name (``"zegclip_vitb16_voc_inductive"``, see ``config.list_configs()``), a config
            JSON path, or a native checkpoint directory (``model.safetensors`` + ``config.json``).
        pretrained: None (random init; prompts/head always start at the official init), an open_clip tag of the
            config's CLIP model (e.g. ``"openai"``; downloaded by open_clip, needs network), or a local file:
            OpenAI CLIP JIT archive, open_clip state dict (.pt/.bin/.pth) or .safetensors. These fill the CLIP
            towers only. For official ZegCLIP checkpoints use ``load_official_zegclip``.
        overrides: config fields to replace (e.g. ``fix_double_class_embedding=True``, ``calibration_bias=0``).
    """
    from .convert import CONFIG_FILE, WEIGHTS_FILE, load_native
    from .weights import load_clip_weights
    from .zegclip import ZegCLIP
    from .cliprc_config import is_cliprc_spec

    if is_cliprc_spec(name):  # CLIP-RC configs ("family": "cliprc"), aliases and native checkpoints
        from .cliprc import create_cliprc

        return create_cliprc(name, pretrained=pretrained, device=device, **overrides)
    from .training_free_config import training_free_config_path

    if training_free_config_path(name) is not None:
        # training-free MaskCLIP / SCLIP / ClearCLIP / NACLIP ("family": "training_free"; "sclip-vitb16" etc.)
        from .training_free import create_training_free_model

        return create_training_free_model(name, pretrained=pretrained, device=device, **overrides)
    p = Path(str(name))
    if p.is_dir() and (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file():
        if pretrained is not None:
            raise ValueError(f"{p} is a native checkpoint that already holds weights; drop pretrained=")
        return load_native(p, device=device, **overrides)
    config = load_config(name, **overrides)
    model = ZegCLIP(config)
    if pretrained is not None:
        pp = Path(os.path.expanduser(str(pretrained)))
        if pp.is_dir() and (pp / CONFIG_FILE).is_file():
            raise ValueError(f"{pp} is a native ZegCLIP checkpoint; use create_model({str(pp)!r}) or load_native")
        load_clip_weights(model, str(pretrained))
    if device is not None:
        model = model.to(device)
    return model.eval()
