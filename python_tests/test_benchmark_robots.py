"""``python -m benchmarks robots``'s objects row (issue 81, item 4): what it times on a row's label maps (finding the
objects, encoding both messages) counts the objects and the messages' bytes of each frame, and its verdict against
``--live``'s frame time says met or missed at the 5 % target. Values are injected: no timing is asserted (the numbers
live in BENCHMARKS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")

REPO = Path(__file__).resolve().parent.parent


def _robots():
    sys.path.insert(0, str(REPO))
    try:
        import benchmarks.robots as robots
    finally:
        sys.path.remove(str(REPO))
    return robots


def _maps():
    rng = np.random.default_rng(3)
    maps = []
    for cells in ((3, 4), (6, 8)):  # 768x576 blobs of 25 classes, coarser and finer
        small = rng.integers(0, 25, cells).astype(np.uint8)
        labels = np.kron(small, np.ones((576 // cells[0], 768 // cells[1]), np.uint8))
        maps.append((labels, rng.random(labels.shape, dtype=np.float32)))
    return maps


def test_time_objects_counts_each_frames_objects_and_message_bytes():
    from zsseg_rt.outputs import object_messages
    from zsseg_rt.runtime.objects import find_objects
    from zsseg_rt.runtime.result import palette

    robots = _robots()
    names = [f"c{i}" for i in range(25)]
    maps = _maps()
    row = robots.time_objects(maps, names)
    found = [find_objects(labels, names, scores=scores) for labels, scores in maps]
    assert [len(f) for f in found] != [0, 0]
    assert row["objects_per_frame"] == sum(len(f) for f in found) / 2
    sizes = [
        len(object_messages.detection_2d_array(k, "vtest", f))
        + len(object_messages.image_annotations(k, f, palette(25)))
        for k, f in enumerate(found)
    ]
    assert row["objects_bytes"] == sum(sizes) / 2
    assert row["objects_ms"] == pytest.approx(row["objects_find_ms"] + row["objects_encode_ms"])
    assert all(row[key] >= 0 for key in ("objects_find_ms", "objects_encode_ms", "objects_wall_ms"))


@pytest.mark.parametrize(
    "cost, verdict, idle",
    [(4.9, "met", "within"), (5.1, "**missed**", "within"), (9.0, "**missed**", "**over**")],
    ids=["met", "missed-control", "over-when-idle"],
)
def test_the_objects_verdict_judges_against_the_live_frame_time(cost, verdict, idle):
    robots = _robots()
    rows = [
        {"frames": 60, "objects_ms": cost, "objects_find_ms": cost - 0.5, "objects_encode_ms": 0.5}
        | {"objects_wall_ms": 2 * cost, "objects_per_frame": 12.0, "objects_bytes": 8 * 1024.0}
    ]
    (line,) = robots._objects_verdict(rows, peer=100.0, peer_cpu=50.0)
    assert f"{cost:.2f} ms of CPU a frame" in line and f"= {cost:.2f} % of `--live`'s frame time (100.0 ms" in line
    assert line.split("target <= 5 %): ")[1].startswith(verdict + ";")
    assert "12.0 objects a frame, their messages 8.0 KiB a frame" in line
    assert f"{2 * cost:.2f} % of the CPU time `--live` spends on a frame (50.0 ms)" in line
    assert f"{100 * cost / 157:.1f} % of an idle machine's 157 ms frame time ({idle} the target there)" in line
    assert robots.OBJECTS_ROW in [label for label, _ in robots.ROWS]
