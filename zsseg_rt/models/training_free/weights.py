"""MaskCLIP's converted CLIP image weights (``tools/maskclip_utils/convert_clip_weights.py`` of chongzhou96/MaskCLIP
@245d31f) mapped back onto the OpenAI CLIP key layout the training-free models load.

The official script writes two files from OpenAI's ViT-B/16 archive, with the image tower renamed to mmseg's
VisionTransformer keys:

* ``--backbone``: ``pretrain/ViT16_clip_backbone.pth`` = ``{"meta": {}, "state_dict": {"backbone.<key>": ...}}``,
  the tower without the output projection (the checkpoint ``tools/test.py`` is given);
* without it: ``pretrain/ViT16_clip_weights.pth`` = ``{"proj": {"weight": proj.T}, "clip": {"<key>": ...}}``, the
  tower and the projection (``MaskClipHead.visual_projs_path``).

Key mapping (the script's, reversed): ``cls_token [1,1,W]`` -> ``class_embedding [W]``, ``pos_embed [1,N,W]`` ->
``positional_embedding [N,W]``, ``patch_embed.projection.weight`` -> ``conv1.weight``, ``ln0`` -> ``ln_pre``,
``ln1`` -> ``ln_post``, ``layers.i.ln1/ln2`` -> ``transformer.resblocks.i.ln_1/ln_2``, ``layers.i.attn.attn.*`` ->
``...attn.*``, ``layers.i.ffn.layers.0.0`` -> ``mlp.c_fc``, ``layers.i.ffn.layers.1`` -> ``mlp.c_proj``,
``proj.weight [D,W]`` -> ``proj [W,D]`` (transposed back). Neither file holds the text tower: it comes from the
stock CLIP file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Mapping, Union

import torch

__all__ = ["is_maskclip_converted", "read_maskclip_converted", "maskclip_to_openai_keys"]

_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
_TOP = {
    "cls_token": "class_embedding",
    "pos_embed": "positional_embedding",
    "patch_embed.projection.weight": "conv1.weight",
    "ln0.weight": "ln_pre.weight",
    "ln0.bias": "ln_pre.bias",
    "ln1.weight": "ln_post.weight",
    "ln1.bias": "ln_post.bias",
    "proj.weight": "proj",
}
_IN_LAYER = {
    "ln1.": "ln_1.",
    "ln2.": "ln_2.",
    "attn.attn.": "attn.",
    "ffn.layers.0.0.": "mlp.c_fc.",
    "ffn.layers.1.": "mlp.c_proj.",
}


def _strip_backbone(keys):
    return [k[len("backbone.") :] if k.startswith("backbone.") else k for k in keys]


def is_maskclip_converted(keys) -> bool:
    """Whether tensor names are MaskCLIP's converted ViT layout (``patch_embed.projection.weight``, ``layers.0.*``;
    with or without the ``backbone.`` prefix)."""
    names = set(_strip_backbone(keys))
    return "patch_embed.projection.weight" in names and any(k.startswith("layers.0.") for k in names)


def read_maskclip_converted(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """Read either file of ``convert_clip_weights.py`` (tensors only: ``torch.load(weights_only=True)``) into one
    flat dict of MaskCLIP keys (``backbone.`` removed, the projection as ``proj.weight``)."""
    from zsseg_rt.contract.common.weights import WeightsError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MaskCLIP weight file {str(path)!r} does not exist")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path}: torch.load(weights_only=True) refused or failed ({type(e).__name__}: {e})") from e
    flat: Dict[str, torch.Tensor] = {}
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):  # --backbone file
        flat.update(obj["state_dict"])
    elif isinstance(obj, Mapping) and isinstance(obj.get("clip"), Mapping):  # visual weights + proj file
        flat.update(obj["clip"])
        proj = obj.get("proj")
        if isinstance(proj, Mapping) and isinstance(proj.get("weight"), torch.Tensor):
            flat["proj.weight"] = proj["weight"]
    elif isinstance(obj, Mapping):
        flat.update({str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)})
    flat = {k: v for k, v in flat.items() if isinstance(v, torch.Tensor)}
    flat = dict(zip(_strip_backbone(flat), flat.values()))
    if not is_maskclip_converted(flat):
        raise WeightsError(
            f"{path}: not a MaskCLIP converted ViT checkpoint (tools/maskclip_utils/convert_clip_weights.py output: "
            f"'patch_embed.projection.weight' and 'layers.N.*' keys); found {sorted(flat)[:5]}"
        )
    return flat


def maskclip_to_openai_keys(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """MaskCLIP converted keys -> OpenAI CLIP image-tower keys (``visual.*``) and shapes. Raises WeightsError
    naming the keys it cannot place."""
    from zsseg_rt.contract.common.weights import WeightsError, describe_keys

    out: Dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in zip(_strip_backbone(sd), sd.values()):
        if key in _TOP:
            new, v = _TOP[key], value
            if key == "cls_token":
                v = value.reshape(value.shape[-1])
            elif key == "pos_embed":
                v = value.reshape(value.shape[-2], value.shape[-1])
            elif key == "proj.weight":
                v = value.t()
            out["visual." + new] = v
            continue
        match = _LAYER.match(key)
        if match:
            rest = match.group(2)
            for old, repl in _IN_LAYER.items():
                if rest.startswith(old):
                    out[f"visual.transformer.resblocks.{match.group(1)}.{repl}{rest[len(old) :]}"] = value
                    break
            else:
                unknown.append(key)
            continue
        unknown.append(key)
    if unknown:
        raise WeightsError(f"MaskCLIP converted checkpoint: {describe_keys('unknown', unknown)}")
    return out
