"""``zsseg segment`` over a large folder holds nothing per image (issue 79, F16: resident memory grew by about
1.4 KB an image, 10 000 PNGs of 8x8: each image's summary dict was kept to the end, though only ``--json`` prints
them). Counted, not timed: the Python allocations of zsseg_rt/cli/ still alive when the run ends, less those alive
when its first image began (tracemalloc), per image."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np

from zsseg_rt import cli
from zsseg_rt.cli import segment, segment_lines

IMAGES = 60


def _kept_per_image(tmp_path, tiny_bundle, count: int, monkeypatch, extra=()) -> float:
    """Bytes a run holds per image it segmented: the allocations made in zsseg_rt/cli/ and alive when its closing
    lines are printed, less those alive when its first image was written (the input list and the planned output
    paths, made before it), over the images segmented since."""
    folder = tmp_path / f"in{count}"
    folder.mkdir()
    for k in range(count):
        cv2.imwrite(str(folder / f"{k:05d}.png"), np.full((8, 8, 3), k % 250, np.uint8))
    alive = []

    def measure() -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*zsseg_rt/cli/*")])
        alive.append(sum(stat.size for stat in snapshot.statistics("filename")))

    one, closing = (
        segment_lines.ImageLines.written,
        segment._closing_lines,
    )  # an image's line or entry once it is written

    def first_measured(*args, **kwargs):
        if not alive:
            measure()
        return one(*args, **kwargs)

    def end_measured(*args, **kwargs):  # every image done, what the run kept still referenced
        measure()
        return closing(*args, **kwargs)

    monkeypatch.setattr(segment_lines.ImageLines, "written", first_measured)
    monkeypatch.setattr(segment, "_closing_lines", end_measured)
    argv = ["segment", str(folder), "-o", str(tmp_path / f"out{count}"), "--bundle", tiny_bundle]
    argv += ["--classes", "a,b", "--backend", "onnxruntime", "--visualize", "mask", *extra]
    tracemalloc.start()
    try:
        assert cli.main(argv) == 0
    finally:
        tracemalloc.stop()
    assert len(alive) == 2
    return (alive[1] - alive[0]) / (count - 1)


def test_a_large_folder_keeps_nothing_per_image(tmp_path, tiny_bundle, monkeypatch, capfd):
    per_image = _kept_per_image(tmp_path, tiny_bundle, IMAGES, monkeypatch)
    capfd.readouterr()
    assert per_image < 64, per_image  # at b235fde: about 1 KB an image (its summary dict)


def test_json_keeps_each_images_summary(tmp_path, tiny_bundle, monkeypatch, capfd):
    """The control: with --json the summaries are the output, kept to the end (the measure sees them)."""
    per_image = _kept_per_image(tmp_path, tiny_bundle, IMAGES, monkeypatch, ["--json"])
    capfd.readouterr()
    assert per_image > 300, per_image
