"""``zsseg camera -o out.mcap`` and ``-o foxglove://HOST:PORT`` (issue 74), end to end with the tiny bundle: the file's
labels equal the ``--labels-out`` maps of the same run for two readers that are not zsseg_rt's; the output plan's
rules (refused without --overwrite, finished on Ctrl-C and SIGTERM, a killed run's partial file readable up to its
last chunk, a full disk: one line, nothing replaced), each with its control; the live server read by a client of the
protocol; a port in use refused before the model loads; a missing package said in one line. The sinks' own tests:
python_tests/stream/test_robot_outputs.py."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mcap")
pytest.importorskip("mcap_ros2")
from disk_faults import FullDiskOs, small_tmpfs  # noqa: E402
from processes import reading_stderr, signalled  # noqa: E402
from robot_readers import FoxgloveClient, decode_cdr, read_mcap_ros2, read_partial, read_rosbags  # noqa: E402
from stream_fakes import write_band_clip  # noqa: E402
from support import subprocess_env  # noqa: E402

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.outputs.labels import read_labels  # noqa: E402

ENGINE = ["--classes", "a,b", "--no-progress"]


def _main(capsys, *argv):
    """``zsseg camera ARGV`` in this process: (exit code, its stderr lines)."""
    code = cli.main(["camera", *[str(a) for a in argv]])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _popen(argv):
    return subprocess.Popen(
        [sys.executable, "-m", "zsseg_rt.cli", "camera", *[str(a) for a in argv]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(OMP_NUM_THREADS="1"),
    )


def _until(condition, what: str, process=None, seconds: float = 300.0):
    """Poll ``condition`` (a bounded wait: a hang fails, naming ``what``); a process that ends first fails too."""
    deadline = time.monotonic() + seconds
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the camera ended (exit {process.returncode}) before {what}")
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f} s"
        time.sleep(0.05)


def _topic(messages, topic):
    return [m for m in messages if m.topic == topic]


@pytest.fixture
def clip(tmp_path):
    return write_band_clip(tmp_path / "clip.avi", frames=8, fps=10.0)  # 64x48 at 10 fps


@pytest.mark.parametrize("reader", [read_mcap_ros2, read_rosbags], ids=["mcap_ros2", "rosbags"])
def test_the_files_labels_are_the_label_maps_of_the_same_run(tmp_path, tiny_bundle, clip, capsys, reader):
    """`-o out.mcap --labels-out DIR`: every frame's mono16 labels equal its 16-bit PNG bit for bit; the stamps are the
    clip's presentation times (10 fps), strictly increasing; frame_id is the source's name; LabelInfo names the
    classes; the overlay is a JPEG of the frame's size; --stats-json describes the file."""
    out, labels, stats = tmp_path / "out.mcap", tmp_path / "labels", tmp_path / "stats.json"
    argv = [clip, "--bundle", tiny_bundle, *ENGINE, "-o", out, "--labels-out", labels, "--stats-json", stats]
    code, err = _main(capsys, *argv)
    assert code == 0, err
    messages = reader(out)
    frames = _topic(messages, "/clip/labels")
    assert len(frames) == 8 and not (tmp_path / "out.partial.mcap").exists()
    for index, message in enumerate(frames):
        assert message.labels.dtype == np.uint16 and message.labels.shape == (48, 64)
        assert np.array_equal(message.labels, read_labels(str(labels), index)), f"frame {index} differs"
        assert message.frame_id == "clip" and message.log_time == message.stamp
    assert [m.stamp for m in frames] == [index * 100_000_000 for index in range(8)]
    (info,) = _topic(messages, "/clip/label_info")
    assert info.classes == ["a", "b"] and info.stamp == 0
    overlays = _topic(messages, "/clip/overlay")
    assert len(overlays) == 8 and overlays[0].encoding == "jpeg"
    assert cv2.imdecode(np.frombuffer(overlays[0].data, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    (described,) = [o for o in json.loads(stats.read_text())["outputs"] if o["kind"] == "mcap"]
    assert (described["frames"], described["messages"], described["path"]) == (8, 17, str(out))


def test_one_file_for_several_sources_with_a_frame_id_and_no_overlay(tmp_path, tiny_bundle, capsys):
    """Two clips, one `-o out.mcap` (no {source}): a topic set per source, named by the source; `--frame-id
    cam_{source}`; `--no-overlay-topic` leaves the overlay out (and the loop draws none)."""
    clips = [write_band_clip(tmp_path / f"clip{i}.avi", frames=3 + i) for i in range(2)]
    out = tmp_path / "out.mcap"
    argv = [*clips, "--bundle", tiny_bundle, *ENGINE, "-o", out, "--frame-id", "cam_{source}", "--no-overlay-topic"]
    code, err = _main(capsys, *argv)
    assert code == 0, err
    messages = read_rosbags(out)
    assert {m.topic for m in messages} == {f"/clip{i}/{kind}" for i in range(2) for kind in ("labels", "label_info")}
    for i in range(2):
        frames = _topic(messages, f"/clip{i}/labels")
        assert len(frames) == 3 + i and {m.frame_id for m in frames} == {f"cam_clip{i}"}


def test_an_existing_file_is_refused_without_overwrite(tmp_path, tiny_bundle, clip, capsys):
    out = tmp_path / "out.mcap"
    out.write_bytes(b"the old file")
    code, err = _main(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", out)
    assert code == 1 and err == [
        f"zsseg camera: error: {str(out)!r} exists already: pass --overwrite to replace it (outputs are replaced "
        "only once the run has ended well), or choose another -o"
    ], err
    assert out.read_bytes() == b"the old file"
    code, err = _main(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", out, "--overwrite")  # the control
    assert code == 0 and len(_topic(read_mcap_ros2(out), "/clip/labels")) == 8, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_finishes_the_file(tmp_path, tiny_bundle, clip, sig):
    """A run that goes on until the signal (--loop): once it has written, the signal ends it with 128 + the signal,
    and out.mcap is a finished file (summary and footer: the seeking readers read it) with every processed frame."""
    out, partial, stats = tmp_path / "out.mcap", tmp_path / "out.partial.mcap", tmp_path / "stats.json"
    process = _popen([clip, "--bundle", tiny_bundle, *ENGINE, "--loop", "-o", out, "--stats-json", stats])
    written = lambda: partial.exists() and partial.stat().st_size > 0  # noqa: E731
    _, err = signalled(process, sig, lambda: _until(written, "the partial file is written", process), timeout=300)
    assert process.returncode == 128 + sig, err[-3000:]
    assert not partial.exists()
    processed = json.loads(stats.read_text())["processed"]
    for reader in (read_mcap_ros2, read_rosbags):
        frames = _topic(reader(out), "/clip/labels")
        assert len(frames) == processed >= 1, (reader.__name__, len(frames), processed)
        stamps = [m.stamp for m in frames]
        assert all(a < b for a, b in zip(stamps, stamps[1:])), "stamps go back after the clip looped"


def test_kill_9_leaves_the_old_file_and_a_partial_readable_up_to_its_last_chunk(tmp_path, tiny_bundle, clip, capsys):
    """kill -9 mid-run: out.mcap keeps its old content; out.partial.mcap holds whole chunks a sequential reader
    decodes (labels of the frame's size and classes), while the seeking readers refuse it (no footer: the control
    that it is not a finished file); the next run refuses the leftover without --overwrite and removes it with it."""
    out, partial = tmp_path / "out.mcap", tmp_path / "out.partial.mcap"
    out.write_bytes(b"the old file")
    process = _popen([clip, "--bundle", tiny_bundle, *ENGINE, "--loop", "-o", out, "--overwrite"])
    chunk = lambda: partial.exists() and partial.stat().st_size >= 4096  # noqa: E731
    signalled(process, signal.SIGKILL, lambda: _until(chunk, "a chunk is on disk", process), timeout=60)
    assert process.returncode == -9 and out.read_bytes() == b"the old file"
    found, stopped = read_partial(partial)
    frames = _topic(found, "/clip/labels")
    assert frames and stopped is not None, stopped  # the file is cut: the reader stops where it ends
    assert all(m.labels.shape == (48, 64) and int(m.labels.max()) <= 1 for m in frames)
    with pytest.raises(Exception):  # noqa: B017 - the readers' own error types: no footer, no summary
        read_mcap_ros2(partial)
    out.unlink()  # without the old file, the leftover alone is refused
    code, err = _main(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", out)
    assert code == 1 and len(err) == 1 and err[0].startswith(f"zsseg camera: error: {str(partial)!r} is left by an "), (
        err
    )
    code, err = _main(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", out, "--overwrite")
    assert code == 0 and not partial.exists() and len(_topic(read_mcap_ros2(out), "/clip/labels")) == 8, err


def _noise_clip(path, frames=60, size=(160, 120)):
    """Random noise (large JPEG overlays: the file grows fast)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return str(path)


def _assert_full_disk_line(line, out):
    partial = out.replace(".mcap", ".partial.mcap")
    assert line.startswith(f"zsseg camera: error: cannot write {partial!r}: No space left on device (after "), line
    assert re.search(r"after \d+ frames, \d+ bytes on disk", line) and f"{out!r} was not replaced" in line, line


@pytest.mark.parametrize("budget", [None, 20_000], ids=["control", "full_disk"])
def test_a_full_disk_stops_the_run_in_one_line_and_replaces_nothing(tmp_path, tiny_bundle, capsys, monkeypatch, budget):
    """The file's writes say ENOSPC after 20 kB (every system; a real tmpfs below): exit 1, one line naming the
    partial file and what was written; with --overwrite the old out.mcap and the old label maps stay as they were,
    no stats. The control: the same run with room replaces both."""
    from zsseg_rt.outputs import video_writers

    clip = _noise_clip(tmp_path / "noise.avi")
    out, labels, stats = tmp_path / "out.mcap", tmp_path / "labels", tmp_path / "stats.json"
    argv = [clip, "--bundle", tiny_bundle, *ENGINE, "-o", out, "--labels-out", labels]
    assert _main(capsys, *argv, "--max-frames", "2")[0] == 0  # the earlier run's outputs
    before = {p.name: p.read_bytes() for p in [out, *labels.iterdir()]}
    disk = FullDiskOs(budget=budget or 10**12, matches=lambda path: path.endswith(".partial.mcap"))
    monkeypatch.setattr(video_writers, "os", disk)
    code, err = _main(capsys, *argv, "--overwrite", "--stats-json", stats)
    if budget is None:
        assert code == 0 and len(_topic(read_mcap_ros2(out), "/noise/labels")) == 60, err
        assert read_labels(str(labels), 59) is not None
        return
    assert code == 1 and disk.failures >= 1, err
    _assert_full_disk_line(err[-1], str(out))
    assert "Traceback" not in "\n".join(err) and not stats.exists()
    assert {p.name: p.read_bytes() for p in [out, *labels.iterdir()]} == before  # nothing replaced


def test_a_real_full_disk_stops_the_run_in_one_line(tmp_path, tiny_bundle):
    clip = _noise_clip(tmp_path / "noise.avi")
    with small_tmpfs(tmp_path / "disk", size_kib=128) as disk:
        out = os.path.join(disk, "out.mcap")
        proc = subprocess.run(
            [sys.executable, "-m", "zsseg_rt.cli", "camera", clip, "--bundle", tiny_bundle, *ENGINE, "-o", out],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 1, proc.stderr
        _assert_full_disk_line(proc.stderr.strip().splitlines()[-1], out)
        assert not os.path.exists(out) and "Traceback" not in proc.stderr


def test_foxglove_serves_the_topics_live_and_stops_with_the_run(tmp_path, tiny_bundle, clip):
    """`-o foxglove://127.0.0.1:0` (any free port, logged): a client of the protocol sees the topics advertised,
    subscribes, and decodes the labels and the classes; SIGTERM ends the run (exit 143) and its server."""
    pytest.importorskip("foxglove")
    process = _popen([clip, "--bundle", tiny_bundle, *ENGINE, "--loop", "-o", "foxglove://127.0.0.1:0"])
    with reading_stderr(process) as lines:  # read all along: a full pipe would block the camera's logging
        found = {}

        def served():
            match = next(
                (re.search(r"Foxglove server at (ws://127\.0\.0\.1:\d+)", x) for x in lines if "Foxglove" in x), None
            )
            found["url"] = match.group(1) if match else None
            return bool(found["url"])

        _until(served, "the Foxglove server's address is logged", process)
        with FoxgloveClient(found["url"]) as viewer:
            channels = viewer.wait_for_channels(["/clip/labels", "/clip/overlay", "/clip/label_info"])
            viewer.subscribe(["/clip/labels", "/clip/label_info"])
            received = viewer.wait_for_messages("/clip/labels", 3)
            (_, info), *_ = viewer.wait_for_messages("/clip/label_info", 1)
        for log_time, payload in received:
            message = decode_cdr(channels["/clip/labels"], payload)
            labels = np.frombuffer(message.data, "<u2").reshape(message.height, message.width)
            assert labels.shape == (48, 64) and int(labels.max()) <= 1 and message.header.frame_id == "clip"
        assert all(a < b for (a, _), (b, _) in zip(received, received[1:]))
        assert [c.class_name for c in decode_cdr(channels["/clip/label_info"], info).class_map] == ["a", "b"]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=300)
    assert process.returncode == 143, "".join(lines)[-3000:]


def test_a_port_in_use_is_refused_before_the_model_loads(tmp_path, tiny_bundle, clip, capsys, monkeypatch):
    pytest.importorskip("foxglove")
    import zsseg_rt.runtime

    loaded = []
    real = zsseg_rt.runtime.Engine
    monkeypatch.setattr(zsseg_rt.runtime, "Engine", lambda *a, **k: loaded.append(1) or real(*a, **k))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = _main(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", f"foxglove://127.0.0.1:{port}")
    assert code == 1 and len(err) == 1 and not loaded, err
    assert err[0].startswith(f"zsseg camera: error: cannot serve Foxglove on 127.0.0.1:{port} (Failed to bind port"), (
        err
    )
    assert err[0].endswith("choose another port: -o foxglove://127.0.0.1:PORT"), err
    code, err = _main(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", "foxglove://0", "--max-frames", "2")
    assert code == 0 and loaded == [1], err  # the control: a free port, the model loads, the run ends well


@pytest.mark.parametrize("spec,missing", [("out.mcap", "mcap_ros2"), ("foxglove://127.0.0.1:0", "foxglove")])
def test_a_missing_package_is_said_in_one_line(tmp_path, tiny_bundle, clip, capsys, monkeypatch, spec, missing):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
    monkeypatch.chdir(tmp_path)
    code, err = _main(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", spec)
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("zsseg camera: error: zsseg camera needs ") and f"for -o {spec}" in err[0], err
    assert err[0].endswith(f'({missing} not installed): pip install "zsseg_rt[robots]"'), err
    assert not list(tmp_path.glob("out*"))


def test_the_robot_kinds_extra_installs_their_modules():
    """The output kinds that need packages name an extra of pyproject.toml that installs them (pinned in
    requirements.txt too: the set-up installs them)."""
    tomllib = pytest.importorskip("tomllib")
    from pathlib import Path

    from zsseg_rt.outputs.kinds import OUTPUT_KINDS

    root = Path(__file__).resolve().parents[2]
    with open(root / "pyproject.toml", "rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    pinned = (root / "requirements.txt").read_text()
    distribution = {"mcap": "mcap", "mcap_ros2": "mcap-ros2-support", "foxglove": "foxglove-sdk"}
    needing = [kind for kind in OUTPUT_KINDS if kind.modules]
    assert {kind.name for kind in needing} == {"mcap", "foxglove"}
    for kind in needing:
        wanted = " ".join(extras[kind.extra])
        for module in kind.modules:
            assert re.search(rf"(^| ){distribution[module]}[><=]", wanted), (kind.name, module, wanted)
            assert re.search(rf"^{distribution[module]}==", pinned, re.M), (module, "not pinned in requirements.txt")


def test_a_new_output_kind_is_one_row(tmp_path, tiny_bundle, clip, capsys):
    """A toy kind (``-o out.count``: the number of frames) added as one row of the table, its sink a few lines: the
    camera opens it for `-o`, hands it every result, and the output plan takes it as it takes a video (refused
    without --overwrite, written under its partial name, renamed when the run ends well)."""
    from zsseg_rt.outputs import kinds
    from zsseg_rt.stream import FrameSink

    class CountSink(FrameSink):
        def __init__(self, output):
            self.output, self.frames = output, 0

        def write_result(self, frame, result):
            self.frames += 1

        def finish(self):
            with open(self.output.partial, "w", encoding="utf-8") as handle:
                handle.write(f"{self.frames}\n")

    row = kinds.OutputKind(
        "count",
        "-o",
        "out.count (the frames)",
        lambda spec: spec.endswith(".count"),
        lambda spec, options: CountSink(options.staged),
        lambda plan, option, path: plan.stream(option, path),
    )
    out = tmp_path / "out.count"
    with kinds.OUTPUT_KINDS.adding(row, first=True):
        code, err = _main(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", out)
        assert code == 0 and out.read_text() == "8\n" and not (tmp_path / "out.partial.count").exists(), err
        code, err = _main(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", out, "--max-frames", "3")
        assert code == 1 and "exists already: pass --overwrite" in err[0] and out.read_text() == "8\n", err
