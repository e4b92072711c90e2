"""The mutation harness (issues 36, 50): an ordering bug made on purpose, by the emulated CUDA runtime or by the
library, must be caught by the CUDA tests with a report of the kind that bug makes -- not by any failure.

Mutations of the emulator (csrc/emu/cuda_emu_runtime.h):

* drop_event_wait: ``cudaStreamWaitEvent`` does nothing (a missing wait);
* free_before_consumer: ``cudaFreeAsync`` frees on a stream of its own, not after the readers it was ordered after;
* skip_host_wait: host synchronisations return at once (results read before a kernel or a graph replay finished);
* wrong_launch_stream: kernels run on a stream of their own, not the one they were launched on (``out=`` written
  behind the caller's stream's back).

Mutations of the library, switched at run time through ``ZS_LIBRARY_MUTATED`` (csrc/cuda/emu_hooks.h: compiled into
the emulated build only):

* lib_skip_input_wait: an op does not wait for the launch that wrote its DeviceArray input (csrc/bindings/device.cpp);
* lib_skip_reader_record: a launch is not recorded as a reader of its DeviceArray inputs, so a later ``out=`` write
  of one does not wait for it (device.cpp);
* lib_skip_release_wait: a DeviceArray's release, or the output that takes its memory over, does not wait for the
  launch that wrote it (csrc/cuda/stream_order.h);
* lib_skip_consumer_wait: nor for the streams it was exported to (stream_order.h).

Each mutation runs, in a subprocess with a fixed seed (ZS_EMU_SEED=36, so a failure replays), only the tests that
must catch it, stopping at the first failure (``-x``). It is caught when the run failed AND a report of one of its
expected kinds failed a test (python_tests/conftest.py writes them to $ZS_EMU_REPORT_LOG), or the process died under
AddressSanitizer with an ASan report of an expected kind (read from ASAN_OPTIONS' log_path: pytest's capture would
swallow it). A control runs the same tests unmutated: it must pass with no report and no ASan report, so a failure
under a mutation is the mutation's. Runs only on the emulated build (ZSSEG_CUDA_EMULATION=1: what
tools/run_tests.sh's emulated CUDA step runs)."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

import pytest
from cuda_support import EMULATED, cuda_emulation
from support import subprocess_env

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.not_sanitized("each mutation runs pytest in a child process; the emulated runtime's only"),
    pytest.mark.skipif(not EMULATED, reason="mutations are the emulated CUDA runtime's (ZSSEG_CUDA_EMULATION=1)"),
    pytest.mark.skipif(bool(os.environ.get("ZS_EMU_MUTATION")), reason="already inside a mutated run"),
]

TESTS = os.path.dirname(os.path.abspath(__file__))
ORDERING = "ops/test_cuda_ordering.py::"
BINDINGS = "ops/test_cuda_bindings.py::"
PENDING_READERS = ORDERING + "test_a_write_into_a_device_array_waits_for_its_pending_readers"
NEWEST_WRITE = ORDERING + "test_an_out_device_array_is_read_after_its_newest_write"
CONSUMER_READ = BINDINGS + "test_a_consumers_read_on_its_stream_comes_before_the_release_with_no_report"
TAKE_OVER = "ops/test_output_cache.py::test_a_buffer_taken_over_on_another_stream_waits_for_its_last_writer"

# mutation -> (the report kinds it makes, the tests that must catch it: the first to, at ZS_EMU_SEED=36; each run
# starts a process, most of a run's cost). "race": an access not ordered after one it conflicts with;
# "use-after-free": pool memory used after its free ran (the free came first); "misuse": a free of memory whose
# allocation had not run yet (what a lost wait makes of a release). ASan kinds count only with their ASan report.
MUTATIONS = {
    "drop_event_wait": ({"race", "misuse"}, [PENDING_READERS]),
    # (issue 86: a dropped output that was never exported is taken over by the next one, not freed: the frees that
    # remain are those of exported outputs, after their consumers' streams)
    "free_before_consumer": ({"race", "use-after-free"}, [CONSUMER_READ]),
    "skip_host_wait": ({"race", "use-after-free", "asan:heap-use-after-free"}, [NEWEST_WRITE]),
    "wrong_launch_stream": ({"race"}, [NEWEST_WRITE]),
    "lib_skip_input_wait": ({"race"}, [PENDING_READERS]),
    "lib_skip_reader_record": ({"race"}, [PENDING_READERS]),
    # (issue 86: a dropped output's memory is taken over by the next output, ordered after its writer as a release is)
    "lib_skip_release_wait": ({"race", "use-after-free", "misuse"}, [TAKE_OVER]),
    "lib_skip_consumer_wait": ({"race", "use-after-free"}, [CONSUMER_READ]),
}


def _run(tests, mutation, tmp_path):
    """Runs ``tests`` (paths under python_tests) with ``mutation`` (None: none) and -x; returns (exit code, the kinds
    of the reports that failed a test, the ASan report kinds, the output's tail)."""
    reports = tmp_path / "reports.jsonl"
    asan_prefix = tmp_path / "asan"
    asan_options = os.environ.get("ASAN_OPTIONS", "")
    env = subprocess_env(
        ZS_EMU_SEED="36",
        ZS_EMU_REPORT_LOG=str(reports),
        ASAN_OPTIONS=f"{asan_options}:log_path={asan_prefix}" if asan_options else f"log_path={asan_prefix}",
    )
    env.pop("ZS_EMU_MUTATION", None)
    if mutation:
        env["ZS_EMU_MUTATION"] = mutation
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "cuda"]
    command += [os.path.join(TESTS, test) for test in tests]
    run = subprocess.run(command, env=env, cwd=os.path.dirname(TESTS), capture_output=True, text=True, timeout=900)
    kinds = set()
    if reports.exists():
        kinds = {json.loads(line)["kind"] for line in reports.read_text(encoding="utf-8").splitlines() if line}
    asan = set()
    for path in glob.glob(f"{asan_prefix}.*"):
        with open(path, encoding="utf-8", errors="replace") as handle:
            asan |= {"asan:" + kind for kind in re.findall(r"ERROR: AddressSanitizer: ([\w-]+)", handle.read())}
    return run.returncode, kinds, asan, (run.stdout + run.stderr)[-4000:]


