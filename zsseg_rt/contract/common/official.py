"""Official checkpoints of any family: which family a checkpoint belongs to (from its tensor names, asked of every
registered family), importing it, and converting it to a native checkpoint (``zsseg convert``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

__all__ = [
    "OfficialImportReport",
    "checkpoint_keys",
    "family_of_keys",
    "official_checkpoint_family",
    "load_official_any",
    "convert_official",
]


@dataclass
class OfficialImportReport:
    """What an official checkpoint import did (every family's ``load_official_*`` returns one)."""

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


def checkpoint_keys(path: Union[str, os.PathLike]) -> Optional[List[str]]:
    """Tensor names of a checkpoint without reading every tensor (memory-mapped ``torch.load(weights_only=True)``;
    safetensors headers), ``module.`` prefixes removed; mmcv (``state_dict``) and detectron2 (``model``) layouts.
    None when the file is missing or unreadable."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return [str(k) for k in f.keys()]
        try:
            ck = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # not a zip archive (legacy format): plain read
            ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        return None
    sd = ck.get("state_dict", ck.get("model", ck)) if isinstance(ck, dict) else {}  # mmcv / detectron2
    keys = [str(k) for k in sd] if isinstance(sd, dict) else []
    return [k[len("module.") :] if k.startswith("module.") else k for k in keys]


def family_of_keys(keys: Iterable[str]) -> Optional[str]:
    """The registered family whose official checkpoints have these tensor names, or None."""
    from zsseg_rt.contract.registry import official_family

    family = official_family(keys)
    return None if family is None else family.name


def official_checkpoint_family(path: Union[str, os.PathLike]) -> Optional[str]:
    """The family of an official checkpoint file, from its keys (None when no family claims it, or unreadable)."""
    keys = checkpoint_keys(path)
    return None if keys is None else family_of_keys(keys)


def _family_for(path: Union[str, os.PathLike]) -> Any:
    from zsseg_rt.contract.registry import default_family, get_family

    name = official_checkpoint_family(path)
    return get_family(name) if name is not None else default_family()  # its importer explains what is wrong


def load_official_any(path: Union[str, os.PathLike], config: Any = None, **kwargs: Any) -> Any:
    """Import an official checkpoint of any family, choosing the importer from the keys (``zsseg export
    --official``). ``return_report=True`` also returns the import report."""
    return _family_for(path).checkpoints.load_official(path, config=config, **kwargs)


def convert_official(
    src: Union[str, os.PathLike],
    dst_dir: Union[str, os.PathLike],
    config: Any = None,
    overwrite: bool = False,
    allow_missing_text_encoder: bool = False,
    **options: Any,
) -> Path:
    """Official checkpoint -> native checkpoint directory, the family detected from the keys. Returns the directory.

    ``allow_missing_text_encoder`` accepts checkpoints without text-encoder (or CLIP) weights; ``options`` are the
    detected family's own conversion options (``Checkpoints.conversion_arguments``: e.g. ZegFormer's
    ``clip_pretrained``, CLIP weights for checkpoints that hold none); another family's options are dropped, a name
    no family declares is refused."""
    from zsseg_rt.contract.registry import family_options

    family = _family_for(src)
    return family.checkpoints.convert_official(
        src,
        dst_dir,
        config=config,
        overwrite=overwrite,
        allow_missing_text_encoder=allow_missing_text_encoder,
        **family_options(family, options, lambda f: f.checkpoints.conversion_arguments(), "convert_official()"),
    )
