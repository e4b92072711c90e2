#!/usr/bin/env python
"""Live video on a trained network's scores (issue 53): the stabilising filter and keyframe propagation replayed on
the per-frame scores of a *trained* segmenter, the nearest thing to trained CLIP weights that can be reached here.

No trained CLIP weights are reachable from this machine (no network but the package registries, and no wheel on
PyPI or package in Debian carries them), so ``python -m benchmarks video`` measures the filters on a random-weight
ZegCLIP, whose scores are near-tied everywhere. This program measures the same filters (``StreamFilter``, the camera
loop's own, with its default options) on the scores of a trained network: MediaPipe's selfie segmenter (a person /
background model bundled in the ``mediapipe`` wheel), on the same clips and frames as ``benchmarks video``. Its scores
are those of a trained model: sure of most of the frame, hesitating along its boundaries. It is a proxy: two classes,
a model made for people close to a camera, not this product's CLIP model; what it shows is how the filters behave on
confident scores, not the product's labels.

Two steps, the first in a throwaway environment (MediaPipe pins its own NumPy and protobuf)::

    .venv/bin/uv venv -p 3.11 /tmp/mpv && .venv/bin/uv pip install -p /tmp/mpv/bin/python mediapipe==0.10.21
    /tmp/mpv/bin/python -m benchmarks video_proxy --dump out/video_proxy          # per-frame person scores
    .venv/bin/python -m benchmarks video_proxy --scores out/video_proxy [--write]  # replay the filters
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

SECTION = "## Live video on a trained network's scores (issue 53, a proxy)"
FRAMES = 30
STRIDE = 4  # the filter's class-score stride (TemporalOptions.score_stride)
MODES = [
    ("--stabilize", {"stabilize": True}),
    ("--stabilize, hysteresis 0 (the blend alone)", {"stabilize": True, "hysteresis": 0.0}),
    ("--keyframe-every 4", {"keyframe_every": 4}),
]
VOTE_RADII = (4, 6)  # the look-ahead oracle rows (video_metrics.voted): what a filter faithful to per frame can reach


def dump(folder: Path) -> int:
    """Per-frame person probabilities ``[n, H, W]`` of each clip (MediaPipe's selfie segmenter, the general model,
    a fresh graph per frame: nothing carried between frames) and the frames, into ``folder/NAME.npz``."""
    try:
        import cv2
        import mediapipe
        import numpy as np
    except ImportError as exc:
        raise SystemExit(
            f"--dump needs mediapipe ({exc}): see this program's --help for the throwaway environment"
        ) from None
    from .video import CLIPS, DATA

    folder.mkdir(parents=True, exist_ok=True)
    for name, (file, start) in CLIPS.items():
        capture = cv2.VideoCapture(str(DATA / file))
        frames: List[Any] = []
        index = 0
        while len(frames) < FRAMES:
            ok, frame = capture.read()
            if not ok:
                raise SystemExit(f"{DATA / file} gave {len(frames)} frames from frame {start}, {FRAMES} wanted")
            if index >= start:
                frames.append(frame)
            index += 1
        masks = []
        for frame in frames:
            with mediapipe.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as model:
                result = model.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            masks.append(np.asarray(result.segmentation_mask, dtype=np.float32))
        np.savez_compressed(folder / f"{name}.npz", frames=np.stack(frames), person=np.stack(masks))
        print(f"{name}: {len(frames)} frames, person on {100 * float((np.stack(masks) > 0.5).mean()):.2f} % of pixels")
    return 0


def replay(frames, person, options: Optional[Dict[str, Any]]) -> List[Any]:
    """The label maps of one mode: per frame (``options`` None) or ``StreamFilter(TemporalOptions(**options))``,
    on the class scores ``[1 - p, p]`` at ``1/STRIDE`` (area-averaged, as the Engine keeps them)."""
    import numpy as np

    from zsseg_rt.pipeline.class_scores import ClassScores, _area_resize, state_size
    from zsseg_rt.stream.temporal import StreamFilter, TemporalOptions

    flt = StreamFilter(TemporalOptions(**options)) if options is not None else None
    out = []
    for frame, p in zip(frames, person):
        size = p.shape
        full = np.stack([1.0 - p, p]).astype(np.float32)
        scores = ClassScores(_area_resize(full, state_size(size, STRIDE)), size)
        labels, winning = scores.finalize()
        if flt is not None:
            plan = flt.plan(frame, "vocabulary")
            labels = flt.keyframe(plan, labels, winning, scores, "vocabulary")[0] if plan.keyframe else None
            labels = flt.propagate(plan)[0] if labels is None else labels
        out.append(labels)
    return out


def measure(name: str, path: Path) -> List[str]:
    """The table rows of one clip."""
    import numpy as np

    from zsseg_rt.stream import video_metrics as vm

    from .video import ClipMotion

    data = np.load(path)
    frames, person = data["frames"], data["person"]
    greys = [vm.grey(frame) for frame in frames]
    cuts = ClipMotion(list(frames)).cuts  # the filter's own scene-cut test on each pair

    def flicker(labels, skip=()):
        pairs = [k for k in range(1, len(labels)) if k not in skip]
        values = [vm.flicker(greys[k - 1], greys[k], labels[k - 1], labels[k]) for k in pairs]
        return 100.0 * float(np.mean([v for v in values if v is not None]))

    def tc(labels):
        pairs = range(1, len(labels))
        return 100.0 * float(
            np.mean([vm.temporal_consistency(greys[k - 1], greys[k], labels[k - 1], labels[k]) for k in pairs])
        )

    per_frame = replay(frames, person, None)
    base, base_uncut = flicker(per_frame), flicker(per_frame, cuts)
    rows = [f"| {name} | per frame | {base:.3f} | 1.00 | 1.00 | {tc(per_frame):.2f} | 100.00 |"]
    oracles = [(f"oracle: per-frame labels voted over {2 * r + 1} frames (sees {r} ahead)", r) for r in VOTE_RADII]
    for mode, options in MODES + oracles:
        labels = vm.voted(per_frame, options) if isinstance(options, int) else replay(frames, person, options)
        agreement = 100.0 * float(np.mean([vm.agreement(a, b) for a, b in zip(labels, per_frame)]))
        value, uncut = flicker(labels), flicker(labels, cuts) / base_uncut
        rows.append(
            f"| {name} | {mode} | {value:.3f} | {value / base:.2f} | {uncut:.2f} | {tc(labels):.2f} | {agreement:.2f} |"
        )
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dump", type=Path, help="step 1 (needs mediapipe): write each clip's per-frame scores here")
    ap.add_argument("--scores", type=Path, help="step 2: replay the filters on the scores written by --dump")
    ap.add_argument("--write", action="store_true", help="also put the section into BENCHMARKS.md")
    args = ap.parse_args(argv)
    if args.dump:
        return dump(args.dump)
    if not args.scores:
        ap.error("give --dump DIR (step 1) or --scores DIR (step 2)")
    from .common import machine_description, show_section
    from .video import CLIPS

    files = {name: args.scores / f"{name}.npz" for name in CLIPS}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise SystemExit(f"no scores at {', '.join(missing)}: run --dump first (see --help)")
    lines = [
        SECTION,
        "",
        "Regenerate: see `python -m benchmarks video_proxy --help` (two steps: MediaPipe in a throwaway environment "
        "dumps the scores, then `.venv/bin/python -m benchmarks video_proxy --scores DIR --write`).",
        "",
        *machine_description(1)[:1],
        "- Scores: MediaPipe 0.10.21's selfie segmenter (general model), a trained person / background network, per "
        "frame with nothing carried between frames, as class scores `[1 - p, p]` at 1/4 of the frame; the filters "
        "are the camera loop's (`StreamFilter`) with their default options; same clips and frames as `benchmarks "
        "video`. **A proxy**: two classes and another model than this product's; it shows the filters on a trained "
        "model's confident scores (the random-weight ZegCLIP of the table above is near-tied everywhere).",
        "- tree has no person: its per-frame labels never change, so it is left out.",
        "- The oracle rows are not filters: the per-frame labels voted pixel by pixel over a window that sees frames "
        "ahead (`video_metrics.voted`), what a filter that follows the per-frame answer can reach at best; an oracle "
        "above a third says the clip's per-frame changes last.",
        "- Scene cuts (the filter's own test: Megamind has one in these frames): every label may change across a cut, "
        "and the pixels whose grey level happens to be the same in the two scenes count as still; the column that "
        "leaves those pairs out shows the filters on the rest (the targets are on the flicker column).",
        "",
        "| clip | mode | flicker (still px) % | x per frame | x per frame, the pairs across a scene cut left out | "
        "TC % | agreement with per frame % |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, path in files.items():
        if name == "tree":
            continue
        lines.extend(measure(name, path))
        print(lines[-1], file=sys.stderr, flush=True)
    show_section(SECTION, "\n".join(lines) + "\n", args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
