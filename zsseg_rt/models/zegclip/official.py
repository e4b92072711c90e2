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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from zsseg_rt.aliases import resolve_reference
from zsseg_rt.contract.common.official import OfficialImportReport
from zsseg_rt.contract.common.weights import (
    WeightsError,
    load_finite,
    map_keys,
    read_official_state,
    require_fit,
)
from zsseg_rt.models.zegclip.config import load_zegclip_config

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


def read_official_checkpoint(
    path: Union[str, Path], family: str = "ZegCLIP", releases: str = "github.com/ZiqinZhou66/ZegCLIP"
) -> Tuple[Dict[str, torch.Tensor], Dict[str, object]]:
    """Return (state_dict, meta) of an official (mmcv) checkpoint of ``family``, read with ``weights_only=True``."""
    refused = "The checkpoint holds objects other than tensors/dicts/lists/strings/numbers. " + _RESAVE_HINT
    sd, ck = read_official_state(path, family, releases, "an mmcv", ("state_dict",), refused)
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


_IMPORTER_DOC = """{summary}

    Args:
        path: official ``.pth`` (mmcv checkpoint) or a plain state dict in the official key layout.
        config: config name/path/object; None infers one of the bundled ViT-B/16 configs {inference}.
        allow_missing_text_encoder: accept checkpoints without ``text_encoder.*`` (then use precomputed text
            embeddings or load CLIP text weights separately).
        device: where to put the model.
        return_report: also return an :class:`~zsseg_rt.contract.common.official.OfficialImportReport`.
        overrides: config fields to replace.

    Every tensor the model uses must be present with the right shape; anything else is an error, except the
    official-but-unused tensors, which are listed in the report.
    """


@dataclass(frozen=True)
class OfficialLayout:
    """What an mmseg-style official importer of a CLIP model family (ZegCLIP, CLIP-RC) has of its own: the label
    of its checkpoints in messages, the key map (official key -> native key, None for a tensor never used), the
    config inference ``infer_config(sd, meta) -> config name``, the fields named when a checkpoint does not fit,
    its model class (``"module:Class"``, imported when a checkpoint is), its config loader, the family name and
    releases page that :func:`read_official_checkpoint` names, and a check of the tensor names (``check(sd,
    source)``, raising ``WeightsError``) run before anything is built.
    """

    family: str
    to_native_key: Callable[[str], Optional[str]]
    infer_config: Callable[[Dict[str, torch.Tensor], Dict[str, object]], str]
    hint: str
    model_class: str
    load_config: Callable[..., Any]
    checkpoint: Tuple[str, str]
    check: Optional[Callable[[Dict[str, torch.Tensor], str], None]] = None

    def importer(self, name: str, summary: str, inference: str) -> Callable[..., Any]:
        """The family's ``load_official_<name>`` (the registry's importer), documented by ``summary`` and how a
        config is inferred (``inference``): one signature for every family of this layout."""
        layout = self

        def load_official(
            path: Union[str, Path],
            config: Any = None,
            allow_missing_text_encoder: bool = False,
            device: Optional[Union[str, torch.device]] = None,
            return_report: bool = False,
            **overrides: Any,
        ):
            sd, meta = read_official_checkpoint(path, *layout.checkpoint)
            if layout.check is not None:
                layout.check(sd, str(path))
            model, report = layout.load(sd, meta, str(path), config, overrides, allow_missing_text_encoder, device)
            return (model, report) if return_report else model

        load_official.__name__ = load_official.__qualname__ = f"load_official_{name}"
        load_official.__module__ = self.model_class.rpartition(".")[0] + ".official"
        load_official.__doc__ = _IMPORTER_DOC.format(summary=summary, inference=inference)
        return load_official

    def load(
        self,
        sd: Dict[str, torch.Tensor],
        meta: Dict,
        source: str,
        config: Any,
        overrides: Dict[str, Any],
        allow_missing_text_encoder: bool,
        device,
    ):
        """The family's model of ``config`` (None: the one inferred from the checkpoint) with ``sd`` loaded
        through :func:`load_mapped_official`: ``(model, OfficialImportReport)``."""
        model_class = resolve_reference(self.model_class)
        inferred = config is None
        cfg = self.load_config(self.infer_config(sd, meta) if inferred else config, **overrides)
        return load_mapped_official(
            model_class(cfg),
            sd,
            meta,
            self.to_native_key,
            source=source,
            family=self.family,
            inferred=inferred,
            allow_missing_text_encoder=allow_missing_text_encoder,
            device=device,
            hint=self.hint,
        )


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
    mapped, unused, unexpected = map_keys(sd, target, to_native_key)

    missing = [k for k in target if k not in mapped]
    text_keys = [k for k in target if k.startswith("text_encoder.")]
    text_missing = [k for k in missing if k.startswith("text_encoder.")]
    text_loaded = not text_missing
    if allow_missing_text_encoder and text_missing and len(text_missing) == len(text_keys):
        missing = [k for k in missing if not k.startswith("text_encoder.")]
    advice = (
        f"The checkpoint looks truncated or belongs to another configuration ({hint}); pass the matching config=..."
    )
    require_fit(mapped, target, missing, unexpected, f"{source}: {family} checkpoint does not fit {cfg.name}", advice)
    mapped = load_finite(model, mapped, target, source)
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


_OFFICIAL = OfficialLayout(
    "official",
    official_to_native_key,
    _infer_config,
    "prompt tokens, image size, CLIP model",
    "zsseg_rt.models.zegclip.model:ZegCLIP",
    load_zegclip_config,
    ("ZegCLIP", "github.com/ZiqinZhou66/ZegCLIP"),
)
load_official_zegclip = _OFFICIAL.importer(
    "zegclip",
    "Build a :class:`ZegCLIP` and load an official checkpoint into it.",
    "from the prompt count\n            (10 VOC / 100 COCO) and the loss buffer / meta config (inductive / transductive / fully)",
)
