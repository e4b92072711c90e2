"""``zsseg camera``'s defaults and refusals in the user's words (issue 75, E2, E10): a ZegFormer bundle runs at the
camera's defaults (it was refused: "mode must be 'exact', got 'fast'", though the user gave no --mode), and an output
on a read-only file system is said to be on one (it was "Permission denied", to root)."""

from __future__ import annotations

import os
import subprocess

import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import write_band_clip  # noqa: E402


def _camera(capsys, *argv):
    from zsseg_rt import cli

    code = cli.main(["camera", *argv, "--no-progress"])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.host_only  # zsseg camera --backend onnxruntime: ONNX Runtime on the CPU (no CUDA provider on the image)
@pytest.mark.time_bound(900)
def test_a_zegformer_bundle_runs_at_the_cameras_defaults(tmp_path, family_bundles, capsys):
    """E2 (B27): `zsseg camera clip --bundle ZF --classes a,b -o x.mp4` was rc 1, "bundles of the two-stage pipeline
    have one post-processing (the official): mode must be 'exact', got 'fast'". The camera's default (fast) is its
    preference where the bundle has it; a two-stage bundle runs its one order. Control: --mode fast given is
    still refused, in that line."""
    clip = write_band_clip(tmp_path / "clip.avi", frames=3)
    bundle = family_bundles["zegformer"]
    argv = [clip, "--bundle", bundle, "--classes", "a,b", "--backend", "onnxruntime"]
    code, err = _camera(capsys, *argv, "-o", str(tmp_path / "x.mp4"))
    assert code == 0, err
    assert os.path.getsize(tmp_path / "x.mp4") > 0
    code, err = _camera(capsys, *argv, "-o", str(tmp_path / "y.mp4"), "--mode", "fast")
    assert code == 1 and err[-1].endswith("mode must be 'exact', got 'fast'"), err


def _read_only(monkeypatch, folder: str) -> None:
    """``folder``'s file system as a read-only mount looks to a process running as root: writable by its mode,
    refused with EROFS (statvfs says ST_RDONLY)."""
    real_access, real_statvfs = os.access, os.statvfs

    class Flags:
        def __init__(self, found):
            self._found = found
            self.f_flag = found.f_flag | os.ST_RDONLY

        def __getattr__(self, name):
            return getattr(self._found, name)

    def access(path, mode, *args, **kwargs):
        if str(path).startswith(folder) and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    def statvfs(path):
        found = real_statvfs(path)
        return Flags(found) if str(path).startswith(folder) else found

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "statvfs", statvfs)


@pytest.mark.time_bound(300)
@pytest.mark.parametrize("option", ["-o", "--labels-out"])
def test_an_output_on_a_read_only_file_system_says_so(tmp_path, tiny_bundle, capsys, monkeypatch, option):
    """E10 (B51): `-o <ro>/v.mp4` and `--labels-out <ro>/lab` said "is not writable (Permission denied)", the cause
    being EROFS and the user root. Control: a folder this user may not write into still says Permission denied."""
    clip = write_band_clip(tmp_path / "clip.avi", frames=3)
    ro, denied = tmp_path / "ro", tmp_path / "denied"
    ro.mkdir()
    denied.mkdir()
    _read_only(monkeypatch, str(ro))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if str(p) == str(denied) else real_access(p, m))
    _read_only(monkeypatch, str(ro))  # (after the denied folder's: both apply)
    target = "v.mp4" if option == "-o" else "lab"
    for folder, reason in ((ro, "Read-only file system"), (denied, "Permission denied")):
        path = str(folder / target)
        code, err = _camera(capsys, clip, "--bundle", tiny_bundle, "--classes", "a,b", option, path)
        assert code == 1 and err == [
            f"zsseg camera: error: cannot write {option} {path!r}: {str(folder)!r} is not writable ({reason})"
        ], err


@pytest.mark.time_bound(300)
def test_a_real_read_only_mount_is_said_to_be_one(tmp_path, tiny_bundle, capsys):
    """E10 on a real read-only tmpfs (where mounting is permitted)."""
    from disk_faults import small_tmpfs

    clip = write_band_clip(tmp_path / "clip.avi", frames=3)
    with small_tmpfs(tmp_path / "ro", size_kib=64) as ro:
        remounted = subprocess.run(["mount", "-o", "remount,ro", ro], capture_output=True, text=True, check=False)
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount a tmpfs read-only here: {remounted.stderr.strip()}")
        path = os.path.join(ro, "v.mp4")
        code, err = _camera(capsys, clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", path)
        assert code == 1 and err == [
            f"zsseg camera: error: cannot write -o {path!r}: {ro!r} is not writable (Read-only file system)"
        ], err
