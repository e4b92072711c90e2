"""One output per source from one pattern runs for every kind (issue 87, M2): ``-o "m_{source}.mcap"`` (and
``{index}``) with two sources failed at 7f842ed ("source 1 of a robot output with 1 sources": the second source's
file was given the runner's index of the source), after a ``.partial.mcap`` was started, which then refused the next
run. And a failed start leaves no empty partial file to refuse the next run."""

from __future__ import annotations

import errno
import os

import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mcap_ros2")
from robot_readers import read_mcap_ros2  # noqa: E402
from stream_fakes import write_band_clip  # noqa: E402

FRAMES = 5


def _labels(path) -> dict:
    """{topic: label messages} of the /NAME/labels topics of an MCAP file."""
    counts: dict = {}
    for message in read_mcap_ros2(path):
        if message.topic.endswith("/labels"):
            counts[message.topic] = counts.get(message.topic, 0) + 1
    return counts


@pytest.mark.time_bound(300)
@pytest.mark.parametrize(("pattern", "names"), [("m_{source}.mcap", ("clip", "front")), ("m_{index}.mcap", ("0", "1"))])
def test_one_mcap_file_per_source(tmp_path, tiny_bundle, capsys, pattern, names):
    """``zsseg camera clip.avi front=clip.avi -o PATTERN --max-frames 5``: exit 0, one MCAP file per source, each with
    its source's 5 label messages, nothing left beside them."""
    from zsseg_rt import cli

    clip = write_band_clip(tmp_path / "clip.avi", frames=8)
    argv = ["camera", clip, f"front={clip}", "--bundle", tiny_bundle, "--classes", "a,b", "--no-progress"]
    code = cli.main([*argv, "-o", str(tmp_path / pattern), "--max-frames", str(FRAMES), "--backend", "onnxruntime"])
    assert code == 0, capsys.readouterr().err  # was 1: "source 1 of a robot output with 1 sources"
    files = [f"m_{name}.mcap" for name in names]
    assert sorted(os.listdir(tmp_path)) == sorted(["clip.avi", *files])
    assert _labels(tmp_path / files[0]) == {"/clip/labels": FRAMES}
    assert _labels(tmp_path / files[1]) == {"/front/labels": FRAMES}


@pytest.mark.time_bound(300)
def test_a_failed_start_leaves_no_partial_that_refuses_the_next_run(tmp_path, tiny_bundle, capsys, monkeypatch):
    """The MCAP writer fails as it starts the file (a full disk): the run fails (exit 1) and the empty partial file
    it had made is removed, so the next run, without --overwrite, runs (was: refused, "left by an interrupted run")."""
    import mcap.writer

    from zsseg_rt import cli

    clip = write_band_clip(tmp_path / "clip.avi", frames=8)
    argv = ["camera", clip, "--bundle", tiny_bundle, "--classes", "a,b", "--no-progress", "--backend", "onnxruntime"]
    argv += ["-o", str(tmp_path / "m.mcap"), "--max-frames", str(FRAMES)]

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(mcap.writer.Writer, "start", full_disk)
        assert cli.main(argv) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["clip.avi"]  # was: m.partial.mcap (0 bytes)
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert _labels(tmp_path / "m.mcap") == {"/clip/labels": FRAMES}
