"""Building ZegFormer models: ``create_zegformer`` (the registry's factory), CLIP weights, native checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from zsseg_rt.contract.common.weights import WeightsError, check_finite, fit_problems, shape_mismatches

from .config import ZegFormerConfig, load_zegformer_config

__all__ = [
    "create_zegformer",
    "load_backbone_weights",
    "load_clip_weights_zegformer",
    "load_native_zegformer",
    "clip_state_dict_to_zegformer",
]

_CLIP_SKIP = ("logit_bias", "input_resolution", "context_length", "vocab_size", "attn_mask")


def clip_state_dict_to_zegformer(sd: Dict[str, torch.Tensor], model, source: str) -> Dict[str, torch.Tensor]:
    """CLIP keys (OpenAI / open_clip layout) -> ZegFormer's ``clip_visual.*``, ``text_encoder.*`` and
    ``clip_logit_scale``. Raises ``WeightsError`` for missing, unexpected or mis-shaped tensors."""
    from zsseg_rt.contract.common.weights import normalise_clip_keys

    sd = normalise_clip_keys(dict(sd))
    target = model.state_dict()
    out: Dict[str, torch.Tensor] = {}
    unexpected = []
    for k, v in sd.items():
        if k in _CLIP_SKIP:
            continue
        if k.startswith("visual."):
            nk = "clip_visual." + k[len("visual.") :]
        elif k == "logit_scale":
            nk = "clip_logit_scale"
        else:
            nk = "text_encoder." + k
        if nk not in target:
            unexpected.append(k)
            continue
        out[nk] = v.reshape(target[nk].shape) if nk == "clip_logit_scale" and v.numel() == 1 else v
    missing = [k for k in target if model.is_clip_weight(k) and k not in out]
    problems = fit_problems(missing, unexpected, shape_mismatches(out, target))
    if problems:
        raise WeightsError(
            f"{source}: CLIP weights do not fit {model.config.clip_model!r} at {model.config.image_size} px "
            f"({model.config.name}): " + problems
        )
    check_finite(out, source)
    return out


def load_clip_weights_zegformer(model, pretrained: str) -> Dict[str, object]:
    """Load CLIP weights (open_clip tag such as ``"openai"``, or a local file) into ``model``'s CLIP parts.

    Returns ``{"source": path, "loaded": number of tensors}``.
    """
    from zsseg_rt.contract.common.weights import read_state_dict, resolve_pretrained

    path, _ = resolve_pretrained(pretrained, model.config.clip_model)
    mapped = clip_state_dict_to_zegformer(read_state_dict(path), model, str(path))
    ref = model.state_dict()
    model.load_state_dict({k: v.to(ref[k].dtype) for k, v in mapped.items()}, strict=False)
    model._text_cache.clear()
    return {"source": str(path), "loaded": len(mapped)}


def load_backbone_weights(model, spec: str) -> Dict[str, object]:
    """ImageNet weights for the ResNet trunk: a torchvision weights tag (``"IMAGENET1K_V1"``: the official
    ``R-101.pkl`` / ``R-50.pkl`` are these weights converted) or a local torchvision-layout state dict
    (``conv1.weight``, ``bn1.*``, ``layer{1..4}.*``; ``fc.*`` is ignored). Every trunk tensor must be present."""
    if spec.startswith("IMAGENET1K_"):
        import torchvision

        enum = {"resnet50": "ResNet50_Weights", "resnet101": "ResNet101_Weights"}[model.config.backbone]
        sd = torchvision.models.get_weight(f"{enum}.{spec}").get_state_dict(progress=True)
        source = f"torchvision {enum}.{spec}"
    else:
        p = Path(os.path.expanduser(spec))
        if not p.is_file():
            raise FileNotFoundError(f"backbone weights {spec!r}: not a torchvision tag (IMAGENET1K_V1) nor a file")
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
        sd = obj.get("state_dict", obj.get("model", obj)) if isinstance(obj, dict) else None
        if not isinstance(sd, dict):
            raise WeightsError(f"{p}: expected a state dict of tensors, got {type(obj).__name__}")
        source = str(p)
    target = model.backbone.state_dict()
    sd = {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor) and not str(k).startswith("fc.")}
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    problems = fit_problems(missing, unexpected, shape_mismatches(sd, target))
    if problems:
        raise WeightsError(
            f"{source}: backbone weights do not fit {model.config.backbone} {model.config.layers_per_stage}: "
            + problems
        )
    check_finite(sd, source)
    model.backbone.load_state_dict(sd, strict=True)
    return {"source": source, "loaded": len(sd)}


def load_native_zegformer(path_dir: Union[str, os.PathLike], device=None, **overrides):
    """Load a native ZegFormer checkpoint directory (``model.safetensors`` + ``config.json``, format
    ``zsseg_rt.zegformer.v1``); every tensor must fit."""
    from zsseg_rt.contract.common.convert import load_native_state, read_native_config

    from .model import ZEGFORMER_NATIVE_FORMAT, ZegFormer

    d, cfg = read_native_config(path_dir, ZEGFORMER_NATIVE_FORMAT, overrides)
    return load_native_state(ZegFormer(ZegFormerConfig.from_dict(cfg)), d, "native ZegFormer", device)


def create_zegformer(
    name: Union[str, os.PathLike, ZegFormerConfig, dict] = "zegformer_r101_voc",
    pretrained: Optional[str] = None,
    device: Optional[Union[str, torch.device]] = None,
    **overrides,
):
    """Build a ZegFormer (eval mode; CLIP frozen); ``create_model`` dispatches here for ZegFormer configs.

    Args:
        name: bundled config name, JSON path, dict, config, or a native ZegFormer checkpoint directory.
        pretrained: CLIP weights (open_clip tag or local file). Official ZegFormer checkpoints go through
            :func:`zsseg_rt.models.zegformer.load_official_zegformer`.
        device: where to build the model.
        overrides: config fields to replace.
    """
    from zsseg_rt.contract.common.convert import native_checkpoint_dir

    from .model import ZegFormer

    native = native_checkpoint_dir(name, pretrained)
    if native is not None:
        return load_native_zegformer(native, device=device, **overrides)
    model = ZegFormer(load_zegformer_config(name, **overrides))
    if model.config.backbone_pretrained:
        load_backbone_weights(model, model.config.backbone_pretrained)
    if pretrained is not None:
        load_clip_weights_zegformer(model, str(pretrained))
    if device is not None:
        model = model.to(device)
    return model.eval()
