"""What a pytest session under a stage's bound needs (the GPU lease's sanitizers stage, tools/gpu_check.sh): its
must-run tests first, a deadline after which no test starts, and the ``not_sanitized`` mark.

* ``$ZSSEG_TESTS_FIRST``: node-id prefixes, one a line, whose tests run before every other (in that order; the rest
  keeps its order). pytest-xdist's loadgroup scheduler hands tests out in collection order, so a late hang cannot
  leave a must-run test unrun (the H200 run of 7f842ed: memcheck's pytest cut at its bound with 256 of 257 done, the
  four must-runs read "absent").
* ``$ZSSEG_TEST_DEADLINE``: a time (seconds since the epoch) after which a test that has not started is skipped,
  "not run: the stage's deadline came first", so that pytest ends on its own and writes its report and JUnit XML
  before the stage's bound ends the process tree (compute-sanitizer took SIGINT and ended the tree with no summary
  and no XML: every result of the run was lost). The caller sets it to its bound less the per-test bound
  (``$ZSSEG_TEST_TIME_BOUND``) and the time the report takes.
* ``@pytest.mark.not_sanitized("why")``: a CUDA test whose CUDA work runs in child processes (each a CUDA context of
  its own under ``compute-sanitizer --target-processes all``, with no bound of the harness's); the sanitized run
  deselects it (``-m "cuda and not not_sanitized"``: ``checks/gpu_stages.py``), its kernels run under memcheck
  in-process in other tests, and the suite stage runs it natively. The reason is required
  (python_tests/test_not_sanitized.py checks every mark, the must-runs and the files that start processes).
"""

from __future__ import annotations

import os
import sys
import time
from typing import List, Optional

import pytest

__all__ = ["DEADLINE_ENV", "FIRST_ENV", "LONGEST_FIRST", "NOT_SANITIZED", "first_prefixes", "longest_first", "register"]

FIRST_ENV = "ZSSEG_TESTS_FIRST"
DEADLINE_ENV = "ZSSEG_TEST_DEADLINE"
NOT_SANITIZED = "not_sanitized"


def register(config) -> None:
    """This module's hooks and its marker (conftest.py's ``pytest_configure``)."""
    if not config.pluginmanager.has_plugin("zsseg_stage_order"):
        config.pluginmanager.register(sys.modules[__name__], "zsseg_stage_order")
    config.addinivalue_line(
        "markers",
        f"{NOT_SANITIZED}(reason): a CUDA test whose CUDA work runs in child processes; deselected under "
        "compute-sanitizer (python_tests/stage_order.py), run natively by the suite stage",
    )


def first_prefixes() -> List[str]:
    """The node-id prefixes of ``$ZSSEG_TESTS_FIRST`` (each given with or without ``python_tests/``)."""
    lines = (line.strip() for line in os.environ.get(FIRST_ENV, "").splitlines())
    return [line if line.startswith("python_tests/") else "python_tests/" + line for line in lines if line]


def first_rank(nodeid: str, prefixes: List[str]) -> Optional[int]:
    """The index of the first prefix ``nodeid`` starts with, or None."""
    return next((i for i, prefix in enumerate(prefixes) if nodeid.startswith(prefix)), None)


def deadline() -> Optional[float]:
    """``$ZSSEG_TEST_DEADLINE`` as a time, or None (unset or empty); a value that is no number is refused."""
    text = os.environ.get(DEADLINE_ENV, "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise pytest.UsageError(f"{DEADLINE_ENV}: expected seconds since the epoch, got {text!r}") from None


# The longest tests of a full run (its --durations table), started first: pytest-xdist's loadgroup scheduler hands
# the workers one work unit at a time in collection order, so a long test collected last runs alone at the end while
# the other cores idle (a fresh-clone CI run: the docs snippets, ~150 s, ended the run). Longest first is the classic
# list schedule; only the order changes, never what runs. A prefix that matches nothing costs nothing.
LONGEST_FIRST = (
    "python_tests/test_doc_snippets.py::test_snippets_run_as_written[docs/usage.md]",
    "python_tests/export/test_fullsize.py::",
    # one xdist_group (one Ray cluster): minutes of tests on one worker, the tail of a run when handed out late
    "python_tests/scale/",
    "python_tests/test_doc_snippets.py::",
    "python_tests/export/test_numeric_bounds.py::test_golden_bundle_verifies_on_an_emulated_avx2_machine",
    "python_tests/test_every_family_bundle.py::",
    "python_tests/test_gpu_rehearsal.py::",
    "python_tests/runtime/test_batched_call.py::test_two_stage_batched_call_equals_per_image_calls",
    "python_tests/test_benchmark_cpu_default.py::",
    "python_tests/test_benchmark_cpu.py::test_quick_run_renders_every_section",
    # the --fake-cuda session's (python_tests/train, python_tests/models, python_tests/eval)
    "python_tests/models/zegformer/test_zegformer_training.py::test_tiny_zegformer_learns_seen_classes",
    "python_tests/models/training_free/test_training_free_whole_engine.py::",
    "python_tests/models/training_free/test_scclip.py::",
    "python_tests/train/test_amp_training.py::",
)


def longest_first(items) -> None:
    """The session's order (conftest.py's collection hook): the must-runs of ``$ZSSEG_TESTS_FIRST`` in their order,
    then LONGEST_FIRST's prefixes in theirs, then the rest in pytest's order (a stable sort: only the order changes,
    never what runs)."""
    first = first_prefixes()

    def rank(item) -> int:
        nodeid = item.nodeid if item.nodeid.startswith("python_tests/") else "python_tests/" + item.nodeid
        must = first_rank(nodeid, first)
        if must is not None:
            return must - len(first)
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if nodeid.startswith(prefix)), len(LONGEST_FIRST))

    items[:] = sorted(items, key=rank)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    due = deadline()
    if due is not None and time.time() >= due:
        pytest.skip(f"not run: the stage's deadline ({DEADLINE_ENV}) came first, so that pytest writes its report")
