"""Run records as evidence (issue 62 item 2, issue 72 item 4; checks/gpu_record.py, checks/_gpu_evidence.py) without
a GPU: the status computed from the reports and exit codes by `write`, and on every read from the logs tarball beside
the record; a run with test filters is "partial", never a pass; each failure's id and the head of its traceback are
kept; the must-run Python GPU tests and the skips for want of a GPU. `add` and `table --check` refuse what a forger
would commit, each rule with a test that forges the record it refuses and a control that the honest one passes: no
tarball, another record's tarball, a status or exit codes edited while the Engine check failed, must-run lists
emptied or changed, a coverage hash pasted from another commit than ``artifacts.commit`` (a small git repository in
tmp_path), a JUnit report with a failure under a record claiming none. A pass counts at a later tree only while the
files its stage covers hash the same, a timing stage's on its GPU kind only; the records committed without their logs
are history that never counts. The plan and the other coverage rules: python_tests/test_gpu_check.py."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import types
from pathlib import Path

import pytest
from gpu_fakes import REPO, load_check, must_run_cases, stage_work

GPU = {"gpu": "NVIDIA H100 80GB HBM3", "driver": "580.159.04", "compute_capability": "9.0"}
H200 = {"gpu": "NVIDIA H200", "driver": "580.159.04", "compute_capability": "9.0"}


@pytest.fixture
def record(monkeypatch):
    """checks/gpu_record.py, its records written as on a GPU machine (nvidia-smi's facts: the logs do not hold them)."""
    module = load_check("gpu_record")
    monkeypatch.setattr(module, "machine", lambda: dict(GPU))
    monkeypatch.delenv("ZSSEG_GPU_CHECK_REHEARSAL", raising=False)
    return module


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
        assert {"steps.tsv", "missing.txt", "pytest_ops.xml", "logs/pytest_ops.log", "record.json"} <= set(
            tar.getnames()
        )
        inside = json.loads(tar.extractfile("record.json").read())  # the record itself, all but its tarball's hash
    assert inside == {k: v for k, v in written.items() if k != "logs"}
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
        ("--budget 77", ["--budget 77 (the table's is {budget} s)"]),
        ("--quick", ["--quick (the engine's full-size timing not run)"]),
        ("--pytest-args '-n 4 --durations=12 --cpu-durations 9 -rfEs -q'", []),  # the control: reporting and workers only
        ("--budget {budget}", []),  # the control: the table's own budget (the ops stage's, checks/gpu_stages.py)
    ],
)  # fmt: skip
def test_a_filtered_run_is_partial_never_a_pass(record, tmp_path, command, partial):
    """A run whose command filtered the tests or changed the bound would be a pass without this rule (its steps all
    passed): it is "partial", which never counts; the controls are commands that only change reporting or workers."""
    budget = load_check("gpu_stages").stage("ops").budget_s
    command = f"tools/gpu_check.sh --stage ops --record-dir /out {command.format(budget=budget)}"
    partial = [p.format(budget=budget) for p in partial]
    assert record.filters(command, budget, budget) == partial
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


# ---- the evidence: a record, its logs tarball and git at its commit ------------------------------------------------------
TREE_AT_A = {
    "csrc/a.cu": "1", "csrc/emu/cuda_emu.h": "1", "cpp_tests/test_c.cpp": "1", "cpp_tests/emulation/test_e.cpp": "1",
    "zsseg_rt/__init__.py": "1", "zsseg_rt/stream/video_filter/filter_arrays.py": "1", "benchmarks/_cuda_timing.py": "1",
    "tools/gpu_check.sh": "1", "python_tests/conftest.py": "1", "docs/x.md": "1",
    "python_tests/ops/test_o.py": "import pytest\npytestmark = pytest.mark.cuda\n",
}  # fmt: skip


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "HOME": str(repo.parent), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "lease",
           "GIT_AUTHOR_EMAIL": "lease@example.org", "GIT_COMMITTER_NAME": "lease", "GIT_COMMITTER_EMAIL": "lease@example.org"}  # fmt: skip
    run = subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


class _Clock:
    """gpu_record's clock in these tests: a minute later at every reading, so that two records never share a name
    or a `finished` time, whatever the real time (the record's name is its time to the second)."""

    def __init__(self):
        self.time = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.timezone.utc)

    def now(self, tz=None) -> datetime.datetime:
        self.time += datetime.timedelta(minutes=1)
        return self.time


