#!/usr/bin/env python
"""Objects that keep their identity (issue 89): ``zsseg_rt.ObjectTracker`` judged by an independent MOT metrics
library, py-motmetrics (MOTA, IDF1, ID switches), on label-map sequences whose identities are known, and on a real
clip with a trained network's person masks.

The sequences (:func:`sequences`): label maps of 160 x 240 pixels drawn frame by frame, with every object's identity
and box known (the truth: the objects as the maps show them, so an object that is not drawn in a frame is not in
that frame's truth), run through what ``zsseg camera --track`` runs (``find_objects`` with the Engine's default
``object_min_area``, then the tracker):

- ``crossing``: two people (one class) passing each other on two rows 6 pixels apart (never touching), a box still
  in a corner;
- ``fast``: a person moving its own width (18 px) a frame, and another one walking slowly;
- ``dropout``: a person missing from 3 frames in the middle (not drawn), moving on at its speed meanwhile;
- ``speckles``: two people walking among speckles of their class and of another one, each under
  ``object_min_area`` (no objects, so no tracks);
- ``merge``: two people walking into one another (one region for 5 frames) and apart again.

The lines (issue 89): no ID switch and IDF1 >= 0.98 on every sequence but ``merge``; after the merge the two people
carry two distinct ids again. The controls must fail them: a tracker matching by mask overlap alone (no motion, no
distance: ``ObjectTracker(motion=False)``) loses the fast person; ``track_max_missed=0`` ends the track at the
dropout.

Scoring: each frame's truth and tracker boxes, matched by py-motmetrics' ``MOTAccumulator`` at box IoU >= 0.5 (the
IoU is py-motmetrics' own ``distances.boxiou``: its ``iou_matrix`` calls ``np.asfarray``, which NumPy 2 removed, so the
distance matrix is made from ``boxiou`` on float64 arrays here: ``iou_matrix`` does nothing more), its metrics
computed by ``motmetrics.metrics``. py-motmetrics 1.4.0 (the last release, 2022) is pinned in requirements.txt; it
runs on this NumPy 2 and pandas 3 with that one function avoided.

The real clip (``--clip``, default on): vtest.avi (Debian's opencv-doc, 768x576, people walking), its first
``--clip-frames`` frames, the person masks of MediaPipe's selfie segmenter (the trained proxy of ``benchmarks
video_proxy``, made in its environment), thresholded at 0.5, as label maps of two classes; the tracker's tracks per
person (the ids given over the clip against the people in view) and how often a track's box jumped to another
person (a switch, counted against the masks' own regions matched frame to frame by overlap: no hand-made truth
exists for this clip, so this count is a proxy, said so in the section).

    .venv/bin/python -m benchmarks tracking            # print the section
    .venv/bin/python -m benchmarks tracking --write    # also put it into BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import REPO, machine_description, show_section

SECTION = "## Objects that keep their identity: tracking judged by py-motmetrics (issue 89)"
HEIGHT, WIDTH = 160, 240
NAMES = ["floor", "person", "box"]  # class ids 0, 1, 2 of the sequences' label maps
PERSON, BOX = 1, 2
IDF1_LINE = 0.98
IDLE_LIVE_FRAME_MS = 157.0  # --live on vtest, idle (BENCHMARKS.md "Live video"; benchmarks robots' reference)
TRACK_SHARE = 2.0  # % of --live's frame time for tracking (issue 89)
FRAMES = 40


@dataclasses.dataclass
class Sequence_:
    """A label-map sequence and its truth: per frame, ``(identity, box x y w h)`` of each object drawn."""

    name: str
    labels: List[np.ndarray]
    truth: List[List[Tuple[int, Tuple[int, int, int, int]]]]
    merged: Tuple[int, int] = (0, 0)  # frames [first, stop) where two identities form one region (the merge)


def _draw(frames: int, paths: Dict[int, Callable[[int], Optional[Tuple[int, int, int, int, int]]]]) -> Sequence_:
    """Frames of ``floor`` with each identity's rectangle (``path(frame)``: class, x, y, w, h, or None: not drawn)."""
    labels, truth = [], []
    for frame in range(frames):
        image = np.zeros((HEIGHT, WIDTH), np.uint8)
        seen = []
        for identity, path in paths.items():
            place = path(frame)
            if place is None:
                continue
            kind, x, y, w, h = place
            x0, y0, x1, y1 = max(0, x), max(0, y), min(WIDTH, x + w), min(HEIGHT, y + h)
            if x1 <= x0 or y1 <= y0:
                continue
            image[y0:y1, x0:x1] = kind
            seen.append((identity, (x0, y0, x1 - x0, y1 - y0)))
        labels.append(image)
        truth.append(seen)
    return Sequence_("", labels, truth)


