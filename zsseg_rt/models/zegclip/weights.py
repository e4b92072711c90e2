"""CLIP weights onto ZegCLIP's frozen towers (``visual.*`` -> ``backbone.*``, text -> ``text_encoder.*``); CLIP-RC
uses the same layout."""

from __future__ import annotations

from typing import Dict, List

import torch

from zsseg_rt.contract.common.weights import (
    CLIP_UNUSED,
    HOW_TO_GET_WEIGHTS,
    WeightsError,
    check_finite,
    fit_problems,
    normalise_clip_keys,
    read_state_dict,
    resolve_pretrained,
    shape_mismatches,
)

__all__ = ["clip_state_dict_to_zegclip", "load_clip_weights"]


def clip_state_dict_to_zegclip(
    sd: Dict[str, torch.Tensor], model, source: str = "checkpoint"
) -> Dict[str, torch.Tensor]:
    """Map CLIP keys onto ZegCLIP's frozen towers (``visual.*`` -> ``backbone.*``, text -> ``text_encoder.*``),
    resizing the positional table the official way (bilinear, align_corners=False) to the training grid.

    Raises WeightsError for missing / unexpected / mis-shaped keys.
    """
    from zsseg_rt.models.zegclip.backbone import resize_pos_embed_official

    sd = normalise_clip_keys(dict(sd))
    target = model.state_dict()
    out: Dict[str, torch.Tensor] = {}
    unexpected: List[str] = []
    for k, v in sd.items():
        if k in CLIP_UNUSED:
            continue
        if k.startswith("visual."):
            nk = "backbone." + k[len("visual.") :]
        else:
            nk = "text_encoder." + k
        if nk not in target or "prompt" in nk:
            unexpected.append(k)
            continue
        out[nk] = v
    pk = "backbone.positional_embedding"
    if (
        pk in out
        and out[pk].shape != target[pk].shape
        and out[pk].dim() == 2
        and out[pk].shape[1] == target[pk].shape[1]
    ):
        out[pk] = resize_pos_embed_official(out[pk].float(), model.backbone.grid)
    expected = [k for k in target if model.is_clip_weight(k)]
    missing = [k.replace("backbone.", "visual.").replace("text_encoder.", "") for k in expected if k not in out]
    problems = fit_problems(missing, unexpected, shape_mismatches(out, target))
    if problems:
        raise WeightsError(
            f"{source}: CLIP weights do not fit model {model.config.clip_model!r} "
            f"({model.config.name}): " + problems + f". {HOW_TO_GET_WEIGHTS}"
        )
    check_finite(out, source)
    return out


def load_clip_weights(model, pretrained: str) -> Dict[str, object]:
    """Load CLIP tower weights (tag or local file) into a ZegCLIP model. Prompt/head params are untouched.

    Returns a small report dict (source file, number of tensors loaded).
    """
    import warnings

    path, tag_cfg = resolve_pretrained(pretrained, model.config.clip_model)
    if tag_cfg is not None and "quick_gelu" in tag_cfg and bool(tag_cfg["quick_gelu"]) != bool(model.config.quick_gelu):
        warnings.warn(
            f"open_clip tag {pretrained!r} was trained with quick_gelu={tag_cfg['quick_gelu']} but the model "
            f"config says quick_gelu={model.config.quick_gelu}; pass quick_gelu={tag_cfg['quick_gelu']}"
        )
    elif tag_cfg is not None and "quick_gelu" not in tag_cfg and model.config.quick_gelu:
        warnings.warn(
            f"open_clip tag {pretrained!r} uses nn.GELU but the model config says quick_gelu=True; "
            "pass quick_gelu=False for non-OpenAI weights"
        )
    sd = read_state_dict(path)
    mapped = clip_state_dict_to_zegclip(sd, model, source=str(path))
    ref = model.state_dict()
    mapped = {k: v.to(ref[k].dtype) for k, v in mapped.items()}
    result = model.load_state_dict(mapped, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    model.text_encoder.cache.clear()
    return {"source": str(path), "loaded": len(mapped)}