class Lease:
    """A repository in tmp_path with two commits: A, which the artefacts were built from and the stages ran at, and B
    (HEAD), where a covered file changed since; records written for stages run at A, as tools/gpu_check.sh writes
    them; docs/gpu_runs/ and BENCHMARKS.md of its own. The repository holds this checkout's checks/gpu_stages.py: git
    at A gives the stage definitions and the coverage hashes the records are checked against."""

    def __init__(self, record, root: Path, monkeypatch):
        self.record, self.root, self.monkeypatch = record, root, monkeypatch
        self.stages, artifacts = load_check("gpu_stages"), load_check("gpu_artifacts")
        self.repo = root / "repo"
        files = {**TREE_AT_A, "checks/gpu_stages.py": (REPO / "checks" / "gpu_stages.py").read_text()}
        for name, text in files.items():
            (self.repo / name).parent.mkdir(parents=True, exist_ok=True)
            (self.repo / name).write_text(text)
        _git(self.repo, "init", "-q")
        _git(self.repo, "add", "-A")
        _git(self.repo, "commit", "-q", "-m", "A")
        self.commit = {"A": _git(self.repo, "rev-parse", "HEAD")}
        self.coverage = {"A": artifacts.coverage(self.repo)}  # as tools/gpu_check.sh computes it on the copy of A
        (self.repo / "csrc" / "a.cu").write_text("2")
        _git(self.repo, "commit", "-q", "-am", "B")
        self.commit["B"] = _git(self.repo, "rev-parse", "HEAD")
        self.coverage["B"] = artifacts.coverage(self.repo)
        assert self.coverage["A"]["ops"]["sha256"] != self.coverage["B"]["ops"]["sha256"]
        self.runs, self.benchmarks = root / "gpu_runs", root / "BENCHMARKS.md"
        self.benchmarks.write_text("before\n" + record.BEGIN + "\n" + record.END + "\nafter\n")
        monkeypatch.setattr(record, "REPO", self.repo)
        monkeypatch.setattr(record, "RUNS", self.runs)
        monkeypatch.setattr(record, "BENCHMARKS", self.benchmarks)
        monkeypatch.setattr(record, "datetime", types.SimpleNamespace(datetime=_Clock()))

    def write(self, name: str, stage: str = "ops", at: str = "A", coverage: str = "A", machine=None,
              engine_pass: bool = True, **work) -> Path:  # fmt: skip
        """`gpu_record write` of a stage run at commit ``at`` with the coverage hashes of ``coverage``: the record."""
        folder = self.root / name
        probe = []
        if stage == "engine":
            work_dir = _engine_work(folder, engine_pass)
        elif stage == "probe":
            work_dir, probe = _probe_work(folder, **work), ["--probe-dir", str(folder / "probe")]
        else:
            work_dir = stage_work(folder, stage, **work)
        hashes = self.coverage[coverage]
        facts = {"artifacts": {"commit": self.commit.get(at, at), "dirty": [], "manifest_sha256": "ab" * 32,
                               "coverage": {s: e["sha256"] for s, e in hashes.items()}},
                 "tree": {"build_inputs_match": True, "tests_match": True, "tests_differing": []}}  # fmt: skip
        (work_dir / "artifacts.json").write_text(json.dumps(facts))
        (folder / "coverage.json").write_text(json.dumps(hashes))
        self.monkeypatch.setattr(self.record, "machine", lambda: dict(machine or GPU))
        budget = str(self.stages.stage(stage).budget_s)
        self.record.main(["write", "--work", str(work_dir), "--stage", stage, "--budget", budget, "--seconds", "95",
                          "--record-dir", str(folder / "records"), "--coverage", str(folder / "coverage.json"),
                          *probe])  # fmt: skip
        (path,) = (folder / "records").glob("*.json")
        return path

    def copy(self, path: Path, name: str) -> Path:
        """The record and its tarball in a folder of their own (what a forger starts from)."""
        (self.root / name).mkdir()
        for source in (path, path.with_name(path.name[: -len(".json")] + ".logs.tar.gz")):
            shutil.copy(source, self.root / name / source.name)
        return self.root / name / path.name


