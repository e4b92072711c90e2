"""``zsseg camera --labels-out DIR``: a 16-bit PNG of class indices per frame named by its frame number, the class list
in classes.json (with the frame each vocabulary starts at), staged until the run ends well (a failed write leaves the
folder as it was, with no temporary behind; the camera's whole policy: test_output_policy.py). The camera command's
video options end to end: python_tests/cli/test_cli_camera_video.py."""

import errno
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from zsseg_rt.outputs.labels import read_labels  # noqa: E402
from zsseg_rt.stream import LabelFolderSink  # noqa: E402


def _result(labels, names):
    return SimpleNamespace(labels=np.asarray(labels), class_names=list(names))


def test_label_pngs_are_16_bit_named_by_frame_with_the_classes_beside(tmp_path):
    sink = LabelFolderSink(str(tmp_path / "labels"))
    names = [f"class{i}" for i in range(301)]  # label 300 needs more than 8 bits
    first = np.arange(12, dtype=np.int32).reshape(3, 4) * 25
    sink.write_result(SimpleNamespace(index=0), _result(first, names))
    sink.write_result(SimpleNamespace(index=7), _result(first[::-1], names))  # frames 1-6 dropped (a live camera)
    sink.write_result(SimpleNamespace(index=8), _result(np.ones((3, 4), np.int32), ["wall", "floor"]))
    assert _visible(tmp_path / "labels") == []  # staged until the sink is closed (the run ended well)
    sink.close()
    assert _visible(tmp_path / "labels") == ["000000.png", "000007.png", "000008.png", "classes.json"]
    raw = cv2.imread(str(tmp_path / "labels" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and np.array_equal(raw, first) and raw.max() == 275
    assert (
        np.array_equal(read_labels(str(tmp_path / "labels"), 7), first[::-1]) and read_labels(str(tmp_path), 3) is None
    )
    with open(tmp_path / "labels" / "classes.json", encoding="utf-8") as handle:
        classes = json.load(handle)
    assert classes["classes"] == ["wall", "floor"] and classes["class_map"] == {"0": "wall", "1": "floor"}
    assert [(v["first_frame"], len(v["classes"])) for v in classes["vocabularies"]] == [(0, 301), (8, 2)]
    assert sink.describe() == {"path": str(tmp_path / "labels"), "kind": "labels", "frames": 3, "format": "16-bit PNG"}
    with pytest.raises(OSError, match=r"'.*000000.png' \(and 3 more\) exists already: pass overwrite=True"):
        LabelFolderSink(str(tmp_path / "labels"))  # Python's words for the flag


def _visible(folder) -> list:
    return sorted(name for name in os.listdir(folder) if not name.startswith(".")) if os.path.isdir(folder) else []


def test_a_failed_write_keeps_the_old_maps_and_leaves_no_temporary(tmp_path, monkeypatch):
    folder = tmp_path / "labels"
    sink = LabelFolderSink(str(folder))
    sink.write_result(SimpleNamespace(index=3), _result(np.zeros((2, 2), np.int32), ["a", "b"]))
    sink.close()
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    sink = LabelFolderSink(str(folder), overwrite=True)
    sink.write_result(SimpleNamespace(index=0), _result(np.ones((2, 2), np.int32), ["a", "b", "c"]))
    real_replace = os.replace

    def disk_full(source, target):
        if str(target).endswith("000003.png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", disk_full)
    message = r"cannot write '.*labels/000003.png': No space left on device \(2 files staged before it; nothing in"
    with pytest.raises(OSError, match=message):
        sink.write_result(SimpleNamespace(index=3), _result(np.ones((2, 2), np.int32), ["a", "b", "c"]))
    monkeypatch.undo()
    sink.abort()
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before  # no staging folder left


def test_a_labels_folder_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(OSError, match="is a file, not a folder"):
        LabelFolderSink(str(target))
