"""``zsseg_rt.io_safety``: an output path holds its old content or the complete new one, never a truncated file; a
failed write says which path and how much was written (issue 51, defects 1, 2, 7)."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest
from disk_faults import FullDiskOs, fill, small_tmpfs

from zsseg_rt import io_safety
from zsseg_rt.io_safety import (
    AtomicFile,
    OutputWriteError,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    partial_path,
)


def _leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def test_partial_names_keep_the_extension():
    assert partial_path("out.mp4") == "out.partial.mp4"
    assert partial_path(os.path.join("a.b", "clip.final.mkv")) == os.path.join("a.b", "clip.final.partial.mkv")
    assert partial_path("video") == "video.partial"


def test_a_complete_write_replaces_the_file_with_the_usual_permissions(tmp_path):
    path = tmp_path / "classes.json"
    atomic_write_json(str(path), {"0": "cat"})
    assert json.loads(path.read_text()) == {"0": "cat"} and path.read_text().endswith("\n")
    atomic_write_text(str(path), "new\n")
    assert path.read_text() == "new\n" and _leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_a_failed_write_keeps_the_old_file_and_names_what_was_written(tmp_path, monkeypatch):
    path = tmp_path / "labels.png"
    path.write_bytes(b"old image")
    disk = FullDiskOs(budget=5)
    monkeypatch.setattr(io_safety, "os", disk)
    with pytest.raises(OutputWriteError) as caught:
        atomic_write_bytes(str(path), b"0123456789")
    message = str(caught.value)
    assert repr(str(path)) in message and "No space left on device" in message, message
    assert "5 of 10 bytes written; the old file is unchanged" in message, message
    assert caught.value.errno == errno.ENOSPC and caught.value.path == str(path) and disk.failures == 1
    assert path.read_bytes() == b"old image" and _leftovers(tmp_path) == []


def test_a_failed_first_write_leaves_no_file_at_all(tmp_path, monkeypatch):
    monkeypatch.setattr(io_safety, "os", FullDiskOs(budget=0))
    with pytest.raises(OutputWriteError, match="0 of 3 bytes written; no file was written"):
        atomic_write_bytes(str(tmp_path / "classes.json"), b"abc")
    assert os.listdir(tmp_path) == []  # was: a 0-byte classes.json


def test_a_value_json_cannot_hold_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "stats.json"
    path.write_text("{}")
    with pytest.raises(TypeError):
        atomic_write_json(str(path), {"bad": object()})
    assert path.read_text() == "{}" and _leftovers(tmp_path) == []


def test_a_streamed_file_replaces_the_old_one_only_when_committed(tmp_path):
    final = tmp_path / "out.mp4"
    final.write_bytes(b"old video")
    with AtomicFile(str(final)) as output:
        assert output.partial == str(tmp_path / "out.partial.mp4") and not output.leftover
        with open(output.partial, "wb") as handle:
            handle.write(b"new video")
        assert final.read_bytes() == b"old video" and output.size() == 9  # not replaced before the end
    assert final.read_bytes() == b"new video" and not os.path.exists(output.partial)


def test_a_streamed_file_that_failed_keeps_the_old_one_and_its_partial(tmp_path):
    final = tmp_path / "out.mp4"
    final.write_bytes(b"old video")
    with pytest.raises(RuntimeError, match="encoder died"):
        with AtomicFile(str(final)) as output:
            with open(output.partial, "wb") as handle:
                handle.write(b"half")
            raise RuntimeError("encoder died")
    assert final.read_bytes() == b"old video" and (tmp_path / "out.partial.mp4").read_bytes() == b"half"
    assert AtomicFile(str(final)).leftover  # the next run knows it replaces a leftover
    output.discard()
    assert not os.path.exists(output.partial)


def test_a_real_full_disk(tmp_path):
    """On a tmpfs filled up: the write fails with ENOSPC, nothing half-written stays, and the old file is intact."""
    with small_tmpfs(tmp_path / "disk", size_kib=64) as disk:
        old = os.path.join(disk, "classes.json")
        atomic_write_text(old, '{"0": "cat"}\n')
        fill(disk)
        with pytest.raises(OutputWriteError) as caught:
            atomic_write_bytes(old, b"x" * 10000)
        assert caught.value.errno == errno.ENOSPC and "No space left on device" in str(caught.value)
        with open(old, encoding="utf-8") as handle:
            assert handle.read() == '{"0": "cat"}\n'
        with pytest.raises(OutputWriteError, match="no file was written"):
            atomic_write_bytes(os.path.join(disk, "new.json"), b"y" * 10000)
        assert sorted(os.listdir(disk)) == ["classes.json", "filler"]