def _engine_work(folder: Path, engine_pass: bool) -> Path:
    """The engine stage's work folder: its steps (the targets step fails when the Engine check did), the Engine
    check's and the benchmark's JSON."""
    work = folder / "work"
    (work / "logs").mkdir(parents=True)
    steps = [("artifacts", 0), ("install", 0), ("engine", 0), ("engine_targets", 0 if engine_pass else 1),
             ("cpp", 0), ("bench", 0), ("bench_targets", 0)]  # fmt: skip
    (work / "steps.tsv").write_text("".join(f"{n}\t{rc}\t1\tlogs/{n}.log\n" for n, rc in steps))
    for name, rc in steps:
        (work / "logs" / f"{name}.log").write_text("targets missed: post-processing\n" if rc else "ok\n")
    failed = [] if engine_pass else ["post-processing 8.69 % of the encoder (target 3 %)"]
    (work / "engine_check.json").write_text(json.dumps({"gpu": GPU["gpu"], "failed": failed, "pass": engine_pass}))
    (work / "bench_cuda.json").write_text(json.dumps({"rows": [], "failed": [], "pass": True}))
    (work / "missing.txt").write_text("")
    return work


def _probe_work(folder: Path, parts) -> Path:
    """The probe stage's work folder and the probe's folder (its report: ``parts``)."""
    work = folder / "work"
    (work / "logs").mkdir(parents=True)
    (folder / "probe").mkdir()
    (folder / "probe" / "probe.json").write_text(json.dumps({"parts": parts, "complete": True}))
    steps = [("artifacts", 0), ("install", 0), ("probe", 0), ("probe_report", 0)]
    (work / "steps.tsv").write_text("".join(f"{n}\t{rc}\t1\tlogs/{n}.log\n" for n, rc in steps))
    for name, _ in steps:
        (work / "logs" / f"{name}.log").write_text("ok\n")
    (work / "missing.txt").write_text("")
    return work


def _reseal(path: Path, edit=None, files=None) -> None:
    """A thorough forger: the record changed by ``edit``, its tarball rebuilt with that record inside and ``files``
    (name -> text) replaced, the record's SHA-256 of the tarball updated."""
    data = json.loads(path.read_text())
    if edit is not None:
        edit(data)
    tarball = path.with_name(data["logs"]["file"])
    with tarfile.open(tarball) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    members.update({name: text.encode() for name, text in (files or {}).items()})
    members["record.json"] = json.dumps({k: v for k, v in data.items() if k != "logs"}, indent=1).encode()
    with tarfile.open(tarball, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    data["logs"].update(sha256=hashlib.sha256(tarball.read_bytes()).hexdigest(), bytes=tarball.stat().st_size)
    path.write_text(json.dumps(data, indent=1))


def _edit(path: Path, edit) -> None:
    """A forger who edits the JSON alone."""
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=1))