def sequences(frames: int = FRAMES) -> Dict[str, Sequence_]:
    """The five sequences of the module, by name."""
    rng = np.random.default_rng(89)
    made: Dict[str, Sequence_] = {}
    made["crossing"] = _draw(
        frames,
        {
            1: lambda k: (PERSON, 10 + 5 * k, 40, 20, 30),  # right along the top row
            2: lambda k: (PERSON, 210 - 5 * k, 76, 20, 30),  # left along the row below: 6 px apart, never touching
            3: lambda k: (BOX, 200, 124, 30, 30),
        },
    )
    made["fast"] = _draw(
        frames,
        {
            1: lambda k: (PERSON, -10 + 18 * (k % 14), 20, 18, 36),  # its own width a frame (and again from the left)
            2: lambda k: (PERSON, 60 + k, 100, 20, 40),
        },
    )
    made["fast"].truth = _split_wraps(made["fast"].truth, 1, 14, frames)
    made["dropout"] = _draw(
        frames,
        {
            1: lambda k: None if 18 <= k < 21 else (PERSON, 10 + 4 * k, 50, 22, 40),
            2: lambda k: (PERSON, 180, 100, 20, 40),
        },
    )
    made["speckles"] = _draw(
        frames,
        {1: lambda k: (PERSON, 20 + 3 * k, 30, 24, 44), 2: lambda k: (PERSON, 200 - 3 * k, 96, 24, 44)},
    )
    for image in made["speckles"].labels:  # 2x2 specks (4 px: under 0.001 of 38400 px = 39 px), both classes
        for _ in range(25):
            y, x = int(rng.integers(0, HEIGHT - 2)), int(rng.integers(0, WIDTH - 2))
            if not image[max(0, y - 1) : y + 3, max(0, x - 1) : x + 3].any():
                image[y : y + 2, x : x + 2] = PERSON if rng.random() < 0.5 else BOX
    # merge: two people walk into each other (one region from frame 13 to 21), turn at 17 and walk apart
    merge = _draw(
        frames,
        {
            1: lambda k: (PERSON, 40 + 4 * min(k, 17) - 4 * max(0, k - 17), 60, 30, 50),
            2: lambda k: (PERSON, 170 - 4 * min(k, 17) + 4 * max(0, k - 17), 60, 30, 50),
        },
    )
    touching = [
        k
        for k in range(frames)
        if 70 + 4 * min(k, 17) - 4 * max(0, k - 17) >= 170 - 4 * min(k, 17) + 4 * max(0, k - 17)
    ]
    merge.merged = (touching[0], touching[-1] + 1) if touching else (0, 0)
    made["merge"] = merge
    for name, made_one in made.items():
        made_one.name = name
    return made


