"""The files of a native checkpoint directory: ``model.safetensors`` (the full state dict, fp32, contiguous) and
``config.json`` (its ``format``, the config and what a writer records beside them). Written here for every family
(:func:`write_native`); :mod:`.convert` reads them and names a model's format through the registry."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

from zsseg_rt.contract.common.weights import check_finite

__all__ = ["WEIGHTS_FILE", "CONFIG_FILE", "write_native", "imported_extra"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def write_native(
    model, dst_dir: Union[str, os.PathLike], native_format: str, extra: Optional[dict] = None, overwrite: bool = False
) -> Path:
    """Write ``model`` (its state dict and ``model.config``) into ``dst_dir`` as a native checkpoint of the format
    ``native_format``; an existing checkpoint there is replaced only with ``overwrite``."""
    from safetensors.torch import save_file

    dst = Path(dst_dir)
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        if (dst / WEIGHTS_FILE).exists() or (dst / CONFIG_FILE).exists():
            raise FileExistsError(f"{dst} already holds a checkpoint; pass overwrite=True (--overwrite)")
    dst.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    check_finite(state, "model")
    save_file(state, str(dst / WEIGHTS_FILE), metadata={"format": native_format})
    meta = {"format": native_format, "config": model.config.to_dict()}
    if extra:
        meta.update(extra)
    with open(dst / CONFIG_FILE, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    return dst


def imported_extra(report: Any, src: Any) -> Dict[str, Any]:
    """What a native checkpoint converted from an official one records: where it came from and its import report."""
    return {
        "source_checkpoint": str(src),
        "import_report": {
            "config_name": report.config_name,
            "config_inferred": report.config_inferred,
            "loaded": report.loaded,
            "unused_official": report.unused_official,
            "text_encoder_loaded": report.text_encoder_loaded,
        },
    }