def _refused(record, capsys, path: Path) -> str:
    """`add`'s refusal of ``path`` (nothing copied)."""
    assert record.main(["add", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path.name}: refused: " in err, err
    assert not (record.RUNS / path.name).exists()
    return err.split(f"{path.name}: refused: ", 1)[1].splitlines()[0]


@pytest.fixture
def lease(record, tmp_path, monkeypatch):
    return Lease(record, tmp_path, monkeypatch)


def test_an_honest_record_is_added_with_its_logs_and_counts(lease, record, capsys):
    """The control of every forgery below: a stage's record as written, its tarball beside it, is added with the
    tarball, `table --check` passes, its status is computed a pass from the logs, and the pass counts at the tree of
    its commit (at HEAD, where a covered file changed since, it is stale)."""
    path = lease.write("ops")
    assert record.main(["add", str(path)]) == 0
    tarball = path.name[: -len(".json")] + ".logs.tar.gz"
    assert (lease.runs / path.name).read_bytes() == path.read_bytes()
    assert (lease.runs / tarball).read_bytes() == path.with_name(tarball).read_bytes()
    assert "(ops: pass, computed from its logs; checked against them and git)" in capsys.readouterr().out
    assert record.main(["table", "--check"]) == 0
    assert "1 checked against their logs and git, 0 unverified" in capsys.readouterr().out
    (committed,) = record.load_runs()
    assert committed["_evidence"] == {"status": "pass", "verified": True, "refusal": None}
    assert record.current_passes(tree=lease.coverage["A"]) == {"ops": path.name}
    assert record.current_passes() == {}  # this tree is B's: csrc/a.cu changed
    budget = lease.stages.stage("ops").budget_s
    assert f"| ops | {budget} s | pass (stale: covered files changed) |" in lease.benchmarks.read_text()
    # a failed run is evidence as well (added, computed a failure; counts for nothing)
    failed = lease.write("failed", rc=1)
    assert record.main(["add", str(failed)]) == 0 and record.main(["table", "--check"]) == 0
    assert record.current_passes(tree=lease.coverage["A"]) == {}
    assert f"| ops | {budget} s | fail |" in lease.benchmarks.read_text()


def test_a_record_without_its_tarball_is_refused(lease, record, capsys):
    """Forged: a record added without its logs (the review's later-dated record), or committed by hand without them.
    `add` and `table --check` refuse it and it counts for nothing; a tarball of no record is refused too. The
    control: the same record with its tarball beside it."""
    path = lease.write("ops")
    alone = lease.root / "alone" / path.name
    alone.parent.mkdir()
    shutil.copy(path, alone)
    assert _refused(record, capsys, alone) == (
        f"no logs tarball beside it ({alone.name[: -len('.json')]}.logs.tar.gz): a record counts only with its logs"
    )
    lease.runs.mkdir()
    shutil.copy(path, lease.runs)  # committed by hand
    assert record.main(["table", "--write"]) == 0
    capsys.readouterr()
    assert record.main(["table", "--check"]) == 1
    assert f"{path.name}: refused: no logs tarball beside it" in capsys.readouterr().out
    assert record.current_passes(tree=lease.coverage["A"]) == {}
    assert "| ops | " in lease.benchmarks.read_text() and "pass (refused: `table --check` says why)" in (
        lease.benchmarks.read_text()
    )
    tarball = path.with_name(path.name[: -len(".json")] + ".logs.tar.gz")
    shutil.copy(tarball, lease.runs)  # the control
    assert record.main(["table", "--write"]) == 0 and record.main(["table", "--check"]) == 0
    assert record.current_passes(tree=lease.coverage["A"]) == {"ops": path.name}
    shutil.copy(tarball, lease.runs / "2026-12-01T100000_nvidia-h100_ops.logs.tar.gz")
    capsys.readouterr()
    assert record.main(["table", "--check"]) == 1
    assert "2026-12-01T100000_nvidia-h100_ops.logs.tar.gz: logs of no record" in capsys.readouterr().out


def test_status_and_exit_codes_edited_to_pass_while_the_engine_check_failed(lease, record, capsys):
    """Forged (the review's engine record): every exit code 0 and the status "pass" while `engine_check.pass` is
    false. Edited in the JSON alone, the record is not the one its tarball holds; with the tarball rebuilt to agree
    (steps.tsv, record.json, the SHA-256), the logs' Engine check contradicts the status field; and the status field
    is never read: the same tarball without it computes "fail". The control: an Engine check that passed."""
    path = lease.write("engine", stage="engine", engine_pass=False)
    assert json.loads(path.read_text())["status"] == "fail"

    def passed(data):
        for step in data["steps"]:
            step["rc"] = 0
            step.pop("tail", None)
        data["status"] = "pass"

    edited = lease.copy(path, "json-only")
    _edit(edited, passed)
    assert _refused(record, capsys, edited) == (
        f"it differs from the record its tarball holds (engine at {lease.commit['A'][:12]}, "
        f"{json.loads(path.read_text())['finished']}) in: status, steps"
    )
    steps = "".join(f"{n}\t0\t1\tlogs/{n}.log\n" for n in ("artifacts", "install", "engine", "engine_targets", "cpp",
                                                          "bench", "bench_targets"))  # fmt: skip
    resealed = lease.copy(path, "resealed")
    _reseal(resealed, passed, {"steps.tsv": steps})
    assert _refused(record, capsys, resealed) == (
        "its status field says 'pass', its logs say otherwise (engine_check.pass is False)"
    )
    quiet = lease.copy(path, "quiet")  # the same with the status field left alone: computed, never read
    _reseal(quiet, lambda data: [step.update(rc=0) for step in data["steps"]], {"steps.tsv": steps})
    assert record.main(["add", str(quiet)]) == 0 and "(engine: fail, computed from its logs" in capsys.readouterr().out
    assert record.current_passes(tree=lease.coverage["A"], gpu=GPU["gpu"]) == {}
    good = lease.write("good", stage="engine", engine_pass=True)  # the control
    assert record.main(["add", str(good)]) == 0 and record.main(["table", "--check"]) == 0
    assert record.current_passes(tree=lease.coverage["A"], gpu=GPU["gpu"]) == {"engine": good.name}


def test_must_run_lists_emptied_or_changed_are_refused(lease, record, capsys):
    """Forged: a record whose must-run list is empty (written by a tool whose stage definition had none, so that its
    tarball agrees), one with a must-run test exchanged for another (its tarball rebuilt to agree), one emptied in
    the JSON alone. Refused against the stage definition git gives at the record's commit. The control: the honest
    record of the test above."""
    stages = load_check("gpu_stages")
    wanted = len(stages.stage("ops").must_run)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stages, "STAGES", tuple(dataclasses.replace(s, must_run=()) if s.name == "ops" else s
                                              for s in stages.STAGES))  # fmt: skip
        emptied = lease.write("emptied")
    assert json.loads(emptied.read_text())["must_run"] == {} and json.loads(emptied.read_text())["status"] == "pass"
    at = f"its must-run tests are not the stage definition's at {lease.commit['A'][:12]}"
    assert _refused(record, capsys, emptied).startswith(f"{at} (0 of {wanted}; missing ['python_tests/")

    def exchange(data):
        first = next(iter(data["must_run"]))
        data["must_run"]["python_tests/ops/test_o.py::test_easy"] = data["must_run"].pop(first)

    changed = lease.write("changed")
    _reseal(changed, exchange)
    assert _refused(record, capsys, changed) == (
        f"{at} ({wanted} of {wanted}; missing {[stages.stage('ops').must_run[0][0]]}, "
        "not in it ['python_tests/ops/test_o.py::test_easy'])"
    )
    alone = lease.write("json-only")
    _edit(alone, lambda data: data.update(must_run={}))
    assert _refused(record, capsys, alone).endswith(") in: must_run")


