"""Native checkpoints of every family (``model.safetensors`` + ``config.json`` whose ``format`` names the family)
and the ``zsseg convert`` command."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from zsseg_rt.contract.common.native_files import CONFIG_FILE, WEIGHTS_FILE, imported_extra, write_native
from zsseg_rt.contract.common.official import convert_official
from zsseg_rt.contract.common.weights import WeightsError, load_finite, require_fit

# the command's arguments are zsseg_rt.cli.convert's: torch-free, for `zsseg convert --help`
__all__ = ["convert_official", "save_native", "load_native"]


def save_native(model, dst_dir: Union[str, os.PathLike], extra: Optional[dict] = None, overwrite: bool = False) -> Path:
    """Write ``model.safetensors`` (full state dict, fp32, contiguous) + ``config.json`` into ``dst_dir``, in the
    native format of the model's family."""
    from zsseg_rt.contract.registry import family_of_model

    family = family_of_model(model)
    if not family.checkpoints.format:
        raise ValueError(f"the {family.name!r} family has no native checkpoint format")
    return write_native(model, dst_dir, family.checkpoints.format, extra=extra, overwrite=overwrite)


def load_native(path_dir: Union[str, os.PathLike], device: Optional[Union[str, torch.device]] = None, **overrides):
    """Load a native checkpoint directory written by :func:`save_native` / :func:`convert_official`.

    ``overrides`` may change non-architectural config fields (e.g. ``calibration_bias``); every weight tensor
    must match the rebuilt model exactly.
    """
    from zsseg_rt.contract.registry import families, family_of_format, get_family

    d, meta = _read_native_meta(path_dir)
    family = family_of_format(str(meta.get("format", "")))
    if family is None:
        known = sorted(
            get_family(name).checkpoints.format for name in families() if get_family(name).checkpoints.format
        )
        raise WeightsError(f"{d / CONFIG_FILE}: unknown format {meta.get('format')!r} (expected one of {known})")
    return family.checkpoints.load_native(d, device=device, **overrides)


def _read_native_meta(path_dir: Union[str, os.PathLike]) -> Tuple[Path, dict]:
    """(directory, parsed ``config.json``) of a native checkpoint given as its directory or one of its files."""
    d = Path(path_dir)
    if d.is_file() and d.name in (WEIGHTS_FILE, CONFIG_FILE):
        d = d.parent
    if not (d / CONFIG_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(
            f"{d} is not a native checkpoint (needs {CONFIG_FILE} and {WEIGHTS_FILE}); create one with "
            "`zsseg convert OFFICIAL.pth DST` or zsseg_rt.contract.common.convert.save_native"
        )
    with open(d / CONFIG_FILE, "r", encoding="utf-8") as f:
        return d, json.load(f)


def read_native_config(
    path_dir: Union[str, os.PathLike], native_format: str, overrides: Dict[str, Any]
) -> Tuple[Path, Dict[str, Any]]:
    """(directory, config dict with ``overrides`` applied) of a native checkpoint that must have the format
    ``native_format``. Shared by the families' native loaders, which build the model from the dict and fill it
    with :func:`load_native_state`."""
    d, meta = _read_native_meta(path_dir)
    if meta.get("format") != native_format:
        raise WeightsError(f"{d / CONFIG_FILE}: format {meta.get('format')!r} is not {native_format!r}")
    cfg = dict(meta["config"])
    cfg.update(overrides)
    return d, cfg


def native_checkpoint_dir(name: Any, pretrained: Optional[str] = None) -> Optional[Path]:
    """``name`` as a path when it is a native checkpoint directory (``config.json`` + ``model.safetensors``), else
    None (a config name, file or object). Giving ``pretrained`` weights with one is refused: it holds them."""
    if not isinstance(name, (str, os.PathLike)):
        return None
    p = Path(str(name))
    if not (p.is_dir() and (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file()):
        return None
    if pretrained is not None:
        raise ValueError(f"{p} is a native checkpoint that already holds weights; drop pretrained=")
    return p


def load_native_state(model, directory: Path, label: str, device=None):
    """Fill ``model`` from ``directory/model.safetensors``: every tensor must fit (names, shapes, finite values).

    Shared by the families' native loaders. Returns the model in eval mode.
    """
    from safetensors.torch import load_file

    state = load_file(str(directory / WEIGHTS_FILE))
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    require_fit(state, target, missing, unexpected, f"{directory}: {label} checkpoint does not fit its config")
    load_finite(model, state, target, str(directory / WEIGHTS_FILE))
    model.text_encoder.cache.clear()
    if device is not None:
        model = model.to(device)
    return model.eval()


def save_imported(model, report, src, dst_dir, overwrite: bool = False) -> Path:
    """Write an imported official model as a native checkpoint, recording where it came from and its import
    report (a family's own ``official_converter`` uses it; the default one is ``Checkpoints.convert_official``)."""
    return save_native(model, dst_dir, extra=imported_extra(report, src), overwrite=overwrite)


def run_convert(args: argparse.Namespace, options: Dict[str, Any]) -> int:
    """``zsseg convert`` once its arguments are parsed; ``options``: the families' own conversion flags' values."""
    out = convert_official(
        args.src,
        args.dst,
        config=args.config,
        overwrite=args.overwrite,
        allow_missing_text_encoder=args.allow_missing_text_encoder,
        **options,
    )
    with open(Path(out) / CONFIG_FILE, "r", encoding="utf-8") as f:
        rep = json.load(f)["import_report"]
    print(
        f"wrote {out / WEIGHTS_FILE} and {out / CONFIG_FILE} (config {rep['config_name']}"
        f"{', inferred' if rep['config_inferred'] else ''}; {rep['loaded']} tensors; "
        f"{len(rep['unused_official'])} official-but-unused tensors skipped)"
    )
    return 0


def __getattr__(name: str) -> object:  # PEP 562: NATIVE_FORMAT is the default family's format (the former constant)
    if name == "NATIVE_FORMAT":
        from zsseg_rt.contract.registry import default_family

        return default_family().checkpoints.format
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
