"""Batch planning and outputs without Ray: input listing, output names, resume bookkeeping, 8/16-bit label PNGs."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from zsseg_rt.scale.batch import (
    MANIFEST,
    _pool_size,
    check_pool_fits,
    label_png_bytes,
    output_key,
    plan_batch,
    prepare_batch,
)


def test_label_png_is_16_bit_above_256_classes():
    labels = np.array([[0, 255], [256, 299]], np.int32)
    wide = cv2.imdecode(np.frombuffer(label_png_bytes(labels, 300), np.uint8), cv2.IMREAD_UNCHANGED)
    assert wide.dtype == np.uint16 and wide.tolist() == labels.tolist()
    narrow = cv2.imdecode(np.frombuffer(label_png_bytes(labels[:1], 256), np.uint8), cv2.IMREAD_UNCHANGED)
    assert narrow.dtype == np.uint8 and narrow.tolist() == [[0, 255]]


def test_plan_lists_folders_and_skips_done_images(tmp_path):
    for rel in ("a/x.jpg", "a/y.png", "b/x.jpg", "notes.txt"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / rel).write_bytes(b"x")
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


def test_empty_and_oversized_files_are_refused_unread(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "ok.png").write_bytes(b"x" * 100)
    with open(folder / "long.tif", "wb") as handle:
        handle.truncate(3 * 1000 + (1 << 20) + 1)  # one byte more than an image of 1000 pixels may take
    plan = plan_batch(str(folder), str(tmp_path / "out"), max_pixels=1000)
    assert [os.path.basename(p) for p in plan.sources] == ["ok.png"] and plan.total == 3
    reasons = {os.path.basename(path): why for path, why in plan.rejected}
    assert "is empty (0 bytes)" in reasons["empty.png"]
    assert "has 1051577 bytes, more than an image of the pixel limit can take (1051576)" in reasons["long.tif"]
    assert len(plan_batch(str(folder), str(tmp_path / "out"), max_pixels=0).sources) == 2  # 0: no limit


def test_arguments_are_checked_before_ray(tmp_path, tiny_bundle):
    """prepare_batch needs no Ray: a missing bundle, too many classes, a bad pool or output are refused at once."""
    from zsseg_rt.bundle import BundleError

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"x")
    with pytest.raises(BundleError, match="bundle directory not found"):
        prepare_batch(str(folder), str(tmp_path / "out"), str(tmp_path / "nowhere"), "cat")
    with pytest.raises(ValueError, match="at most 32"):
        prepare_batch(str(folder), str(tmp_path / "out"), tiny_bundle, [f"class {i}" for i in range(40)])
    with pytest.raises(ValueError, match="batch_size"):
        prepare_batch(str(folder), str(tmp_path / "out"), tiny_bundle, "cat", batch_size=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        prepare_batch(str(folder), str(tmp_path / "file"), tiny_bundle, "cat")
    with pytest.raises(BundleError, match="not the pinned one"):
        prepare_batch(str(folder), str(tmp_path / "out"), tiny_bundle, "cat", expected_digest="sha256:" + "0" * 64)
    job = prepare_batch(str(folder), str(tmp_path / "out"), tiny_bundle, "cat", workers=2, cpus_per_worker=1.5)
    check_pool_fits(job, cpus=3)
    with pytest.raises(ValueError, match="needs 2 workers x 1.5 CPUs = 3 CPUs but the cluster has 2"):
        check_pool_fits(job, cpus=2)