def test_a_coverage_hash_of_another_commit_is_refused(lease, record, capsys):
    """Forged: a record whose coverage hash is HEAD's (B) while its artefacts are of A: written so (its tarball
    agrees) and pasted into the JSON alone; and a record naming a commit git does not have. The coverage hash is
    recomputed with git at ``artifacts.commit`` (ls-tree and cat-file; no checkout). The control: A's own hash."""
    a, b = lease.coverage["A"]["ops"]["sha256"], lease.coverage["B"]["ops"]["sha256"]
    pasted = lease.write("pasted", coverage="B")
    assert _refused(record, capsys, pasted) == (
        f"its coverage hash {b[:12]} is not the one git gives at its commit {lease.commit['A'][:12]} ({a[:12]})"
    )
    alone = lease.write("json-only")
    _edit(alone, lambda data: data["coverage"].update(sha256=b))
    assert _refused(record, capsys, alone).endswith(") in: coverage")
    unknown = lease.write("unknown", at="f" * 40)
    assert _refused(record, capsys, unknown).startswith(f"it cannot be checked with git at its commit {'f' * 12}: ")
    control = lease.write("control")
    assert record.main(["add", str(control)]) == 0  # A's hash, recomputed by git at A
    assert record.current_passes(tree=lease.coverage["B"]) == {}  # and at B it is stale, as the forger's is not


def test_a_junit_failure_under_a_record_claiming_none_is_refused(lease, record, capsys):
    """Forged: the tarball's JUnit report lists a failed test, the record says every test passed and the stage
    passed (the JSON alone edited, or the tarball's record.json with it). The control: the same run with the test
    passing is added as a pass."""
    cases = must_run_cases("ops") + [("python_tests/ops/test_b.py::test_two", "failed", "E   assert 3 == 2")]
    path = lease.write("failure", cases=cases)
    assert json.loads(path.read_text())["status"] == "fail"

    def claims_none(data):
        tests = data["steps"][2]["tests"]
        tests.update(failed=0, passed=tests["passed"] + 1, failed_tests=[], failures=[])
        data.update(status="pass", problems=[])

    edited = lease.copy(path, "json-only")
    _edit(edited, claims_none)
    assert _refused(record, capsys, edited).endswith(") in: problems, status, steps")
    resealed = lease.copy(path, "resealed")
    _reseal(resealed, claims_none)
    assert _refused(record, capsys, resealed) == (
        f"its steps, test counts or must-run outcomes differ from those in {path.name[: -len('.json')]}.logs.tar.gz"
    )
    control = lease.write("control", cases=must_run_cases("ops") + [("python_tests/ops/test_b.py::test_two", "passed")])
    assert record.main(["add", str(control)]) == 0 and "(ops: pass, computed" in capsys.readouterr().out


