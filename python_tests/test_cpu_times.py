"""python_tests/cpu_times.py: each phase's CPU time lands on its report, survives pytest-xdist's transport, and the
summary ranks tests, files and folders by it (a fake clock: no test here depends on how fast the machine is)."""

from __future__ import annotations

import types

import cpu_times
import pytest
from _pytest.reports import TestReport


def _report(nodeid: str, when: str, duration: float) -> TestReport:
    return TestReport(nodeid, ("x.py", 1, "t"), {}, "passed", None, when, duration=duration)


def _plugin(config, *readings: float):
    """The plugin on a fake clock: the CPU-s readings it takes, in order (the first when it starts)."""
    clock = iter(readings)
    return cpu_times._CpuTimes(config, clock=lambda: next(clock))


def _phases(plugin, nodeid: str) -> list[TestReport]:
    """Runs the plugin's hooks as pytest does for one test: log start, then a report per phase."""
    plugin.pytest_runtest_logstart(nodeid, ("x.py", 1, "t"))
    reports = []
    for when in ("setup", "call", "teardown"):
        report = _report(nodeid, when, duration=10.0)
        hook = plugin.pytest_runtest_makereport(types.SimpleNamespace(nodeid=nodeid), None)
        next(hook)
        with pytest.raises(StopIteration):
            hook.send(types.SimpleNamespace(get_result=lambda report=report: report))
        reports.append(report)
    return reports


def test_each_phase_reports_the_cpu_spent_since_the_last(pytestconfig):
    # log start at 100 CPU-s, then set-up 1.5 s, call 4 s, tear-down 0.25 s of the process and its children
    plugin = _plugin(pytestconfig, 0.0, 100.0, 101.5, 105.5, 105.75)
    reports = _phases(plugin, "python_tests/a/test_x.py::t")
    assert [getattr(r, cpu_times.CPU_ATTR) for r in reports] == [1.5, 4.0, 0.25]


def test_the_cpu_time_travels_to_the_xdist_controller(pytestconfig):
    """pytest-xdist serialises a worker's report with pytest_report_to_serializable and makes it again on the
    controller: the attribute must come through, and the controller's sum is the test's."""
    reports = _phases(_plugin(pytestconfig, 0.0, 0.0, 2.0, 9.0, 9.5), "python_tests/a/test_x.py::t")
    controller = _plugin(pytestconfig, 0.0)
    for report in reports:
        data = pytestconfig.hook.pytest_report_to_serializable(config=pytestconfig, report=report)
        again = pytestconfig.hook.pytest_report_from_serializable(config=pytestconfig, data=data)
        controller.pytest_runtest_logreport(again)
    assert controller.cpu == {"python_tests/a/test_x.py::t": 9.5}
    assert controller.wall == {"python_tests/a/test_x.py::t": 30.0}


def test_the_summary_ranks_tests_files_and_folders_by_cpu():
    cpu = {
        "python_tests/a/test_x.py::cheap": 1.0,
        "python_tests/a/test_x.py::costly": 50.0,
        "python_tests/b/test_y.py::middle": 30.0,
        "python_tests/b/test_z.py::middle": 19.0,
    }
    lines = cpu_times.format_summary(cpu, {k: 2 * v for k, v in cpu.items()}, count=2)
    assert "100 CPU-s in 4 tests" in lines[0]
    tests = lines[2:4]
    assert tests[0].split() == ["50.0", "100.0", "python_tests/a/test_x.py::costly"]
    assert tests[1].split() == ["30.0", "60.0", "python_tests/b/test_y.py::middle"]
    files = lines[5:7]
    assert [f.split()[2] for f in files] == ["python_tests/a/test_x.py", "python_tests/b/test_y.py"]
    folders = lines[8:]
    assert [f.split() for f in folders] == [["51.0", "51.0%", "python_tests/a"], ["49.0", "49.0%", "python_tests/b"]]
    every = cpu_times.format_summary(cpu, {}, count=0)
    assert sum("::" in line for line in every) == 4  # 0: every test


def test_what_the_workers_took_outside_the_tests_is_reported(pytestconfig):
    """A pytest-xdist worker hands the controller its whole CPU time when it ends (its workeroutput); the summary
    says how much of the workers' time no test took: start-up, imports and collection, paid once per worker."""
    worker_config = types.SimpleNamespace(workeroutput={})
    worker = _plugin(worker_config, 0.0, 42.5)
    worker.pytest_sessionfinish(None)
    assert worker_config.workeroutput == {cpu_times.PROCESS_KEY: 42.5}
    controller = _plugin(pytestconfig, 0.0)
    controller.pytest_testnodedown(types.SimpleNamespace(workeroutput=worker_config.workeroutput), None)
    controller.pytest_testnodedown(types.SimpleNamespace(workeroutput={cpu_times.PROCESS_KEY: 37.5}), None)
    controller.pytest_testnodedown(types.SimpleNamespace(), RuntimeError("crashed"))  # a crashed worker says nothing
    assert controller.workers == [42.5, 37.5]
    lines = cpu_times.format_summary({"python_tests/test_x.py::t": 60.0}, {}, 5, processes=80.0, workers=2)
    assert lines[-1].split()[:2] == ["20.0", "CPU-s"] and "2 pytest-xdist workers" in lines[-1]
    assert lines[-1].endswith("of 80.0 in all")
    assert "outside the tests" not in "\n".join(cpu_times.format_summary({"a.py::t": 1.0}, {}, 5))