def test_the_emulator_knows_every_mutation():
    assert sorted(cuda_emulation().mutation_names()) == sorted(MUTATIONS)


def test_the_control_run_passes_with_no_report(tmp_path):
    tests = sorted({test for _, selected in MUTATIONS.values() for test in selected})
    code, kinds, asan, output = _run(tests, None, tmp_path)
    assert (code, kinds, asan) == (0, set(), set()), f"the unmutated tests failed or reported:\n{output}"


ASAN_PROBE = """
import ctypes, os
import pytest
from zsseg_rt import ops
pytestmark = pytest.mark.cuda

def test_probe():
    if os.environ["PROBE"] == "use-after-free":  # an AddressSanitizer abort with its report
        t = ops.native_module()._testing
        pointer = t.malloc(64, "device")
        t.free(pointer, "device")
        ctypes.string_at(pointer, 8)
    os.abort()  # an abort with no report
"""


@pytest.mark.parametrize("probe", ["use-after-free", "abort"])
def test_an_asan_abort_counts_only_with_its_report(probe, tmp_path, monkeypatch):
    (tmp_path / "test_probe.py").write_text(ASAN_PROBE, encoding="utf-8")
    monkeypatch.setenv("PROBE", probe)
    code, kinds, asan, output = _run([str(tmp_path / "test_probe.py")], None, tmp_path)
    assert code != 0 and not kinds, output
    assert asan == ({"asan:heap-use-after-free"} if probe == "use-after-free" else set()), output


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_cuda_tests_catch_the_mutation_with_a_report_of_its_kind(mutation, tmp_path):
    expected, tests = MUTATIONS[mutation]
    code, kinds, asan, output = _run(tests, mutation, tmp_path)
    found = kinds | asan
    # pytest exits 1 when tests failed; an ASan abort counts only with its ASan report (in `asan`)
    assert code != 0 and found & expected, (
        f"mutation {mutation} was not caught by a report of kind {sorted(expected)} (exit {code}, reports "
        f"{sorted(found)}):\n{output}"
    )
    print(f"{mutation}: caught by {sorted(found & expected)} reports")
