"""The stock open_clip CLIP every family builds on: its towers at a config's image size (``build_clip``) and the
tokenizer (``make_tokenizer``). Families build their models from these; none borrows them from another family."""

from __future__ import annotations

import torch.nn as nn

from zsseg_rt.contract.common.config import BaseModelConfig

__all__ = ["build_clip", "make_tokenizer"]


def build_clip(config: BaseModelConfig) -> nn.Module:
    """Build an (untrained) open_clip CLIP with the config's towers at the config's image size."""
    from open_clip.model import CLIP

    cfg = config.open_clip_cfg()
    cfg = {k: v for k, v in cfg.items() if k in ("embed_dim", "vision_cfg", "text_cfg")}
    vision = cfg["vision_cfg"]
    if isinstance(vision.get("layers"), (list, tuple)) or vision.get("timm_model_name"):
        raise ValueError(f"{config.clip_model}: only ViT image towers are supported (not ResNet/timm)")
    if cfg["text_cfg"].get("hf_model_name"):
        raise ValueError(f"{config.clip_model}: HuggingFace text towers are not supported")
    return CLIP(**cfg, quick_gelu=config.quick_gelu)


def make_tokenizer(config: BaseModelConfig, context_length: int):
    """open_clip's BPE tokenizer padded/truncated to ``context_length`` tokens (the text tower's positions)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)
