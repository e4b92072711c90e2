"""`zsseg serve` and `zsseg batch` signalled at each phase of their start-up (issue 64, N5): before Ray starts, inside
`ray.init`, once Ray runs, inside a `ray.get` while Ray Serve starts, while a replica loads its model, once the first
image is segmented. Each ends with 128 + the signal and its one line, never a SystemError, a bare exit code 15, a
segfault or a swallowed signal, and leaves no Ray process. At b991c98 serve inside `ray.init` exited 15 without a
word and inside the `ray.get` said "unexpected SystemError: ... returned a result with an exception set" (the
probe's U10 row). The phases are reached by events (python_tests/phase_sweep.py), not by sleeps; each phase after
the first costs one Ray start, so each is signalled once, the two signals alternating."""

from __future__ import annotations

import importlib.util
import signal
import socket

import pytest
from phase_sweep import interrupted_cleanly, plain_images, signal_at_phase

# not importorskip: importing Ray at collection would put it in every worker before the session's cluster fixture
# sets its loopback environment (zsseg_rt.scale refuses a cluster that came up on another address)
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="the scale tests need the 'scale' extra (ray[data,serve])"
)

INT, TERM = signal.SIGINT, signal.SIGTERM


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SERVE_PHASES = [  # (serving: test_scale_cli.py's test_serve_is_ready_when_it_says_so_and_stops_cleanly_on_sigterm)
    ("serve:checked", TERM),  # arguments checked, Ray not started
    ("ray:connect", TERM),  # inside ray.init: the node runs, Ray's own SIGTERM handler set (exit code 15 before)
    ("serve:ray-ready", INT),  # Ray runs, Ray Serve neither imported nor started: nothing of it to stop
    ("ray:get", TERM),  # Ray Serve starting, the driver inside ray.get (SystemError before: the handler's exception)
    ("worker:model-load", TERM),  # the replica loads its model (held there), the driver waits for the deployment
]


@pytest.mark.slow  # a Ray cluster of its own per phase but the first (~20 s each on 2 cores)
@pytest.mark.parametrize("phase,sig", SERVE_PHASES, ids=[f"{p}-{signal.Signals(s).name}" for p, s in SERVE_PHASES])
def test_serve_interrupted_at_each_start_up_phase(tiny_bundle, phase, sig):
    argv = ["serve", "--bundle", tiny_bundle, "--classes", "cat,dog", "--port", str(_free_port())]
    argv += ["--num-cpus", "1", "--cpus-per-replica", "0.5", "--backend", "onnxruntime"]
    outcome = signal_at_phase(argv, phase, sig, ray=phase != "serve:checked")
    problems = interrupted_cleanly(outcome, "serve", sig)
    assert not problems, f"{problems}\n{outcome.describe()}"


BATCH_PHASES = [
    ("batch:checked", INT),  # the job planned and checked, Ray not started
    ("ray:connected", TERM),  # inside ray.init: the driver connected, its core worker's native SIGTERM handler set
    ("batch:row", TERM),  # the first image segmented, the driver inside Ray Data (a handler run inside ray.get)
]


@pytest.mark.slow  # a Ray cluster of its own per phase but the first
@pytest.mark.parametrize("phase,sig", BATCH_PHASES, ids=[f"{p}-{signal.Signals(s).name}" for p, s in BATCH_PHASES])
def test_batch_interrupted_at_each_start_up_phase(tiny_bundle, tmp_path, phase, sig):
    images = plain_images(tmp_path / "images", 3, 40, "im{index}.png")
    argv = ["batch", str(images), str(tmp_path / "out"), "--bundle", tiny_bundle, "--classes", "cat,dog"]
    argv += ["--workers", "1", "--num-cpus", "1", "--batch-size", "1", "--backend", "onnxruntime", "--no-progress"]
    outcome = signal_at_phase(argv, phase, sig, ray=phase != "batch:checked")
    problems = interrupted_cleanly(outcome, "batch", sig)
    assert not problems, f"{problems}\n{outcome.describe()}"
