"""Import of official ZegFormer checkpoints (detectron2 ``.pth``: ``{"model": state_dict, ...}``).

Official layout (``python_tests/data/reference/zegformer_official_keys.txt``, derived from the official modules):
``backbone.stem.conv1.*``, ``backbone.res{2..5}.{i}.conv{1,2,3}[.norm].*``, ``backbone.res{s}.0.shortcut[.norm].*``
(detectron2 ResNet, FrozenBN), ``sem_seg_head.pixel_decoder.*``, ``sem_seg_head.predictor.{query_embed,
input_proj, transformer.decoder.*, mask_embed.*, projection_layer, bg_feature, logit_scale}``, optionally
``sem_seg_head.predictor.clip_model.*`` (only when the checkpoint was saved with the CLIP branch on), and the
loss buffer ``criterion.empty_weight`` (not used at inference: reported, not loaded).

Read with ``torch.load(weights_only=True)`` (no arbitrary unpickling). Every tensor the model uses must be
present with the right shape; unknown keys are an error. The released checkpoints hold no CLIP weights (the
official test loads OpenAI CLIP separately): pass ``clip_pretrained`` (open_clip tag ``"openai"`` or a local
file), or ``allow_missing_clip=True`` to leave CLIP as built.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from zsseg_rt.contract.common.official import OfficialImportReport
from zsseg_rt.contract.common.weights import (
    WeightsError,
    load_finite,
    map_keys,
    read_official_state,
    require_fit,
)

from .config import ZegFormerConfig, load_zegformer_config

__all__ = [
    "load_official_zegformer",
    "official_zegformer_to_native_key",
    "is_zegformer_keys",
    "read_detectron2_checkpoint",
    "convert_official_zegformer",
]

_BLOCK_RE = re.compile(r"^backbone\.res([2-5])\.(\d+)\.(conv[123]|shortcut)(\.norm)?\.(\w+)$")
_STEM_RE = re.compile(r"^backbone\.stem\.conv1(\.norm)?\.(\w+)$")
_CLIP_SKIP = ("input_resolution", "context_length", "vocab_size")
_UNUSED = ("criterion.empty_weight",)
MARKER = "sem_seg_head.predictor."


def is_zegformer_keys(keys) -> bool:
    """True when checkpoint keys look like an official ZegFormer (MaskFormer head with the zero-shot predictor)."""
    keys = list(keys)
    return any(k.startswith(MARKER + "bg_feature") or k.startswith(MARKER + "projection_layer") for k in keys)


def official_zegformer_to_native_key(key: str) -> Optional[str]:
    """Official key -> native key; None for tensors that are not used at inference (``criterion.*``, CLIP
    bookkeeping ints); unchanged key (then reported as unexpected) for anything unknown."""
    if key in _UNUSED:
        return None
    m = _STEM_RE.match(key)
    if m:
        return f"backbone.{'bn1' if m.group(1) else 'conv1'}.{m.group(2)}"
    m = _BLOCK_RE.match(key)
    if m:
        stage, idx, conv, norm, leaf = m.groups()
        base = f"backbone.layer{int(stage) - 1}.{idx}"
        if conv == "shortcut":
            return f"{base}.downsample.{1 if norm else 0}.{leaf}"
        return f"{base}.{'bn' + conv[-1] if norm else conv}.{leaf}"
    if key.startswith("sem_seg_head.pixel_decoder."):
        return key[len("sem_seg_head.") :]
    clip = MARKER + "clip_model."
    if key.startswith(clip):
        rest = key[len(clip) :]
        if rest in _CLIP_SKIP:
            return None
        if rest.startswith("visual."):
            return "clip_visual." + rest[len("visual.") :]
        return "clip_logit_scale" if rest == "logit_scale" else "text_encoder." + rest
    if key.startswith(MARKER + "transformer.decoder."):
        return "predictor.decoder." + key[len(MARKER + "transformer.decoder.") :]
    if key.startswith(MARKER):
        return "predictor." + key[len(MARKER) :]
    return key


def read_detectron2_checkpoint(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The tensors of a detectron2 checkpoint (``ck["model"]``, or a plain state dict), ``weights_only=True``; a
    ``.safetensors`` file holds the official-layout state dict itself."""
    refused = (
        "The file holds objects other than tensors/dicts/lists/strings/numbers (or is a detectron2 .pkl). Re-save "
        "only its tensors, e.g. torch.save({'model': ck['model']}, 'OUT.pth') after loading it where you trust it."
    )
    releases = "github.com/dingjiansw101/ZegFormer"
    return read_official_state(path, "ZegFormer", releases, "a detectron2", ("model", "state_dict"), refused)[0]


def infer_config_name(sd: Dict[str, torch.Tensor]) -> str:
    """Bundled config from the keys: ResNet depth from the number of res4 blocks (6 -> R50, 23 -> R101), dataset
    from the loss buffer ``criterion.empty_weight`` (16 = 15 seen VOC classes + 1, 157 = 156 seen COCO-Stuff)."""
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"^backbone\.res4\.(\d+)\.", k))}
    depth = {6: "r50", 23: "r101"}.get(len(blocks))
    ew = sd.get("criterion.empty_weight")
    dataset = {16: "voc", 157: "coco"}.get(int(ew.shape[0]) if ew is not None else -1)
    if depth is None or dataset is None:
        raise WeightsError(
            f"cannot infer the ZegFormer config (res4 blocks {len(blocks)}: 6=R50, 23=R101; criterion.empty_weight "
            f"{None if ew is None else tuple(ew.shape)}: 16=VOC, 157=COCO-Stuff); pass config=..."
        )
    return f"zegformer_{depth}_{dataset}"


