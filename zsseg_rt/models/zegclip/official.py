"""Import of official ZegCLIP (mmcv/mmseg) checkpoints.

Layout (``python_tests/data/reference/zegclip_official_keys.txt``): ``{'meta': ..., 'state_dict': {backbone.*,
text_encoder.*, decode_head.*}, 'optimizer': ...}``. Mapping onto :class:`ZegCLIP`:

* ``backbone.*`` and ``text_encoder.*``: same names.
* ``decode_head.q_proj.*``: same name.
* ``decode_head.decoder_1.layers.{i}.{multihead_attn.{q,k,v,proj},linear1,linear2,norm2,norm3}.*`` ->
  ``decode_head.layers.{i}.*``.
* Never used by the official forward, reported (not loaded): ``decode_head.decoder_1.layers.{i}.self_attn.*``,
  ``...norm1.*``, ``decode_head.loss_decode.criterion.empty_weight``.

The file is read with ``torch.load(weights_only=True)``. mmcv's ``meta``/``optimizer`` normally hold only
dicts, lists, strings, numbers and tensors, which that accepts. If the file holds other pickled objects
(e.g. NumPy scalars in ``meta``), loading is REFUSED with an explanation: arbitrary objects are never
unpickled here. Re-save the trusted file's ``state_dict`` alone (see the error message) and import that.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from zsseg_rt.contract.common.weights import WeightsError, check_finite, fit_problems, shape_mismatches
from zsseg_rt.models.zegclip.config import ZegCLIPConfig, load_zegclip_config

__all__ = [
    "load_official_zegclip",
    "is_zegclip_keys",
    "OfficialImportReport",
    "official_to_native_key",
    "read_official_checkpoint",
]

MARKER = "decode_head.decoder_1."  # only official ZegCLIP checkpoints have this decoder

_LAYER_RE = re.compile(r"^decode_head\.decoder_1\.layers\.(\d+)\.(.+)$")
_UNUSED_LAYER_PARTS = ("self_attn.", "norm1.")
_UNUSED_KEYS = ("decode_head.loss_decode.criterion.empty_weight",)


@dataclass
class OfficialImportReport:
    """What ``load_official_zegclip`` did."""

    source: str
    config_name: str
    config_inferred: bool
    loaded: int
    unused_official: List[str] = field(default_factory=list)  # present in the file, never used officially
    text_encoder_loaded: bool = True
    meta: Dict[str, object] = field(default_factory=dict)  # small, string-only subset of the mmcv meta

    def summary(self) -> str:
        s = (
            f"{self.source}: {self.loaded} tensors loaded into {self.config_name}"
            f"{' (config inferred)' if self.config_inferred else ''}; "
            f"{len(self.unused_official)} official-but-unused tensors skipped"
        )
        if not self.text_encoder_loaded:
            s += "; text encoder NOT in the checkpoint (left as built)"
        return s


def is_zegclip_keys(keys) -> bool:
    """True when checkpoint tensor names are an official ZegCLIP checkpoint's (``decode_head.decoder_1.*``)."""
    return any(k.startswith(MARKER) for k in keys)


def official_to_native_key(key: str) -> Optional[str]:
    """Official state_dict key -> our key; None for keys the official model never uses."""
    if key in _UNUSED_KEYS:
        return None
    m = _LAYER_RE.match(key)
    if m:
        idx, rest = m.groups()
        if rest.startswith(_UNUSED_LAYER_PARTS):
            return None
        return f"decode_head.layers.{idx}.{rest}"
    return key


_RESAVE_HINT = (
    "Arbitrary pickled objects are never loaded. If you trust the file, re-save only its tensors, e.g.\n"
    "  python -c \"import torch; ck = torch.load('IN.pth', map_location='cpu', weights_only=False); "
    "torch.save({'state_dict': ck['state_dict']}, 'OUT.pth')\"\n"
    "and import OUT.pth."
)