def test_a_tarball_of_another_record_is_refused(lease, record, capsys):
    """Forged: the record's tarball replaced by another record's (another stage's, or another run of its stage),
    with and without the SHA-256 in the record updated to it. The tarball holds its own record (record.json), so it
    names the record it belongs to. The control: each record with its own tarball."""
    ops, models = lease.write("ops"), lease.write("models", stage="models")
    again = lease.write("again")
    for other in (models, again):
        forged = lease.copy(ops, f"with-{other.parent.parent.name}")
        tarball = forged.with_name(forged.name[: -len(".json")] + ".logs.tar.gz")
        shutil.copy(other.with_name(other.name[: -len(".json")] + ".logs.tar.gz"), tarball)
        assert _refused(record, capsys, forged) == f"{tarball.name}'s SHA-256 is not the one the record holds"
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        _edit(forged, lambda data, digest=digest: data["logs"].update(sha256=digest))
        holds = json.loads(other.read_text())
        assert _refused(record, capsys, forged).startswith(
            f"it differs from the record its tarball holds ({holds['stage']} at {lease.commit['A'][:12]}, "
            f"{holds['finished']}) in: "
        )
    assert record.main(["add", str(ops), str(models), str(again)]) == 0  # the control
    assert record.main(["table", "--check"]) == 0


def test_a_probe_report_other_than_the_logs_is_refused(lease, record, capsys):
    """Forged: a probe that left a part out (partial) whose record says every part measured and the stage passed,
    its tarball rebuilt with that record (the probe's own report in the tarball left as it was). The control: the
    probe that measured every part is a pass."""
    ok = {"id": "P1", "title": "host cost", "status": "ok"}
    cut = {"id": "P7", "title": "batched", "status": "skipped", "reason": "budget: 5 s left"}
    path = lease.write("probe", stage="probe", parts=[ok, cut])
    assert json.loads(path.read_text())["status"] == "partial"
    _reseal(path, lambda data: data.update(status="pass", probe={**data["probe"], "parts": [ok]}))
    assert _refused(record, capsys, path) == (
        f"its probe report is not the probe/probe.json in {path.name[: -len('.json')]}.logs.tar.gz"
    )
    control = lease.write("control", stage="probe", parts=[ok])
    assert record.main(["add", str(control)]) == 0 and "(probe: pass, computed" in capsys.readouterr().out


def test_a_timing_stage_counts_on_its_gpu_kind_only(lease, record):
    """engine and the probe measure the GPU: a pass of theirs counts for the next lease only on the GPU kind that
    measured it (the device tool's kind name or nvidia-smi's), and with the kind unknown (gpu_plan as it is) for
    none; a stage that is no timing stage counts on any. The control: the same engine pass on the kind it ran on."""
    stages = load_check("gpu_stages")
    assert stages.PER_GPU_KIND == ("engine", "probe")
    engine = lease.write("engine", stage="engine", machine=H200)
    ops = lease.write("ops", machine=H200)
    assert record.main(["add", str(engine), str(ops)]) == 0
    tree = lease.coverage["A"]
    assert record.current_passes(tree=tree) == {"ops": ops.name}  # the next machine's kind unknown
    assert record.current_passes(tree=tree, gpu="nvidia-h100-x1") == {"ops": ops.name}
    assert record.current_passes(tree=tree, gpu="nvidia-h200") == {"ops": ops.name, "engine": engine.name}
    assert record.current_passes(tree=tree, gpu="NVIDIA H200") == {"ops": ops.name, "engine": engine.name}
    h100 = lease.write("h100", stage="engine", machine=GPU)
    assert record.main(["add", str(h100)]) == 0
    assert record.current_passes(tree=tree, gpu="nvidia-h100-x1") == {"ops": ops.name, "engine": h100.name}
    assert record.current_passes(tree=tree, gpu="nvidia-h200") == {"ops": ops.name, "engine": engine.name}
    table = record.render_table(record.load_runs(), tree)
    assert "| engine | " in table and "pass (counts on this GPU kind only) | NVIDIA H100 80GB HBM3" in table
    assert "; engine on NVIDIA H100 80GB HBM3 only (a timing stage)" in table


