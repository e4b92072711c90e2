"""tools/gpu_check.sh and its Python side without a GPU, piece by piece: the stage table (checks/gpu_stages.py:
budgets within the lent machine's limits, every test file in one stage), the script's arguments and its step time
bound, the verdicts of the C++ tests and compute-sanitizer, the run record and BENCHMARKS.md's table generated from
docs/gpu_runs/ (checks/gpu_record.py), the launcher of its benchmark and Engine steps (on the first GPU run they
imported the checkout instead of the build, and tools/profile.py as ``profile``), the Python requirements and the
choice of carried wheels (checks/gpu_check_support.py), the benchmark's torch.compile errors, the test helper that
keeps PYTHONPATH in subprocesses, and CMake's default CUDA architectures. The whole run of every stage on a fake bare
machine from built artefacts: python_tests/test_gpu_rehearsal.py. That tools/profile.py cannot shadow the standard
library: python_tests/test_entry_points.py."""

import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gpu_fakes import bare_python, fake_wheel
from support import NO_BUILD, NO_BUILD_REASON, package_import_root, subprocess_env

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tools" / "gpu_check.sh"


def _load(name: str):
    """checks/NAME.py as the package module checks.NAME, the checkout at the END of sys.path while importing (as the
    launcher of tools/gpu_check.sh has it: nothing of the checkout may shadow the installed zsseg_rt)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "path", [*sys.path, str(REPO)])
        return importlib.import_module(f"checks.{name}")


def _load_support():
    return _load("gpu_check_support")


def _gpu_check(*args, env=None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env, PYTHON=sys.executable)
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def _function(name: str) -> str:
    text = SCRIPT.read_text()
    found = re.search(rf"^{name}\(\) {{.*?^}}$", text, flags=re.S | re.M)
    assert found, f"tools/gpu_check.sh has no {name}()"
    return found.group(0)


# ---- the stage table ----------------------------------------------------------------------------------------------
def test_the_stage_table_fits_the_lent_machine(monkeypatch):
    """One command per stage: each budget within 8 minutes, all of them plus a cold start each within 25 GPU
    minutes, ordered by value (the Engine and the ops first, the sanitizers last), every test file in one stage."""
    stages = _load("gpu_stages")
    assert stages.problems() == []
    names = [s.name for s in stages.STAGES]
    assert names[:2] == ["engine", "ops"] and names[-1] == "sanitizers"
    total = sum(s.budget_s for s in stages.STAGES) + stages.START_ALLOWANCE_S * len(stages.STAGES)
    assert total <= 25 * 60 and max(s.budget_s for s in stages.STAGES) <= 8 * 60
    files = sorted(p for p in (REPO / "python_tests").rglob("test_*.py"))
    runs = []  # the test files each stage's pytest arguments select (a folder, less what they ignore)
    for stage in stages.STAGES:
        folder, *ignores = stages.pytest_targets(stages.pieces_of(stage)) if stages.pieces_of(stage) else [""]
        ignored = [i.split("=", 1)[1] for i in ignores]
        runs += [
            f
            for f in files
            if folder and not any(fnmatch.fnmatch(str(f), g) or str(f).startswith(g + os.sep) for g in ignored)
        ]
    assert sorted(runs) == files  # every test file in exactly one stage
    # the controls: a stage over its limit, the budgets over the acceptance's, a piece left out, an unknown step
    bad = (
        stages.Stage("big", 481, ("engine",), ""),
        *(stages.Stage(f"s{i}", 400, ("cpp",), "") for i in range(3)),
        stages.Stage("odd", 10, ("pytest ops runtime pipeline", "compile everything"), ""),
    )
    monkeypatch.setattr(stages, "STAGES", bad)
    found = "\n".join(stages.problems())
    assert "big: budget 481 s" in found and "over the acceptance's 1500 s" in found
    assert "unknown step kind 'compile'" in found and "pytest piece 'models' is in 0 stages" in found


def test_the_script_lists_the_table_and_refuses_bad_arguments():
    stages = _load("gpu_stages")
    listed = [line.split("\t")[:2] for line in _gpu_check("--list").stdout.splitlines()]
    assert listed == [[s.name, str(s.budget_s)] for s in stages.STAGES]
    for args in (["--stage", "pytest:ops"], ["--only", "ops"], ["--stage", "ops", "--budget", "soon"], []):
        run = _gpu_check(*args)
        assert run.returncode == 2 and run.stderr.startswith("gpu_check: "), (args, run.stderr)


def test_a_step_past_the_budget_is_stopped_and_the_next_not_started(tmp_path):
    """The stage's budget bounds its steps: a hanging step is stopped at the bound (exit 124, or 137 after the
    kill), a step after it does not start, and the stage is a timeout."""
    script = "\n".join(
        [
            f'WORK="{tmp_path}"; STAGE_BUDGET=2; STAGE_DEADLINE=$(( $(date +%s) + 2 ))',
            'mkdir -p "$WORK/logs"; STAGE_STEPS="$WORK/steps.tsv"; : >"$STAGE_STEPS"',
            _function("step"),
            'step hang "$WORK/logs/hang.log" sleep 300 || true',
            'step after "$WORK/logs/after.log" true || true',
        ]
    )
    subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, check=True)
    steps = [line.split("\t") for line in (tmp_path / "steps.tsv").read_text().splitlines()]
    assert [(name, int(rc) in (124, 137)) for name, rc, *_ in steps] == [("hang", True), ("after", True)]
    assert "not started: the stage's budget (2s) was used up" in (tmp_path / "logs" / "after.log").read_text()
    record = _load("gpu_record")
    assert record.stage_status(record.read_steps(tmp_path), []) == "timeout"


# ---- verdicts of the C++ tests and compute-sanitizer ----------------------------------------------------------------
GTEST_XML = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" failures="0" disabled="0" errors="0" name="AllTests">
  <testsuite name="SegmentCpu" tests="1"><testcase name="Matches" status="run" result="completed" classname="SegmentCpu"/>
  </testsuite>
  <testsuite name="BuildWithoutCuda" tests="1"><testcase name="Reports" status="run" result="skipped"
    classname="BuildWithoutCuda"><skipped message="x.cpp:13&#x0A;this build compiled the CUDA kernels"/></testcase>
  </testsuite>
  <testsuite name="SegmentCuda" tests="1"><testcase name="MatchesNaiveFp32" status="run" result="{result}"
    classname="SegmentCuda">{skip}</testcase></testsuite>
</testsuites>
"""


