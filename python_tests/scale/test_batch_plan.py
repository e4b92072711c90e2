"""Batch planning and outputs without Ray: input listing, output names, resume bookkeeping, 8/16-bit label PNGs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from zsseg_rt.scale.batch import MANIFEST, _pool_size, label_png_bytes, output_key, plan_batch


def test_label_png_is_16_bit_above_256_classes():
    labels = np.array([[0, 255], [256, 299]], np.int32)
    wide = cv2.imdecode(np.frombuffer(label_png_bytes(labels, 300), np.uint8), cv2.IMREAD_UNCHANGED)
    assert wide.dtype == np.uint16 and wide.tolist() == labels.tolist()
    narrow = cv2.imdecode(np.frombuffer(label_png_bytes(labels[:1], 256), np.uint8), cv2.IMREAD_UNCHANGED)
    assert narrow.dtype == np.uint8 and narrow.tolist() == [[0, 255]]


def test_plan_lists_folders_and_skips_done_images(tmp_path):
    for rel in ("a/x.jpg", "a/y.png", "b/x.jpg", "notes.txt"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / rel).write_bytes(b"")
    out = tmp_path / "out"
    plan = plan_batch(str(tmp_path / "in"), str(out))
    assert plan.total == 3 and [output_key(p, plan.root) for p in plan.sources] == ["a/x", "a/y", "b/x"]
    (out / "a").mkdir(parents=True)
    (out / "a" / "x.png").write_bytes(b"png")  # done: PNG + ok row
    (out / "b").mkdir()
    (out / "b" / "x.png").write_bytes(b"png")  # PNG without a manifest row (killed before the row): redone
    rows = [{"key": "a/x", "labels": "a/x.png", "status": "ok"}, {"key": "a/y", "labels": "a/y.png", "status": "error"}]
    (out / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"key": "trunc')  # torn last line
    plan = plan_batch(str(tmp_path / "in"), str(out))
    assert [output_key(p, plan.root) for p in plan.sources] == ["a/y", "b/x"] and plan.done_keys == {"a/x"}
    assert len(plan_batch(str(tmp_path / "in"), str(out), resume=False).sources) == 3
    glob_plan = plan_batch(str(tmp_path / "in" / "**" / "*.jpg"), str(out))
    assert [output_key(p, glob_plan.root) for p in glob_plan.sources] == ["b/x"] and glob_plan.total == 2


def test_plan_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plan_batch(str(tmp_path / "missing"), str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        plan_batch(str(tmp_path / "empty"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="workers"):
        _pool_size(0)
    with pytest.raises(ValueError, match="min <= max"):
        _pool_size((3, 2))
    assert _pool_size((1, 4)) == {"min_size": 1, "max_size": 4}