def test_coverage_covers_the_benchmarks_and_the_stream_not_the_emulator(tmp_path):
    """The review's holes: benchmarks/ (the timing method, the streams benchmark) is the engine's, the suite's and
    the probe's; zsseg_rt/stream/ (the device video filter) is the sanitizers' too; the emulator's own files
    (csrc/emu, cpp_tests/emulation) are no stage's, so a change to them leaves every pass standing. The controls:
    a kernel source is every stage's, a C++ test the engine's and the sanitizers'."""
    artifacts = load_check("gpu_artifacts")
    for name, text in TREE_AT_A.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    base = artifacts.coverage(tmp_path)

    def changed(name: str) -> list:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        old = (tmp_path / name).read_text() if (tmp_path / name).exists() else None
        (tmp_path / name).write_text("changed")
        now = artifacts.coverage(tmp_path)
        (tmp_path / name).write_text(old) if old is not None else (tmp_path / name).unlink()
        return sorted(s for s in base if now[s]["sha256"] != base[s]["sha256"])

    assert changed("benchmarks/_cuda_timing.py") == ["engine", "probe", "suite"]
    assert changed("benchmarks/streams.py") == ["engine", "probe", "suite"]
    assert changed("zsseg_rt/stream/video_filter/filter_arrays.py") == sorted(base)  # the sanitizers' as well
    assert changed("csrc/emu/cuda_emu.h") == [] and changed("csrc/emu/include/cuda_runtime.h") == []
    assert changed("cpp_tests/emulation/test_e.cpp") == []
    assert changed("csrc/a.cu") == sorted(base) and changed("cpp_tests/test_c.cpp") == ["engine", "sanitizers"]


# ---- the records committed without their logs ----------------------------------------------------------------------------
def test_the_records_committed_without_logs_are_history_that_never_counts(record, tmp_path, monkeypatch, capsys):
    """The 16 records of 2026-11-26 were committed without their tarballs (lost). They stay as history, computed
    from their own content, "unverified (no logs)": none counts, even at a tree whose coverage hashes are theirs, and
    `add` does not take them again. Pinned by content: the same file edited is a record without its tarball, and is
    refused. Their coverage hashes are what git gives at their commit (what the check would verify), their logs
    are not there to check."""
    evidence = load_check("_gpu_evidence")
    runs = record.load_runs()
    legacy = [r for r in runs if r["_file"] in evidence.UNVERIFIED]
    assert len(legacy) == len(evidence.UNVERIFIED) == 16
    for old in legacy:
        assert old["_evidence"]["verified"] is False and old["_evidence"]["refusal"] is None, old["_file"]
        theirs = {old["stage"]: {"sha256": (old.get("coverage") or {}).get("sha256")}}
        assert not record.current(old, theirs, old["machine"]["gpu"]), old["_file"]
    assert [r["_file"] for r in runs if not r["_evidence"]["verified"] and r not in legacy] == []
    models = next(r for r in legacy if r["_file"].endswith("174830_nvidia-h100-80gb-hbm3_models.json"))
    assert models["_evidence"]["status"] == "pass"
    assert "| models | " in record.render_table(runs, {"models": {"sha256": models["coverage"]["sha256"]}})
    # as the latest record of its stage (it was until the H200's records of b235fde): shown, never counted
    assert "pass (unverified: no logs, not counted)" in record.render_table(legacy)
    runs_dir, benchmarks = tmp_path / "gpu_runs", tmp_path / "BENCHMARKS.md"
    runs_dir.mkdir()
    shutil.copy(record.RUNS / models["_file"], runs_dir)
    benchmarks.write_text(record.BEGIN + "\n" + record.END + "\n")
    monkeypatch.setattr(record, "RUNS", runs_dir)
    monkeypatch.setattr(record, "BENCHMARKS", benchmarks)
    assert record.current_passes(runs_dir, {"models": {"sha256": models["coverage"]["sha256"]}}) == {}
    assert record.main(["add", str(runs_dir / models["_file"])]) == 1
    assert "committed without its logs before (unverified)" in capsys.readouterr().err
    assert benchmarks.read_text() == record.BEGIN + "\n" + record.END + "\n"  # nothing added: nothing rewritten
    (copy,) = record.load_runs(runs_dir)
    assert copy["_evidence"] == {"status": "pass", "verified": False, "refusal": None}  # the control
    edited = json.loads((runs_dir / models["_file"]).read_text())
    edited["seconds"] = 100
    (runs_dir / models["_file"]).write_text(json.dumps(edited, indent=1))
    (copy,) = record.load_runs(runs_dir)
    assert copy["_evidence"]["refusal"].startswith("no logs tarball beside it")
    try:
        commit = models["artifacts"]["commit"]
        h100 = [r for r in legacy if r["artifacts"]["commit"] == commit]
        assert len(h100) == 6
        for old in h100:
            assert evidence.coverage_at(REPO, commit, old["stage"])["sha256"] == old["coverage"]["sha256"]
    except evidence.Unverifiable as exc:  # a checkout without git history (an sdist)
        pytest.skip(f"no git history here: {exc}")