def test_the_cuda_tests_must_have_run_and_the_sanitizer_must_have_reported(tmp_path, capsys):
    support = _load_support()
    xml = tmp_path / "cpp.xml"
    skip = '<skipped message="x.cpp:303&#x0A;no CUDA device: CUDA driver version is insufficient"/>'
    xml.write_text(GTEST_XML.format(result="skipped", skip=skip))
    problems = support.gtest_verdict(str(xml), cuda=True)
    assert problems == [
        "did not run: SegmentCuda.MatchesNaiveFp32 (no CUDA device: CUDA driver version is insufficient)",
        "no CUDA test (suite *Cuda) ran on the device",
    ]
    assert support.gtest_verdict(str(xml), cuda=False) == []  # off the device a skip is what it is
    xml.write_text(GTEST_XML.format(result="completed", skip=""))  # the control: the CUDA test ran
    assert support.gtest_verdict(str(xml), cuda=True) == []
    assert "no GoogleTest report" in support.gtest_verdict(str(tmp_path / "absent.xml"), cuda=True)[0]
    log = tmp_path / "sanitizer.log"
    for text, expected in (
        ("tests ran\n", ["no compute-sanitizer summary in sanitizer.log: the program did not run to its end"]),
        (
            "========= ERROR SUMMARY: 0 errors\n========= ERROR SUMMARY: 2 errors\n",
            ["compute-sanitizer reported 2 error(s)"],
        ),
        (
            "========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)\n",
            ["compute-sanitizer reported 1 hazard(s)"],
        ),
        ("========= ERROR SUMMARY: 0 errors\n========= ERROR SUMMARY: 0 errors\n", []),  # the control
    ):
        log.write_text(text)
        assert support.sanitizer_verdict(str(log)) == expected, text