def _split_wraps(truth, identity: int, period: int, frames: int):
    """The fast person re-enters from the left every ``period`` frames: each pass is a new identity in the truth."""
    out = []
    for frame, seen in enumerate(truth):
        out.append([(i if i != identity else 100 + frame // period, box) for i, box in seen])
    return out


def track_sequence(sequence: Sequence_, tracker: Any) -> List[List[Tuple[int, Tuple[int, int, int, int]]]]:
    """Each frame's ``(track id, box)``: the frame's objects (``find_objects``, the Engine's default limits) through
    ``tracker``."""
    from zsseg_rt.runtime.objects import find_objects

    out = []
    for labels in sequence.labels:
        found = tracker.update(find_objects(labels, NAMES))
        out.append([(int(item.track_id), tuple(int(v) for v in item.box)) for item in found if item.class_id])
    return out


def score(truth, hypotheses, min_iou: float = 0.5) -> Dict[str, float]:
    """py-motmetrics' MOTA, IDF1, ID switches, ids and objects of a sequence (see the module: the IoU distance is
    made from ``motmetrics.distances.boxiou``)."""
    import motmetrics

    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    for seen, found in zip(truth, hypotheses):
        objects = np.array([box for _, box in seen], dtype=np.float64).reshape(-1, 4)
        hypothesis = np.array([box for _, box in found], dtype=np.float64).reshape(-1, 4)
        if len(objects) and len(hypothesis):
            iou = motmetrics.distances.boxiou(objects[:, None], hypothesis[None, :])
            distance = np.where(iou >= min_iou, 1.0 - iou, np.nan)
        else:
            distance = np.empty((len(objects), len(hypothesis)))
        accumulator.update([i for i, _ in seen], [i for i, _ in found], distance)
    metrics = ["mota", "idf1", "num_switches", "num_unique_objects", "num_false_positives", "num_misses"]
    summary = motmetrics.metrics.create().compute(accumulator, metrics=metrics, name="sequence")
    row = summary.iloc[0].to_dict()
    ids = {i for found in hypotheses for i, _ in found}
    return {
        "mota": float(row["mota"]),
        "idf1": float(row["idf1"]),
        "switches": int(row["num_switches"]),
        "objects": int(row["num_unique_objects"]),
        "false_positives": int(row["num_false_positives"]),
        "misses": int(row["num_misses"]),
        "tracks": len(ids),
    }


def after_merge_distinct(sequence: Sequence_, hypotheses) -> bool:
    """After the merge, every frame's two people carry two distinct ids."""
    first_apart = sequence.merged[1]
    return all(len({i for i, _ in found}) == 2 == len(found) for found in hypotheses[first_apart:])


def judge(sequence: Sequence_, tracker: Any) -> Dict[str, Any]:
    """A sequence tracked and scored (:func:`score`); the merge's distinct-ids line too."""
    found = track_sequence(sequence, tracker)
    result: Dict[str, Any] = score(sequence.truth, found)
    if sequence.merged != (0, 0):
        result["distinct_after_merge"] = after_merge_distinct(sequence, found)
    return result


def synthetic_rows() -> List[Tuple[str, str, Dict[str, Any]]]:
    """``(sequence, tracker, score)`` of every sequence with the default tracker, and the two controls."""
    from zsseg_rt.runtime.tracking import ObjectTracker

    made = sequences()
    rows = [(name, "default", judge(sequence, ObjectTracker())) for name, sequence in made.items()]
    rows.append(
        ("fast", "control: mask overlap alone (motion=False)", judge(made["fast"], ObjectTracker(motion=False)))
    )
    rows.append(("dropout", "control: track_max_missed=0", judge(made["dropout"], ObjectTracker(max_missed=0))))
    return rows


# ---- the cost ----
def cost_row(frames: int = 60, classes: int = 25, objects: int = 20, size=(576, 768)) -> Dict[str, Any]:
    """The tracker's CPU time a frame on ``size`` label maps of ``classes`` classes with ``objects`` objects moving
    (rectangles of 20-120 px a side, 2-12 px a frame, on a floor class): ``find_objects`` first (not timed), then
    ``ObjectTracker.update`` timed (``time.thread_time``: it runs in this thread alone; the process's clock, which
    sums every thread's, costs milliseconds a call with OpenCV's thread pool on a loaded machine), after a first
    frame that imports SciPy's ``optimize`` (once a run), against ``--live``'s idle frame time."""
    from zsseg_rt.runtime.objects import find_objects
    from zsseg_rt.runtime.tracking import ObjectTracker

    rng = np.random.default_rng(25)
    names = [f"class{i}" for i in range(classes)]
    sides = rng.integers(20, 120, size=(objects, 2))
    start = rng.integers(0, [size[1] - 120, size[0] - 120], size=(objects, 2)).astype(float)
    speed = rng.uniform(-12, 12, size=(objects, 2))
    kinds = rng.integers(1, classes, size=objects)
    tracker, seconds, found_total = ObjectTracker(), 0.0, 0
    import scipy.optimize  # noqa: F401 - imported by the first assignment of a run, once: not a frame's cost

    for frame in range(frames):
        labels = np.zeros(size, np.uint8)
        for (w, h), (x, y), (dx, dy), kind in zip(sides, start, speed, kinds):
            x0, y0 = int(x + dx * frame) % (size[1] - w), int(y + dy * frame) % (size[0] - h)
            labels[y0 : y0 + h, x0 : x0 + w] = kind
        found = find_objects(labels, names)
        begin = time.thread_time()  # the tracker runs in this thread alone (NumPy, SciPy's assignment)
        tracker.update(found)
        seconds += time.thread_time() - begin
        found_total += len(found)
    return {"track_ms": 1000.0 * seconds / frames, "objects": found_total / frames, "classes": classes}


# ---- the real clip -------------------------------------------------------------------------------------------------
def clip_masks(frames: int, scores: Path, env: Path) -> Tuple[np.ndarray, str]:
    """vtest.avi's first ``frames`` frames' person probabilities from MediaPipe (``benchmarks video_proxy``'s
    environment and dump step; made once into ``scores``), and MediaPipe's version."""
    from ._video_clips import CLIPS, DATA

    target = scores / "vtest.npz"
    stamp = scores / "made_by.json"
    wanted = {"vtest": [str(DATA / CLIPS["vtest"][0]), 0, frames]}
    if not (target.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("clips") == wanted):
        python = env / "bin" / "python"
        found = python.is_file() and subprocess.run([str(python), "-c", "import mediapipe"]).returncode == 0
        if not found:
            raise SystemExit(
                f"tracking: the clip's person masks need MediaPipe's environment ({env}); make it once with "
                "`python -m benchmarks video_proxy` (it says what it installs), or pass --no-clip"
            )
        dump = REPO / "benchmarks" / "_mediapipe_dump.py"
        subprocess.run([str(python), str(dump), str(scores), json.dumps(wanted)], check=True)
        version = subprocess.run(
            [str(python), "-c", "import mediapipe; print(mediapipe.__version__)"], capture_output=True, text=True
        ).stdout.strip()
        stamp.write_text(json.dumps({"clips": wanted, "mediapipe": version}))
    person = np.load(target)["person"]
    return person, json.loads(stamp.read_text())["mediapipe"]


def clip_row(person: np.ndarray) -> Dict[str, Any]:
    """The tracker on the clip's person masks: tracks per person, box jumps to another person (the proxy for
    switches), and the tracker's time per frame."""
    from zsseg_rt.runtime.objects import find_objects
    from zsseg_rt.runtime.tracking import ObjectTracker

    tracker = ObjectTracker()
    per_frame, seconds, jumps = [], 0.0, 0
    last: Dict[int, np.ndarray] = {}
    for probability in person:
        labels = (probability > 0.5).astype(np.uint8)
        found = [item for item in find_objects(labels, ["background", "person"]) if item.class_id == 1]
        start = time.thread_time()
        tracked = tracker.update(found)
        seconds += time.thread_time() - start
        masks = {int(item.track_id): item.mask().astype(bool) for item in tracked}
        for track_id, mask in masks.items():  # a switch: the track's region now overlaps another region's last mask
            before = last.get(track_id)
            if before is None:
                continue
            others = [m for i, m in last.items() if i != track_id and (m & mask).sum() > (before & mask).sum()]
            jumps += bool(others)
        last = masks
        per_frame.append(len(tracked))
    return {
        "frames": len(person),
        "people_per_frame": float(np.mean(per_frame)),
        "most_people": int(max(per_frame)),
        "tracks": tracker.started,
        "jumps": jumps,
        "track_ms": 1000.0 * seconds / max(len(person), 1),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="also put the section into BENCHMARKS.md")
    ap.add_argument("--no-clip", action="store_true", help="the synthetic sequences only")
    ap.add_argument("--clip-frames", type=int, default=120, help="vtest.avi's first N frames")
    ap.add_argument("--scores", type=Path, default=REPO / "out" / "tracking", help="where the clip's masks are kept")
    ap.add_argument("--env", type=Path, default=REPO / "out" / "video_proxy" / "mediapipe-env",
                    help="MediaPipe's environment (benchmarks video_proxy makes it)")  # fmt: skip
    args = ap.parse_args(argv)
    import motmetrics

    rows = synthetic_rows()
    lines = [
        SECTION,
        "",
        "Regenerate: `.venv/bin/python -m benchmarks tracking --write` (the clip's masks: MediaPipe in `benchmarks "
        "video_proxy`'s environment, made once by that benchmark).",
        "",
        *machine_description(1)[:1],
        f"- Scored by py-motmetrics {motmetrics.__version__} (box IoU >= 0.5, its `boxiou`; see the module for why "
        "not its `iou_matrix`): MOTA, IDF1, ID switches; the truth is every object drawn in a frame.",
        f"- Sequences: {HEIGHT} x {WIDTH} label maps, {FRAMES} frames each, objects found as `--objects` finds them "
        "(`object_min_area` 0.001), tracked by `ObjectTracker()` (its defaults) and by the two controls.",
        "",
        "| sequence | tracker | MOTA | IDF1 | ID switches | objects (truth) | tracks | line |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, tracker, result in rows:
        lines.append(
            f"| {name} | {tracker} | {result['mota']:.3f} | {result['idf1']:.3f} | {result['switches']} | "
            f"{result['objects']} | {result['tracks']} | {_verdict(name, tracker, result)} |"
        )
    cost = cost_row()
    share = 100.0 * cost["track_ms"] / IDLE_LIVE_FRAME_MS
    lines += [
        "",
        f"Cost: `ObjectTracker.update` on 768x576 label maps of {cost['classes']} classes with {cost['objects']:.1f} "
        f"objects a frame (20 moving rectangles and the floor; 60 frames, `find_objects` not counted): "
        f"{cost['track_ms']:.3f} ms of CPU a frame = {share:.2f} % of `--live`'s idle frame time "
        f'({IDLE_LIVE_FRAME_MS:.0f} ms, "Live video" above; target <= {TRACK_SHARE:.0f} %): '
        f"{'met' if share <= TRACK_SHARE else '**missed**'} (this thread's CPU time, with a load average of "
        f"{os.getloadavg()[0]:.1f} on this machine's {os.cpu_count()} cores: other work slows it too). The robots "
        "benchmark's tracking column measures it on the `--live` loop's own objects.",
    ]
    if not args.no_clip:
        person, version = clip_masks(args.clip_frames, args.scores, args.env)
        clip = clip_row(person)
        lines += [
            "",
            f"Real clip: vtest.avi's first {clip['frames']} frames, MediaPipe {version}'s person masks (the trained "
            "proxy of `benchmarks video_proxy`) at p > 0.5, each connected region of at least `object_min_area` a "
            f"person: {clip['people_per_frame']:.1f} people a frame (at most {clip['most_people']}), "
            f"{clip['tracks']} tracks over the clip, {clip['tracks'] / max(clip['most_people'], 1):.2f} tracks per "
            f"person in view at once; {clip['jumps']} times a track's region overlapped another track's last mask "
            f"more than its own (the proxy for an ID switch: no hand-made truth exists for this clip); the tracker "
            f"{clip['track_ms']:.3f} ms of CPU a frame.",
        ]
    show_section(SECTION, "\n".join(lines) + "\n", args.write)
    return 0


def _verdict(name: str, tracker: str, result: Dict[str, Any]) -> str:
    if name == "merge":
        ok = result.get("distinct_after_merge")
        return f"two distinct ids after the merge: {'met' if ok else '**missed**'}"
    meets = result["switches"] == 0 and result["idf1"] >= IDF1_LINE
    if tracker == "default":
        return f"no switch, IDF1 >= {IDF1_LINE}: {'met' if meets else '**missed**'}"
    return f"the control fails the line: {'yes' if not meets else '**no**'}"


if __name__ == "__main__":
    sys.exit(main())
