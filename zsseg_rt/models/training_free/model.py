"""Training-free open-vocabulary segmentation on stock CLIP weights: MaskCLIP, SCLIP, ClearCLIP, NACLIP, SC-CLIP.

SC-CLIP also repairs anomaly tokens and uses intermediate layers: ``scclip.py``. The other four methods change
only the last transformer block of the CLIP image tower (``DenseLastBlock``); every
other weight is the stock CLIP checkpoint. With ``x`` the input of the last block, ``y = ln_1(x)``,
``q, k, v = in_proj(y)`` split into heads, ``s = head_dim ** -0.5``:

* ``identity`` (MaskCLIP):   ``a = v``
* ``qq+kk``    (SCLIP):      ``a = (softmax(q q^T s) + softmax(k k^T s)) v``
* ``qq``       (ClearCLIP):  ``a = softmax(q q^T s) v``
* ``kk``       (NACLIP):     ``a = softmax(k k^T s + Omega) v``, ``Omega[i, j] = exp(-|p_i - p_j|^2 / (2 std^2))``
  between patch positions ``p`` (0 on the CLS row/column); without ``gaussian_std`` plain ``softmax(k k^T s)``.

then ``o = out_proj(a)``, ``x' = x + o`` if ``residual`` else ``o``, and ``x' += mlp(ln_2(x'))`` if ``ffn``.
Dense patch features are ``normalize(ln_post(x'_patches) @ proj)``; mask logits are
``logit_scale * <patch, normalize(text)>`` (``[B, C, h, w]``), one class independent of the others.
Post-processing (``zsseg_rt.pipeline.Postprocessor``, softmax): average window logits, resize to the image,
optional PAMR, softmax over classes, optional area filter, argmax; optional background threshold (max probability
below it -> class 0).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple, Union, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from zsseg_rt.bundle import Names
from zsseg_rt.contract.common.clip import build_clip, make_tokenizer
from zsseg_rt.contract.common.text import TextEncoder, validate_class_names
from zsseg_rt.contract.common.tracing import mha_fastpath_off_when_tracing
from zsseg_rt.models.training_free.config import (
    ATTENTION_MODES,
    FAMILY,
    METHODS,
    TOWERS,
    TrainingFreeConfig,
    load_training_free_config,
)
from zsseg_rt.models.training_free.evaluate import (
    default_inference,
    official_test_scales,
    vocabulary_inference,
    vocabulary_settings,
)
from zsseg_rt.models.training_free.grid import gaussian_neighbourhood_bias, neighbourhood_bias, positional_for_grid
from zsseg_rt.models.training_free.scclip import scclip_encode

__all__ = [
    "ATTENTION",
    "AttentionMode",
    "DenseLastBlock",
    "TrainingFreeSegmenter",
    "apply_image_tower",
    "gaussian_neighbourhood_bias",
    "load_stock_clip_weights",
    "create_training_free_model",
]


def apply_image_tower(visual: nn.Module, tower: str) -> nn.Module:
    """Give an open_clip ViT image tower the activation and LayerNorm eps of ``tower`` (``TOWERS``), in place.

    ``"open_clip"`` leaves it as built. ``"mmseg"`` (MaskCLIP's mmseg VisionTransformer) puts exact (erf) GELU in
    every block's FFN and eps 1e-6 in every LayerNorm of the tower: ``ln_pre``, each block's ``ln_1``/``ln_2`` and
    ``ln_post`` (mmseg's ``ln0``, ``layers.i.ln1``/``ln2`` and ``ln1``), the only LayerNorms it has; the weights and
    everything else are unchanged. Raises ValueError for a tower with other LayerNorms or activations.
    """
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {sorted(TOWERS)}, got {tower!r}")
    spec = TOWERS[tower]
    if spec["activation"] is None:
        return visual
    blocks = list(cast(nn.ModuleList, cast(nn.Module, visual.transformer).resblocks))
    expected = {"ln_pre", "ln_post"} | {
        f"transformer.resblocks.{i}.{n}" for i in range(len(blocks)) for n in ("ln_1", "ln_2")
    }
    norms = {name: m for name, m in visual.named_modules() if isinstance(m, nn.LayerNorm)}
    if set(norms) != expected:
        raise ValueError(
            f"tower {tower!r} expects a plain CLIP ViT (LayerNorms ln_pre, ln_1/ln_2 per block, ln_post); this one "
            f"has {sorted(set(norms) ^ expected)[:4]} differently"
        )
    for blk in blocks:
        mlp = getattr(blk, "mlp", None)
        if not isinstance(mlp, nn.Sequential) or not hasattr(mlp, "gelu"):
            raise ValueError(f"tower {tower!r} expects open_clip blocks with an mlp.gelu activation")
        mlp.gelu = nn.GELU(approximate="none") if spec["activation"] == "gelu" else mlp.gelu
    for m in norms.values():
        m.eps = float(spec["layer_norm_eps"])
    return visual


def block_qkv(block: nn.Module, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``q, k, v [B, heads, L, head_dim]`` of an open_clip block's packed ``in_proj`` on ``y [B, L, W]`` (shapes
    from the input, so a traced graph takes any token count)."""
    attn = block.attn
    if not isinstance(attn, nn.MultiheadAttention) or not attn._qkv_same_embed_dim:
        raise TypeError("the training-free blocks need open_clip blocks with nn.MultiheadAttention (packed in_proj)")
    attn = cast(nn.MultiheadAttention, attn)
    heads = int(attn.num_heads)
    head_dim = int(attn.embed_dim) // heads
    qkv = F.linear(y, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = (t.reshape(y.shape[0], -1, heads, head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    return q, k, v


def clip_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An unmodified open_clip ``ResidualAttentionBlock`` (pre-norm attention and MLP, each with its residual) on
    ``x [B, L, W]`` (batch first): what ``block(x)`` computes, written with ``scaled_dot_product_attention`` and
    shapes from the input (``nn.MultiheadAttention`` traces the token count into its reshapes)."""
    q, k, v = block_qkv(block, block.ln_1(x))
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
    attn = cast(nn.MultiheadAttention, block.attn)
    x = x + block.ls_1(F.linear(out, attn.out_proj.weight, attn.out_proj.bias))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _attend_identity(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias) -> torch.Tensor:
    return v  # MaskCLIP: out_proj(v)


def _attend_qq_kk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias) -> torch.Tensor:
    return (  # SCLIP: correlative self-attention
        torch.softmax((q @ q.transpose(-2, -1)) * scale, dim=-1)
        + torch.softmax((k @ k.transpose(-2, -1)) * scale, dim=-1)
    ) @ v


def _attend_qq(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias) -> torch.Tensor:
    return torch.softmax((q @ q.transpose(-2, -1)) * scale, dim=-1) @ v  # ClearCLIP


def _attend_kk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias) -> torch.Tensor:
    logits = (k @ k.transpose(-2, -1)) * scale  # NACLIP, with its Gaussian neighbourhood bias when given
    return torch.softmax(logits if bias is None else logits + bias, dim=-1) @ v


@dataclass(frozen=True)
class AttentionMode:
    """What a method does to the image tower, one row per ``ATTENTION_MODES`` entry: either the last block's
    attention over ``q, k, v [B, heads, L, head_dim]`` (``attend(q, k, v, scale, bias)``), or, for a method that
    rewrites the encoder's last layers (SC-CLIP's anomaly repair and intermediate layers), the whole encoder
    (``encode(blocks, x, grid, settings, batch_first)``) with its settings from ``settings(config)``."""

    attend: Optional[Callable[..., torch.Tensor]] = None
    encode: Optional[Callable[..., torch.Tensor]] = None
    settings: Optional[Callable[[TrainingFreeConfig], object]] = None
    takes_bias: bool = False  # NACLIP's Gaussian neighbourhood bias (config ``gaussian_std``)


# The one table of attention modes: the model, the config's validation and the docs read it (keys: ATTENTION_MODES)
ATTENTION: Dict[str, AttentionMode] = {
    "identity": AttentionMode(attend=_attend_identity),
    "qq+kk": AttentionMode(attend=_attend_qq_kk),
    "qq": AttentionMode(attend=_attend_qq),
    "kk": AttentionMode(attend=_attend_kk, takes_bias=True),
    "scclip": AttentionMode(encode=scclip_encode, settings=TrainingFreeConfig.scclip_settings),
}
if tuple(ATTENTION) != tuple(ATTENTION_MODES):  # an import-time error, not a silent missing mode
    raise RuntimeError(f"ATTENTION {tuple(ATTENTION)} must have one row per ATTENTION_MODES {ATTENTION_MODES}")


class DenseLastBlock(nn.Module):
    """The switchable last block (no parameters of its own: it runs a stock open_clip ``ResidualAttentionBlock``).

    Args:
        attention: a last-block mode of ``ATTENTION`` (``"identity" | "qq+kk" | "qq" | "kk"``).
        residual: keep the attention residual connection.
        ffn: keep the MLP (with its residual).
        gaussian_std: NACLIP's neighbourhood bias std (only with a mode that takes a bias: ``"kk"``), or None.
    """

    def __init__(self, attention: str, residual: bool, ffn: bool, gaussian_std: Optional[float] = None):
        super().__init__()
        modes = [name for name, mode in ATTENTION.items() if mode.attend is not None]
        if attention not in modes:
            raise ValueError(f"attention must be one of {' | '.join(modes)}, got {attention!r}")
        if gaussian_std is not None and not ATTENTION[attention].takes_bias:
            raise ValueError(f"gaussian_std is NACLIP's bias for 'kk' attention, not for {attention!r}")
        self.attention = attention
        self._attend = cast(Callable[..., torch.Tensor], ATTENTION[attention].attend)
        self.residual = bool(residual)
        self.ffn = bool(ffn)
        self.gaussian_std = None if gaussian_std is None else float(gaussian_std)

    def extra_repr(self) -> str:
        return (
            f"attention={self.attention!r}, residual={self.residual}, ffn={self.ffn}, gaussian_std={self.gaussian_std}"
        )

    def forward(self, block: nn.Module, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """``x [B, L, W]`` (batch first, CLS first, patches last in row-major ``grid``) -> ``[B, L, W]``."""
        attn = cast(nn.MultiheadAttention, block.attn)
        q, k, v = block_qkv(block, block.ln_1(x))
        scale = int(attn.head_dim) ** -0.5
        bias = None
        if self.gaussian_std is not None:  # computed from the grid (a traced graph: from its input's size)
            bias = neighbourhood_bias(grid[0], grid[1], self.gaussian_std, dtype=q.dtype, device=q.device)
        out = self._attend(q, k, v, scale, bias)
        out = out.transpose(1, 2).flatten(2)
        out = block.ls_1(F.linear(out, attn.out_proj.weight, attn.out_proj.bias))
        x = x + out if self.residual else out
        if self.ffn:
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        return x


class TrainingFreeSegmenter(nn.Module):
    """Stock CLIP + a dense last block: ``forward(images [B,3,H,W], text [C,D]) -> logits [B,C,H/p,W/p]``.

    Bundle hooks (``zsseg_rt.export.graphs``): the image graph outputs ``patch_grid [B,h,w,D]`` (L2-normalised; an
    image of any size: ``export_whole_image``; SC-CLIP's fixed-size graph ``patches [B,N,D]``), the head graph the
    scaled cosine logits; ``export_postprocess`` selects softmax post-processing in the Engine.
    """

    family = FAMILY

    def __init__(self, config: Union[TrainingFreeConfig, str, dict], device: Optional[Union[str, torch.device]] = None):
        super().__init__()
        if not isinstance(config, TrainingFreeConfig):
            config = load_training_free_config(config)
        self.config = config.validate()
        ctx = torch.device(device) if device is not None else contextlib.nullcontext()
        with ctx:
            clip = build_clip(config)
        visual = clip.visual
        if not hasattr(visual, "conv1") or getattr(visual, "attn_pool", None) is not None:
            raise ValueError(f"{config.clip_model}: only plain open_clip ViT image towers are supported")
        if getattr(visual, "pool_type", "tok") != "tok" or getattr(visual, "final_ln_after_pool", False):
            raise ValueError(f"{config.clip_model}: needs a CLS-token ViT with ln_post on all tokens")
        self.visual = apply_image_tower(cast(nn.Module, visual), config.resolved("tower"))
        self.text_encoder = TextEncoder(clip, make_tokenizer(config, int(clip.positional_embedding.shape[0])))
        mode = ATTENTION[config.resolved("attention")]
        self.encoder_mode = mode  # its row of ATTENTION: an encoder of its own (SC-CLIP) or a last-block attention
        self.scclip = mode.settings(config) if mode.settings is not None else None
        self.dense_block = None
        if mode.encode is None:
            self.dense_block = DenseLastBlock(
                config.resolved("attention"),
                config.resolved("residual"),
                config.resolved("ffn"),
                config.resolved("gaussian_std"),
            )
        self.use_native_ops = False
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    # ------------------------------------------------------------------ properties
    @property
    def patch_size(self) -> Tuple[int, int]:
        k = self.visual.conv1.kernel_size
        return int(k[0]), int(k[1])

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def grid(self) -> Tuple[int, int]:
        """The patch grid of one window (``image_size / patch``)."""
        g = int(self.config.image_size) // self.patch_size[0]
        return g, g

    @property
    def logit_scale(self) -> float:
        return float(self.config.logit_scale)

    @property
    def class_names(self):
        return self.config.class_names

    @property
    def export_postprocess(self) -> Dict[str, object]:
        """Recorded in meta.json: softmax over classes of the head's (already scaled) logits."""
        c = self.config
        return {
            "activation": "softmax",
            "logit_scale": float(c.logit_scale),
            "logit_scale_in_head": True,
            "background_threshold": None if c.background_threshold is None else float(c.background_threshold),
            "area_threshold": None if c.area_threshold is None else float(c.area_threshold),
            "short_side": int(c.short_side),
            "method": c.method,
            "pamr_iterations": int(c.pamr_iterations),
            "pamr_dilations": [int(d) for d in c.pamr_dilations],
            "vocabulary_settings": vocabulary_settings(c.method),  # official settings per named vocabulary
        }

    @property
    def export_whole_image(self) -> Optional[Dict[str, object]]:
        """meta.json's ``whole_image`` section (the image graph then takes any height and width): how a rescaled
        image is fitted to the patch grid (``fit``) and its logits resized (``logits_to``), the largest graph input
        sides (``max_side``, ``max_short_side``: the official test scales, patch multiples), the inference the Engine
        runs by default and per named vocabulary (the official modes), and the encoder's working memory per token
        and per token pair; None for SC-CLIP (a fixed-size image graph)."""
        c = self.config
        if not c.whole_image_capable:
            return None
        method = METHODS[c.method]
        p = self.patch_size[0]
        scales = (
            [tuple(c.whole_max_size)] if c.whole_max_size else [*official_test_scales(c.method), tuple(c.test_scale)]
        )
        long, short = max(s[0] for s in scales), max(s[1] for s in scales)
        fit = str(method["whole_fit"])
        side = (lambda v: -(-v // p) * p) if fit == "pad" else (lambda v: max(p, v // p * p))
        blocks = cast(nn.ModuleList, cast(nn.Module, self.visual.transformer).resblocks)
        attn = cast(nn.MultiheadAttention, cast(nn.Module, blocks[0]).attn)
        width, heads = int(cast(nn.Conv2d, self.visual.conv1).out_channels), int(attn.num_heads)
        return {
            "fit": fit,
            "logits_to": str(method["whole_logits"]),
            "max_side": side(long),
            "max_short_side": side(short),
            "default": c.inference or default_inference(c.method),
            "vocabularies": vocabulary_inference(c.method),
            # ~18 activations of width W live per token in a block; two [heads, L, L] attention maps (+ NACLIP's bias)
            "encoder_bytes_per_token": 4 * 18 * width,
            "encoder_bytes_per_token_pair": 4 * (2 * heads + 2),
        }

    @property
    def export_image_outputs(self) -> Tuple[str, ...]:
        """``patch_grid [B, h, w, D]`` for an image graph of any size, ``patches [B, N, D]`` for SC-CLIP's."""
        return (Names.PATCH_GRID,) if self.config.whole_image_capable else (Names.PATCHES,)

    @staticmethod
    def is_trainable_name(name: str) -> bool:
        return False

    def class_bias(self, num_classes: Optional[int] = None, seen=None) -> np.ndarray:
        """No calibration in training-free models (ZegCLIP's -0.1 never applies): zeros ``[C]``."""
        return np.zeros(len(self.config.class_names) if num_classes is None else num_classes, dtype=np.float32)

    # ------------------------------------------------------------------ image side
    def check_images(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a float tensor [B,3,H,W], got {getattr(images, 'shape', type(images))}")
        if not images.is_floating_point():
            raise TypeError(f"images must be normalised floating point, got {images.dtype}")
        ph, pw = self.patch_size
        h, w = int(images.shape[2]), int(images.shape[3])
        if h < ph or w < pw or h % ph or w % pw:
            raise ValueError(f"image size {h}x{w} is not a positive multiple of the patch size {ph}x{pw}")

    def _positional(self, h, w) -> torch.Tensor:
        """The stored positional table for an ``h x w`` grid (resized per call, as the official code: the sizes may
        be traced ones, so an exported graph does it for every input size)."""
        pos = cast(torch.Tensor, self.visual.positional_embedding)
        return positional_for_grid(pos, h, w, self.config.resolved("pos_resize"))

    def encode_image(self, images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """``images [B,3,H,W]`` -> (``patches [B, h*w, D]`` L2-normalised, ``(h, w)``)."""
        if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
            self.check_images(images)
        v = self.visual
        x = v.conv1(images)
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).reshape(1, 1, c).expand(b, 1, c)
        x = torch.cat([cls, x], dim=1) + self._positional(h, w).to(x.dtype).unsqueeze(0)
        x = v.ln_pre(x)
        blocks = v.transformer.resblocks
        batch_first = bool(getattr(v.transformer, "batch_first", True))
        with mha_fastpath_off_when_tracing():
            if self.encoder_mode.encode is not None:
                x = self.encoder_mode.encode(blocks, x, (h, w), self.scclip, batch_first)
                return F.normalize(v.ln_post(x) @ v.proj, dim=-1), (h, w)
            for blk in blocks[:-1]:
                x = clip_block(blk, x)
        assert self.dense_block is not None
        x = self.dense_block(blocks[-1], x, (h, w))
        x = v.ln_post(x[:, -(h * w) :]) @ v.proj
        return F.normalize(x, dim=-1), (h, w)

    def export_encode_image(self, image: torch.Tensor) -> Tuple[torch.Tensor]:
        """The image graph's output: ``patch_grid [B, h, w, D]`` (``patches [B, N, D]`` for SC-CLIP)."""
        patches, (h, w) = self.encode_image(image)
        if self.config.whole_image_capable:
            return (patches.reshape(patches.shape[0], h, w, patches.shape[-1]),)
        return (patches,)

    # ------------------------------------------------------------------ head
    def decode(self, text: torch.Tensor, patches: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """``logit_scale * cos(patch, text)``: text ``[C,D]`` (normalised here), patches ``[B,N,D]`` ->
        ``[B,C,h,w]``."""
        text = F.normalize(text.to(patches.dtype), dim=-1)
        patches = F.normalize(patches, dim=-1)
        logits = torch.einsum("bnd,cd->bcn", patches, text) * self.logit_scale
        return logits.reshape(logits.shape[0], logits.shape[1], grid[0], grid[1])

    def export_decode(self, text: torch.Tensor, patches: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """The head graph: ``patch_grid [B, h, w, D]`` (its own grid) or ``patches [B, N, D]`` (on ``grid``)."""
        if patches.dim() == 4:
            return self.decode(text, patches.flatten(1, 2), (patches.shape[1], patches.shape[2]))
        return self.decode(text, patches, grid)

    @torch.no_grad()
    def decode_native(self, text: torch.Tensor, patches: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """Same as ``decode`` with the native ``similarity`` op (CPU NumPy; normalise + scale inside the op)."""
        from zsseg_rt import ops

        p = np.ascontiguousarray(patches.detach().float().cpu().numpy())
        t = np.ascontiguousarray(text.detach().float().cpu().numpy())
        logits = ops.similarity(p, t, normalize=True, scale=self.logit_scale)
        out = torch.from_numpy(np.ascontiguousarray(logits)).to(patches.device, patches.dtype)
        return out.reshape(out.shape[0], out.shape[1], int(grid[0]), int(grid[1]))

    def check_text(self, text: torch.Tensor) -> None:
        if not isinstance(text, torch.Tensor) or text.dim() != 2 or text.shape[0] == 0:
            raise ValueError(f"text must be a tensor [C, D] with C >= 1, got {getattr(text, 'shape', type(text))}")
        if text.shape[1] != self.embed_dim:
            raise ValueError(f"text embedding width {text.shape[1]} != model embed_dim {self.embed_dim}")

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        self.check_text(text)
        patches, grid = self.encode_image(images)
        if self.use_native_ops:
            return self.decode_native(text, patches, grid)
        return self.decode(text, patches, grid)

    # ------------------------------------------------------------------ text
    def text_embeddings(
        self, class_names: Optional[Sequence[str]] = None, templates: Optional[Sequence[str]] = None
    ) -> torch.Tensor:
        """Prompt-ensembled text embeddings ``[C, D]`` float32 (cached per ``(names, templates)``)."""
        names = list(self.config.class_names if class_names is None else class_names)
        validate_class_names(names)
        return self.text_encoder.encode(names, self.config.templates if templates is None else templates)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"config={c.name!r}, method={c.method}, clip={c.clip_model}, image_size={c.image_size}, "
            f"tower={c.resolved('tower')}"
        )


# ---------------------------------------------------------------------------------------------------- weights
def load_stock_clip_weights(
    model: TrainingFreeSegmenter, pretrained: str, image_weights: Optional[str] = None
) -> Dict[str, object]:
    """Load stock CLIP weights (open_clip tag, OpenAI JIT archive, open_clip state dict or safetensors; see
    ``weights.py``) into ``model``. The positional table is kept at its stored grid (the forward resizes it to each
    input's grid, the method's way).

    ``image_weights``: a file of MaskCLIP's ``convert_clip_weights.py`` (``ViT16_clip_backbone.pth`` or
    ``ViT16_clip_weights.pth``, :mod:`.weights`); its image-tower tensors replace those of ``pretrained``, which
    still gives the text tower (and the projection, which the ``--backbone`` file lacks). A converted file given as
    ``pretrained`` is refused with that advice: it holds no text tower.
    """
    from zsseg_rt.contract.common.weights import (
        CLIP_UNUSED,
        HOW_TO_GET_WEIGHTS,
        WeightsError,
        describe_keys,
        load_finite,
        normalise_clip_keys,
        read_state_dict,
        require_fit,
        resolve_pretrained,
    )

    path, tag_cfg = resolve_pretrained(pretrained, model.config.clip_model)
    if tag_cfg is not None and bool(tag_cfg.get("quick_gelu", False)) != bool(model.config.quick_gelu):
        warnings.warn(
            f"open_clip tag {pretrained!r} expects quick_gelu={bool(tag_cfg.get('quick_gelu', False))} but "
            f"the config says quick_gelu={model.config.quick_gelu}; pass quick_gelu= to create_model"
        )
    from zsseg_rt.models.training_free.weights import (
        is_maskclip_converted,
        maskclip_to_openai_keys,
        read_maskclip_converted,
    )

    try:
        raw = dict(read_state_dict(path))
    except WeightsError:
        raw = {}
        try:  # the --backbone-less converted file ({"proj": ..., "clip": ...}) is not a flat state dict
            raw = read_maskclip_converted(path)
        except (WeightsError, OSError):
            pass
        if not raw:
            raise
    if is_maskclip_converted(raw):
        raise WeightsError(
            f"{path}: MaskCLIP's converted image tower (tools/maskclip_utils/convert_clip_weights.py) holds no text "
            "tower; give the stock CLIP weights as pretrained and this file as image_weights="
        )
    sd = normalise_clip_keys(raw)
    image_source = None
    if image_weights is not None:
        image_source = str(image_weights)
        converted = maskclip_to_openai_keys(read_maskclip_converted(image_source))
        stock = {k: sd[k] for k in converted if k in sd}
        bad = [
            f"{k}: {tuple(v.shape)} vs {tuple(stock[k].shape)}"
            for k, v in converted.items()
            if k in stock and k != "visual.positional_embedding" and v.shape != stock[k].shape
        ]
        if bad:
            raise WeightsError(
                f"{image_source}: image weights do not fit {path}: {describe_keys('shape-mismatched', bad, first=3)}"
            )
        sd.update(converted)
    target = model.state_dict()
    out, unexpected = {}, []
    for k, v in sd.items():
        if k in CLIP_UNUSED:
            continue
        nk = k if k.startswith("visual.") else "text_encoder." + k
        if nk in target:
            out[nk] = v
        else:
            unexpected.append(k)
    pk = "visual.positional_embedding"
    resizable = pk in out and out[pk].dim() == 2 and out[pk].shape[1] == target[pk].shape[1]
    if resizable and out[pk].shape != target[pk].shape:
        # kept as stored (the official code resizes it to each input's grid in the forward: ``_positional``)
        g = int(round(math.sqrt(out[pk].shape[0] - 1)))
        if g * g != out[pk].shape[0] - 1:
            raise WeightsError(f"{path}: positional table of {out[pk].shape[0] - 1} patch rows is not a square grid")
        table = torch.zeros(tuple(out[pk].shape), dtype=target[pk].dtype, device=target[pk].device)
        model.visual.positional_embedding = nn.Parameter(table, requires_grad=False)
        target = model.state_dict()
    missing = [k.replace("text_encoder.", "") for k in target if k not in out]  # named as in CLIP's files
    what = f"{path}: CLIP weights do not fit {model.config.clip_model!r} ({model.config.name})"
    require_fit(out, target, missing, unexpected, what, HOW_TO_GET_WEIGHTS)
    load_finite(model, out, target, str(path))
    model.text_encoder.cache.clear()
    report: Dict[str, object] = {"source": str(path), "loaded": len(out)}
    if image_source is not None:
        report["image_weights"] = image_source
    return report


def create_training_free_model(
    name: Union[str, os.PathLike, TrainingFreeConfig, dict] = "sclip_vitb16",
    pretrained: Optional[str] = None,
    device: Optional[Union[str, torch.device]] = None,
    image_weights: Optional[str] = None,
    **overrides,
) -> TrainingFreeSegmenter:
    """Build a training-free segmenter (eval mode, all weights frozen).

    Args:
        name: ``"maskclip-vitb16" | "sclip-vitb16" | "clearclip-vitb16" | "naclip-vitb16" | "scclip-vitb16"``
            (or ``_``), a config
            JSON path with ``"family": "training_free"``, a dict or a ``TrainingFreeConfig``.
        pretrained: stock CLIP weights: an open_clip tag (``"openai"``, needs network) or a local file (OpenAI
            JIT archive, open_clip state dict, safetensors). None leaves random weights (tests only).
        image_weights: MaskCLIP's converted image tower (``convert_clip_weights.py`` output) replacing the image
            tensors of ``pretrained`` (:func:`load_stock_clip_weights`); needs ``pretrained``.
        overrides: config fields, e.g. ``logit_scale=65, background_threshold=0.1, method="naclip"``.
    """
    if isinstance(name, Path):
        name = str(name)
    config = load_training_free_config(name, **overrides)
    model = TrainingFreeSegmenter(config)
    if image_weights is not None and pretrained is None:
        raise ValueError(
            "image_weights (MaskCLIP's converted image tower) needs pretrained= as well: the stock CLIP weights "
            "give the text tower"
        )
    if pretrained is not None:
        load_stock_clip_weights(model, str(pretrained), image_weights=image_weights)
    if device is not None:
        model = model.to(device)
    return model.eval()
