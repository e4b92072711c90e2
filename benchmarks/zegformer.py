#!/usr/bin/env python
"""Two-stage ZegFormer vs one-stage ZegCLIP in this package, PyTorch on the CPU, same machine, same image.

ZegCLIP's README calls two-stage methods about 5x slower than ZegCLIP. This measures it for the two models as
implemented here: full-size ZegCLIP ViT-B/16 (512x512, one window) and full-size ZegFormer (ResNet-101 mask
branch at 512x512 + CLIP ViT-B/16 on the 100 masked crops at 224), C = 20 and C = 171, random weights (latency
does not depend on them), text embeddings precomputed (outside the timing) for both. For ZegFormer it also
times the CLIP crop classification alone, one batched call of 100 crops (what this package does, and what the
official code does per image) against 100 calls of one crop each (a per-crop loop).

    .venv/bin/python -m benchmarks zegformer --write     # updates the "## ZegFormer" section of BENCHMARKS.md
"""

from __future__ import annotations

from typing import List

from .common import PHOTO, median_ms, run_lines_program, section_head

SECTION = "## ZegFormer (two-stage) vs ZegCLIP (one-stage), PyTorch CPU"


def _image():
    import cv2
    import torch

    bgr = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {PHOTO}")
    rgb = cv2.resize(bgr, (512, 512), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].copy()
    return torch.from_numpy(rgb).permute(2, 0, 1).float()[None]  # [1,3,512,512] 0-255


def _vocab_row(zegclip, zegformer, image, norm, names, text, iters: int, warmup: int) -> str:
    """One table row: ZegCLIP vs ZegFormer (full, and mask branch only) for one vocabulary."""
    import torch

    c = len(names)
    seen = torch.zeros(c, dtype=torch.bool)
    seen[: c - 5] = True
    t_clip = median_ms(lambda: zegclip(norm, text), iters, warmup)
    t_zf = median_ms(lambda: zegformer.segment(image, names, seen=seen, text=text, clip_text=text), iters, warmup)
    t_mask = median_ms(lambda: zegformer.segment(image, names, seen=seen, text=text, fusion="none"), iters, warmup)
    return f"| C={c} | {t_clip:.0f} | {t_zf:.0f} | {t_mask:.0f} | {t_zf - t_mask:.0f} | {t_zf / t_clip:.1f}x |"


def run(iters: int, warmup: int, threads: int) -> List[str]:
    import torch
    import torch.nn.functional as F

    from zsseg_rt.contract.common.config import load_class_names
    from zsseg_rt.models import create_model
    from zsseg_rt.models.zegformer.clip_branch import clip_crops

    torch.set_num_threads(threads)
    image = _image()
    names = {20: load_class_names("voc20"), 171: load_class_names("coco_stuff171")}
    rows = []
    torch.manual_seed(0)
    zegclip = create_model("zegclip_vitb16_voc_inductive").eval()
    zegformer = create_model("zegformer_r101_voc").eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mean = torch.tensor(zegclip.config.mean).view(1, 3, 1, 1)
        std = torch.tensor(zegclip.config.std).view(1, 3, 1, 1)
        norm = (image - mean) / std
        for c in (20, 171):
            text = F.normalize(torch.randn(c, 512, generator=g), dim=-1)
            rows.append(_vocab_row(zegclip, zegformer, image, norm, names[c], text, iters, warmup))
        padded = zegformer.pad((image - zegformer.pixel_mean) / zegformer.pixel_std)
        out = zegformer(padded, text)
        masks = F.interpolate(out["pred_masks"], size=padded.shape[-2:], mode="bilinear", align_corners=False)
        clip_images = zegformer.pad((image - zegformer.clip_pixel_mean) / zegformer.clip_pixel_std)
        crops = clip_crops(clip_images, masks, "cropmask")
        t_batched = median_ms(lambda: zegformer.encode_crops(crops), iters, warmup)
        t_loop = median_ms(
            lambda: [zegformer.encode_crops(crops[i : i + 1]) for i in range(crops.shape[0])], iters, warmup
        )
    lines = [
        *section_head(SECTION, "zegformer --write", threads),
        f"- Input: {PHOTO.name} resized to 512x512 (one ZegCLIP window; ZegFormer needs no padding at 512), "
        f"median of {iters} runs after {warmup} warm-up; random weights; text embeddings precomputed for both.",
        "- ZegCLIP: `model(images, text)` (encoder + decoder, one 512x512 window). ZegFormer: `segment` = ResNet-101 "
        "mask branch + 100 masked crops through CLIP ViT-B/16 at 224 (one batched call) + fusion; 'mask branch "
        "only' = `segment(fusion='none')`.",
        "",
        "| vocabulary | ZegCLIP ms | ZegFormer ms | ZegFormer mask branch only ms | CLIP crop branch ms | ZegFormer / ZegCLIP |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "CLIP classification of the 100 crops of one image (ViT-B/16, 224x224):",
        "",
        "| how | ms |",
        "|---|---:|",
        f"| one batched call of 100 crops (this package; the official code also makes one call per image) | {t_batched:.0f} |",
        f"| 100 calls of one crop (a per-crop loop) | {t_loop:.0f} |",
        "",
        "Notes:",
        "- The official ZegFormer calls `encode_image` once per IMAGE on its 100 crops (batch 100), not once per "
        "query; this package batches the crops of all images of a batch into one call. The per-crop loop row only "
        "shows what batching saves.",
        '- ONNX Runtime numbers: not in this table (this tool times PyTorch only); see "ZegFormer Engine (ONNX '
        'Runtime CPU) vs PyTorch" below (`python -m benchmarks zegformer_engine`).',
        "- Shared 2-core VM: absolute times vary with other jobs; both models ran back to back in one process.",
    ]
    return lines


def main() -> int:
    return run_lines_program(__doc__, SECTION, run)


if __name__ == "__main__":
    raise SystemExit(main())
