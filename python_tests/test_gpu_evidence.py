"""Run records as evidence (issue 62, item 2; checks/gpu_record.py) without a GPU: the status computed from the
reports and exit codes by `write`, recomputed by `add` (from the steps and from the logs tarball beside the record,
its SHA-256 checked) and by `table --check`; a run with test filters is "partial", never a pass; each failure's id
and the head of its traceback are kept; the must-run Python GPU tests and the skips for want of a GPU; a pass counts
at a later tree only while the files its stage covers hash the same; the records of schema v1 still load and
render. Each rule with its control. The plan and the coverage hashes: python_tests/test_gpu_check.py."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from gpu_fakes import REPO, load_check, must_run_cases, stage_work

GPU = {"gpu": "NVIDIA H100 80GB HBM3", "driver": "580.159.04", "compute_capability": "9.0"}


@pytest.fixture
def record():
    return load_check("gpu_record")


def _write(record, tmp_path: Path, work: Path, *args: str, stage: str = "ops") -> tuple:
    """`gpu_record write` of ``work``: (exit code, the record, its path)."""
    stages = load_check("gpu_stages")
    coverage = tmp_path / "coverage.json"
    coverage.write_text(json.dumps({stage: {"sha256": "c" * 64, "files": 3, "definition_sha256": "d" * 64}}))
    out = tmp_path / "records"
    budget = str(stages.stage(stage).budget_s)
    rc = record.main(["write", "--work", str(work), "--stage", stage, "--budget", budget, "--seconds", "95",
                      "--record-dir", str(out), "--coverage", str(coverage), *args])  # fmt: skip
    path = sorted(out.glob(f"*_{stage}.json"))[-1]
    return rc, json.loads(path.read_text()), path


def _as_gpu_run(path: Path) -> dict:
    """The record as if written on a GPU machine (the machine's fields only: the logs do not hold them)."""
    data = json.loads(path.read_text())
    data.update(machine=GPU, rehearsal=None)
    path.write_text(json.dumps(data, indent=1))
    return data


# ---- write: the status from the reports and exit codes ---------------------------------------------------------------
def test_a_stage_writes_its_record_with_its_evidence(record, tmp_path, capsys):
    """A pass: counts, skip reasons, the must-run tests' outcomes, what the stage itself deselected, the coverage
    hash, the logs' SHA-256 (their tarball holds the step list and the reports). The controls: a failed step keeps
    each failure's id and the head of its traceback (not the log's SKIPPED lines); a missing prerequisite."""
    rc, written, path = _write(record, tmp_path, stage_work(tmp_path))
    assert rc == 0 and written["status"] == "pass" and written["schema"] == "zsseg_rt.gpu_run.v2"
    assert written["problems"] == [] and written["filters"] == [] and written["rehearsal"] is None
    tests = written["steps"][2]["tests"]
    assert (tests["failed"], tests["skipped"], tests["skip_reasons"], tests["gpu_skips"]) == (
        0, 1, {"needs TensorRT": 1}, {}
    )  # fmt: skip
    assert set(written["must_run"].values()) == {"passed"} and len(written["must_run"]) >= 5
    assert written["deselected"]["marker"] == "not host_only" and written["deselected"]["count"] == {
        "pytest:ops,runtime,pipeline": 5
    }
    assert written["coverage"]["sha256"] == "c" * 64
    tarball = path.with_name(written["logs"]["file"])
    assert written["logs"]["sha256"] == record._sha256(tarball) and written["logs"]["bytes"] == tarball.stat().st_size
    with tarfile.open(tarball) as tar:
        assert {"steps.tsv", "missing.txt", "pytest_ops.xml", "logs/pytest_ops.log"} <= set(tar.getnames())
    # the control: the pytest step failed; the record names the failure and its traceback's head
    traceback = "\n".join(["def test_two():", "    value = compute()", ">   assert value == 2", "E   assert 3 == 2"]
                          + [f"line {i}" for i in range(30)] + ["python_tests/ops/test_b.py:7: AssertionError"])  # fmt: skip
    cases = must_run_cases("ops") + [("python_tests/ops/test_b.py::test_two", "failed", traceback)]
    log = "F\n" + "SKIPPED [1] x.py:3: needs TensorRT\n" * 20 + "1 failed in 3s\n"
    rc, written, _ = _write(record, tmp_path / "failed", stage_work(tmp_path / "failed", cases=cases, rc=1, log=log))
    step = written["steps"][2]
    assert rc == 1 and written["status"] == "fail" and "tail" not in step
    assert step["tests"]["failed_tests"] == ["python_tests.ops.test_b::test_two"]
    (failure,) = step["tests"]["failures"]
    assert failure["id"] == "python_tests.ops.test_b::test_two" and len(failure["head"]) == 15
    assert failure["head"][:4] == ["python_tests/ops/test_b.py:7: AssertionError", "def test_two():",
                                   "    value = compute()", ">   assert value == 2"]  # fmt: skip
    assert "FAILED python_tests.ops.test_b::test_two: python_tests/ops/test_b.py:7" in capsys.readouterr().out
    # a set-up that raised (JUnit <error>, not <failure>) fails the stage too, even with the step's exit 0
    cases = must_run_cases("ops") + [("python_tests/ops/test_c.py::test_three", "error", "E   fixture raised")]
    rc, written, _ = _write(record, tmp_path / "error", stage_work(tmp_path / "error", cases=cases))
    assert rc == 1 and written["status"] == "fail", written["status"]
    assert written["steps"][2]["tests"]["failed_tests"] == ["python_tests.ops.test_c::test_three"]
    rc, written, _ = _write(record, tmp_path / "m", stage_work(tmp_path / "m", missing="GPU: nvidia-smi not found\n"))
    assert (
        rc == 1 and written["status"] == "missing prerequisite" and written["missing"] == ["GPU: nvidia-smi not found"]
    )


@pytest.mark.parametrize(
    "command, partial",
    [
        ("--pytest-args '-k test_one'", ["pytest -k test_one"]),
        ("--pytest-args '--deselect python_tests/ops/test_b.py::test_two'", ["pytest --deselect python_tests/ops/test_b.py::test_two"]),
        ("--pytest-args \"-m 'not slow'\"", ["pytest -m not slow"]),
        ("--pytest-args '--ignore=python_tests/ops/test_b.py -x'", ["pytest --ignore=python_tests/ops/test_b.py", "pytest -x"]),
        ("--pytest-args '--maxfail 1 --lf --ff'", ["pytest --maxfail 1", "pytest --lf", "pytest --ff"]),
        ("--pytest-args 'python_tests/ops/test_a.py'", ["pytest a test path python_tests/ops/test_a.py"]),
        ("--budget 100", ["--budget 100 (the table's is 180 s)"]),
        ("--quick", ["--quick (the engine's full-size timing not run)"]),
        ("--pytest-args '-n 4 --durations=12 -rfEs -q'", []),  # the control: reporting and workers only
        ("--budget 180", []),  # the control: the table's own budget
    ],
)  # fmt: skip
def test_a_filtered_run_is_partial_never_a_pass(record, tmp_path, command, partial):
    """A run whose command filtered the tests or changed the bound would be a pass without this rule (its steps all
    passed): it is "partial", which never counts; the controls are commands that only change reporting or workers."""
    command = f"tools/gpu_check.sh --stage ops --record-dir /out {command}"
    assert record.filters(command, 180, 180) == partial
    rc, written, _ = _write(record, tmp_path, stage_work(tmp_path), "--command", command)
    assert (rc, written["status"], written["filters"]) == ((1, "partial", partial) if partial else (0, "pass", []))
    # a filtered run that failed is a failure, not partial
    rc, failed, _ = _write(record, tmp_path / "f", stage_work(tmp_path / "f", rc=1), "--command", command)
    assert failed["status"] == "fail"


def test_the_quoted_command_is_how_gpu_check_records_it(record):
    """tools/gpu_check.sh records its arguments shell-quoted; a v1-style unquoted command still reads."""
    script = (REPO / "tools" / "gpu_check.sh").read_text()
    assert 'COMMAND="tools/gpu_check.sh$(printf \' %q\' "$@")"' in script
    quoted = "tools/gpu_check.sh --stage ops --pytest-args -k\\ \\'a\\ or\\ b\\'"  # what printf %q writes
    assert record.filters(quoted, 180, 180) == ["pytest -k a or b"]
    assert (
        record.filters("tools/gpu_check.sh --stage ops --record-dir out/records --pytest-args --durations=12", 180, 180)
        == []
    )


# ---- the must-run tests and the skips for want of a GPU ---------------------------------------------------------------
def test_a_must_run_test_that_skips_or_is_absent_fails_the_stage(record, tmp_path):
    """Without the rule these stages pass (every step exited 0): a must-run test skipped in its worker, one missing
    from the report, a test that skipped for want of CUDA. The controls: every must-run test ran (the test above),
    and a skip for the emulated CUDA runtime, which is allowed, with a collection skip's whole reason kept."""
    passed = must_run_cases("ops")
    first = passed[0][0]
    for name, cases, problem in (
        ("skipped", [(first, "skipped", "needs a CUDA GPU and zsseg_rt's CUDA ops")] + passed[1:],
         f"must-run {first.split('[')[0] if first.endswith('[x]') else first}: skipped"),
        ("absent", passed[1:], "must-run "),
        ("gpu", passed + [("python_tests/ops/test_c.py::test_d", "skipped", "no usable CUDA device (cuda_available() is False)")],
         "pytest:ops,runtime,pipeline: skipped for want of a GPU: no usable CUDA device (cuda_available() is False) (1)"),
    ):  # fmt: skip
        rc, written, _ = _write(record, tmp_path / name, stage_work(tmp_path / name, cases=cases))
        assert rc == 1 and written["status"] == "fail", name
        assert any(p.startswith(problem) for p in written["problems"]), (name, written["problems"])
    allowed = passed + [
        ("python_tests/ops/test_c.py::test_e", "skipped", "needs the emulated CUDA runtime (ZSSEG_CUDA_EMULATION=1)"),
        (
            "python_tests/ops/test_fuzz.py",
            "skipped",
            "the raw fuzz on the emulated CUDA build, a long reason kept whole",
        ),
    ]
    rc, written, _ = _write(record, tmp_path / "allowed", stage_work(tmp_path / "allowed", cases=allowed))
    assert rc == 0 and written["status"] == "pass"
    reasons = written["steps"][2]["tests"]["skip_reasons"]
    assert "collection skipped: the raw fuzz on the emulated CUDA build, a long reason kept whole" in reasons


# ---- add and table --check recompute; a pass counts only while its coverage holds --------------------------------------
def _committable(record, tmp_path: Path, name: str, **work) -> Path:
    _, _, path = _write(record, tmp_path / name, stage_work(tmp_path / name, **work))
    _as_gpu_run(path)
    return path


def _tables(record, tmp_path: Path, monkeypatch) -> Path:
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("before\n" + record.BEGIN + "\n" + record.END + "\nafter\n")
    monkeypatch.setattr(record, "RUNS", tmp_path / "gpu_runs")
    monkeypatch.setattr(record, "BENCHMARKS", benchmarks)
    return benchmarks


def test_add_recomputes_the_status_from_the_steps_and_the_logs(record, tmp_path, monkeypatch, capsys):
    """Tampered records are refused: a status edited to "pass", steps edited to agree with it (the logs say
    otherwise), logs whose SHA-256 is not the record's. The control: the same record untampered is added."""
    _tables(record, tmp_path, monkeypatch)
    edited = _committable(record, tmp_path, "status", rc=1)
    data = json.loads(edited.read_text())
    edited.write_text(json.dumps({**data, "status": "pass"}))
    steps = _committable(record, tmp_path, "steps", rc=1)
    data = json.loads(steps.read_text())
    data["steps"][2]["rc"], data["status"] = 0, "pass"
    steps.write_text(json.dumps(data))
    logs = _committable(record, tmp_path, "logs")
    tarball = logs.with_name(json.loads(logs.read_text())["logs"]["file"])
    tarball.write_bytes(tarball.read_bytes() + b"\0")
    assert record.main(["add", str(edited), str(steps), str(logs)]) == 1
    err = capsys.readouterr().err
    assert "refused: its status says 'pass', its steps say 'fail'" in err
    assert f"{steps.name}: refused: its steps, test counts or must-run outcomes differ from those in" in err
    assert f"{logs.name}: refused: {tarball.name}'s SHA-256 is not the one the record holds" in err
    assert not (tmp_path / "gpu_runs").exists() or list((tmp_path / "gpu_runs").iterdir()) == []
    good = _committable(record, tmp_path, "good", rc=1)  # the control: a failed run, as it was
    assert record.main(["add", str(good)]) == 0 and (tmp_path / "gpu_runs" / good.name).is_file()
    assert f"checked against {good.name[: -len('.json')]}.logs.tar.gz" in capsys.readouterr().out
    # without its logs beside it, a record is checked on its steps alone (and a tampered status is still refused)
    alone = tmp_path / "alone" / edited.name
    alone.parent.mkdir()
    shutil.copy(edited, alone)
    assert record.main(["add", str(alone)]) == 1


def test_table_check_recomputes_every_committed_status(record, tmp_path, monkeypatch, capsys):
    """`table --check` fails on a committed record whose status its steps do not give, even with the table
    regenerated from it; the control: the same records untampered."""
    _tables(record, tmp_path, monkeypatch)
    path = _committable(record, tmp_path, "one", rc=1)
    assert record.main(["add", str(path)]) == 0 and record.main(["table", "--check"]) == 0
    committed = tmp_path / "gpu_runs" / path.name
    committed.write_text(json.dumps({**json.loads(committed.read_text()), "status": "pass"}))
    assert record.main(["table", "--write"]) == 0
    capsys.readouterr()
    assert record.main(["table", "--check"]) == 1
    assert f"{path.name}: its status says 'pass', its steps say 'fail'" in capsys.readouterr().out


def test_a_pass_counts_only_while_its_coverage_holds(record, tmp_path):
    """A pass counts at the tree whose coverage hash for its stage is the record's; after a covered file changed it
    is "pass (stale: ...)" and the summary does not count it; a v1 pass has no hash and never counts. Partial runs
    never count."""
    path = _committable(record, tmp_path, "ops")
    ops = {**json.loads(path.read_text()), "_file": path.name}
    same = {"ops": {"sha256": "c" * 64}}
    table = record.render_table([ops], same)
    assert (
        "| ops | 180 s | pass | NVIDIA H100" in table
        and "Acceptance on a GPU: 1 of 6 stages pass at this tree" in table
    )
    stale = record.render_table([ops], {"ops": {"sha256": "e" * 64}})
    assert "| ops | 180 s | pass (stale: covered files changed) |" in stale
    assert (
        "0 of 6 stages pass at this tree; passes that no longer count (covered files changed, or no coverage hash): ops"
        in stale
    )
    assert record.current_passes(tmp_path / "ops" / "records", same) == {"ops": path.name}
    assert record.current_passes(tmp_path / "ops" / "records", {"ops": {"sha256": "e" * 64}}) == {}
    v1 = {**ops, "schema": "zsseg_rt.gpu_run.v1"}
    assert "| ops | 180 s | pass (v1 record: no coverage hash, not counted) |" in record.render_table([v1], same)
    partial = {**ops, "status": "partial", "command": "tools/gpu_check.sh --stage ops --pytest-args -x"}
    assert record.status_of(partial) == "partial"
    assert "| ops | 180 s | partial |" in record.render_table([partial], same) and "0 of 6" in record.render_table(
        [partial], same
    )


# ---- the committed records -------------------------------------------------------------------------------------------
def _gpu_record(stage="ops", status="fail", **changes) -> dict:
    record = {
        "schema": "zsseg_rt.gpu_run.v2",
        "stage": stage,
        "status": status,
        "seconds": 180,
        "finished": "2026-12-01T10:00:00+00:00",
        "rehearsal": None,
        "machine": GPU,
        "artifacts": {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": []},
        "tree": {"build_inputs_match": True, "tests_match": True, "tests_differing": []},
        "command": f"tools/gpu_check.sh --stage {stage}",
        "steps": [{"name": "artifacts", "rc": 0, "seconds": 1, "log": "logs/artifacts.log"},
                  {"name": "step", "rc": 0 if status == "pass" else 1, "seconds": 1, "log": "logs/step.log"}],
        "missing": [],
        "must_run": {},
    }  # fmt: skip
    record.update(changes)
    return record


def test_only_runs_on_a_gpu_may_be_committed(record):
    assert record.refusal(_gpu_record()) is None  # the control
    assert record.refusal(_gpu_record(rehearsal="fake machine")).startswith("a rehearsal")
    assert record.refusal(_gpu_record(machine={"gpu": "no GPU (nvidia-smi not found)", "driver": ""}))
    assert "differed from" in record.refusal(_gpu_record(artifacts={"commit": "0" * 40, "dirty": ["csrc/x.cu"]}))
    assert "unknown stage" in record.refusal(_gpu_record(stage="ctest"))
    assert record.refusal(_gpu_record(status="pass", must_run={"python_tests/ops/test_x.py::test_y": "skipped"})) == (
        "its status says 'pass', its steps say 'fail'"
    )


def test_a_probe_that_left_parts_out_is_partial(record, tmp_path):
    """The H100 lease of 2026-11-26: the probe skipped P7 and P9 for want of budget and its stage said pass, so the
    next plan would have left the never-measured parts out for good. Now such a record is partial (and a part that
    failed, crashed or was cut fails the probe's verdict step); the control: every part measured."""
    ok = {"id": "P1", "title": "host cost", "status": "ok"}
    cut = {"id": "P7", "title": "batched", "status": "skipped", "reason": "budget: 5 s left"}
    measured = _gpu_record(stage="probe", status="pass", probe={"parts": [ok], "complete": True})
    assert record.status_of(measured) == "pass" and record.refusal(measured) is None  # the control
    left_out = _gpu_record(stage="probe", status="pass", probe={"parts": [ok, cut], "complete": True})
    assert record.status_of(left_out) == "partial"
    half = {**ok, "measured": {"iid": {"exit_code": 0}, "engine": {"exit_code": "timeout"}}}  # a run cut in a part
    assert record.status_of(_gpu_record(stage="probe", status="pass", probe={"parts": [half]})) == "partial"
    assert record.refusal(left_out) == "its status says 'pass', its steps say 'partial'"
    assert any(
        "P7" in line and "PARTIAL" in line
        for line in record.summary_lines({**left_out, "status": "partial", "budget_s": 165, "filters": []})
    )
    support = load_check("gpu_check_support")
    report = tmp_path / "probe.json"
    for parts, problems in (([ok], 0), ([ok, cut], 0), ([ok, {**cut, "status": "crashed"}], 1)):
        report.write_text(json.dumps({"parts": parts, "complete": True}))
        assert len(support.probe_verdict(str(report))) == problems, parts


def test_benchmarks_md_agrees_with_docs_gpu_runs(record, tmp_path, monkeypatch):
    """BENCHMARKS.md's table is docs/gpu_runs/ rendered (each stage's latest record, the others "never run"), every
    committed record is a GPU run whose status its content gives, and the records of schema v1 still load and render
    (their pass never counts: no coverage hash)."""
    stages = load_check("gpu_stages")
    text = (REPO / "BENCHMARKS.md").read_text()
    runs = record.load_runs()
    assert record.table_text(text, runs) == text, "python -m checks gpu_record table --write"
    assert [r["_file"] for r in runs if record.refusal(r)] == []
    assert {r["schema"] for r in runs} <= {"zsseg_rt.gpu_run.v1", "zsseg_rt.gpu_run.v2"}
    assert all(record.status_of(r) == r["status"] for r in runs)
    ran = {r["stage"] for r in runs}
    for stage in stages.STAGES:
        assert (f"| {stage.name} | {stage.budget_s} s | never run |" in text) == (stage.name not in ran)
    # the control: one GPU record more, and the check fails until the table is rewritten
    runs_dir = tmp_path / "gpu_runs"
    runs_dir.mkdir()
    for old in record.RUNS.glob("*.json"):
        shutil.copy(old, runs_dir)
    (runs_dir / "2026-12-01T100000_nvidia-h100_ops.json").write_text(json.dumps(_gpu_record()))
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text(text)
    monkeypatch.setattr(record, "RUNS", runs_dir)
    monkeypatch.setattr(record, "BENCHMARKS", benchmarks)
    assert record.main(["table", "--check"]) == 1
    assert record.main(["table", "--write"]) == 0 and record.main(["table", "--check"]) == 0
    ops = stages.stage("ops").budget_s
    assert f"| ops | {ops} s | fail | NVIDIA H100 80GB HBM3, driver 580.159.04 | 2026-12-01 | 0123456789 |" in (
        benchmarks.read_text()
    )
