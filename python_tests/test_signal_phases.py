"""Signals at every phase of a command's start-up (issue 64, N5; the Ray commands' sweep is
python_tests/scale/test_ray_signal_phases.py).

`zsseg camera --preview` and `zsseg export` signalled at each phase before their work runs (outputs planned, the
preview serving, inside the model load, the stream about to start; the export's model loading, inside the graph
export) end with 128 + the signal and the one line "zsseg CMD: interrupted (SIGNAME)",
nothing else, and leave no process and no output behind. The phases are reached by events (phase_sweep.py).

And the rule that makes the Ray phases safe, :func:`zsseg_rt.console.signal_phases.held_signals`, in-process: a signal
inside the block is only recorded (no exception raised inside native code that calls the handler), a handler the
block's code sets for SIGINT / SIGTERM (what ``ray.init`` does) is kept out, and the recorded signal is acted on
right after the block."""

from __future__ import annotations

import os
import signal
import sys

import pytest
from phase_sweep import interrupted_cleanly, plain_images, signal_at_phase

INT, TERM = signal.SIGINT, signal.SIGTERM
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")

CAMERA_PHASES = [
    ("camera:outputs-planned", INT),  # inputs opened, outputs checked and staged, nothing served yet
    ("camera:model-load", TERM),  # the preview serving, the model about to load
    ("ort:session", INT),  # inside the model load: ONNX Runtime building a session
    ("camera:stream-start", TERM),  # the model loaded, the stream about to run
]


@linux_only
@pytest.mark.parametrize("phase,sig", CAMERA_PHASES, ids=[f"{p}-{signal.Signals(s).name}" for p, s in CAMERA_PHASES])
def test_camera_preview_interrupted_at_each_start_up_phase(tiny_bundle, tmp_path, phase, sig):
    frames = plain_images(tmp_path / "frames", 2, 90)
    labels = tmp_path / "labels"
    argv = ["camera", str(frames), "--loop", "--bundle", tiny_bundle, "--classes", "a,b", "--backend", "onnxruntime"]
    argv += ["--preview", "0", "--labels-out", str(labels), "--no-progress"]
    outcome = signal_at_phase(argv, phase, sig)
    problems = interrupted_cleanly(outcome, "camera", sig)
    assert not problems, f"{problems}\n{outcome.describe()}"
    assert not labels.exists() or not os.listdir(labels), "an interrupted start-up wrote labels"


# (the destination check before them is run_command's rule alone: test_signals.py; verifying: test_export_signals.py)
EXPORT_PHASES = [
    ("export:model-load", INT),  # the checkpoint about to load
    ("torch:onnx-export", TERM),  # inside the graph export, the staging folder open
]


@linux_only
@pytest.mark.host_only  # zsseg export on the CPU in a child, interrupted (as export/test_export_signals.py, CI's)
@pytest.mark.parametrize("phase,sig", EXPORT_PHASES, ids=[f"{p}-{signal.Signals(s).name}" for p, s in EXPORT_PHASES])
def test_export_interrupted_at_each_start_up_phase(tiny_bundle, tmp_path, phase, sig):
    import json

    pytest.importorskip("torch", reason="exporting needs torch")
    with open(os.path.join(tiny_bundle, "meta.json"), encoding="utf-8") as handle:
        native = json.load(handle).get("source_checkpoint")
    if not native or not os.path.isdir(native):
        pytest.skip("the tiny bundle was prebuilt elsewhere: its native checkpoint is not here")
    parent = tmp_path / "bundles"
    parent.mkdir()
    argv = ["export", str(parent / "b"), "--native", native, "--max-classes", "4", "--verify-images"]
    outcome = signal_at_phase(argv, phase, sig)
    problems = interrupted_cleanly(outcome, "export", sig)
    assert not problems, f"{problems}\n{outcome.describe()}"
    assert sorted(os.listdir(parent)) == [], "a staging folder or its lock was left behind"


SEGMENT_PHASES = [("segment:outputs-planned", INT), ("segment:outputs-planned", TERM)]


