"""``create_zeroseg``: the ZeroSeg family's factory (registry entry ``"zeroseg"``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from .config import ZeroSegConfig, load_zeroseg_config
from .model import NATIVE_FORMAT, ZeroSeg

__all__ = ["create_zeroseg", "load_native_zeroseg"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def load_native_zeroseg(path_dir: Union[str, os.PathLike], device: Any = None, **overrides: Any) -> ZeroSeg:
    """A ZeroSeg native checkpoint directory (``config.json`` + ``model.safetensors``, from ``save_native``)."""
    from safetensors.torch import load_file

    d = Path(path_dir)
    with open(d / CONFIG_FILE, "r", encoding="utf-8") as f:
        meta = json.load(f)
    fmt = str(meta.get("format", ""))
    if not fmt.startswith("zsseg_rt.zeroseg."):
        raise ValueError(f"{d} holds a {fmt!r} checkpoint, not a ZeroSeg one ({NATIVE_FORMAT})")
    model = ZeroSeg(load_zeroseg_config(dict(meta["config"]), **overrides))
    state = load_file(str(d / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{d}: weights do not fit the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if device is not None:
        model = model.to(device)
    return model.eval()


def create_zeroseg(
    name: Union[str, os.PathLike, Dict[str, Any], ZeroSegConfig] = "zeroseg_vitb16_in1k",
    pretrained: Optional[str] = None,
    device: Optional[Union[str, torch.device]] = None,
    **overrides: Any,
) -> ZeroSeg:
    """Build a ZeroSeg student (eval mode).

    Args:
        name: bundled config name, JSON path, dict, config object, or a native checkpoint directory.
        pretrained: a native checkpoint directory or a ``.safetensors`` student state dict. The paper does not
            say the student starts from pretrained weights (README, inferred options), so None = random init.
        device: where to put the model.
        overrides: config fields to replace.
    """
    p = Path(os.path.expanduser(str(name))) if isinstance(name, (str, os.PathLike)) else None
    if p is not None and p.is_dir() and (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file():
        if pretrained is not None:
            raise ValueError(f"{p} is a native checkpoint that already holds weights; drop pretrained=")
        return load_native_zeroseg(p, device=device, **overrides)
    model = ZeroSeg(load_zeroseg_config(name, **overrides))
    if pretrained is not None:
        from zsseg_rt.train.trainer import load_model_weights

        pp = Path(os.path.expanduser(str(pretrained)))
        if not (pp.is_dir() or pp.suffix == ".safetensors" or pp.suffix == ".pt"):
            raise ValueError(
                f"ZeroSeg pretrained= must be a native checkpoint directory, a .safetensors or a training .pt "
                f"checkpoint, got {pretrained!r} (open_clip tags apply to the teacher: set clip_model/teacher weights)"
            )
        load_model_weights(model, pp)
    if device is not None:
        model = model.to(device)
    return model.eval()
