"""The bundles and the photo of the GPU checks (``checks/gpu_engine.py``, ``checks/gpu_probe.py``,
``checks/postprocess_variants.py``): the tiny and the full-size ZegCLIP bundle with random weights (seed 0), exported
once into a work folder and reused, and the package's sample photos. Below the checks that use them: none of them
imports another for these (``gpu_engine`` re-exports the names, which tests patch there)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict

REPO = Path(__file__).resolve().parent.parent
PHOTO = "2011_000006.jpg"
FULL_CONFIG = "zegclip_vitb16_voc_inductive"
TINY_CONFIG = "zegclip_tiny_test"


def sample_images():
    """The VOC sample photos shipped with the package (zsseg_rt/assets/samples)."""
    roots = [REPO / "zsseg_rt" / "assets" / "samples"]
    found = sorted(p for root in roots if root.is_dir() for p in root.rglob("*.jpg"))
    if not found:
        sys.exit(f"gpu_engine_check: no sample photos under {roots[0]}")
    return found


def _export(config: str, out_dir: Path, max_classes: int, scale_weights: bool) -> str:
    """The bundle of ``config`` (random weights, seed 0) with its native checkpoint under ``out_dir``: exported
    now, or the one an earlier run left there (an export is complete once its meta.json exists: it is renamed into
    place last)."""
    bundle, native = out_dir / f"{config}_bundle", out_dir / f"{config}_native"
    if (bundle / "meta.json").is_file() and native.is_dir():
        return str(bundle)
    import torch

    from zsseg_rt.contract.common.convert import save_native
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model

    torch.manual_seed(0)
    model = create_model(config).eval()
    if scale_weights:  # spread the logits over several units so that several classes win (not one label)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "decode_head" in name or "head" in name.split(".")[0]:
                    param.mul_(3.0)
    saved = save_native(model, str(native), overwrite=True)
    return export_bundle(model, str(bundle), max_classes=max_classes, source=str(saved), verify_images=())


def export_full(work: Path) -> Dict[str, Any]:
    """The full-size bundle in ``work`` (exported, or reused): ``{"bundle", "seconds", "reused"}``."""
    reused = (work / f"{FULL_CONFIG}_bundle" / "meta.json").is_file()
    start = time.perf_counter()
    bundle = _export(FULL_CONFIG, work, 256, scale_weights=False)
    return {"bundle": bundle, "seconds": round(time.perf_counter() - start, 2), "reused": reused}