# ---- the run record and BENCHMARKS.md's table ---------------------------------------------------------------------------
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="4">
<testcase classname="python_tests.ops.test_a" name="test_one"/><testcase classname="python_tests.ops.test_a" name="test_two"/>
<testcase classname="python_tests.ops.test_b" name="test_three"/>
<testcase classname="python_tests.ops.test_b" name="test_four"><skipped message="needs TensorRT">x</skipped></testcase>
</testsuite></testsuites>"""


def _work(tmp_path: Path, pytest_rc: int = 0, missing: str = "") -> Path:
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    steps = ["artifacts\t0\t1\tlogs/artifacts.log", "install\t0\t3\tlogs/install.log"]
    steps.append(f"pytest:ops,runtime,pipeline\t{pytest_rc}\t90\tlogs/pytest_ops.log")
    (work / "steps.tsv").write_text("\n".join(steps) + "\n")
    (work / "pytest_ops.xml").write_text(JUNIT)
    (work / "logs" / "pytest_ops.log").write_text("....s\nFAILED python_tests/ops/test_b.py::test_three\n")
    (work / "missing.txt").write_text(missing)
    facts = {"artifacts": {"commit": "c0ffee" * 7, "dirty": [], "manifest_sha256": "ab" * 32}, "tree": None}
    (work / "artifacts.json").write_text(json.dumps(facts))
    return work


def test_a_stage_writes_its_record(tmp_path, capsys):
    record = _load("gpu_record")
    args = ["--stage", "ops", "--budget", "210", "--seconds", "95", "--record-dir", str(tmp_path / "records")]
    assert record.main(["write", "--work", str(_work(tmp_path)), *args]) == 0
    written = json.loads(next((tmp_path / "records").glob("*_ops.json")).read_text())
    assert written["status"] == "pass" and written["rehearsal"] is None and written["budget_s"] == 210
    tests = written["steps"][2]["tests"]
    assert (tests["passed"], tests["failed"], tests["skipped"], tests["skip_reasons"]) == (
        3,
        0,
        1,
        {"needs TensorRT": 1},
    )
    assert written["artifacts"]["commit"].startswith("c0ffee") and "python" in written["machine"]
    assert (tmp_path / "records").glob("*_ops.logs.tar.gz")
    # the controls: a failed step, a missing prerequisite
    for rc, missing, status in ((1, "", "fail"), (0, "GPU: nvidia-smi not found\n", "missing prerequisite")):
        shutil.rmtree(tmp_path / "work")
        shutil.rmtree(tmp_path / "records")
        assert record.main(["write", "--work", str(_work(tmp_path, rc, missing)), *args]) == 1
        written = json.loads(next((tmp_path / "records").glob("*_ops.json")).read_text())
        assert written["status"] == status
    assert written["steps"][2].get("tail") is None and written["missing"] == ["GPU: nvidia-smi not found"]


def _gpu_record(stage="ops", status="pass", **changes) -> dict:
    record = {
        "schema": "zsseg_rt.gpu_run.v1",
        "stage": stage,
        "status": status,
        "seconds": 180,
        "finished": "2026-12-01T10:00:00+00:00",
        "rehearsal": None,
        "machine": {"gpu": "NVIDIA H100 80GB HBM3", "driver": "580.159.04", "compute_capability": "9.0"},
        "artifacts": {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": []},
        "tree": {"build_inputs_match": True, "tests_match": True, "tests_differing": []},
    }
    record.update(changes)
    return record


def test_only_runs_on_a_gpu_may_be_committed():
    record = _load("gpu_record")
    assert record.refusal(_gpu_record()) is None  # the control
    assert record.refusal(_gpu_record(rehearsal="fake machine")).startswith("a rehearsal")
    assert record.refusal(_gpu_record(machine={"gpu": "no GPU (nvidia-smi not found)", "driver": ""}))
    assert "differed from" in record.refusal(_gpu_record(artifacts={"commit": "0" * 40, "dirty": ["csrc/x.cu"]}))
    assert "unknown stage" in record.refusal(_gpu_record(stage="ctest"))


def test_benchmarks_md_agrees_with_docs_gpu_runs(tmp_path, monkeypatch):
    """BENCHMARKS.md's table is docs/gpu_runs/ rendered (each stage's latest record, the others "never run"), and
    every committed record is a GPU run."""
    record, stages = _load("gpu_record"), _load("gpu_stages")
    text = (REPO / "BENCHMARKS.md").read_text()
    runs = record.load_runs()
    assert record.table_text(text, runs) == text, "python -m checks gpu_record table --write"
    assert [r["_file"] for r in runs if record.refusal(r)] == []
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
    assert f"| ops | {ops} s | pass | NVIDIA H100 80GB HBM3, driver 580.159.04 | 2026-12-01 | 0123456789 |" in (
        benchmarks.read_text()
    )


def test_add_refuses_a_rehearsal_and_commits_a_gpu_run(tmp_path, monkeypatch):
    record = _load("gpu_record")
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("before\n" + record.BEGIN + "\n" + record.END + "\nafter\n")
    monkeypatch.setattr(record, "RUNS", tmp_path / "gpu_runs")
    monkeypatch.setattr(record, "BENCHMARKS", benchmarks)
    fake = tmp_path / "rehearsal_x_engine.json"
    fake.write_text(json.dumps(_gpu_record("engine", rehearsal="fake machine")))
    real = tmp_path / "2026-12-01T100000_nvidia-h100_engine.json"
    real.write_text(json.dumps(_gpu_record("engine", "fail")))
    assert record.main(["add", str(fake), str(real)]) == 1  # the rehearsal refused, the GPU run added
    assert sorted(p.name for p in (tmp_path / "gpu_runs").iterdir()) == [real.name]
    table = benchmarks.read_text()
    budget = {s.name: s.budget_s for s in _load("gpu_stages").STAGES}
    assert f"| engine | {budget['engine']} s | fail | NVIDIA H100" in table
    assert f"| ops | {budget['ops']} s | never run |" in table
    assert "Acceptance on a GPU: 0 of 5 stages passed (at 0123456789); never run on a GPU: ops," in table


# ---- CMake's default CUDA architectures -------------------------------------------------------------------------------
def test_the_default_cuda_architectures_include_rtx_50(tmp_path):
    """RTX 50 (sm_120) is in the default list wherever nvcc knows it (CUDA >= 12.8): on c783dbf it was missing."""
    if NO_BUILD:
        pytest.skip(NO_BUILD_REASON)
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not os.path.exists(nvcc) or shutil.which("cmake") is None:
        pytest.skip("needs nvcc and cmake")
    codes = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True).stdout.split()
    if "sm_120" not in codes:
        pytest.skip(f"this nvcc has no sm_120 ({' '.join(codes)})")
    command = ["cmake", "-S", str(REPO), "-B", str(tmp_path), "-DZS_BUILD_PYTHON=OFF", "-DZS_BUILD_TESTS=OFF"]
    run = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, CUDACXX=nvcc), timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    archs = re.search(r"zsseg_rt: CUDA kernels ON \(archs: ([0-9;]+)\)", run.stdout).group(1).split(";")
    assert {"90", "120"} <= set(archs) and archs == sorted(archs, key=int), archs
    assert all(f"sm_{a}" in codes for a in archs)  # restricted to what this nvcc supports


# ---- the launcher ---------------------------------------------------------------------------------------------------
def test_gpu_check_runs_the_benchmarks_and_checks_through_the_launcher():
    script = SCRIPT.read_text()
    # `python tools/x.py` puts tools/ first on sys.path; `python -m benchmarks ...` from the checkout puts the
    # checkout (whose zsseg_rt/ has no _C) before the build: both must go through run_module
    direct = [
        line
        for line in script.splitlines()
        if any(bad in line for bad in ('"$PY" tools/', "$PY tools/", '"$PY" -m benchmarks', '"$PY" -m checks'))
    ]
    assert direct == []
    assert "run_module benchmarks cuda" in script and "run_module checks gpu_engine" in script


def test_the_launcher_imports_the_build_first_and_the_checkout_last(tmp_path):
    """run_module from tools/gpu_check.sh: zsseg_rt from the build on PYTHONPATH, benchmarks/checks from the
    checkout (appended to the end of sys.path), run from the stage's work folder."""
    script = SCRIPT.read_text()
    start = script.index("run_module() {")
    function = script[start : script.index("\n}\n", start) + 3]
    build = tmp_path / "build"
    (build / "zsseg_rt").mkdir(parents=True)
    (build / "zsseg_rt" / "__init__.py").write_text("")  # stands for the build (the checkout's has no _C)
    (build / "probe").mkdir()
    (build / "probe" / "__main__.py").write_text(
        "import sys, zsseg_rt, checks\nprint('zsseg_rt', zsseg_rt.__file__)\nprint('checks', checks.__file__)\n"
        "print('argv', sys.argv[1:])\n"
    )
    out = tmp_path / "report"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(build), PYTHONSAFEPATH="1", OUT=str(out), ROOT=str(REPO))
    env["PY"] = str(bare_python(tmp_path / "py"))  # this venv's editable zsseg_rt would win over any path
    run = subprocess.run(
        ["bash", "-c", f'{function}\nrun_module probe --flag "two words"'],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"zsseg_rt {build / 'zsseg_rt' / '__init__.py'}" in run.stdout
    assert f"checks {REPO / 'checks' / '__init__.py'}" in run.stdout
    assert "argv ['--flag', 'two words']" in run.stdout


# ---- the Python side: requirements and the wheels -------------------------------------------------------------------
def test_the_requirements_come_from_pyproject_on_any_python(monkeypatch):
    support = _load_support()
    every = support.project_requirements("all")
    names = {support.canonical(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in every}
    assert {"numpy", "torch", "pybind11", "scikit-build-core", "ftfy", "onnxruntime", "pytest"} <= names
    assert "zsseg-rt" not in names and "ray" not in names
    # Python 3.10 has no tomllib: the fallback reader gives the same lists
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)
    assert support.project_requirements("all") == every
    assert support.project_requirements("build") == ["scikit-build-core==1.1.2", "pybind11==3.1.0"]


def test_wheels_fill_only_what_is_missing_transitively(tmp_path):
    """The choice --wheels makes: a missing distribution and what its wheel requires in turn; never numpy/torch or
    a distribution the machine has, whatever the wheel folder holds."""
    support = _load_support()
    fake_wheel(tmp_path, "numpy", "99.0")
    fake_wheel(tmp_path, "torch", "99.0")
    fake_wheel(tmp_path, "pytest", "99.0")  # installed here: not taken
    fake_wheel(tmp_path, "zsseg_fake_top", "1.0", requires=["zsseg_fake_dep>=2", "numpy", "torch"])
    fake_wheel(tmp_path, "zsseg_fake_dep", "1.0")
    fake_wheel(tmp_path, "zsseg_fake_dep", "2.0", requires=['zsseg_fake_never; extra == "unused"'])
    resolution = support.resolve(["zsseg_fake_top", "numpy", "pytest", "zsseg_fake_absent>=1"], tmp_path)
    assert {name: str(w.version) for name, w in resolution.install.items()} == {
        "zsseg-fake-top": "1.0",
        "zsseg-fake-dep": "2.0",
    }
    assert list(resolution.missing) == ["zsseg-fake-absent"]
    assert "pip download --no-deps --dest DIR 'zsseg_fake_absent>=1'" in resolution.missing["zsseg-fake-absent"]
    # numpy/torch absent from a machine are reported, never taken from the wheels
    assert support.is_protected("torch") and support.is_protected("nvidia-cudnn-cu12")
    assert not support.is_protected("onnxruntime")


# ---- the benchmark: pass/fail against torch eager, a compile error is one row's ----------------------------------------
def test_bench_judges_against_eager_and_survives_a_compile_error(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import cuda as bench

    calls = []

    def broken_compile(fn, *args, **kwargs):
        def compiled(*a, **k):
            calls.append(fn)
            if len(calls) == 1:
                raise RuntimeError("inductor: the C++ compiler failed\nmore lines")
            return fn(*a, **k)

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    out = tmp_path / "bench.json"
    args = type("Args", (), dict(device="cpu", small=True, warmup=0, repeats=1, compile=True, json=str(out)))()
    args.compile_budget = None
    rows = bench.run(args, "CPU")
    data = json.loads(out.read_text())
    assert data["complete"] and len(data["rows"]) == len(bench.CASES) == len(rows)
    first, rest = rows[0], rows[1:]
    assert first["compile_error"] == "RuntimeError: inductor: the C++ compiler failed"
    assert first["torch_ms"]["compile"] is None and first["ratio_vs_eager"] is not None
    assert all(r["torch_ms"]["compile"] is not None and "compile_error" not in r for r in rest)
    for r in rows:  # pass/fail is the eager ratio's, whatever torch.compile did
        assert r["pass"] == (r["ratio_vs_eager"] <= 2.0)
        assert r["ratio_vs_eager"] == pytest.approx(r["zsseg_rt_ms"] / r["torch_ms"]["eager"])
    assert "inductor: the C++ compiler failed" in bench.render(rows, "CPU")
    # a used-up compile budget skips the remaining compile variants, recorded in their rows
    args.compile_budget = 0.0
    args.json = None
    skipped = bench.run(args, "CPU")
    assert all(r["compile_error"].startswith("skipped: --compile-budget") for r in skipped)


# ---- subprocesses of the tests keep PYTHONPATH (the --wheels site) --------------------------------------------------
def test_subprocess_env_keeps_an_existing_pythonpath(tmp_path, monkeypatch):
    """tools/gpu_check.sh puts the packages it installed from --wheels on PYTHONPATH; tests that start a Python
    subprocess used to REPLACE PYTHONPATH with the package root, so those packages vanished there."""
    marker = tmp_path / "wheels_site"
    marker.mkdir()
    (marker / "zsseg_gpu_check_marker.py").write_text("WHERE = 'the --wheels site'\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(marker), "", os.environ.get("PYTHONPATH", "")]))
    env = subprocess_env(OMP_NUM_THREADS="1")
    entries = env["PYTHONPATH"].split(os.pathsep)
    assert entries[0] == package_import_root() and str(marker) in entries and "" not in entries
    assert env["OMP_NUM_THREADS"] == "1"
    code = "import zsseg_gpu_check_marker as m, zsseg_rt; print(m.WHERE); print(zsseg_rt.__file__)"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    import zsseg_rt

    assert run.stdout.splitlines() == ["the --wheels site", zsseg_rt.__file__]
    # what the five test files did before: PYTHONPATH replaced, the --wheels site gone
    replaced = dict(os.environ, PYTHONPATH=package_import_root())
    old = subprocess.run([sys.executable, "-c", code], env=replaced, capture_output=True, text=True, timeout=120)
    assert old.returncode != 0 and "No module named 'zsseg_gpu_check_marker'" in old.stderr


def test_no_test_replaces_pythonpath_by_hand():
    """Every test subprocess gets its environment from support.subprocess_env (it keeps PYTHONPATH); the ones that
    built it by hand replaced it (issue 36: five files)."""
    allowed = {"support.py", "test_gpu_check.py", "test_entry_points.py"}  # the helper; this file; PYTHONPATH kept
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "python_tests").rglob("*.py"))
        if path.name not in allowed
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"PYTHONPATH\s*=|\[\s*['\"]PYTHONPATH['\"]\s*\]\s*=", line)
    ]
    assert offenders == []