def read_official_checkpoint(path: Union[str, Path]) -> Tuple[Dict[str, torch.Tensor], Dict[str, object]]:
    """Return (state_dict, meta) of an official checkpoint, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"official ZegCLIP checkpoint {str(path)!r} not found (the releases are linked from the README of "
            "github.com/ZiqinZhou66/ZegCLIP)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path))), {}
    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(
            f"{path}: refused to load ({type(e).__name__}: {str(e).splitlines()[0][:300]}). "
            "The checkpoint holds objects other than tensors/dicts/lists/strings/numbers. " + _RESAVE_HINT
        ) from e
    if not isinstance(ck, dict):
        raise WeightsError(f"{path}: expected an mmcv checkpoint dict, got {type(ck).__name__}")
    sd = ck.get("state_dict", ck)
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: 'state_dict' is a {type(sd).__name__}, expected a dict of tensors")
    sd = {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    if not sd:
        raise WeightsError(f"{path}: no tensors in the checkpoint's state_dict")
    meta = ck.get("meta", {}) if isinstance(ck.get("meta", {}), dict) else {}
    return sd, meta


def _infer_config(sd: Dict[str, torch.Tensor], meta: Dict[str, object]) -> str:
    if "backbone.prompt_embeddings" not in sd:
        raise WeightsError(
            "cannot infer the config: 'backbone.prompt_embeddings' is missing (not a ZegCLIP checkpoint, or "
            "truncated); pass config=..."
        )
    tokens = int(sd["backbone.prompt_embeddings"].shape[1])
    dataset = {10: "voc", 100: "coco"}.get(tokens)
    if dataset is None:
        raise WeightsError(f"cannot infer the config from {tokens} prompt tokens (10=VOC, 100=COCO); pass config=...")
    seen = {"voc": 15, "coco": 156}[dataset]
    ew = sd.get("decode_head.loss_decode.criterion.empty_weight")
    cfg_text = str(meta.get("config", "")) if isinstance(meta, dict) else ""
    if ew is not None and int(ew.shape[0]) - 1 == seen:
        setting = "inductive"
    elif "self_training=True" in cfg_text.replace(" ", ""):
        setting = "transductive"
    elif ew is not None:
        setting = "fully"
        if not cfg_text:
            warnings.warn(
                "official checkpoint: cannot tell transductive from fully supervised (no meta config); "
                "assuming fully supervised - pass config=... to choose"
            )
    else:
        setting = "inductive"
        warnings.warn("official checkpoint: no loss buffer or meta to infer the setting; assuming inductive")
    return f"zegclip_vitb16_{dataset}_{setting}"


def load_official_zegclip(
    path: Union[str, Path],
    config: Optional[Union[str, ZegCLIPConfig, dict]] = None,
    allow_missing_text_encoder: bool = False,
    device: Optional[Union[str, torch.device]] = None,
    return_report: bool = False,
    **overrides,
):
    """Build a :class:`ZegCLIP` and load an official checkpoint into it.

    Args:
        path: official ``.pth`` (mmcv checkpoint) or a plain state dict in the official key layout.
        config: config name/path/object; None infers one of the bundled ViT-B/16 configs from the prompt count
            (10 VOC / 100 COCO) and the loss buffer / meta config (inductive / transductive / fully).
        allow_missing_text_encoder: accept checkpoints without ``text_encoder.*`` (then use precomputed text
            embeddings or load CLIP text weights separately).
        return_report: also return an :class:`OfficialImportReport`.

    Every tensor the model uses must be present with the right shape; anything else is an error, except the
    official-but-unused tensors, which are listed in the report.
    """
    from zsseg_rt.models.zegclip.model import ZegCLIP

    sd, meta = read_official_checkpoint(path)
    inferred = config is None
    spec = _infer_config(sd, meta) if config is None else config
    cfg = load_zegclip_config(spec, **overrides)
    model = ZegCLIP(cfg)
    model, report = load_mapped_official(
        model,
        sd,
        meta,
        official_to_native_key,
        source=str(path),
        family="official",
        inferred=inferred,
        allow_missing_text_encoder=allow_missing_text_encoder,
        device=device,
        hint="prompt tokens, image size, CLIP model",
    )
    return (model, report) if return_report else model


def load_mapped_official(
    model,
    sd: Dict[str, torch.Tensor],
    meta: Dict,
    to_native_key,
    source: str,
    family: str,
    inferred: bool,
    allow_missing_text_encoder: bool,
    device,
    hint: str,
):
    """Load an official state dict into ``model`` through ``to_native_key`` (official key -> native key, or None
    for tensors the official model never uses). Shared by the ZegCLIP and CLIP-RC importers.

    Every tensor the model uses must be present with the right shape and finite values; anything else raises
    ``WeightsError`` naming the keys. Returns ``(model in eval mode, OfficialImportReport)``.
    """
    cfg = model.config
    target = model.state_dict()
    mapped: Dict[str, torch.Tensor] = {}
    unused: List[str] = []
    unexpected: List[str] = []
    for k, v in sd.items():
        nk = to_native_key(k)
        if nk is None:
            unused.append(k)
        elif nk in target:
            mapped[nk] = v
        else:
            unexpected.append(k)

    missing = [k for k in target if k not in mapped]
    text_keys = [k for k in target if k.startswith("text_encoder.")]
    text_missing = [k for k in missing if k.startswith("text_encoder.")]
    text_loaded = not text_missing
    if allow_missing_text_encoder and text_missing and len(text_missing) == len(text_keys):
        missing = [k for k in missing if not k.startswith("text_encoder.")]
    problems = fit_problems(missing, unexpected, shape_mismatches(mapped, target))
    if problems:
        raise WeightsError(
            f"{source}: {family} checkpoint does not fit {cfg.name}: " + problems + "."
            f" The checkpoint looks truncated or belongs to another configuration ({hint}); "
            "pass the matching config=..."
        )
    check_finite(mapped, source)
    mapped = {k: v.to(target[k].dtype) for k, v in mapped.items()}
    result = model.load_state_dict(mapped, strict=False)
    if result.unexpected_keys:  # pragma: no cover - guarded above
        raise WeightsError(f"unexpected keys after mapping: {result.unexpected_keys[:5]}")
    model.text_encoder.cache.clear()
    if device is not None:
        model = model.to(device)
    model.eval()
    report = OfficialImportReport(
        source=source,
        config_name=cfg.name,
        config_inferred=inferred,
        loaded=len(mapped),
        unused_official=sorted(unused),
        text_encoder_loaded=text_loaded,
        meta={k: v for k, v in meta.items() if isinstance(v, (str, int, float)) and k != "config"},
    )
    model.import_report = report
    return model, report
