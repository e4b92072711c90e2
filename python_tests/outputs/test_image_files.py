"""The files of each image that ``zsseg segment`` and ``zsseg batch`` write as it is done
(``zsseg_rt/outputs/image_files.py``, issue 80 item 2): one writer for both commands, each file whole, an image's
set of files all or nothing, a batch key's sub-folder made, segment's missing folder an error; and their checks by
the output plan's rules (``OutputPlan.in_place``)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.assets import sample_images  # noqa: E402
from zsseg_rt.io_safety import OutputWriteError  # noqa: E402
from zsseg_rt.outputs import image_files  # noqa: E402
from zsseg_rt.runtime.result import Result  # noqa: E402


def _result(classes=3):
    labels = np.arange(12 * 16, dtype=np.int32).reshape(12, 16) % classes
    scores = np.full(labels.shape, 0.5, np.float32)
    return Result(labels, scores, [f"c{i}" for i in range(classes)], "bgr")


def _leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def test_the_views_of_an_image_are_all_or_none(tmp_path, monkeypatch):
    """A write failing at the second view (a full disk): the first view's new file is removed, an older file of a
    view already there is the old one or the new one whole, never a part; no temporary file is left."""
    old = tmp_path / "a_labels.png"
    old.write_bytes(b"old map")
    files = {"mask": str(tmp_path / "a_mask.png"), "labels": str(old)}
    real = image_files.write_image_file
    written = []

    def full_at_the_second(path, data, **kwargs):
        if written:
            raise OutputWriteError(f"No space left on device (writing {path!r})", path, errno.ENOSPC)
        written.append(path)
        real(path, data, **kwargs)

    monkeypatch.setattr(image_files, "write_image_file", full_at_the_second)
    with pytest.raises(OutputWriteError):
        image_files.write_views(_result(), files)
    assert written == [files["mask"]]  # it was written, then removed with the failure
    assert not os.path.exists(files["mask"]) and old.read_bytes() == b"old map"
    assert _leftovers(tmp_path) == []
    monkeypatch.setattr(image_files, "write_image_file", real)
    image_files.write_views(_result(), files)
    assert np.array_equal(cv2.imread(str(old), cv2.IMREAD_UNCHANGED), _result().labels.astype(np.uint8))
    assert os.path.getsize(files["mask"]) > 0


def test_a_failure_after_the_views_removes_them_too(tmp_path):
    """``then`` (the table's outputs take the result) failing: the image's new files go with it."""
    files = {"labels": str(tmp_path / "b.png")}

    def fails(_result):
        raise OSError("the COCO sink refused it")

    with pytest.raises(OSError, match="COCO sink"):
        image_files.write_views(_result(), files, then=fails)
    assert os.listdir(tmp_path) == []


def test_a_batch_keys_folder_is_made_and_segments_missing_folder_is_an_error(tmp_path):
    deep = tmp_path / "x" / "y" / "c.png"
    image_files.write_views(_result(300), {"labels": str(deep)}, fsync=False, make_folders=True)
    assert cv2.imread(str(deep), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # 300 classes: 16-bit
    with pytest.raises(OutputWriteError) as caught:
        image_files.write_views(_result(), {"labels": str(tmp_path / "gone" / "d.png")})
    assert caught.value.path == str(tmp_path / "gone" / "d.png")
    with pytest.raises(OSError, match="no image writer for '.nope'"):
        image_files.write_views(_result(), {"labels": str(tmp_path / "e.nope")})
    assert not (tmp_path / "e.nope").exists() and _leftovers(tmp_path) == []


def test_segment_and_batch_write_through_the_one_writer(tmp_path, tiny_bundle, monkeypatch, capsys):
    """Every file of an image either command writes goes through ``write_image_file``."""
    from zsseg_rt.scale.batch import SegmentWorker, labels_name, output_key

    real = image_files.write_image_file
    seen = []

    def recording(path, data, **kwargs):
        seen.append(os.path.relpath(path, tmp_path))
        real(path, data, **kwargs)

    monkeypatch.setattr(image_files, "write_image_file", recording)
    photo = str(sample_images()[0])
    out = tmp_path / "seg"
    code = cli.main(
        [
            "segment",
            "--bundle",
            tiny_bundle,
            photo,
            "--classes",
            "cat,dog",
            "-o",
            str(out),
            "--backend",
            "onnxruntime",
            "--visualize",
            "overlay,mask",
            "--save-labels",
        ]
    )
    assert code == 0, capsys.readouterr().err
    stem = os.path.splitext(os.path.basename(photo))[0]
    assert sorted(seen) == sorted(
        os.path.relpath(str(out / name), tmp_path) for name in os.listdir(out) if name.startswith(stem)
    ), (seen, os.listdir(out))
    seen.clear()
    worker = SegmentWorker(
        tiny_bundle, ["cat", "dog"], str(tmp_path / "batch"), os.path.dirname(photo), set(), backend="onnxruntime"
    )
    with open(photo, "rb") as handle:
        row = worker._one(handle.read(), photo)
    assert row["status"] == "ok", row
    assert seen == [os.path.join("batch", labels_name(output_key(photo, os.path.dirname(photo))))]


def test_the_plan_checks_files_written_in_place_by_the_rules_of_every_output(tmp_path):
    """``OutputPlan.in_place`` (segment's views): an existing file refused without the flag (with the command's own
    alternative), an input refused, an interrupted run's temporary refused then removed with the flag (said), the
    folder claimed by the plan (or not, when the command holds its lock), and nothing undone by abort or commit."""
    from zsseg_rt.outputs.owner import OwnerLock, owner_lock_path
    from zsseg_rt.outputs.plan import CLI_FLAG, OutputPlan, OutputRefused

    folder = tmp_path / "out"
    folder.mkdir()
    views = [str(folder / "a_overlay.png"), str(folder / "a_mask.png")]
    (folder / "a_mask.png").write_bytes(b"earlier")

    def plan(overwrite, inputs=(), owner=None):
        checks = OutputPlan(overwrite, CLI_FLAG, inputs=inputs)
        checks.in_place("-o", str(folder), views, others=[str(folder / "classes.json")], instead="do X", owner=owner)
        return checks

    with pytest.raises(OutputRefused, match=r"a_mask.png' exists already: pass --overwrite to replace it, or do X$"):
        plan(False).check()
    assert not os.path.exists(owner_lock_path(str(folder), True))  # a refusal leaves no claim
    with pytest.raises(OutputRefused, match="is an input of this run"):
        plan(True, inputs=[views[0]]).check()
    (folder / "a_mask.png").unlink()
    leftover = folder / ".classes.json.0123abcd.tmp"  # an interrupted write of the class map
    leftover.write_bytes(b"half")
    with pytest.raises(
        OutputRefused, match=r"\.classes\.json\.0123abcd\.tmp' is left by an interrupted run writing -o"
    ):
        plan(False).check()
    said = []
    checks = plan(True)
    checks.check()
    assert os.path.exists(owner_lock_path(str(folder), True))  # claimed by the plan
    checks.prepare(say=said.append)
    assert said == [f"removed {leftover}, left by an interrupted run (--overwrite)"] and not leftover.exists()
    (folder / "a_overlay.png").write_bytes(b"written in place")
    checks.abort()
    assert (folder / "a_overlay.png").read_bytes() == b"written in place"  # a stopped run keeps what it wrote
    assert not os.path.exists(owner_lock_path(str(folder), True))
    owner = OwnerLock(str(folder), "-o", folder=True)
    owner.acquire()
    try:
        held = plan(True, owner=owner)
        held.check()  # the command's lock: not taken twice (a second flock of one process would refuse it)
        assert held.owners == []
    finally:
        owner.release()
