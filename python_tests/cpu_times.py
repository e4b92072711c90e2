"""Where a test run's CPU goes, per test (issue 79 item 3): ``--cpu-durations=N`` prints, after the run, the N tests
that took the most CPU time, the files and the folders that took the most, and the run's total.

A test's CPU time is the user + system time of the process that ran it (every thread) and of the children it waited
for (the commands a test starts), from the start of its set-up to the end of its tear-down; a session fixture's cost
falls on the first test that asks for it, as in ``--durations``. Processes the test did not wait for (Ray's daemons,
a server's detached workers) are not counted. On a machine shared with other work, CPU time is the steadier measure
of a test's cost: its wall time grows with the load, its CPU time much less. With pytest-xdist each worker measures
its own tests and the numbers travel to the controller on the test reports (an attribute of the report, which
pytest-xdist serialises with the rest).

conftest.py calls :func:`addoption` and :func:`register`.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

__all__ = ["CPU_ATTR", "PROCESS_KEY", "addoption", "format_summary", "register"]

CPU_ATTR = "zs_cpu_s"  # the report attribute: CPU seconds of this phase
PROCESS_KEY = "zs_cpu_process_s"  # a pytest-xdist worker's whole CPU time, in the output it hands the controller


def addoption(parser) -> None:
    parser.addoption(
        "--cpu-durations",
        type=int,
        default=None,
        metavar="N",
        help="after the run, the N tests (and files, folders) that took the most CPU time (user + system of the "
        "test's process and the commands it waited for; python_tests/cpu_times.py); 0: every test",
    )


def register(config) -> None:
    """Measure every test phase; print the summary when ``--cpu-durations`` was given."""
    if not config.pluginmanager.has_plugin("zsseg_cpu_times"):
        config.pluginmanager.register(_CpuTimes(config), "zsseg_cpu_times")


def _cpu_now() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _CpuTimes:
    def __init__(self, config, clock=_cpu_now) -> None:
        self.config = config
        self.clock = clock  # CPU seconds so far (injected by the tests)
        self.mark = clock()
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.workers: list[float] = []  # each finished pytest-xdist worker's whole CPU time (on the controller)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid, location) -> None:
        self.mark = self.clock()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        now = self.clock()
        setattr(outcome.get_result(), CPU_ATTR, round(now - self.mark, 3))
        self.mark = now

    def pytest_runtest_logreport(self, report) -> None:
        cpu = getattr(report, CPU_ATTR, None)
        if cpu is None:  # a report made elsewhere (pytest-xdist's own, for a crashed worker)
            return
        self.cpu[report.nodeid] += float(cpu)
        self.wall[report.nodeid] += float(getattr(report, "duration", 0.0) or 0.0)

    def pytest_sessionfinish(self, session) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)  # set in a pytest-xdist worker only
        if workeroutput is not None:  # sent to the controller after every hook has run (xdist's hookwrapper)
            workeroutput[PROCESS_KEY] = self.clock()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:  # pytest-xdist's, on the controller
        total = getattr(node, "workeroutput", {}).get(PROCESS_KEY)
        if total is not None:
            self.workers.append(float(total))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        count = self.config.getoption("--cpu-durations")
        if count is None or not self.cpu:
            return
        # the processes that ran the tests, whole: the workers', or this process's own without pytest-xdist
        processes = sum(self.workers) if self.workers else self.clock()
        for line in format_summary(self.cpu, self.wall, count, processes=processes, workers=len(self.workers)):
            terminalreporter.write_line(line)


def _top(totals: dict[str, float], count: int) -> list[tuple[str, float]]:
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return ranked if count == 0 else ranked[:count]


def format_summary(
    cpu: dict[str, float], wall: dict[str, float], count: int, processes: float | None = None, workers: int = 0
) -> list[str]:
    """The summary's lines: the tests, files and folders that took the most CPU, the total, and what the processes
    that ran them took outside the tests (``processes``: their whole CPU time; start-up, imports, collection, the
    session's end: paid once per worker)."""
    total = sum(cpu.values())
    files: dict[str, float] = defaultdict(float)
    folders: dict[str, float] = defaultdict(float)
    for nodeid, seconds in cpu.items():
        path = nodeid.split("::", 1)[0]
        files[path] += seconds
        folders[os.path.dirname(path) or "."] += seconds
    lines = [
        f"== CPU time per test: {total:.0f} CPU-s in {len(cpu)} tests (user+sys of the test's process and the "
        "commands it waited for; --cpu-durations) ==",
        f"{'CPU s':>8} {'wall s':>8}  test ({'every test' if count == 0 else f'the {count} most'})",
    ]
    lines += [f"{seconds:8.1f} {wall.get(nodeid, 0.0):8.1f}  {nodeid}" for nodeid, seconds in _top(cpu, count)]
    lines.append(f"{'CPU s':>8} {'share':>8}  file")
    lines += [f"{s:8.1f} {100 * s / total if total else 0:7.1f}%  {p}" for p, s in _top(files, count)]
    lines.append(f"{'CPU s':>8} {'share':>8}  folder")
    lines += [f"{s:8.1f} {100 * s / total if total else 0:7.1f}%  {p}" for p, s in _top(folders, count)]
    if processes is not None:
        who = f"{workers} pytest-xdist workers" if workers else "the pytest process"
        lines.append(
            f"{processes - total:8.1f} CPU-s outside the tests ({who}: start-up, imports, collection, the session's "
            f"end) of {processes:.1f} in all"
        )
    return lines
