"""ZegFormer (Ding et al., CVPR 2022) in plain PyTorch, computing what ``dingjiansw101/ZegFormer`` computes.

Two stages:

1. Class-agnostic proposals: ResNet -> MaskFormer pixel decoder (mask features at stride 4) and a transformer
   decoder over res5 with 100 queries; each query gives a mask (``mask_embed . mask_features``) and a 512-d
   segment embedding (``projection_layer``, L2-normalised) classified by ``100 * cos`` against frozen CLIP text
   embeddings plus a learnable background embedding (``forward``).
2. At test time (``segment``): CLIP's image tower classifies every query's masked crop; the two class
   distributions are fused (``clip_branch.fuse_scores``) and combined with the masks.

CLIP (open_clip ViT-B/16 at 224, OpenAI weights) supplies both text embeddings and the image branch; it is never
trained. Precision (``config.clip_precision``): the official code runs CLIP in fp16 only (its ``clip.load(...,
jit=False)`` builds the model with ``convert_weights`` and never casts back, and its text classifier moves the
tokens to CUDA), so "auto" is fp16 on CUDA (official) and fp32 on the CPU, where the official cannot run (a
named deviation: fp16 matmuls on a CPU are slow and not what any official result used; ``clip_precision="fp16"``
forces the half-precision path there too). In fp16 the towers run on a half-precision copy of their weights
(open_clip's LayerNorm computes in fp32, as OpenAI CLIP's), the template embeddings are normalised, averaged and
normalised in fp16 (official ``zeroshot_classifier``), and the CLIP logits are formed in fp16 and cast to fp32 for
the fusion. Exported bundles run both towers in fp32.
"""

from __future__ import annotations

import contextlib
import math
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from zsseg_rt.contract.common.text import TextEncoder, validate_class_names

from .clip_branch import clip_crops, fuse_scores, semantic_maps
from .config import CLIP_BRANCH_TEMPLATES, ZegFormerConfig, load_zegformer_config
from .modules import MLP, PixelDecoder, QueryDecoder, ResNetTrunk, SinePositionEncoding, c2_xavier_fill

__all__ = ["ZegFormer", "ZeroShotPredictor", "zeroshot_text_embeddings", "ZEGFORMER_NATIVE_FORMAT"]

ZEGFORMER_NATIVE_FORMAT = "zsseg_rt.zegformer.v1"


