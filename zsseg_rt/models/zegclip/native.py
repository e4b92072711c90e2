"""Native ZegCLIP checkpoints (``model.safetensors`` + ``config.json`` with format ``zsseg_rt.zegclip.v1``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

import torch

from zsseg_rt.contract.common.convert import CONFIG_FILE, WEIGHTS_FILE, load_native_state
from zsseg_rt.contract.common.weights import WeightsError
from zsseg_rt.models.zegclip.config import ZegCLIPConfig

__all__ = ["NATIVE_FORMAT", "load_native_zegclip"]

NATIVE_FORMAT = "zsseg_rt.zegclip.v1"


def load_native_zegclip(
    path_dir: Union[str, os.PathLike], device: Optional[Union[str, torch.device]] = None, **overrides
):
    """A native ZegCLIP checkpoint directory as a :class:`ZegCLIP` (eval mode).

    ``overrides`` may change non-architectural config fields (e.g. ``calibration_bias``); every weight tensor
    must match the rebuilt model exactly.
    """
    from zsseg_rt.models.zegclip.model import ZegCLIP

    d = Path(path_dir)
    with open(d / CONFIG_FILE, "r", encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != NATIVE_FORMAT:
        raise WeightsError(f"{d / CONFIG_FILE}: unknown format {meta.get('format')!r} (expected {NATIVE_FORMAT})")
    cfg_dict = dict(meta["config"])
    cfg_dict.update(overrides)
    model = ZegCLIP(ZegCLIPConfig.from_dict(cfg_dict))
    if not (d / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{d} has no {WEIGHTS_FILE}")
    return load_native_state(model, d, "native", device)
