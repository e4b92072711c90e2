"""ZegCLIP (Zhou et al., CVPR 2023) in plain PyTorch, computing what the official implementation computes.

``forward(images [B,3,H,W] normalised, text [C,D]) -> logits [B,C,H/p,W/p]`` (pre-sigmoid mask logits at the
patch grid). See ``backbone.py`` and ``head.py`` for the exact per-module semantics, ``common/predict.py`` for
whole-image / sliding-window inference and ``losses.py`` for the training loss.

Input rule: ``encode_image`` requires ``H`` and ``W`` to be positive multiples of the patch size and raises
``ValueError`` otherwise (the official conv silently floors; ``predict`` reproduces that flooring explicitly by
dropping the trailing rows/columns of a crop that is not a multiple of the patch size).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from zsseg_rt.contract.common.clip import build_clip, make_tokenizer
from zsseg_rt.contract.common.text import TextEncoder, validate_class_names
from zsseg_rt.models.zegclip.backbone import PromptedVisionTransformer
from zsseg_rt.models.zegclip.config import ZegCLIPConfig, load_zegclip_config
from zsseg_rt.models.zegclip.head import ZegCLIPHead

__all__ = ["ZegCLIP", "build_clip", "create_zegclip"]


class ZegCLIP(nn.Module):
    """ZegCLIP: frozen CLIP towers + deep visual prompts + relationship descriptor + cross-attention decoder."""

    def __init__(self, config: Union[ZegCLIPConfig, str, dict], device: Optional[Union[str, torch.device]] = None):
        super().__init__()
        self.config = self._coerce_config(config).validate()
        config = self.config
        ctx = torch.device(device) if device is not None else contextlib.nullcontext()
        with ctx:
            clip = build_clip(config)
            self.backbone = self._make_backbone(config, cast(nn.Module, clip.visual))
            tokenizer = make_tokenizer(config, int(clip.positional_embedding.shape[0]))
            self.text_encoder = TextEncoder(clip, tokenizer)
            self.decode_head = self._make_head(config, config.embed_dim)
        self.use_native_ops = False
        self.freeze()

    # ------------------------------------------------------------------ construction hooks (subclasses override)
    @classmethod
    def _coerce_config(cls, config: Union[ZegCLIPConfig, str, dict]) -> ZegCLIPConfig:
        """The family's config object from a config, name, path or dict."""
        return config if isinstance(config, ZegCLIPConfig) else load_zegclip_config(config)

    @staticmethod
    def prompt_args(config: ZegCLIPConfig) -> Dict[str, Any]:
        """The prompted ViT's arguments from the config (CLIP-RC's backbone takes them too)."""
        return dict(
            num_tokens=config.num_prompt_tokens,
            deep_layers=config.num_deep_prompt_layers,
            prompt_dropout=config.prompt_dropout,
            fix_double_class_embedding=config.fix_double_class_embedding,
        )

    @staticmethod
    def decoder_args(config: ZegCLIPConfig, dim: int) -> Dict[str, Any]:
        """The decode head's arguments from the config (CLIP-RC's head takes them too)."""
        return dict(
            dim=dim,
            num_layers=config.decoder_layers,
            num_heads=config.decoder_heads,
            ffn_dim=config.ffn_dim,
            dropout=config.decoder_dropout,
            attn_dropout=config.decoder_attn_dropout,
        )

    @staticmethod
    def _make_backbone(config: ZegCLIPConfig, visual: nn.Module) -> nn.Module:
        return PromptedVisionTransformer(visual, **ZegCLIP.prompt_args(config))

    @staticmethod
    def _make_head(config: ZegCLIPConfig, dim: int) -> nn.Module:
        return ZegCLIPHead(**ZegCLIP.decoder_args(config, dim))

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def is_trainable_name(name: str) -> bool:
        """Official rule: backbone params whose name contains 'prompt', and the whole decode head."""
        if name.startswith("decode_head."):
            return True
        return name.startswith("backbone.") and "prompt" in name

    def is_clip_weight(self, name: str) -> bool:
        """True for parameters/buffers that come from a CLIP checkpoint (``weights.load_clip_weights``)."""
        return not self.is_trainable_name(name)

    def freeze(self) -> "ZegCLIP":
        """Freeze the CLIP towers (text and image); only prompt params and the head stay trainable."""
        for n, p in self.named_parameters():
            p.requires_grad_(self.is_trainable_name(n))
        return self

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def num_learnable_parameters(self, count_official_unused: bool = False) -> int:
        """Learnable parameters; with ``count_official_unused`` also the official decoder's never-called
        ``self_attn``/``norm1`` (that is how the README's 13.8M / 14.6M were counted)."""
        n = sum(p.numel() for p in self.parameters() if p.requires_grad)
        if count_official_unused:
            n += self.decode_head.num_official_unused_parameters()
        return n

    def train(self, mode: bool = True):
        super().train(mode)
        self.text_encoder.eval()  # frozen; has no dropout anyway
        return self

    # ------------------------------------------------------------------ properties
    @property
    def patch_size(self) -> Tuple[int, int]:
        return cast(Tuple[int, int], self.backbone.patch_size)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def class_names(self):
        return self.config.class_names

    def seen_mask(self, num_classes: Optional[int] = None, seen: Optional[Sequence[int]] = None) -> torch.Tensor:
        seen = self.config.seen_classes if seen is None else seen
        c = len(self.config.class_names) if num_classes is None else num_classes
        m = torch.zeros(c, dtype=torch.bool)
        idx = [i for i in seen if 0 <= i < c]
        m[idx] = True
        return m

    def class_bias(self, num_classes: Optional[int] = None, seen: Optional[Sequence[int]] = None) -> np.ndarray:
        """Per-class value subtracted after the sigmoid: ``calibration_bias`` on seen classes, 0 elsewhere."""
        m = self.seen_mask(num_classes, seen).numpy()
        return (m.astype(np.float32) * np.float32(self.config.calibration_bias)).astype(np.float32)

    # ------------------------------------------------------------------ input checks
    def check_images(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor [B,3,H,W], got {type(images).__name__}")
        if images.dim() != 4:
            raise ValueError(f"images must have rank 4 [B,3,H,W], got shape {tuple(images.shape)}")
        if images.shape[1] != 3:
            raise ValueError(f"images must have 3 channels (RGB) in dim 1, got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(
                f"images must be a normalised floating-point tensor, got dtype {images.dtype} "
                "(use zsseg_rt.pipeline.preprocess.normalize_image for uint8 images)"
            )
        ph, pw = self.patch_size
        h, w = int(images.shape[2]), int(images.shape[3])
        if h < ph or w < pw or h % ph or w % pw:
            raise ValueError(
                f"image size {h}x{w} is not a positive multiple of the patch size {ph}x{pw}; resize or pad "
                f"first (e.g. to {max(ph, h // ph * ph)}x{max(pw, w // pw * pw)})"
            )

    def check_text(self, text: torch.Tensor, batch: Optional[int] = None) -> None:
        if not isinstance(text, torch.Tensor):
            raise TypeError(f"text must be a torch.Tensor [C,D] or [B,C,D], got {type(text).__name__}")
        if text.dim() not in (2, 3):
            raise ValueError(f"text must be [C,D] or [B,C,D], got shape {tuple(text.shape)}")
        if text.shape[-2] == 0:
            raise ValueError("text has zero classes: give at least one class embedding")
        if text.shape[-1] != self.embed_dim:
            raise ValueError(f"text embedding width {text.shape[-1]} != model embed_dim {self.embed_dim}")
        if text.dim() == 3 and batch is not None and text.shape[0] != batch:
            raise ValueError(f"text batch {text.shape[0]} != image batch {batch}")

    # ------------------------------------------------------------------ network
    def encode_image(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Tuple[int, int]]:
        """``images [B,3,H,W]`` -> (``image_global [B,D]``, ``patches [B,h*w,D]``, ``(h, w)``), both normalised."""
        if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
            self.check_images(images)
        return self.backbone(images)

    def decode(
        self,
        text: torch.Tensor,
        image_global: torch.Tensor,
        patches: torch.Tensor,
        grid: Tuple[int, int],
        native: bool = False,
    ) -> torch.Tensor:
        """Mask logits ``[B, C, h, w]`` from text ``[C,D]``/``[B,C,D]`` and image features.

        The text embeddings are used as given, like the official head (they come L2-normalised from the text
        encoder or the official .npy files); ``config.renormalize_text`` re-normalises them first. ``native``: the
        same result through ``zsseg_rt.ops`` (CPU, NumPy; no autograd) for the relationship descriptor and the last
        layer's head-averaged logits (:meth:`_native_logits`).
        """
        if not native:
            return self.decode_head(self.head_text(text, patches.dtype), image_global, patches, grid)
        with torch.no_grad():
            logits = self._native_logits(self.head_text(text, torch.float32), image_global, patches)
        b, c, _ = logits.shape
        return logits.reshape(b, c, int(grid[0]), int(grid[1]))

    def head_text(self, text: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The text embeddings the head takes: in ``dtype``, re-normalised when ``config.renormalize_text``."""
        text = text.to(dtype)
        if self.config.renormalize_text:
            text = F.normalize(text, dim=-1)
        return text

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        self.check_text(text, images.shape[0] if isinstance(images, torch.Tensor) and images.dim() == 4 else None)
        image_global, patches, grid = self.encode_image(images)
        return self.decode(text, image_global, patches, grid, native=self.use_native_ops and not self.training)

    # ------------------------------------------------------------------ native-op inference path
    def _native_logits(self, text: torch.Tensor, image_global: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """``decode(native=True)``'s last-layer logits ``[B, C, h*w]`` (device and dtype of ``patches``) from the
        head's text (float32): the relationship descriptor and the head-averaged logits through ``zsseg_rt.ops``
        (``similarity`` with ``scale = head_dim**-0.5 / num_heads``), the other layers in torch."""
        from zsseg_rt import ops

        head = self.decode_head
        dev, dtype = patches.device, patches.dtype
        t_np = text.detach().cpu().numpy()
        g_np = image_global.detach().float().cpu().numpy()
        w = head.q_proj.weight.detach().float().cpu().numpy()
        bvec = head.q_proj.bias.detach().float().cpu().numpy()
        if t_np.ndim == 2:
            q_np = ops.relation_descriptor(t_np, g_np, w, bvec)
        else:
            q_np = np.concatenate(
                [ops.relation_descriptor(t_np[i], g_np[i : i + 1], w, bvec) for i in range(t_np.shape[0])], 0
            )
        q = torch.from_numpy(np.ascontiguousarray(q_np)).to(dev, dtype)
        for layer in head.layers[:-1]:
            q, _ = layer(q, patches)
        last = head.layers[-1].multihead_attn
        qq = last.q(q).float().cpu().numpy()
        kk = last.k(patches).float().cpu().numpy()
        logits = ops.similarity(kk, qq, normalize=False, scale=float(last.scale / last.num_heads))
        return torch.from_numpy(np.ascontiguousarray(logits)).to(dev, dtype)

    # ------------------------------------------------------------------ text
    def text_embeddings(
        self,
        class_names: Optional[Sequence[str]] = None,
        templates: Optional[Sequence[str]] = None,
    ) -> torch.Tensor:
        """Text embeddings ``[C, D]`` float32 for a vocabulary (cached per ``(names, templates)``)."""
        names = self.config.class_names if class_names is None else list(class_names)
        validate_class_names(names)
        templates = self.config.templates if templates is None else templates
        return self.text_encoder.encode(names, templates)

    # ------------------------------------------------------------------ misc
    def extra_repr(self) -> str:
        c = self.config
        return (
            f"config={c.name!r}, clip={c.clip_model}, image_size={c.image_size}, prompts={c.num_prompt_tokens}, "
            f"fix_double_class_embedding={c.fix_double_class_embedding}"
        )

    def check_finite(self) -> None:
        """Raise ValueError naming the first parameters that hold NaN/inf."""
        bad = [n for n, p in self.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
        if bad:
            raise ValueError(f"model weights contain NaN/inf in {len(bad)} tensors, e.g. {bad[:5]}")


def create_zegclip(
    name: Union[str, os.PathLike, Dict[str, Any], Any] = "zegclip_vitb16_voc_inductive",
    pretrained: Optional[str] = None,
    device: Optional[Union[str, torch.device]] = None,
    **overrides,
) -> ZegCLIP:
    """The ZegCLIP family's factory (registry entry ``"zegclip"``); arguments as in
    :func:`zsseg_rt.models.create_model`."""
    from zsseg_rt.models.zegclip.weights import load_clip_weights

    native_hint = "is a native ZegCLIP checkpoint; use create_model({!r}) or load_native"
    return create_prompted(
        ZegCLIP, load_zegclip_config, load_clip_weights, native_hint, name, pretrained, device, overrides
    )


def create_prompted(model_cls, load_config, load_clip, native_hint: str, name, pretrained, device, overrides):
    """``create_zegclip`` / ``create_cliprc``: a native checkpoint directory is loaded as it is; otherwise the
    model is built from its config and ``load_clip(model, pretrained)`` fills its CLIP towers (``native_hint``
    words the refusal of a native checkpoint given as ``pretrained``). Eval mode, on ``device``."""
    from zsseg_rt.contract.common.convert import CONFIG_FILE, load_native, native_checkpoint_dir

    native = native_checkpoint_dir(name, pretrained)
    if native is not None:
        return load_native(native, device=device, **overrides)
    model = model_cls(load_config(name, **overrides))
    if pretrained is not None:
        pp = Path(os.path.expanduser(str(pretrained)))
        if pp.is_dir() and (pp / CONFIG_FILE).is_file():
            raise ValueError(f"{pp} " + native_hint.format(str(pp)))
        load_clip(model, str(pretrained))
    if device is not None:
        model = model.to(device)
    return model.eval()