class ZeroShotPredictor(nn.Module):
    """Official ``TransformerZeroshotPredictor`` (CLIP parts excluded): queries, decoder, mask MLP and the
    cosine classifier with a learnable, unnormalised background embedding ``bg_feature``."""

    def __init__(self, config: ZegFormerConfig, in_channels: int, text_dim: int):
        super().__init__()
        c = config
        self.pe_layer = SinePositionEncoding(c.hidden_dim // 2)
        self.query_embed = nn.Embedding(c.num_queries, c.hidden_dim)
        if in_channels != c.hidden_dim:
            self.input_proj: nn.Module = nn.Conv2d(in_channels, c.hidden_dim, 1)
            c2_xavier_fill(self.input_proj)
        else:
            self.input_proj = nn.Identity()
        self.decoder = QueryDecoder(c.hidden_dim, c.nheads, c.dim_feedforward, c.dec_layers, c.dropout, c.pre_norm)
        self.mask_embed = MLP(c.hidden_dim, c.hidden_dim, c.mask_dim, 3)
        self.projection_layer = nn.Linear(c.hidden_dim, text_dim)
        self.bg_feature = nn.Parameter(torch.empty(1, text_dim))
        nn.init.kaiming_uniform_(self.bg_feature, a=math.sqrt(5))
        self.logit_scale = nn.Parameter(torch.tensor([math.log(1.0 / c.temperature)]), requires_grad=False)

    def forward(self, res5: torch.Tensor, mask_features: torch.Tensor, text: torch.Tensor):
        """``res5 [B,Cin,h,w]``, ``mask_features [B,M,H4,W4]``, ``text [C,D]`` ->
        (``class logits [L,B,Q,C+1]``, ``mask logits [L,B,Q,H4,W4]``) for every decoder layer."""
        pos = self.pe_layer(res5).flatten(2).permute(2, 0, 1)  # [hw,B,hidden]
        src = self.input_proj(res5).flatten(2).permute(2, 0, 1)
        hs = self.decoder(src, pos, self.query_embed.weight)  # [L,B,Q,hidden]
        emb = F.normalize(self.projection_layer(hs), dim=-1, eps=0.0)  # official: x / x.norm()
        scale = self.logit_scale.exp()
        cls = scale * emb @ text.to(emb.dtype).t()
        bg = scale * emb @ self.bg_feature.t()
        logits = torch.cat((cls, bg), -1)
        masks = torch.einsum("lbqc,bchw->lbqhw", self.mask_embed(hs), mask_features)
        return logits, masks


@torch.no_grad()
def zeroshot_text_embeddings(text_encoder: TextEncoder, names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Official ``zeroshot_classifier``: for each class every template x synonym (names split on ``", "``) ->
    normalised CLIP text embeddings -> mean -> normalise, all in the tower's dtype (fp16 in the official CUDA
    setting: ``class_embeddings /= norm``, ``.mean(dim=0)``, ``/= norm()`` on half tensors), then ``.float()``.
    Returns ``[C, D]`` float32."""
    device = text_encoder.positional_embedding.device
    out = []
    for name in names:
        parts = name.split(", ") if ", " in name else [name]
        prompts = [t.format(p) for t in templates for p in parts]
        tokens = text_encoder.tokenize(prompts).to(device)
        emb = text_encoder.encode_tokens(tokens).mean(0)  # rows already L2-normalised, in the tower's dtype
        out.append((emb / emb.norm()).float())
    return torch.stack(out)


class ZegFormer(nn.Module):
    """ZegFormer: mask proposals + zero-shot segment classification + the CLIP image branch at test time."""

    native_format = ZEGFORMER_NATIVE_FORMAT

    def __init__(self, config: Union[ZegFormerConfig, str, dict], device: Optional[Union[str, torch.device]] = None):
        super().__init__()
        from open_clip.tokenizer import SimpleTokenizer

        from zsseg_rt.contract.common.clip import build_clip

        self.config = (config if isinstance(config, ZegFormerConfig) else load_zegformer_config(config)).validate()
        c = self.config
        ctx = torch.device(device) if device is not None else contextlib.nullcontext()
        with ctx:
            clip = build_clip(c)  # type: ignore[arg-type]
            self.clip_visual = clip.visual
            self.clip_logit_scale = clip.logit_scale
            ctx_len = int(clip.positional_embedding.shape[0])
            self.text_encoder = TextEncoder(clip, SimpleTokenizer(context_length=ctx_len))
            self.backbone = ResNetTrunk(c.layers_per_stage, c.stem_channels, c.res2_channels, c.width_per_group)
            channels = [self.backbone.out_channels[k] for k in PixelDecoder.in_features]
            self.pixel_decoder = PixelDecoder(channels, c.conv_dim, c.mask_dim)
            self.predictor = ZeroShotPredictor(c, channels[-1], c.embed_dim)
        self.register_buffer("pixel_mean", torch.tensor(c.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(c.std).view(3, 1, 1), persistent=False)
        self.register_buffer("clip_pixel_mean", torch.tensor(c.clip_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("clip_pixel_std", torch.tensor(c.clip_std).view(3, 1, 1), persistent=False)
        self._text_cache: Dict[tuple, torch.Tensor] = {}
        self._half_towers: Dict[tuple, nn.Module] = {}  # (tower, device) -> fp16 copy; not a submodule
        self.register_load_state_dict_post_hook(lambda module, incompatible: module._clear_caches())
        self.freeze()

    def _clear_caches(self) -> None:
        self._text_cache.clear()
        self._half_towers.clear()

    # ------------------------------------------------------------------ CLIP precision
    def clip_dtype(self, device: Union[str, torch.device, None] = None) -> torch.dtype:
        """The dtype the CLIP towers run in on ``device`` (default: the model's): ``config.clip_precision``."""
        dev = torch.device(device) if device is not None else self.clip_logit_scale.device
        mode = self.config.clip_precision
        if mode == "fp16" or (mode == "auto" and dev.type == "cuda"):
            return torch.float16
        return self.clip_logit_scale.dtype  # float32 (float64 in the export check's float64 twin)

    def _tower(self, name: str, device: torch.device) -> nn.Module:
        """``clip_visual`` / ``text_encoder`` in the precision of :meth:`clip_dtype` (an fp16 copy is made once
        per device and kept until new weights are loaded)."""
        tower = getattr(self, name)
        if self.clip_dtype(device) != torch.float16:
            return tower
        key = (name, str(device))
        if key not in self._half_towers:
            import copy

            self._half_towers[key] = copy.deepcopy(tower).to(device).half().eval()
        return self._half_towers[key]

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def is_clip_weight(name: str) -> bool:
        """True for tensors that come from a CLIP checkpoint (never trained)."""
        return name.startswith(("clip_visual.", "text_encoder.", "clip_logit_scale"))

    def is_trainable_name(self, name: str) -> bool:
        """Official: everything but CLIP and the fixed ``logit_scale`` is trained (frozen BN has no params)."""
        return not self.is_clip_weight(name) and name != "predictor.logit_scale"

    def freeze(self) -> "ZegFormer":
        for n, p in self.named_parameters():
            p.requires_grad_(self.is_trainable_name(n))
        return self

    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def optimizer_param_groups(self, weight_decay: float) -> List[Dict[str, object]]:
        """Official MaskFormer optimizer groups: backbone lr x ``backbone_lr_mult``; no weight decay on norm
        layers (``WEIGHT_DECAY_NORM`` 0) and on the query embedding (``WEIGHT_DECAY_EMBED`` 0)."""
        norm_params = {
            id(p) for m in self.modules() if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) for p in m.parameters()
        }
        groups: List[Dict[str, object]] = []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            no_decay = id(p) in norm_params or name == "predictor.query_embed.weight"
            mult = self.config.backbone_lr_mult if name.startswith("backbone.") else 1.0
            groups.append({"params": [p], "weight_decay": 0.0 if no_decay else weight_decay, "lr_mult": mult})
        return groups

    def build_loss(self):
        """The training criterion (:class:`~zsseg_rt.models.zegformer.losses.ZegFormerLoss`)."""
        from .losses import ZegFormerLoss

        return ZegFormerLoss(len(self.config.seen_classes), self.config.loss, self.config.ignore_index)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip_visual.eval()
        self.text_encoder.eval()
        return self

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def class_names(self) -> List[str]:
        return self.config.class_names

    def seen_mask(self, class_names: Optional[Sequence[str]] = None) -> torch.Tensor:
        """``[C]`` bool: the config's seen classes, matched by name against ``class_names`` (the explicit
        replacement of detectron2's ``val_extra_classes`` metadata)."""
        names = self.config.class_names if class_names is None else list(class_names)
        seen_names = {self.config.class_names[i].strip().lower() for i in self.config.seen_classes}
        return torch.tensor([n.strip().lower() in seen_names for n in names], dtype=torch.bool)

    # ------------------------------------------------------------------ text
    def _text(self, names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        names = validate_class_names(list(names))  # a list item may hold ", "-separated synonyms
        device = self.clip_logit_scale.device
        key = (tuple(names), tuple(templates), self.clip_dtype(device))
        if key not in self._text_cache:
            tower = self._tower("text_encoder", device)
            self._text_cache[key] = zeroshot_text_embeddings(tower, names, templates).float()
        return self._text_cache[key].clone()

    def text_embeddings(self, class_names: Optional[Sequence[str]] = None, templates=None) -> torch.Tensor:
        """Query-classifier text embeddings ``[C, D]`` (``prompt_ensemble`` templates unless given)."""
        names = self.config.class_names if class_names is None else list(class_names)
        return self._text(names, self.config.query_templates if templates is None else list(templates))

    def clip_text_embeddings(self, class_names: Optional[Sequence[str]] = None) -> torch.Tensor:
        """CLIP-branch text embeddings ``[C, D]`` (the 32 official ``IMAGENET_TEMPLATES_SELECT_CLIP``)."""
        names = self.config.class_names if class_names is None else list(class_names)
        return self._text(names, CLIP_BRANCH_TEMPLATES)

    # ------------------------------------------------------------------ network
    def forward(self, images: torch.Tensor, text: torch.Tensor) -> Dict[str, object]:
        """Mask proposals and their class logits.

        Args:
            images: ``[B, 3, H, W]`` normalised with ``config.mean``/``std``.
            text: ``[C, D]`` query-classifier text embeddings (seen classes when training).

        Returns:
            ``pred_logits [B,Q,C+1]``, ``pred_masks [B,Q,H/4,W/4]`` (last decoder layer) and ``aux_outputs``
            (the same for each earlier layer, for deep supervision).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B,3,H,W], got shape {tuple(images.shape)}")
        if text.dim() != 2 or text.shape[1] != self.embed_dim:
            raise ValueError(f"text must be [C,{self.embed_dim}], got shape {tuple(text.shape)}")
        feats = self.backbone(images)
        mask_features = self.pixel_decoder(feats)
        logits, masks = self.predictor(feats["res5"], mask_features, text)
        aux = [{"pred_logits": a, "pred_masks": b} for a, b in zip(logits[:-1], masks[:-1])]
        return {"pred_logits": logits[-1], "pred_masks": masks[-1], "aux_outputs": aux}

    def encode_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """``[N,3,224,224]`` CLIP-normalised crops -> L2-normalised CLIP image embeddings ``[N, D]``, in the dtype
        of :meth:`clip_dtype` (fp16 in the official CUDA setting)."""
        dtype = self.clip_dtype(crops.device)
        tower = self._tower("clip_visual", crops.device)
        return F.normalize(tower(crops.to(dtype)), dim=-1, eps=0.0)

    def pad(self, images: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``[B,3,H,W]`` at the bottom/right to multiples of ``size_divisibility`` (detectron2
        ``ImageList.from_tensors``)."""
        d = self.config.size_divisibility
        h, w = images.shape[-2:]
        return F.pad(images, (0, (-w) % d, 0, (-h) % d))

    @torch.no_grad()
    def segment(
        self,
        images: torch.Tensor,
        class_names: Optional[Sequence[str]] = None,
        seen: Optional[torch.Tensor] = None,
        out_size: Optional[Sequence[int]] = None,
        fusion: Optional[str] = None,
        clip_cls_style: Optional[str] = None,
        calibration_bias: Optional[float] = None,
        text: Optional[torch.Tensor] = None,
        clip_text: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Official test-time inference on images already resized for testing.

        Args:
            images: ``[B, 3, H, W]`` float RGB on the 0-255 scale (not normalised, not padded), on any device:
                moved to the model's (a host batch for a model on CUDA).
            class_names: vocabulary (default: the config's).
            seen: ``[C]`` bool seen-class mask (default: :meth:`seen_mask` by name).
            out_size: ``(height, width)`` of the returned maps (default ``(H, W)``); official
                ``sem_seg_postprocess``: crop the padding, bilinear resize.
            fusion / clip_cls_style / calibration_bias: override the config.
            text / clip_text: precomputed ``[C, D]`` query-classifier / CLIP-branch text embeddings (default:
                computed from ``class_names`` with the CLIP text tower).

        Returns:
            ``[B, C, out_h, out_w]`` class scores (argmax over C gives the labels), on the model's device.
        """
        c = self.config
        names = c.class_names if class_names is None else list(class_names)
        seen = self.seen_mask(names) if seen is None else torch.as_tensor(seen, dtype=torch.bool)
        if seen.shape != (len(names),):
            raise ValueError(f"seen mask must have shape ({len(names)},), got {tuple(seen.shape)}")
        fusion = c.fusion if fusion is None else fusion
        style = c.clip_cls_style if clip_cls_style is None else clip_cls_style
        bias = c.calibration_bias if calibration_bias is None else float(calibration_bias)
        h, w = images.shape[-2:]
        images = images.to(self.pixel_mean.device)
        padded = self.pad((images - self.pixel_mean) / self.pixel_std)
        text = self.text_embeddings(names) if text is None else text
        out = self.forward(padded, text.to(padded))
        masks = F.interpolate(out["pred_masks"], size=padded.shape[-2:], mode="bilinear", align_corners=False)
        clip_logits = None
        if fusion != "none":
            clip_images = self.pad((images - self.clip_pixel_mean) / self.clip_pixel_std)
            crops = clip_crops(clip_images, masks, style, size=c.image_size)
            feats = self.encode_crops(crops).reshape(masks.shape[0], masks.shape[1], -1)
            clip_text = self.clip_text_embeddings(names) if clip_text is None else clip_text
            clip_logits = (self.clip_logit_scale.exp().to(feats) * feats @ clip_text.to(feats).t()).float()
        scores = fuse_scores(out["pred_logits"], clip_logits, seen, fusion, c.ensemble_lambda)
        sem = semantic_maps(scores, masks)[..., :h, :w]
        if out_size is not None and tuple(out_size) != (h, w):
            sem = F.interpolate(sem, size=tuple(int(s) for s in out_size), mode="bilinear", align_corners=False)
        if bias > 0:
            sem = sem - bias * seen.to(sem)[None, :, None, None]
        return sem

    def extra_repr(self) -> str:
        c = self.config
        return f"config={c.name!r}, backbone={c.backbone}, queries={c.num_queries}, fusion={c.fusion}"
