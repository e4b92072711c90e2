"""The encoder's window (``Engine(window_size=N)``; ``zsseg camera --live`` chooses it on the exact CPU path): each
image fitted in one window of N x N, the encoder and head run at N instead of the bundle's graph size S.

A graph of any size (``whole_image`` bundles) runs N as it is; a fixed-size graph is rewritten for N by
``zsseg_rt.prepare.window_graphs`` (read by name: a layer above; torch-free, needs onnx), opened with ONNX Runtime
on the CPU beside the bundle's text graph, and run once on a blank window to check the shapes it gives. Labels at
N < S are not the bundle's: the ViT sees the scene at a lower resolution (docs/video.md, "Live video").
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from zsseg_rt.bundle import BundleMeta, Names
from zsseg_rt.errors import OptionError
from zsseg_rt.needs import Needs

__all__ = ["WindowRunner", "check_window_size", "window_candidates", "window_meta", "window_runner"]

DERIVE = "zsseg_rt.prepare.window_graphs:derive_window_graphs"  # by name: zsseg_rt.prepare is a layer above
# what a fixed-size graph's rewrite needs beyond the runtime install (the window extra holds onnx)
NEEDS = Needs("the onnx package (a fixed-size graph rewritten for a smaller window)", "window", ("onnx",))
CANDIDATE_STEPS = 4  # the window sizes tried: S, then S/8 less each step (512: 448, 384, 320, 256), down to S/2


def any_size(meta: BundleMeta) -> bool:
    """Whether the bundle's image graph takes any height and width (its io table's image axes 2, 3 dynamic)."""
    axes = meta.io.get("image", {}).get("dynamic_axes", {}).get(Names.IMAGE, {})
    return {"2", "3"} <= {str(axis) for axis in axes}


def check_window_size(meta: BundleMeta, size: Any) -> int:
    """``size`` as the window of this bundle: a multiple of its patch in [patch, S] (S: its graph's window).

    Raises:
        OptionError: a ValueError, one line, ``window_size: expected a multiple of 16 in [16, 512] (...), got 300``
            (``--window-size: ...`` on the command line).
    """
    patch, window = int(meta.patch_size), int(meta.image_size)
    ok = isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size % patch == 0
    if not ok or not patch <= int(size) <= window:
        expected = f"expected a multiple of {patch} in [{patch}, {window}] (this bundle's patch and graph window)"
        raise OptionError(
            f"window_size: {expected}, got {size!r}", "window_size", cli=f"--window-size: {expected}, got {size!r}"
        )
    return int(size)


def window_candidates(meta: BundleMeta) -> List[int]:
    """The windows ``--live`` measures, largest first: S, then S/8 less each step (rounded to the patch), down to
    S/2 (512: 512, 448, 384, 320, 256; the tiny test bundle's 64: 64, 48, 32)."""
    patch, window = int(meta.patch_size), int(meta.image_size)
    step = max(patch, round(window / 8 / patch) * patch)
    return [window - k * step for k in range(CANDIDATE_STEPS + 1) if window - k * step >= max(patch, window // 2)]


def window_meta(meta: BundleMeta, size: int) -> BundleMeta:
    """The bundle as the pipeline sees it at window ``size``: its graph size, crop and stride that window."""
    return dataclasses.replace(meta, image_size=size, crop_size=size, stride=size)


class WindowRunner:
    """The bundle's runner with the image and head graphs at another window: those two roles run ``sessions``
    (ONNX Runtime), the text graph and every other attribute (``name``, ``precision``) are ``base``'s."""

    def __init__(self, base: Any, sessions: Mapping[str, Any], size: int):
        self.base, self.sessions, self.window_size = base, dict(sessions), int(size)

    def __getattr__(self, name: str) -> Any:
        if name in ("base", "sessions", "window_size") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)

    def run(self, role: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> List[np.ndarray]:
        if role in self.sessions:
            return self.sessions[role].run(list(outputs), dict(feeds))
        return self.base.run(role, feeds, outputs)

    def batch_limit(self, role: str, input: str) -> Optional[int]:
        return None if role in self.sessions else self.base.batch_limit(role, input)

    def device_executor(self) -> None:
        return None  # the host path: the device pipeline runs the bundle's own graphs


def window_runner(meta: BundleMeta, base: Any, size: int, threads: int = 0) -> WindowRunner:
    """``base`` (an ONNX Runtime runner of the bundle, on the CPU) with its image and head graphs rewritten for
    window ``size`` and opened, checked on one blank window (the grid its head gives). Raises ValueError (the
    rewrite's or the check's line), ImportError without onnx."""
    from zsseg_rt.runtime.backends.onnxruntime.runner import _ort, session_options
    from zsseg_rt.runtime.precision_records import load_preparer

    derive = load_preparer(DERIVE, "window_size needs zsseg_rt.prepare ({exc})")
    graphs: Dict[str, bytes] = derive(meta, size)
    sessions = {
        role: _ort().InferenceSession(graph, session_options(threads), providers=["CPUExecutionProvider"])
        for role, graph in graphs.items()
    }
    runner = WindowRunner(base, sessions, size)
    _check(meta, runner, size)
    return runner


def _check(meta: BundleMeta, runner: WindowRunner, size: int) -> None:
    """One blank window through the rewritten graphs: the head's logits must be on the window's patch grid."""
    io = meta.io
    features = runner.run("image", {Names.IMAGE: np.zeros((1, 3, size, size), np.float32)}, io["image"]["outputs"])
    text = np.zeros((1, int(meta.embed_dim)), np.float32)
    feeds = {Names.TEXT_EMBEDDINGS: text, **dict(zip(io["image"]["outputs"], features))}
    logits = runner.run("head", feeds, io["head"]["outputs"])[0]
    grid = size // int(meta.patch_size)
    if tuple(logits.shape[-2:]) != (grid, grid):
        raise ValueError(
            f"window_size={size}: the rewritten graphs give logits on a {logits.shape[-2]}x{logits.shape[-1]} grid, "
            f"expected {grid}x{grid}: this bundle's graphs cannot run another window"
        )