# ---- content alone --------------------------------------------------------------------------------------------------------
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
    """Refused on their content alone: a rehearsal, no GPU, artefacts of a dirty tree, an unknown stage; and a record
    not read from a file cannot be checked against its logs. The status comes from the content, never the field."""
    assert record.refusal(_gpu_record()) is None  # the control
    assert record.refusal(_gpu_record(rehearsal="fake machine")).startswith("a rehearsal")
    assert record.refusal(_gpu_record(machine={"gpu": "no GPU (nvidia-smi not found)", "driver": ""}))
    assert "differed from" in record.refusal(_gpu_record(artifacts={"commit": "0" * 40, "dirty": ["csrc/x.cu"]}))
    assert "unknown stage" in record.refusal(_gpu_record(stage="ctest"))
    forged = _gpu_record(status="pass", must_run={"python_tests/ops/test_x.py::test_y": "skipped"})
    assert record.evidence(forged) == {"status": "fail", "verified": False,
                                       "refusal": "not read from a file (a record is checked against the tarball beside it)"}  # fmt: skip
    engine = _gpu_record(stage="engine", status="pass", engine_check={"pass": False}, bench_cuda={"pass": True})
    assert record.status_of(engine) == "fail" and record.verdicts_against(engine) == ["engine_check.pass is False"]
    assert record.verdicts_against({**engine, "engine_check": {"pass": True}}) == []  # the control
    assert record.verdicts_against({**engine, "engine_check": {"pass": True}, "bench_cuda": None}) == [
        "bench_cuda.pass is absent"
    ]
    assert record.status_of(_gpu_record(status="pass", problems=["must-run x: skipped"])) == "fail"


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
    assert any(
        "P7" in line and "PARTIAL" in line
        for line in record.summary_lines({**left_out, "status": "partial", "budget_s": 165, "filters": []})
    )
    support = load_check("gpu_check_support")
    report = tmp_path / "probe.json"
    for parts, problems in (([ok], 0), ([ok, cut], 0), ([ok, {**cut, "status": "crashed"}], 1)):
        report.write_text(json.dumps({"parts": parts, "complete": True}))
        assert len(support.probe_verdict(str(report))) == problems, parts


def test_benchmarks_md_agrees_with_docs_gpu_runs(record):
    """BENCHMARKS.md's table is docs/gpu_runs/ rendered (each stage's latest record, the others "never run"), and
    no committed record is refused: each is checked against its tarball and git, or is one of those committed
    without their logs. `table --check` in CI (python_tests/test_doc_snippets.py runs docs/gpu.md's) says the same."""
    stages = load_check("gpu_stages")
    text = (REPO / "BENCHMARKS.md").read_text()
    runs = record.load_runs()
    assert [(r["_file"], r["_evidence"]["refusal"]) for r in runs if r["_evidence"]["refusal"]] == []
    assert record.table_text(text, runs) == text, "python -m checks gpu_record table --write"
    ran = {r["stage"] for r in runs}
    for stage in stages.STAGES:
        assert (f"| {stage.name} | {stage.budget_s} s | never run |" in text) == (stage.name not in ran)
    names = {r["_file"][: -len(".json")] for r in runs}
    assert [p.name for p in record.RUNS.glob("*.logs.tar.gz") if p.name[: -len(".logs.tar.gz")] not in names] == []


def test_table_check_fails_until_the_table_is_rewritten(lease, record):
    """The control of the test above: the committed records and one honest record more, with its tarball; the
    check fails until `table --write`."""
    stages = load_check("gpu_stages")
    lease.runs.mkdir()
    for name in load_check("_gpu_evidence").UNVERIFIED:  # the records that need no git here
        shutil.copy(REPO / "docs" / "gpu_runs" / name, lease.runs)
    assert record.main(["table", "--write"]) == 0 and record.main(["table", "--check"]) == 0
    honest = lease.write("ops")
    for source in (honest, honest.with_name(honest.name[: -len(".json")] + ".logs.tar.gz")):
        shutil.copy(source, lease.runs)
    assert record.main(["table", "--check"]) == 1
    assert record.main(["table", "--write"]) == 0 and record.main(["table", "--check"]) == 0
    assert (
        f"| ops | {stages.stage('ops').budget_s} s | pass (stale: covered files changed) | NVIDIA H100 80GB HBM3"
        in (lease.benchmarks.read_text())
    )
