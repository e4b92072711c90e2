"""``zsseg batch`` and ``zsseg serve`` refuse bad arguments in one line before Ray starts (a Ray start takes 10-20 s:
the old code refused a missing bundle after a Ray actor traceback, or after 180 s of "Deploying"), and ``zsseg serve``
says "serving on" only once it answers, and stops on SIGTERM with a message instead of a crash dump."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from zsseg_rt import cli


@pytest.fixture()
def no_ray(monkeypatch):
    """Fail the test if a command gets as far as starting (or joining) a Ray cluster. Where Ray is not installed the
    commands refuse for that first (every command checks what it needs before its arguments: cli.Needs), so their
    argument checks cannot be reached there (the GPU image has no Ray; CI's environment has it)."""
    pytest.importorskip("ray", reason="without Ray, batch and serve refuse for it before checking their arguments")
    import zsseg_rt.scale as scale

    def refuse(*_args, **_kwargs):
        raise AssertionError("Ray was started before the arguments were checked")

    monkeypatch.setattr(scale, "init_ray", refuse)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def _one_line(capsys, argv, expect):
    code = cli.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and expect in lines[0], (code, err)
    assert "Traceback" not in err and "unexpected" not in err, err


@pytest.fixture()
def folder(tmp_path):
    import cv2
    import numpy as np

    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    return str(tmp_path / "in")


def test_batch_checks_before_ray(no_ray, capsys, tmp_path, folder, tiny_bundle):
    out = str(tmp_path / "out")
    base = ["batch", folder, out, "--classes", "cat,dog", "--backend", "onnxruntime"]
    _one_line(capsys, base + ["--bundle", "/nonexistent"], "bundle directory not found: '/nonexistent'")
    _one_line(capsys, base + ["--bundle", tiny_bundle, "--workers", "4", "--num-cpus", "2"], "the cluster has 2")
    _one_line(capsys, base + ["--bundle", tiny_bundle, "--bundle-digest", "sha256:" + "1" * 64], "not the pinned one")
    _one_line(
        capsys, ["batch", str(tmp_path / "none"), out, "--bundle", tiny_bundle, "--classes", "a"], "does not exist"
    )
    for flag, value in (("--workers", "0"), ("--workers", "3:2"), ("--batch-size", "0"), ("--max-pixels", "-1")):
        with pytest.raises(SystemExit) as stop:
            cli.main(base + ["--bundle", tiny_bundle, flag, value])
        assert stop.value.code == 2 and flag in capsys.readouterr().err


def test_batch_refuses_a_resume_with_another_unknown_threshold(no_ray, capsys, tmp_path, folder, tiny_bundle):
    """Issue 79, F2's probe: a folder made with --unknown-below 0.5 (a label map and its ok row), resumed without
    it: one line before Ray, naming both settings (it ran: "1 segmented, 4 already done", rc 0)."""
    import json

    from zsseg_rt.scale.batch import MANIFEST, prepare_batch

    out = tmp_path / "out"
    prepare_batch(folder, str(out), tiny_bundle, "cat,sofa,floor", unknown_below=0.5)
    (out / "a.png.png").write_bytes(b"the first run's label map")
    (out / MANIFEST).write_text(json.dumps({"key": "a.png", "labels": "a.png.png", "status": "ok"}) + "\n")
    recorded = (out / "vocabulary.json").read_text()
    base = ["batch", folder, str(out), "--bundle", tiny_bundle, "--classes", "cat,sofa,floor", "--num-cpus", "2"]
    _one_line(capsys, base, "made with --unknown-below 0.5 (label 255 = unknown), but this run has no --unknown-below")
    assert (out / "vocabulary.json").read_text() == recorded


def test_serve_checks_before_ray(no_ray, capsys, tiny_bundle):
    base = ["serve", "--classes", "cat,dog", "--backend", "onnxruntime"]
    _one_line(capsys, base + ["--bundle", "/nonexistent"], "bundle directory not found: '/nonexistent'")
    _one_line(capsys, base + ["--bundle", tiny_bundle, "--classes", "cat,cat"], "cat")
    _one_line(capsys, base + ["--bundle", tiny_bundle, "--replicas", "3", "--num-cpus", "2"], "more than the 2 CPUs")
    _one_line(capsys, base + ["--bundle", tiny_bundle, "--host", "no-such-host.invalid"], "--host 'no-such-host")
    with socket.socket() as busy:  # a port someone else listens on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        _one_line(capsys, base + ["--bundle", tiny_bundle, "--port", port], f"cannot listen on 127.0.0.1:{port}")
    # issue 79, F6: what the replicas' Engine refuses is refused here, before Ray (it ran 33 s, then "Deploying
    # application zsseg failed: Failed to update the deployments ['SegmentationServer']", the reason in Ray's logs)
    _one_line(capsys, base + ["--bundle", tiny_bundle, "--precision", "fp16"], "backend's precision must be one of")
    for port in ("99999", "0", "http"):
        with pytest.raises(SystemExit) as stop:
            cli.main(base + ["--bundle", tiny_bundle, "--port", port])
        assert stop.value.code == 2 and "--port: expected a TCP port number 1..65535" in capsys.readouterr().err


def test_a_refused_serve_leaves_the_callers_ray_running(no_ray, capsys, monkeypatch):
    """``cli.main(["serve", ...])`` in a process connected to Ray (the caller's cluster: the scale tests' session
    cluster) refused its arguments and then shut that Ray down; Ray's auto-init started another cluster, with Ray's
    defaults, at the next test that used it (16-22 CPU-s of the first cluster reaped inside this file's argument
    checks in CI)."""
    import ray

    shutdowns: list = []
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "shutdown", lambda *a, **k: shutdowns.append("ray.shutdown"))
    _one_line(capsys, ["serve", "--classes", "cat", "--bundle", "/nonexistent"], "bundle directory not found")
    assert shutdowns == []


