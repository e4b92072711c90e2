"""One rule for signals in every `zsseg` command (issue 51, defect 4): SIGTERM, what `docker stop`, systemd and CI
runners send, is handled as Ctrl-C is (the command's cleanup runs), and a command a signal ended exits with
128 + the signal's number: 130 after Ctrl-C, 143 after SIGTERM. Before, SIGTERM killed a command at once (no
cleanup, exit status -15), and under Ray `sys.exit(15)` (exit code 15).

Each child process is signalled once it has said it is waiting (read from its output, no sleep), and it waits on a
pipe that is never written: it cannot end before the signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
from processes import popen_text, says, signalled
from support import subprocess_env

# A command run as `zsseg` runs every command (cli.main -> run_command): it says READY, then waits on its stdin (never
# written); its cleanup says so. The command name and --debug come from argv.
COMMAND = textwrap.dedent(
    """
    import sys, types
    from zsseg_rt.console.errors import run_command

    def command(args):
        try:
            print("READY", flush=True)
            sys.stdin.read()
            return 0
        finally:
            print("CLEANED UP", flush=True)

    sys.exit(run_command(command, types.SimpleNamespace(command=sys.argv[1], debug=sys.argv[2] == "1")))
    """
)


def _signalled(argv, sig):
    proc = popen_text(argv, stdin=True)
    out, err = signalled(proc, sig, says(proc, "READY"))
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("command", ["export", "build-engine", "camera", "batch", "eval", "train"])
def test_every_command_cleans_up_and_exits_128_plus_the_signal(command, sig):
    code, out, err = _signalled([sys.executable, "-c", COMMAND, command, "0"], sig)
    assert code == 128 + sig, (code, out, err)
    assert out == "CLEANED UP\n", out
    assert err == f"zsseg {command}: interrupted ({signal.Signals(sig).name})\n", err


def test_debug_shows_the_traceback_and_keeps_the_exit_code():
    code, out, err = _signalled([sys.executable, "-c", COMMAND, "train", "1"], signal.SIGTERM)
    assert code == 143 and out == "CLEANED UP\n", (code, out, err)
    assert "Traceback" in err and "Terminated: SIGTERM" in err and "zsseg train: interrupted (SIGTERM)" in err, err


def test_the_previous_sigterm_handler_is_back_after_the_command():
    from zsseg_rt.console.errors import run_command

    def handler(signum, frame):  # pragma: no cover - never called
        pass

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        seen = []
        run_command(lambda args: seen.append(signal.getsignal(signal.SIGTERM)), None)
        assert seen and seen[0] is not handler  # the command's own rule while it ran
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_init_ray_keeps_the_commands_sigterm_handler(monkeypatch):
    """`ray.init` sets its own SIGTERM handler (`sys.exit(15)`): `zsseg batch`, `zsseg eval --ray` and `zsseg serve`
    then ended with exit code 15 on SIGTERM. init_ray puts the command's handler back (a stand-in for Ray here, which
    replaces the handler as ray.init does; the real cluster is python_tests/scale's)."""
    import zsseg_rt.scale as scale

    class FakeRay:
        def is_initialized(self):
            return False

        def init(self, **_kwargs):
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))

        def nodes(self):
            return [{"NodeManagerAddress": "127.0.0.1"}]

    def ours(signum, frame):  # pragma: no cover - never called: the command's handler (console.errors')
        pass

    monkeypatch.setattr(scale, "import_ray", lambda loopback=False: FakeRay())
    monkeypatch.setattr(scale, "_start_cluster_reaper", lambda: None)
    previous = signal.signal(signal.SIGTERM, ours)
    try:
        scale.init_ray(num_cpus=1)
        assert signal.getsignal(signal.SIGTERM) is ours
        scale.init_ray(address="ray://head:10001")
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_training_run_stopped_by_sigterm_exits_143_with_its_checkpoints_whole(tmp_path):
    """`python -m zsseg_rt.train` (what `torchrun ... -m zsseg_rt.train` runs, and stops with SIGTERM) bypassed the
    command line's rule: SIGTERM killed it at once (-15). It is signalled once its progress bar has started (read
    from its stderr), and must end with 143, no temporary checkpoint file left, and every checkpoint loadable."""
    torch = pytest.importorskip("torch")
    argv = [sys.executable, "-m", "zsseg_rt.train", "tiny_test", "--work-dir", str(tmp_path), "--device", "cpu"]
    argv += ["--iterations", "100000", "--batch-size", "2", "--set", "checkpoint_interval=1"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(OMP_NUM_THREADS="1")
    )
    try:
        seen = b""
        while b"train " not in seen:  # the bar's name (tqdm writes it when the loop starts; no newline after it)
            chunk = proc.stderr.read1(4096)
            assert chunk, (proc.wait(), seen.decode(errors="replace")[-2000:])
            seen += chunk
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = (seen + err).decode(errors="replace")
    assert proc.returncode == 143, (proc.returncode, text[-2000:])
    assert "zsseg train: interrupted (SIGTERM)" in text and "Traceback" not in text, text[-2000:]
    folder = tmp_path / "checkpoints"
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    assert not [name for name in names if ".tmp" in name], names
    for name in names:
        if name.endswith(".pt"):
            assert "iteration" in torch.load(folder / name, map_location="cpu", weights_only=True)