@linux_only
@pytest.mark.parametrize("phase,sig", SEGMENT_PHASES, ids=[f"{p}-{signal.Signals(s).name}" for p, s in SEGMENT_PHASES])
def test_segment_interrupted_before_its_first_image(tiny_bundle, tmp_path, phase, sig):
    """`zsseg segment` signalled once its outputs are planned, before its Session measured anything: 130 / 143 and
    the one line (it was exit 1, "unexpected AttributeError: 'Session' object has no attribute 'speed'"); no view,
    no class map and no COCO file left."""
    frames = plain_images(tmp_path / "frames", 3, 60)
    work = tmp_path / "work"
    work.mkdir()
    argv = ["segment", str(frames), "--bundle", tiny_bundle, "--classes", "a,b", "--backend", "onnxruntime"]
    argv += ["-o", str(work / "out"), "--save-json", str(work / "masks.json")]
    outcome = signal_at_phase(argv, phase, sig)
    problems = interrupted_cleanly(outcome, "segment", sig)
    assert not problems, f"{problems}\n{outcome.describe()}"
    left = [os.path.relpath(os.path.join(root, name), work) for root, _, names in os.walk(work) for name in names]
    assert left == [], f"an interrupted start-up left {left}"


# ------------------------------------------------------------------------------------- held_signals, in-process
@pytest.fixture()
def command_handlers():
    """The command line's handlers for the test (console.errors.sigterm_interrupts: SIGINT set only where Python's own
    handler is, so it is set here first: pytest may start with Ctrl-C ignored)."""
    from zsseg_rt.console.errors import sigterm_interrupts

    previous = signal.signal(INT, signal.default_int_handler)
    try:
        with sigterm_interrupts():
            yield
    finally:
        signal.signal(INT, previous)


@pytest.mark.parametrize("sig", [INT, TERM], ids=["SIGINT", "SIGTERM"])
def test_a_held_signal_raises_nothing_in_the_block_and_interrupts_right_after(command_handlers, sig):
    """Ray runs a Python handler inside ray.get; what it raises there must not be raised inside the block."""
    from zsseg_rt.console.errors import signal_of
    from zsseg_rt.console.signal_phases import held_signals

    done = []
    with pytest.raises(KeyboardInterrupt) as stop:
        with held_signals() as caught:
            signal.raise_signal(sig)  # the C-level handler runs before this returns; the Python one at the next step
            done.append(sum(range(1000)))
            seen = list(caught)  # asserted after the block: an assertion failing inside it would be replaced by the
            # interruption the block raises at its end (and pytest.raises would take that for a pass)
    assert seen == [sig]
    assert done == [499500] and signal_of(stop.value) == sig  # the block ran to its end, then the interruption


def test_handlers_set_in_the_block_are_kept_out_and_the_commands_set_again(command_handlers):
    """What ray.init does (its SIGTERM handler sys.exit(15)) has no effect past the block, nor in it."""
    from zsseg_rt.console.signal_phases import held_signals

    ours = {s: signal.getsignal(s) for s in (INT, TERM)}
    with pytest.raises(KeyboardInterrupt):
        with held_signals() as caught:
            signal.signal(TERM, lambda signum, frame: sys.exit(signum))
            signal.signal(INT, signal.SIG_DFL)
            signal.raise_signal(TERM)
            sum(range(10))
            seen = list(caught)  # (asserted after the block: see the test above)
    assert seen == [TERM]
    assert {s: signal.getsignal(s) for s in (INT, TERM)} == ours


def test_a_nested_block_leaves_the_acting_to_the_outer_one_and_act_false_drops_it(command_handlers):
    from zsseg_rt.console.signal_phases import held_signals

    with pytest.raises(KeyboardInterrupt):
        with held_signals() as outer:
            with held_signals() as inner:
                signal.raise_signal(INT)
                sum(range(10))
            seen = (list(inner), list(outer))  # reached: nothing raised at the inner block's end
    assert seen == ([], [INT])
    with held_signals(act=False) as dropped:
        signal.raise_signal(TERM)
        sum(range(10))
    assert dropped == [TERM]  # and nothing raised: a command already shutting down


def test_an_ignored_signal_stays_ignored(command_handlers):
    from zsseg_rt.console.signal_phases import held_signals

    previous = signal.signal(INT, signal.SIG_IGN)
    try:
        with held_signals() as caught:
            assert signal.getsignal(INT) == signal.SIG_IGN
            signal.raise_signal(INT)
            sum(range(10))
        assert caught == [] and signal.getsignal(INT) == signal.SIG_IGN
    finally:
        signal.signal(INT, previous)


