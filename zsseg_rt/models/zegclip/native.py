"""Native ZegCLIP checkpoints (``model.safetensors`` + ``config.json`` with format ``zsseg_rt.zegclip.v1``)."""

from __future__ import annotations

import os
from typing import Optional, Union

import torch

from zsseg_rt.contract.common.convert import load_native_state, read_native_config
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

    d, cfg = read_native_config(path_dir, NATIVE_FORMAT, overrides)
    return load_native_state(ZegCLIP(ZegCLIPConfig.from_dict(cfg)), d, "native", device)