def _reader(stream, lines: "queue.Queue[str]"):
    for line in iter(stream.readline, ""):
        lines.put(line)
    stream.close()


@pytest.mark.slow  # its own Ray cluster (~20 s on 2 cores)
def test_serve_is_ready_when_it_says_so_and_stops_cleanly_on_sigterm(tiny_bundle, tmp_path):
    """Also: with no --max-pixels and no $ZSSEG_MAX_PIXELS, serve refuses what every other command refuses (40 MP;
    it used to take an 8000x8000 image, 64 MP, the CLI refused)."""
    import cv2
    import numpy as np
    from support import write_bilevel_png

    pytest.importorskip("ray", reason="the scale tests need the 'scale' extra (ray[data,serve])")
    from zsseg_rt.image_io import DEFAULT_MAX_PIXELS
    from zsseg_rt.scale.loadtest import get_json, post_image
    from zsseg_rt.scale.records import STAT_COUNTERS  # (not .serve: Ray must not be imported before the cluster)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "ZSSEG_MAX_PIXELS")}
    command = [sys.executable, "-c", "import sys; from zsseg_rt.cli import main; sys.exit(main())"]
    command += ["serve", "--bundle", tiny_bundle, "--classes", "cat,dog,grass", "--port", str(port)]
    command += ["--num-cpus", "1", "--cpus-per-replica", "0.5", "--backend", "onnxruntime"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out: "queue.Queue[str]" = queue.Queue()
    err: "queue.Queue[str]" = queue.Queue()
    for stream, sink in ((proc.stdout, out), (proc.stderr, err)):
        threading.Thread(target=_reader, args=(stream, sink), daemon=True).start()
    try:
        deadline, printed = time.monotonic() + 240, []
        while not any("serving on" in line for line in printed):
            assert time.monotonic() < deadline and proc.poll() is None, ("no 'serving on'", printed, list(err.queue))
            try:
                printed.append(out.get(timeout=1))
            except queue.Empty:
                continue
        # the moment it says so, it answers: the page's /info, and a segmentation
        info = get_json(f"http://127.0.0.1:{port}/info", timeout=5)
        assert info["classes"] == ["cat", "dog", "grass"]
        fresh = get_json(f"http://127.0.0.1:{port}/stats", timeout=5)  # every counter there, at 0 (they were missing)
        pages = fresh["pages"]  # GET /info and /stats (this one, ours and the start-up's polls) are counted too
        assert {name: fresh[name] for name in STAT_COUNTERS} == dict.fromkeys(STAT_COUNTERS, 0) | {"pages": pages}
        assert pages >= 2 and fresh["in_flight"] == 0, fresh
        ok, png = cv2.imencode(".png", np.full((20, 30, 3), 120, np.uint8))
        status, answer = post_image(f"http://127.0.0.1:{port}/segment", png.tobytes(), timeout=60)
        assert status == 200 and answer["height"] == 20, answer
        assert info["max_pixels"] == DEFAULT_MAX_PIXELS == 40_000_000
        write_bilevel_png(tmp_path / "64mp.png", 8000, 8000)
        status, answer = post_image(
            f"http://127.0.0.1:{port}/segment", (tmp_path / "64mp.png").read_bytes(), timeout=60
        )
        assert status == 413 and "8000x8000 = 64.0 MP, over the 40 MP limit" in answer["error"], answer
        stats = get_json(f"http://127.0.0.1:{port}/stats", timeout=5)
        counted = {name: stats[name] for name in ("requests", "images", "batches", "bad_requests", "errors")}
        assert counted == {"requests": 2, "images": 1, "batches": 1, "bad_requests": 1, "errors": 0}, stats
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.5)  # the reader threads drain the pipes
    stdout, stderr = "".join(printed + list(out.queue)), "".join(err.queue)
    assert code == 143, (code, stdout, stderr[-3000:])  # stopped by SIGTERM: 128 + 15 (console.errors' rule)
    assert "zsseg serve: SIGTERM: shutting down" in stdout and stdout.rstrip().endswith("zsseg serve: stopped")
    # Ray prints one C++ line whenever RAY_BACKEND_LOG_LEVEL is set (as init_ray sets it to quiet Ray's C++ logs;
    # nothing turns that line off): it is the only logging.cc line allowed
    stderr = "\n".join(
        line
        for line in stderr.splitlines()
        if "Set ray log level from environment variable RAY_BACKEND_LOG_LEVEL" not in line
    )
    for dump in ("Traceback", "SIGTERM received", "*** ", "logging.cc"):
        assert dump not in stderr, stderr[-3000:]
    # Ray's start/stop noise (issue 37): Serve's INFO lines ("Started Serve", "Connecting to existing Serve app ...
    # New http_options/controller_options will not be applied", "Application ... is ready"), and the raylet's report
    # of the controller's graceful_shutdown call "failed ... killed by ray.kill" on stdout
    said = [line for line in stdout.splitlines() if line.strip()]
    assert said[1:] == ["zsseg serve: SIGTERM: shutting down", "zsseg serve: stopped"], said
    for noise in ("will not be applied", "graceful_shutdown", "killed by `ray.kill`", "Started Serve", "is ready at"):
        assert noise not in stdout + stderr, (noise, stdout, stderr[-3000:])
    assert not [line for line in stderr.splitlines() if line.startswith("INFO ")], stderr[-3000:]


def test_serve_and_batch_help_show_defaults():
    """Every option of `zsseg serve` and `zsseg batch` with a default says it in its help (--replicas,
    --max-batch-size and --batch-wait-ms did not)."""
    import argparse

    from zsseg_rt.cli.batch import add_command as add_batch_command
    from zsseg_rt.cli.serve import add_command as add_serve_command

    parser = argparse.ArgumentParser(prog="zsseg")
    commands = parser.add_subparsers()
    for command in (add_serve_command(commands), add_batch_command(commands)):
        for action in command._actions:
            if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
                continue
            assert "default" in (action.help or ""), f"{command.prog} {action.option_strings[0]}: {action.help!r}"
    text = add_serve_command(argparse.ArgumentParser().add_subparsers()).format_help()
    options = " ".join(text.split("options:", 1)[1].split())  # (not the usage line)
    for flag, default in (
        ("--replicas", "(default 1)"),
        ("--max-batch-size", "(default 8)"),
        ("--batch-wait-ms", "(default 5)"),
    ):
        assert default in options.split(flag + " ", 1)[1].split(" --", 1)[0], (flag, text)
