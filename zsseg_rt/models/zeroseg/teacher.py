"""ZeroSeg's frozen CLIP vision teacher over the multi-scale grid views, and the on-disk teacher-feature cache.

Views ([P] §3.2): the image is split into non-overlapping g x g grids for every g in ``teacher_grids`` (default
1,2,3,4 -> 1+4+9+16 = 30 views, view 0 = the full image); each cell is resized to the teacher's input size and
encoded by the CLIP vision tower (projected embedding). ``teacher_view_source="image"`` (default) cuts the cells
from the region the student's centre crop shows at the image's own resolution (:func:`image_views`, PIL bicubic
as CLIP's preprocessing); ``"crop"`` cuts them from the 224 px student crop (:func:`grid_views`). Training uses a
fixed centre crop, so the features of an image never change: :class:`TeacherFeatureCache` stores them once per
image (content hash) and epochs read them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ZeroSegConfig

__all__ = ["grid_boxes", "grid_views", "image_views", "CLIPTeacher", "TeacherFeatureCache", "teacher_fingerprint"]

CACHE_META = "teacher_cache.json"


def grid_boxes(height: int, width: int, grids: Sequence[int]) -> List[Tuple[int, int, int, int]]:
    """Cells ``(top, bottom, left, right)`` of every g x g grid in ``grids`` order, row-major inside a grid.

    Cell edges are ``round(i * size / g)``, so cells tile the image exactly even when the size is not divisible.
    """
    boxes = []
    for g in grids:
        ys = [round(i * height / g) for i in range(g + 1)]
        xs = [round(i * width / g) for i in range(g + 1)]
        for r in range(g):
            for c in range(g):
                boxes.append((ys[r], ys[r + 1], xs[c], xs[c + 1]))
    return boxes


def grid_views(images: torch.Tensor, grids: Sequence[int], size: int, mode: str = "bicubic") -> torch.Tensor:
    """Crop every grid cell and resize it to ``size`` x ``size``.

    Args:
        images: [B, 3, H, W] float.
    Returns:
        [B, n, 3, size, size] with n = sum(g*g), in :func:`grid_boxes` order.
    """
    h, w = images.shape[-2:]
    views = []
    for top, bottom, left, right in grid_boxes(h, w, grids):
        cell = images[:, :, top:bottom, left:right]
        if cell.shape[-2:] != (size, size):
            align = None if mode in ("nearest", "area") else False
            cell = F.interpolate(cell, size=(size, size), mode=mode, align_corners=align)
        views.append(cell)
    return torch.stack(views, dim=1)


def image_views(rgb: np.ndarray, grids: Sequence[int], size: int) -> torch.Tensor:
    """The teacher's views of an image at its own resolution: the centre square of side ``min(H, W)`` (the region
    the student's short-side-resize + centre crop shows), cut into every g x g grid (:func:`grid_boxes`), each cell
    resized to ``size`` x ``size`` with PIL bicubic (as CLIP's own preprocessing; the 1x1 view is exactly CLIP's
    resize + centre crop of the image).

    Args:
        rgb: [H, W, 3] uint8.
    Returns:
        [n, 3, size, size] uint8, in :func:`grid_boxes` order.
    """
    from PIL import Image

    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
    square = np.ascontiguousarray(rgb[top : top + side, left : left + side])
    bicubic = getattr(Image, "Resampling", Image).BICUBIC
    cells = []
    for y0, y1, x0, x1 in grid_boxes(side, side, grids):
        cell = Image.fromarray(np.ascontiguousarray(square[y0:y1, x0:x1]))
        cells.append(np.asarray(cell.resize((size, size), bicubic)))
    return torch.from_numpy(np.stack(cells)).permute(0, 3, 1, 2).contiguous()


def teacher_fingerprint(config: ZeroSegConfig, pretrained: Optional[str]) -> Dict[str, Any]:
    """Everything that changes the cached teacher features (a cache written under another one is refused)."""
    return {
        "clip_model": config.clip_model,
        "clip_cfg": config.clip_cfg,
        "quick_gelu": config.quick_gelu,
        "pretrained": str(pretrained) if pretrained is not None else None,
        "teacher_grids": list(config.teacher_grids),
        "teacher_image_size": config.teacher_image_size,
        "teacher_view_source": config.teacher_view_source,
        "crop_interpolation": config.crop_interpolation,
        "teacher_mean": list(config.teacher_mean),
        "teacher_std": list(config.teacher_std),
        "image_size": config.image_size,
    }


class CLIPTeacher(nn.Module):
    """The frozen open_clip CLIP model of ``config.clip_model`` (vision tower for the views, text tower for
    classifying segment tokens at test time). Never trained: parameters have ``requires_grad=False``.

    Args:
        config: the ZeroSeg config (``clip_model``, ``clip_cfg``, ``quick_gelu``, ``teacher_*``).
        pretrained: an open_clip tag of ``clip_model`` (e.g. ``"openai"``, downloaded by open_clip) or a local
            weight file; None leaves the random init (tests only: a random teacher teaches nothing).
        text_tower: the weights must hold the text tower too (every tensor of ``clip_model``): the teacher that
            classifies segments at test time (evaluation, bundles); else only the vision tower is required.
    """

    def __init__(self, config: ZeroSegConfig, pretrained: Optional[str] = None, text_tower: bool = False):
        super().__init__()
        from open_clip.model import CLIP

        self.config = config
        self.pretrained = pretrained
        cfg = config.open_clip_cfg()
        cfg["vision_cfg"] = dict(cfg["vision_cfg"], image_size=int(config.teacher_image_size))
        self.clip = CLIP(**cfg, quick_gelu=config.quick_gelu)
        if pretrained is not None:
            self._load(pretrained, text_tower)
        self.clip.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(config.teacher_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.teacher_std).view(1, 3, 1, 1), persistent=False)

    def _load(self, pretrained: str, text_tower: bool) -> None:
        from zsseg_rt.contract.common.weights import normalise_clip_keys, read_state_dict, resolve_pretrained

        path, _ = resolve_pretrained(pretrained, self.config.clip_model)
        sd = normalise_clip_keys(read_state_dict(path))
        missing, unexpected = self.clip.load_state_dict(sd, strict=False)
        if text_tower and missing:
            raise RuntimeError(
                f"CLIP weights {path} lack {len(missing)} tensors of {self.config.clip_model}: {missing[:5]}"
            )
        missing = [k for k in missing if k.startswith("visual.")]
        if missing:
            raise RuntimeError(
                f"teacher weights {path} do not fit open_clip {self.config.clip_model!r}: missing {missing[:5]} "
                "(pick the clip_model the weights belong to)"
            )

    def train(self, mode: bool = True) -> "CLIPTeacher":
        return super().train(False)  # always frozen, always eval

    @property
    def fingerprint(self) -> Dict[str, Any]:
        return teacher_fingerprint(self.config, self.pretrained)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """images [B, 3, H, W] RGB on the 0-255 scale (the student's crop) -> view features [B, n, E] (float32),
        the cells cut from these pixels (``teacher_view_source="crop"``)."""
        cfg = self.config
        x = (images.float() - self.mean) / self.std
        return self._encode(grid_views(x, cfg.teacher_grids, cfg.teacher_image_size, cfg.crop_interpolation), chunk)

    @torch.no_grad()
    def encode_views(self, views: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """views [B, n, 3, S, S] uint8 (:func:`image_views`) -> view features [B, n, E] (float32)."""
        return self._encode((views.float() - self.mean[:, None]) / self.std[:, None], chunk)

    def _encode(self, views: torch.Tensor, chunk: int) -> torch.Tensor:
        b, n = views.shape[:2]
        flat = views.flatten(0, 1)
        feats = [self.clip.encode_image(flat[i : i + chunk]).float() for i in range(0, flat.shape[0], chunk)]
        return torch.cat(feats).reshape(b, n, -1)

    @torch.no_grad()
    def text_embeddings(self, class_names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """[C, E] L2-normalised class embeddings, averaged over the prompt templates (CLIP ensembling)."""
        from open_clip.tokenizer import tokenize

        out = []
        for name in class_names:
            tokens = tokenize([t.format(name) for t in templates]).to(self.mean.device)
            e = F.normalize(self.clip.encode_text(tokens).float(), dim=-1).mean(0)
            out.append(F.normalize(e, dim=-1))
        return torch.stack(out)


class TeacherFeatureCache:
    """Teacher view features stored once per image: ``<root>/<hh>/<sha256>.safetensors`` (tensor ``views``
    [n, E]) keyed by the SHA-256 of the image file's bytes, so a moved or renamed file still hits and an edited
    one misses. ``<root>/teacher_cache.json`` holds the teacher fingerprint; opening a cache written by another
    teacher/grid setting is refused (mixing them would silently change the targets).

    Size: 30 views x 768 x 2 bytes (float16, the default) = 46 KB per image, about 59 GB for ImageNet-1k.
    """

    def __init__(self, root: Union[str, os.PathLike], fingerprint: Dict[str, Any], dtype: str = "float16"):
        if dtype not in ("float16", "float32"):
            raise ValueError(f"cache dtype must be float16 or float32, got {dtype!r}")
        self.root = Path(root)
        self.dtype = getattr(torch, dtype)
        self.root.mkdir(parents=True, exist_ok=True)
        meta = self.root / CACHE_META
        expected = {"fingerprint": fingerprint, "dtype": dtype}
        if meta.is_file():
            with open(meta, "r", encoding="utf-8") as f:
                found = json.load(f)
            if found != json.loads(json.dumps(expected)):
                raise ValueError(
                    f"teacher cache {self.root} was written for {found}, not {expected}; use another cache "
                    "directory (or delete this one to recompute)"
                )
        else:
            tmp = meta.with_name(f"{meta.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(expected, indent=1), encoding="utf-8")
            os.replace(tmp, meta)

    @staticmethod
    def key_of_bytes(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> Optional[torch.Tensor]:
        """The cached [n, E] float32 features of an image, or None."""
        from safetensors.torch import load_file

        p = self.path(key)
        if not p.is_file():
            return None
        return load_file(str(p))["views"].float()

    def put(self, key: str, views: torch.Tensor) -> None:
        """Store [n, E] features atomically (temporary file + rename; a crash never leaves a half file)."""
        from safetensors.torch import save_file

        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.name}.tmp-{os.getpid()}")
        save_file({"views": views.detach().to("cpu", self.dtype).contiguous()}, str(tmp))
        os.replace(tmp, p)


class PlantedTeacher(nn.Module):
    """A known synthetic teacher for tests and demos (recipe ``"teacher": "planted:SEED"``): each view's feature
    is a fixed random MLP of the view's mean colour, so the segment tokens can only match the crops by learning
    the colours of image regions. Same interface as :class:`CLIPTeacher` (no text tower)."""

    def __init__(self, config: ZeroSegConfig, seed: int = 0):
        super().__init__()
        self.config, self.seed = config, int(seed)
        g = torch.Generator().manual_seed(self.seed)
        self.register_buffer("w1", torch.randn(3, 64, generator=g) * 2.0, persistent=False)
        self.register_buffer("w2", torch.randn(64, config.embed_dim, generator=g) / 8.0, persistent=False)

    def train(self, mode: bool = True) -> "PlantedTeacher":
        return super().train(False)

    @property
    def fingerprint(self) -> Dict[str, Any]:
        return dict(teacher_fingerprint(self.config, None), planted_seed=self.seed)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] 0-255 -> [B, n, E]."""
        boxes = grid_boxes(images.shape[-2], images.shape[-1], self.config.teacher_grids)
        means = torch.stack([images[:, :, t:b, x0:x1].float().mean((-2, -1)) for t, b, x0, x1 in boxes], 1) / 255.0
        return torch.tanh((means - 0.5) @ self.w1) @ self.w2  # [B, n, E]

    @torch.no_grad()
    def encode_views(self, views: torch.Tensor) -> torch.Tensor:
        """views [B, n, 3, S, S] uint8 -> [B, n, E] (each view's mean colour through the same MLP)."""
        means = views.float().mean((-2, -1)) / 255.0
        return torch.tanh((means - 0.5) @ self.w1) @ self.w2
