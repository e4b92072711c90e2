"""The outputs of the commands without a frame stream (zsseg_rt.outputs.run_outputs, RunOutputs.for_results): the table's kinds a command
takes, through one output plan; the COCO masks written by the one COCO writer (outputs/coco_sink.py's CocoSink) on
every command; nothing written when no result came or the run failed."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from zsseg_rt.outputs.plan import OutputRefused
from zsseg_rt.outputs.result_outputs import ResultFrame
from zsseg_rt.outputs.run_outputs import RunOutputs
from zsseg_rt.runtime.result import Result

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "..", "zsseg_rt")


def _result(value: int = 1) -> Result:
    labels = np.zeros((6, 8), np.int32)
    labels[2:4, 3:6] = value
    return Result(labels, None, ["a", "b"], unknown_below=None)


def coco_writers(root: str):
    """The modules of ``root`` that make a COCO document (``CocoMasks(``), as paths relative to ``root``."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as handle:
                    if re.search(r"\bCocoMasks\(", handle.read()):
                        found.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return sorted(found)


def test_one_coco_writer():
    writers = coco_writers(PACKAGE)
    assert writers == ["outputs/coco_sink.py"], writers  # before: cli/segment_coco.py made its own too


def test_the_writer_finder_finds_a_second_writer(tmp_path):
    """Control: a module making its own COCO document is found."""
    (tmp_path / "other.py").write_text("masks = CocoMasks('mine')\n")
    assert coco_writers(str(tmp_path)) == ["other.py"]


def test_segment_coco_entries_name_images_and_video_frames(tmp_path):
    path = tmp_path / "masks.json"
    outputs = RunOutputs.opened("segment", [], False, coco_json=str(path))
    outputs.add(_result(), ResultFrame(0, path="photos/a.jpg"))
    outputs.add(_result(), ResultFrame(42, video="clips/c.mp4"))
    written = outputs.finish()
    assert [kind for kind, _ in written] == ["coco"] and written[0][1]["frames"] == 2
    document = json.loads(path.read_text())
    assert document["info"]["description"] == "zsseg segment label maps"
    images = [{k: v for k, v in image.items() if k not in ("id", "height", "width")} for image in document["images"]]
    assert images == [
        {"file_name": "photos/a.jpg"},
        {"file_name": "clips/c/frame_000042.png", "frame": 42, "video": "clips/c.mp4"},
    ]


def test_no_result_or_a_failed_run_writes_nothing(tmp_path):
    path = tmp_path / "masks.json"
    outputs = RunOutputs.opened("segment", [], False, coco_json=str(path))
    assert outputs.finish() == [] and not path.exists()  # no result: nothing (as before: no empty COCO file)
    outputs = RunOutputs.opened("segment", [], False, coco_json=str(path))
    outputs.add(_result(), ResultFrame(0, path="a.jpg"))
    outputs.abort()
    assert not path.exists() and os.listdir(tmp_path) == []  # nothing staged left, the owner lock released
    assert outputs.finish() == []


def test_refusals_name_the_path(tmp_path):
    with pytest.raises(OutputRefused, match=r"-o 'out\.mp4' is none of the kinds `zsseg segment` writes: none"):
        RunOutputs.for_results("segment", ["out.mp4"], False)
    mine = str(tmp_path / "classes.json")
    with pytest.raises(OutputRefused, match="is a file this run writes already"):
        RunOutputs.for_results("segment", [], False, taken=[mine], coco_json=mine)
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(OutputRefused, match="exists already: pass --overwrite"):
        RunOutputs.for_results("segment", [], False, coco_json=str(tmp_path / "old.json"))
    assert (tmp_path / "old.json").read_text() == "{}"
