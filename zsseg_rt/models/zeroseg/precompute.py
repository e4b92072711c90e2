"""Pre-compute the CLIP teacher's view features of an image folder into a :class:`TeacherFeatureCache` (once;
training epochs then read them instead of re-running the teacher).

    python -m zsseg_rt.models.zeroseg.precompute --data /data/imagenet/train --cache /data/zeroseg_teacher \\
        --model zeroseg_vitb16_in1k --pretrained openai [--device cuda] [--batch-size 64]

Already-cached images are skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional

import torch

from .config import ZeroSegConfig, load_zeroseg_config
from .data import UnlabeledImageFolder
from .teacher import CLIPTeacher, TeacherFeatureCache

__all__ = ["precompute_teacher_features", "main"]


def _collate(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "image": torch.stack([it["image"] for it in items]),
        "key": [it["key"] for it in items],
        "index": [int(it["index"]) for it in items],
    }


def precompute_teacher_features(
    dataset: UnlabeledImageFolder,
    teacher: CLIPTeacher,
    cache: TeacherFeatureCache,
    batch_size: int = 64,
    device: str = "cpu",
    num_workers: int = 0,
    progress: bool = True,
) -> Dict[str, int]:
    """Encode every image of ``dataset`` not yet in ``cache``. Returns ``{"computed": n, "cached": m}``."""
    from zsseg_rt.console.progress import progress_bar

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
    teacher = teacher.to(device)
    computed = cached = 0
    for batch in progress_bar(loader, desc="teacher features", disable=not progress, dynamic_ncols=True):
        missing = [j for j, k in enumerate(batch["key"]) if k not in cache]
        cached += len(batch["key"]) - len(missing)
        if not missing:
            continue
        cfg = teacher.config
        if cfg.teacher_view_source == "image":  # cells cut from each image at its own resolution
            grids, size = list(cfg.teacher_grids), int(cfg.teacher_image_size)
            pixels = torch.stack([dataset.views_of(batch["index"][j], grids, size) for j in missing])
            feats = teacher.encode_views(pixels.to(device))  # [b, n, E]
        else:
            feats = teacher(batch["image"][missing].to(device))  # [b, n, E]
        for j, f in zip(missing, feats):
            cache.put(batch["key"][j], f)
        computed += len(missing)
    return {"computed": computed, "cached": cached}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="image folder (ImageNet train layout or flat)")
    ap.add_argument("--cache", required=True, help="cache directory (created)")
    ap.add_argument("--model", default="zeroseg_vitb16_in1k", help="ZeroSeg config name or JSON path")
    ap.add_argument("--pretrained", required=True, help="teacher weights: open_clip tag (openai) or local file")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=4)
    ap.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (sorted)")
    args = ap.parse_args(argv)
    cfg: ZeroSegConfig = load_zeroseg_config(args.model)
    teacher = CLIPTeacher(cfg, pretrained=args.pretrained)
    cache = TeacherFeatureCache(args.cache, teacher.fingerprint, dtype=args.dtype)
    data = UnlabeledImageFolder(args.data, cfg.image_size, on_corrupt="skip", limit=args.limit)
    stats = precompute_teacher_features(data, teacher, cache, args.batch_size, args.device, args.num_workers)
    print(f"{stats['computed']} computed, {stats['cached']} already cached -> {args.cache}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