@linux_only
def test_a_native_handler_set_in_the_block_is_replaced_after_it():
    """The driver's core worker sets a native SIGTERM handler (absl's failure handler) behind Python's back: after the
    block SIGTERM reaches the command's handler again (a subprocess: a failure would end the process)."""
    import subprocess

    from support import subprocess_env

    program = (
        "import ctypes, signal, sys\n"
        "from zsseg_rt.console.errors import sigterm_interrupts\n"
        "from zsseg_rt.console.signal_phases import held_signals\n"
        "with sigterm_interrupts():\n"
        "    with held_signals():\n"
        "        ctypes.CDLL(None).signal(signal.SIGTERM, 0)  # SIG_DFL at the OS level, Python unaware\n"
        "    try:\n"
        "        signal.raise_signal(signal.SIGTERM)\n"
        "        sum(range(10))\n"
        "    except KeyboardInterrupt as exc:\n"
        "        print('handled', exc.signum)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=subprocess_env())
    assert (done.returncode, done.stdout) == (0, "handled 15\n"), (done.returncode, done.stdout, done.stderr)


def test_a_sigterm_that_ray_reraises_as_a_plain_keyboard_interrupt_still_exits_143(capsys):
    """Ray's check_signals catches the KeyboardInterrupt a handler raised inside ray.get (``Terminated`` is one)
    and raises a plain one (signal lost): `zsseg batch` stopped by SIGTERM while Ray Data waited said SIGINT, 130.
    A stand-in for Ray here; python_tests/scale/test_ray_signal_phases.py signals a real batch there."""
    from zsseg_rt.console.errors import run_command

    def command(_args):
        try:
            signal.raise_signal(TERM)  # the handler runs "inside ray.get"
            sum(range(10))
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # what Ray raises in its place
        return 0

    import types

    assert run_command(command, types.SimpleNamespace(command="batch")) == 143
    assert capsys.readouterr().err == "zsseg batch: interrupted (SIGTERM)\n"


def test_serve_stops_on_a_keyboard_interrupt_and_ignores_further_signals(command_handlers):
    """`zsseg serve`'s handler raises what Ray's ray.get passes on (a KeyboardInterrupt); the one of before did not
    (SystemError, or a swallowed signal) and the real server is python_tests/scale/test_ray_signal_phases.py's."""
    from zsseg_rt.cli.serve import _stop_once
    from zsseg_rt.console.errors import signal_of

    ours = {s: signal.getsignal(s) for s in (INT, TERM)}
    try:
        with pytest.raises(KeyboardInterrupt) as stop:
            _stop_once(TERM, None)
        assert signal_of(stop.value) == TERM
        assert signal.getsignal(INT) == signal.getsignal(TERM) == signal.SIG_IGN  # one clean shutdown
    finally:
        for s, handler in ours.items():
            signal.signal(s, handler)


@pytest.mark.time_bound(30)  # a hook that waited while unset would hang here: a named failure, not a stalled job
def test_the_phase_hook_costs_nothing_unset(monkeypatch):
    """Unset, or set for another phase: ``phase`` makes no socket at all (issue 75, item 8: the test asserted only
    ``phase(...) is None``, true of any call that returns). Set for this phase with no listener: one connection
    tried, and on at once. The control: the socket stub does record a connection when one is tried."""
    import socket

    from zsseg_rt.console import signal_phases
    from zsseg_rt.console.signal_phases import PHASE_HOOK_ENV, phase

    made = []

    class Recorded(socket.socket):
        def __init__(self, *args, **kwargs):
            if len(args) < 4 and "fileno" not in kwargs:  # a new socket (not one wrapping a descriptor made already)
                made.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(signal_phases.socket, "socket", Recorded)
    monkeypatch.delenv(PHASE_HOOK_ENV, raising=False)
    phase("serve:checked")
    monkeypatch.setenv(PHASE_HOOK_ENV, "another:phase@/nonexistent/socket")
    phase("serve:checked")  # not the phase asked for: not even a socket
    assert made == []
    monkeypatch.setenv(PHASE_HOOK_ENV, "serve:checked@/nonexistent/socket")
    phase("serve:checked")  # no listener: one connection tried, and on at once
    assert made == [(socket.AF_UNIX, socket.SOCK_STREAM)]  # the control
