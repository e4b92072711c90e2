"""Import of official CLIP-RC (mmcv/mmseg, ``uyzhang/CLIP-RC``) checkpoints, and native CLIP-RC checkpoints.

Layout (``python_tests/data/reference/cliprc_official_keys.txt``): ``{'meta', 'state_dict': {backbone.*, text_encoder.*,
decode_head.*}, 'optimizer'}``. Mapping onto :class:`~zsseg_rt.models.cliprc.model.CLIPRC`: every key keeps its name
(``backbone.region_level_bridge``, ``decode_head.decoder_q.layers.{i}.*``, ``decode_head.decoder_v.layers.{i}.*``,
``decode_head.recovery_decoder.*``, ``decode_head.{q_proj,lateral_proj}.*``), except the tensors the official
forward never uses, which are reported and not loaded: ``self_attn.*`` and ``norm1.*`` of every
``TPN_DecoderLayer`` (decoder_q, decoder_v, recovery decoder) and any ``decode_head.loss_decode.*`` buffer.

Same contract as :func:`zsseg_rt.models.load_official_zegclip`: read with ``torch.load(weights_only=True)``,
every tensor the model uses must be present with the right shape, anything unexpected is an error, and a ZegCLIP
checkpoint is refused with a message saying so (nothing is half-loaded).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from zsseg_rt.contract.common.official import load_official_any, official_checkpoint_family  # noqa: F401 - former home
from zsseg_rt.contract.common.weights import WeightsError
from zsseg_rt.models.cliprc.config import CLIPRCConfig, load_cliprc_config
from zsseg_rt.models.zegclip.official import OfficialLayout

__all__ = [
    "load_official_cliprc",
    "is_cliprc_keys",
    "official_cliprc_to_native_key",
    "official_checkpoint_family",
    "load_native_cliprc",
    "load_official_any",
]

_UNUSED_LAYER_RE = re.compile(
    r"^decode_head\.(decoder_[qv]\.layers\.\d+|recovery_decoder\.decouple_[qv]\.\d+)\.(self_attn|norm1)\."
)
_BRIDGE_KEY = "backbone.region_level_bridge"
_CLIPRC_MARKERS = (
    _BRIDGE_KEY,
    "decode_head.decoder_q.",
    "decode_head.decoder_v.",
    "decode_head.lateral_proj.",
    "decode_head.recovery_decoder.",
)


def official_cliprc_to_native_key(key: str) -> Optional[str]:
    """Official key -> our key; None for tensors the official forward never uses."""
    if key.startswith("decode_head.loss_decode."):
        return None
    if _UNUSED_LAYER_RE.match(key):
        return None
    return key


def is_cliprc_keys(keys) -> bool:
    """True when checkpoint tensor names are an official CLIP-RC checkpoint's (region-level bridge, q/v decoders)."""
    return any(k.startswith(m) or k == m for k in keys for m in _CLIPRC_MARKERS)


def _infer_config(sd: Dict[str, torch.Tensor], meta: Dict[str, object]) -> str:
    tokens = int(sd["backbone.prompt_embeddings"].shape[1]) if "backbone.prompt_embeddings" in sd else None
    dataset = {10: "voc", 100: "coco"}.get(tokens) if tokens is not None else None
    if dataset is None:
        raise WeightsError(
            f"cannot infer the CLIP-RC config from {tokens} prompt tokens (10=VOC, 100=COCO); pass config=..."
        )
    cfg_text = str(meta.get("config", "")) if isinstance(meta, dict) else ""
    flat = cfg_text.replace(" ", "").replace("\n", "")
    if "self_training=True" in flat:
        setting = "transductive"
    elif "novel_class=[]" in flat:
        setting = "fully"
    else:
        setting = "inductive"
        if not cfg_text:
            warnings.warn(
                "official CLIP-RC checkpoint without a meta config: assuming the inductive setting; "
                "pass config=... to choose (transductive / fully)"
            )
    return f"cliprc_vitb16_{dataset}_{setting}"


def _check_family(sd: Dict[str, torch.Tensor], source: str) -> None:
    from zsseg_rt.contract.common.official import family_of_keys

    fam = family_of_keys(sd.keys())
    if fam == "zegclip":
        raise WeightsError(
            f"{source} is an official ZegCLIP checkpoint (it has decode_head.decoder_1.* and no region-level "
            "bridge), not a CLIP-RC one: load it with zsseg_rt.models.load_official_zegclip (`zsseg convert` "
            "detects the family by itself)"
        )
    if fam != "cliprc":
        raise WeightsError(
            f"{source} is not an official CLIP-RC checkpoint: none of {list(_CLIPRC_MARKERS)} is in its state_dict"
        )


_OFFICIAL = OfficialLayout(
    "official CLIP-RC",
    official_cliprc_to_native_key,
    _infer_config,
    "prompt tokens, bridge tokens, image size, CLIP model",
    "zsseg_rt.models.cliprc.model:CLIPRC",
    load_cliprc_config,
    ("CLIP-RC", "github.com/uyzhang/CLIP-RC"),
    check=_check_family,
)
load_official_cliprc = _OFFICIAL.importer(
    "cliprc",
    "Build a :class:`CLIPRC` and load an official CLIP-RC checkpoint into it.",
    "from the prompt count\n            (10 VOC / 100 COCO) and the mmcv meta config (``self_training=True`` -> transductive,\n"
    "            ``novel_class = []`` -> fully, else inductive)",
)


def load_native_cliprc(path_dir: Union[str, Path], device: Optional[Union[str, torch.device]] = None, **overrides):
    """Load a native CLIP-RC checkpoint directory (format ``zsseg_rt.cliprc.v1``); every tensor must fit."""
    from zsseg_rt.contract.common.convert import load_native_state, read_native_config
    from zsseg_rt.models.cliprc.model import CLIPRC, CLIPRC_NATIVE_FORMAT

    d, cfg = read_native_config(path_dir, CLIPRC_NATIVE_FORMAT, overrides)
    return load_native_state(CLIPRC(CLIPRCConfig.from_dict(cfg)), d, "native CLIP-RC", device)
