#!/usr/bin/env python
"""Live video on a trained network's scores (issues 53 and 65): the video filters judged where they matter. One
command::

    .venv/bin/python -m benchmarks video_proxy [--write]

No trained CLIP weights are reachable from this machine (no network but the package registries; no wheel on PyPI or
package in Debian carries them), so ``python -m benchmarks video`` measures speed on a random-weight ZegCLIP, whose
scores are near-tied everywhere: flicker measured on them is noise. This program judges the filters (the camera
loop's own: ``StreamFilter``, ``LookAheadFilter``, default options) on the per-frame scores of a *trained* segmenter:
MediaPipe's selfie segmenter, a person / background network bundled in the ``mediapipe`` wheel, on every clip of
``benchmarks video`` (the same frames). It is a proxy: two classes, a model made for people close to a camera, not
this product's model; its scores are a trained model's, sure of most of the frame and hesitating at its boundaries.

MediaPipe pins its own NumPy and protobuf, so its scores are made in a virtual environment of their own, which this
program creates with pip from PyPI the first time (it says what it installs, where, and what it costs, before it
does: ``--no-install`` refuses, ``--env DIR`` reuses one), then runs ``benchmarks/_mediapipe_dump.py`` there. The
scores are kept in ``--scores`` (``out/video_proxy``) and reused while they are the same clips' (``made_by.json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .common import REPO, machine_description, show_section

SECTION = "## Live video on a trained network's scores (issue 53, a proxy)"  # (issue 65: one command, every clip)
FRAMES = 30
STRIDE = 4  # the filter's class-score stride (TemporalOptions.score_stride)
MARKER = ".zsseg-video-proxy-env"  # in an environment this benchmark made: the only kind it may clear and refill
MEDIAPIPE = "mediapipe==0.10.21"  # the legacy solutions API (SelfieSegmentation); the numbers of issue 53 used it
COST = (
    f"{MEDIAPIPE} and what it depends on (jax, jaxlib, matplotlib, opencv-contrib-python, NumPy < 2, protobuf < 5, "
    "...): about 120 MB downloaded from PyPI, about 1 GB installed (990 MB measured on 2026-11-26), 1-3 minutes"
)
MODES: List[Tuple[str, Dict[str, Any]]] = [
    ("--stabilize", {"stabilize": True}),
    ("--stabilize, hysteresis 0 (the blend alone)", {"stabilize": True, "hysteresis": 0.0}),
    ("--stabilize-delay 2 (look-ahead)", {"delay": 2}),
    ("--stabilize-delay 4 (look-ahead)", {"delay": 4}),
    ("--keyframe-every 4", {"keyframe_every": 4}),
]
VOTE_RADII = (2, 4, 6)  # the oracle rows (video_metrics.voted over 5, 9 and 13 frames: 2, 4 and 6 ahead)
FLICKER_TARGET, AGREEMENT_TARGET = 1 / 3, 95.0


def clips() -> Dict[str, Tuple[str, int, int]]:
    """Each clip of ``benchmarks video``: its file, first frame, frame count."""
    from ._video_clips import CLIPS, DATA

    return {name: (str(DATA / file), start, FRAMES) for name, (file, start) in CLIPS.items()}


def ensure_scores(folder: Path, env: Path, install: bool) -> None:
    """MediaPipe's per-frame scores of every clip in ``folder``: reused when they are these clips', else made in the
    environment ``env`` (created and filled with pip first when it has no MediaPipe, unless ``install`` is False)."""
    wanted = clips()
    stamp = folder / "made_by.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("clips") == {k: list(v) for k, v in wanted.items()}:
        print(
            f"video_proxy: reusing the scores in {folder} (made by MediaPipe {json.loads(stamp.read_text())['mediapipe']})"
        )
        return
    python = env / "bin" / "python"
    if not _has_mediapipe(python):
        if not install:
            raise SystemExit(
                f"video_proxy: the scores need MediaPipe in a virtual environment ({env} has none) and --no-install "
                f"refuses to make one; without it: {COST}"
            )
        print(f"video_proxy: the proxy's scores need {COST}.", flush=True)
        print(f"video_proxy: creating a throwaway virtual environment at {env} and installing {MEDIAPIPE} there with "
              "pip (--no-install refuses; --env DIR reuses another; delete the folder to reclaim the space)", flush=True)  # fmt: skip
        marker = env / MARKER
        if env.exists() and any(env.iterdir()) and not marker.is_file():  # never clear a folder it did not make
            raise SystemExit(
                f"video_proxy: {env} exists and is not an environment this benchmark made (no {MARKER}); it is "
                "left as it is: pass --env with a new folder, or one with MediaPipe installed"
            )
        venv.EnvBuilder(with_pip=True, clear=marker.is_file()).create(str(env))
        marker.write_text("made by python -m benchmarks video_proxy; delete the folder to reclaim the space\n")
        command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", MEDIAPIPE]
        print("video_proxy: " + " ".join(command), flush=True)
        subprocess.run(command, check=True)
    print(f"video_proxy: per-frame scores of {', '.join(wanted)} into {folder} (MediaPipe, {env})", flush=True)
    dump = REPO / "benchmarks" / "_mediapipe_dump.py"
    subprocess.run([str(python), str(dump), str(folder), json.dumps(wanted)], check=True)


def _has_mediapipe(python: Path) -> bool:
    if not python.is_file():
        return False
    return subprocess.run([str(python), "-c", "import mediapipe.solutions"], capture_output=True).returncode == 0


def replay(frames, person, options: Optional[Dict[str, Any]]) -> List[Any]:
    """The label maps of one mode: per frame (``options`` None), ``StreamFilter(TemporalOptions(**options))``, or the
    look-ahead (``{"delay": N}``: ``LookAheadFilter``), on the class scores ``[1 - p, p]`` at ``1/STRIDE``
    (area-averaged, as the Engine keeps them)."""
    import numpy as np

    from zsseg_rt.pipeline.class_scores import ClassScores, _area_resize, state_size
    from zsseg_rt.stream.video_filter.lookahead import LookAheadFilter
    from zsseg_rt.stream.video_filter.temporal import StreamFilter, TemporalOptions

    options = dict(options or {})
    delay = options.pop("delay", 0)
    flt: Any = None
    if delay:
        flt = LookAheadFilter(TemporalOptions(stabilize=True, **options), delay)
    elif options:
        flt = StreamFilter(TemporalOptions(**options))
    out: List[Any] = []
    for index, (frame, p) in enumerate(zip(frames, person)):
        size = p.shape
        full = np.stack([1.0 - p, p]).astype(np.float32)
        scores = ClassScores(_area_resize(full, state_size(size, STRIDE)), size)
        labels, winning = scores.finalize()
        if flt is None:
            out.append(labels)
            continue
        plan = flt.plan(frame, "vocabulary")
        if delay:
            out.extend(item[1] for item in flt.push(plan, labels, winning, scores, "vocabulary", index))
        elif plan.keyframe:
            out.append(flt.keyframe(plan, labels, winning, scores, "vocabulary")[0])
        else:
            out.append(flt.propagate(plan)[0])
    if delay:
        out.extend(item[1] for item in flt.flush())
    return out


def measure(name: str, path: Path) -> Tuple[List[str], List[str]]:
    """The table rows of one clip and its verdict lines."""
    import numpy as np

    from zsseg_rt.stream.video_filter import video_metrics as vm

    from ._video_clips import ClipMotion

    data = np.load(path)
    frames, person = list(data["frames"]), data["person"]
    greys = [vm.grey(frame) for frame in frames]
    cuts = ClipMotion(frames).cuts  # the filter's own scene-cut test on each pair

    def flicker(labels, skip=()):
        values = [vm.flicker(greys[k - 1], greys[k], labels[k - 1], labels[k]) for k in range(1, len(labels))
                  if k not in skip]  # fmt: skip
        return 100.0 * float(np.mean([v for v in values if v is not None]))

    def tc(labels):
        pairs = range(1, len(labels))
        return 100.0 * float(np.mean([vm.temporal_consistency(greys[k - 1], greys[k], labels[k - 1], labels[k])
                                      for k in pairs]))  # fmt: skip

    def ratio(value: float, base: float) -> str:
        return f"{value / base:.2f}" if base > 0 else "n/a"

    per_frame = replay(frames, person, None)
    base, base_uncut = flicker(per_frame), flicker(per_frame, cuts)
    rows = [f"| {name} | per frame | {base:.3f} | 1.00 | 1.00 | {tc(per_frame):.2f} | 100.00 |"]
    measured: Dict[str, Tuple[float, float]] = {}
    oracles = [(f"oracle: per-frame labels voted over {2 * r + 1} frames (sees {r} ahead)", r) for r in VOTE_RADII]
    for mode, options in MODES + oracles:
        labels = vm.voted(per_frame, options) if isinstance(options, int) else replay(frames, person, options)
        agreement = 100.0 * float(np.mean([vm.agreement(a, b) for a, b in zip(labels, per_frame)]))
        value, uncut = flicker(labels), flicker(labels, cuts)
        measured[mode] = (uncut, agreement)
        rows.append(f"| {name} | {mode} | {value:.3f} | {ratio(value, base)} | {ratio(uncut, base_uncut)} | "
                    f"{tc(labels):.2f} | {agreement:.2f} |")  # fmt: skip
        print(rows[-1], file=sys.stderr, flush=True)
    return rows, verdicts(name, base_uncut, measured)


def verdicts(name: str, base: float, measured: Dict[str, Tuple[float, float]]) -> List[str]:
    """The targets on this clip: the stabilised flicker (the pairs across a scene cut left out) at most a third of
    the per-frame flicker, ``--keyframe-every 4`` agreeing with per frame on at least 95 % of the pixels."""
    causal, ahead = measured["--stabilize"][0], measured["--stabilize-delay 4 (look-ahead)"][0]
    agreement = measured["--keyframe-every 4"][1]
    if base > 0:
        flicker = (f"**{'met' if causal <= FLICKER_TARGET * base else 'missed'}** (--stabilize {causal / base:.2f} of "
                   f"per frame; the look-ahead of 4: {ahead / base:.2f})")  # fmt: skip
    else:  # no per-frame flicker (the proxy sees no person): nothing to reduce, so not judged; the filters add none
        flicker = (f"not judged: no per-frame flicker to reduce (the proxy finds no person here); the filters add "
                   f"{'none' if causal == 0 else 'some: **missed**'} (--stabilize {causal:.3f} %)")  # fmt: skip
    keyframes = f"**{'met' if agreement >= AGREEMENT_TARGET else 'missed'}** ({agreement:.2f} %)"
    return [f"- {name}: flicker <= 1/3 of per frame {flicker}; --keyframe-every 4 >= 95 % agreement {keyframes}"]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="also put the section into BENCHMARKS.md")
    ap.add_argument("--scores", type=Path, default=REPO / "out" / "video_proxy", help="where the scores are kept")
    ap.add_argument("--env", type=Path, default=None,
                    help="the MediaPipe environment to use or create (default: SCORES/mediapipe-env)")  # fmt: skip
    ap.add_argument("--no-install", action="store_true", help="never create the environment (stop if it is needed)")
    args = ap.parse_args(argv)
    env = args.env or args.scores / "mediapipe-env"
    ensure_scores(args.scores, env, install=not args.no_install)
    made_by = json.loads((args.scores / "made_by.json").read_text())["mediapipe"]
    lines = [
        SECTION,
        "",
        "Regenerate: `.venv/bin/python -m benchmarks video_proxy --write` (one command: the first run makes MediaPipe's "
        f"scores in a virtual environment it creates with pip, {MEDIAPIPE}, and says so before it does).",
        "",
        *machine_description(1)[:1],
        f"- Scores: MediaPipe {made_by}'s selfie segmenter (general model), a trained person / background network, per "
        "frame with nothing carried between frames, as class scores `[1 - p, p]` at 1/4 of the frame; the filters "
        "are the camera loop's (`StreamFilter`, `LookAheadFilter`) with their default options; every clip and frame "
        "of `benchmarks video`. **A proxy**: two classes and another model than this product's; it judges the "
        "filters on a trained model's confident scores (the random-weight ZegCLIP of the table above is near-tied "
        "everywhere: its flicker is noise, its table is for speed).",
        "- The targets are judged on the column that leaves out the pairs across a scene cut (the filter's own test: "
        "Megamind has one in these frames): every label may change across a cut, and the pixels whose grey level "
        "happens to be the same in the two scenes count as still.",
        "- The oracle rows are not filters: the per-frame labels voted pixel by pixel over a window that sees frames "
        "ahead (`video_metrics.voted`); the look-ahead rows are the filter of `--stabilize-delay N` (docs/video.md).",
        "",
        "| clip | mode | flicker (still px) % | x per frame | x per frame, the pairs across a scene cut left out | "
        "TC % | agreement with per frame % |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    verdict_lines: List[str] = []
    for name in clips():
        rows, verdict = measure(name, args.scores / f"{name}.npz")
        lines.extend(rows)
        verdict_lines.extend(verdict)
    lines += ["", "Targets (on the proxy):", *verdict_lines]
    show_section(SECTION, "\n".join(lines) + "\n", args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
