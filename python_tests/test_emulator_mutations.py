"""The emulated CUDA runtime's mutations (issue 36): the emulator itself commits a class of ordering bug, and the
CUDA test suite must catch each one (a failing test, or a race / use-after-free the runtime reports):

* drop_event_wait: ``cudaStreamWaitEvent`` does nothing (a missing wait);
* free_before_consumer: ``cudaFreeAsync`` frees on a stream of its own, not after the readers it was ordered after;
* skip_host_wait: host synchronisations return at once (results read before a kernel or a graph replay finished);
* wrong_launch_stream: kernels run on a stream of their own, not the one they were launched on (``out=`` written
  behind the caller's stream's back).

Each runs the ``cuda``-marked tests (this file excluded) in a subprocess with a fixed seed (ZS_EMU_SEED=36, so a
failure replays) and stops at the first failure. Runs only on the emulated build (ZSSEG_CUDA_EMULATION=1: what
tools/run_tests.sh's emulated CUDA step runs)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cuda_support import EMULATED, cuda_emulation
from support import subprocess_env

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not EMULATED, reason="mutations are the emulated CUDA runtime's (ZSSEG_CUDA_EMULATION=1)"),
    pytest.mark.skipif(bool(os.environ.get("ZS_EMU_MUTATION")), reason="already inside a mutated run"),
]

TESTS = os.path.dirname(os.path.abspath(__file__))
MUTATIONS = ["drop_event_wait", "free_before_consumer", "skip_host_wait", "wrong_launch_stream"]


def test_the_emulator_knows_every_mutation():
    assert sorted(cuda_emulation().mutation_names()) == sorted(MUTATIONS)


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_the_cuda_tests_catch_the_mutation(mutation):
    env = subprocess_env(ZS_EMU_MUTATION=mutation, ZS_EMU_SEED="36")
    command = [sys.executable, "-m", "pytest", TESTS, "-m", "cuda", "-x", "-q", "-p", "no:cacheprovider"]
    command += ["--deselect", os.path.join(TESTS, os.path.basename(__file__))]
    run = subprocess.run(command, env=env, cwd=os.path.dirname(TESTS), capture_output=True, text=True, timeout=900)
    output = run.stdout + run.stderr
    caught = [line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    # pytest exits 1 when tests failed; anything else (2: interrupted, 4: usage, a crash) is not "caught"
    assert run.returncode == 1 and caught, (
        f"mutation {mutation} went unnoticed (exit {run.returncode}):\n{output[-4000:]}"
    )
    print(f"{mutation}: caught by {caught[0]}")