def _map(
    sd: Dict[str, torch.Tensor], target: Dict[str, torch.Tensor]
) -> Tuple[Dict[str, torch.Tensor], List[str], List[str]]:
    """:func:`map_keys` with the official key map; the official one-element logit scale takes the model's shape."""
    mapped, unused, unexpected = map_keys(sd, target, official_zegformer_to_native_key)
    scale = mapped.get("clip_logit_scale")
    if scale is not None and scale.numel() == 1:
        mapped["clip_logit_scale"] = scale.reshape(target["clip_logit_scale"].shape)
    return mapped, unused, unexpected


def load_official_zegformer(
    path: Union[str, Path],
    config: Optional[Union[str, ZegFormerConfig, dict]] = None,
    clip_pretrained: Optional[str] = None,
    allow_missing_clip: bool = False,
    device: Optional[Union[str, torch.device]] = None,
    return_report: bool = False,
    **overrides,
):
    """Build a :class:`~zsseg_rt.models.zegformer.model.ZegFormer` and load an official checkpoint into it.

    Args:
        path: official detectron2 ``.pth`` (or a plain state dict in the official key layout).
        config: config spec; None infers ``zegformer_{r50,r101}_{voc,coco}`` from the keys.
        clip_pretrained: CLIP weights (open_clip tag or file) when the checkpoint holds none.
        allow_missing_clip: accept a checkpoint without CLIP weights and no ``clip_pretrained`` (CLIP stays as
            built; for tests or when loading CLIP later).
        device: where to put the model.
        return_report: also return an :class:`~zsseg_rt.contract.common.official.OfficialImportReport`.
        overrides: config fields to replace.
    """
    from .factory import load_clip_weights_zegformer
    from .model import ZegFormer

    sd = read_detectron2_checkpoint(path)
    if not is_zegformer_keys(sd):
        raise WeightsError(
            f"{path} is not an official ZegFormer checkpoint: no '{MARKER}bg_feature' / projection_layer keys "
            "(ZegCLIP / CLIP-RC checkpoints go through load_official_zegclip / load_official_cliprc; `zsseg convert` "
            "detects the family by itself)"
        )
    inferred = config is None
    cfg = load_zegformer_config(infer_config_name(sd) if inferred else config, **overrides)
    model = ZegFormer(cfg)
    target = model.state_dict()
    mapped, unused, unexpected = _map(sd, target)
    clip_in_file = any(model.is_clip_weight(k) for k in mapped)
    missing = [k for k in target if k not in mapped and (clip_in_file or not model.is_clip_weight(k))]
    require_fit(
        mapped,
        target,
        missing,
        unexpected,
        f"{path}: official ZegFormer checkpoint does not fit {cfg.name}",
        "The checkpoint is truncated or belongs to another configuration (backbone depth, widths, queries); "
        "pass the matching config=...",
    )
    if not clip_in_file and clip_pretrained is None and not allow_missing_clip:
        raise WeightsError(
            f"{path} holds no CLIP weights (the official test loads OpenAI CLIP ViT-B/16 separately): pass "
            "clip_pretrained='openai' (download) or a local CLIP file (`zsseg convert --clip-pretrained PATH`), or "
            "allow_missing_clip=True to keep CLIP as built"
        )
    load_finite(model, mapped, target, str(path))
    if not clip_in_file and clip_pretrained is not None:
        load_clip_weights_zegformer(model, clip_pretrained)
    model._text_cache.clear()
    if device is not None:
        model = model.to(device)
    model.eval()
    report = OfficialImportReport(
        source=str(path),
        config_name=cfg.name,
        config_inferred=inferred,
        loaded=len(mapped),
        unused_official=sorted(unused),
        text_encoder_loaded=clip_in_file or clip_pretrained is not None,
    )
    model.import_report = report
    return (model, report) if return_report else model


def convert_official_zegformer(
    src,
    dst_dir,
    config=None,
    overwrite: bool = False,
    allow_missing_text_encoder: bool = False,
    clip_pretrained: Optional[str] = None,
) -> Path:
    """Official ZegFormer checkpoint -> native checkpoint directory (``model.safetensors`` + ``config.json``), the
    family converter's signature (``zsseg convert``). ``clip_pretrained``: CLIP weights (the checkpoints hold none);
    ``allow_missing_text_encoder``: accept that none are given (CLIP stays as built)."""
    from zsseg_rt.contract.common.convert import save_imported

    model, report = load_official_zegformer(
        src,
        config=config,
        clip_pretrained=clip_pretrained,
        allow_missing_clip=allow_missing_text_encoder,
        return_report=True,
    )
    return save_imported(model, report, src, dst_dir, overwrite)
