"""tools/gpu_check.sh without a GPU: the whole script's plumbing on a fake bare machine (a fake ``nvidia-smi``, an
``nvcc`` that rejects the host compiler, GTest invisible to CMake, a fake ``compute-sanitizer``, a Python lacking
ftfy and wcwidth with their wheels in ``--wheels``), run in separate invocations that build up one report; the
launcher of its benchmark and Engine steps (on the first GPU run they imported the checkout instead of the build, and
tools/profile.py as ``profile``); the Python side (checks/gpu_check_support.py: requirements, the wheel choice); the
benchmark's torch.compile errors; and the test helper that keeps PYTHONPATH (the --wheels packages) in subprocesses.
That tools/profile.py cannot shadow the standard library: python_tests/test_entry_points.py."""

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import package_import_root, subprocess_env

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tools" / "gpu_check.sh"
STATUSES = {"pass", "fail", "timeout", "missing prerequisite", "not run"}

FAKE_NVIDIA_SMI = """#!/bin/sh
case "$*" in
  *name,compute_cap,driver_version*) echo "Fake GPU (python_tests/test_gpu_check.py), {cc}, 000.00 (fake)" ;;
  *compute_cap*) echo "{cc}" ;;
  *driver_version*) echo "000.00 (fake)" ;;
  *) echo "fake nvidia-smi: no GPU here (python_tests/test_gpu_check.py)" ;;
esac
"""
# An nvcc that compiles nothing but makes the output file (CMake never calls it in a build without CUDA)
FAKE_NVCC_ACCEPTS = """#!/bin/sh
case "$*" in *--version*) echo "Cuda compilation tools, release 0.0, V0.0 (fake nvcc)"; exit 0 ;; esac
while [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then : >"$2"; fi; shift; done
"""
# nvcc 12.x next to a newer g++: what a bare machine with the distribution's compiler gives
FAKE_NVCC_REJECTS = """#!/bin/sh
case "$*" in *--version*) echo "Cuda compilation tools, release 0.0, V0.0 (fake nvcc)"; exit 0 ;; esac
echo "/usr/include/crt/host_config.h(143): error: #error -- unsupported GNU version! gcc versions later than 13 are \
not supported! The nvcc flag '-allow-unsupported-compiler' can be used to override this version check" >&2
exit 1
"""
# Passes every tool at once, except racecheck, which hangs (the stage's time bound must stop it)
FAKE_SANITIZER = """#!/bin/sh
case "$*" in *racecheck*) sleep 300 ;; esac
echo "========= COMPUTE-SANITIZER (fake: python_tests/test_gpu_check.py)"
echo "========= ERROR SUMMARY: 0 errors"
"""


def _load_support():
    spec = importlib.util.spec_from_file_location("gpu_check_support", REPO / "checks" / "gpu_check_support.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the fake bare machine ------------------------------------------------------------------------------------------
def _tools(folder: Path, cc: str = "9.0", nvcc: str = FAKE_NVCC_REJECTS) -> Path:
    folder.mkdir()
    for name, text in (
        ("nvidia-smi", FAKE_NVIDIA_SMI.format(cc=cc)),
        ("nvcc", nvcc),
        ("compute-sanitizer", FAKE_SANITIZER),
    ):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def _site_packages() -> list:
    return [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]


def _bare_python(root: Path, hide=()) -> Path:
    """A Python with this environment's dependencies but not its editable zsseg_rt (whose import hook would win over
    any build): what a bare GPU machine with the project's wheels looks like. ``hide``: distributions it lacks (their
    packages and metadata left out of a mirror of the site-packages)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = next((root / "lib").glob("python3*/site-packages"))
    deps = _site_packages()
    if hide:
        hidden = {"zsseg_rt", "_editable_skbc_zsseg_rt"}
        for name in hide:
            dist = importlib.metadata.distribution(name)
            hidden.update(str(f).split("/")[0] for f in dist.files or [] if not str(f).startswith(".."))
        mirror = root / "mirror"
        mirror.mkdir()
        for folder in deps:
            for entry in Path(folder).iterdir():
                stem = entry.name.split(".", 1)[0].split("-", 1)[0]
                if entry.name in hidden or stem in hidden or (mirror / entry.name).exists():
                    continue
                (mirror / entry.name).symlink_to(entry)
        deps = [str(mirror)]
    (site / "zsseg_test_deps.pth").write_text("\n".join(deps) + "\n")  # paths only: their .pth hooks do not run
    return root / "bin" / "python"


def _repack(name: str, folder: Path) -> Path:
    """A wheel of an installed pure-Python distribution (its files and metadata as installed)."""
    dist = importlib.metadata.distribution(name)
    base = Path(str(dist.locate_file("")))
    wheel = folder / f"{dist.metadata['Name']}-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for file in dist.files or []:
            text = str(file)
            if text.startswith("..") or "__pycache__" in text or text.endswith(("INSTALLER", "REQUESTED")):
                continue
            archive.write(base / text, text)
    return wheel


def _fake_wheel(folder: Path, name: str, version: str, requires=()) -> Path:
    """A wheel whose module refuses to import: installing it where the system has the real one would break it."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"raise ImportError('the fake {name} wheel of python_tests/test_gpu_check.py')\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
            name, version, "".join(f"Requires-Dist: {r}\n" for r in requires)
        ),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _copy_build(pkg: Path) -> None:
    """What the build stage leaves in OUT/build/pkg: this checkout's package with its built native module."""
    native = importlib.util.find_spec("zsseg_rt._C").origin
    shutil.copytree(
        REPO / "zsseg_rt", pkg / "zsseg_rt", ignore=shutil.ignore_patterns("__pycache__", "_C*.so", "_C_emulated*")
    )
    shutil.copy2(native, pkg / "zsseg_rt" / os.path.basename(native))
    (pkg / ".gpu_check_build").write_text("")


def _env(tools: Path, python: Path, **extra) -> dict:
    env = dict(os.environ, PATH=f"{tools}:{os.environ['PATH']}", PYTHON=str(python), **extra)
    for var in ("ZSSEG_CUDA_EMULATION", "ZSSEG_NATIVE_MODULE", "LD_PRELOAD", "PYTHONPATH", "CMAKE_PREFIX_PATH"):
        env.pop(var, None)
    return env


def _gpu_check(env: dict, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def _stages(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text())
    return {s["name"]: s for s in report["stages"]}


def test_gpu_check_on_a_fake_bare_machine(tmp_path):
    """Separate invocations (as on a machine rented for 10 minutes a command) build up ONE report: every stage has an
    entry with a status; a missing prerequisite fails its stage with what is missing and how to get it; --wheels
    installs only what the machine lacks; a stage run again replaces its entry; a hanging step is stopped."""
    tools = _tools(tmp_path / "bin")
    python = _bare_python(tmp_path / "py", hide=("ftfy", "wcwidth"))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("ftfy", "wcwidth"):
        _repack(name, wheels)
    _fake_wheel(wheels, "numpy", "99.0")  # present on the machine: must never be installed from the wheels
    _fake_wheel(wheels, "torch", "99.0")
    out = tmp_path / "report"
    nothing = tmp_path / "no_cmake_packages"
    nothing.mkdir()
    # GTest invisible to every CMake configure of the script (libgtest-dev IS installed on this machine)
    env = _env(
        tools,
        python,
        ZSSEG_GPU_CHECK_CMAKE_DEFINES=f"CMAKE_FIND_ROOT_PATH={nothing};CMAKE_FIND_ROOT_PATH_MODE_PACKAGE=ONLY",
    )

    # 1. prerequisites, build and ctest, with the wheels
    first = _gpu_check(env, "--only", "prereqs,build,ctest", "--wheels", wheels, "--out", out)
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    site = out / "site"
    assert (site / "ftfy").is_dir() and (site / "wcwidth").is_dir(), (out / "wheels.log").read_text()
    assert not list(site.glob("numpy*")) and not list(site.glob("torch*")), sorted(os.listdir(site))
    stages = _stages(out)
    prereqs = "\n".join(stages["prereqs"]["missing"])
    assert stages["prereqs"]["status"] == "missing prerequisite"
    assert "host compiler:" in prereqs and "unsupported GNU version" in prereqs and "CUDAHOSTCXX" in prereqs
    assert "GTest:" in prereqs and "apt-get install libgtest-dev" in prereqs
    assert "ftfy" not in prereqs and "wcwidth" not in prereqs  # installed from the wheels
    assert "GPU:" not in prereqs and "cmake:" not in prereqs and "Python headers" not in prereqs, prereqs
    # a stage whose prerequisite is missing fails with it, and leaves no stale build behind
    assert stages["build"]["status"] == "missing prerequisite" and not (out / "build" / "pkg").exists()
    assert any(line.startswith("host compiler:") for line in stages["build"]["missing"])
    assert stages["ctest"]["status"] == "missing prerequisite"
    assert [line for line in stages["ctest"]["missing"] if "GTest" in line and "libgtest-dev" in line]
    assert stages["build"]["steps"] == [] and stages["ctest"]["steps"] == []  # nothing ran

    # 2. the Python stages on an earlier build (a copy of this checkout's build), in another invocation
    _copy_build(out / "build" / "pkg")
    second = _gpu_check(
        env,
        "--only",
        "import,pytest:top,sanitizers:memcheck,bench,engine",
        "--out",
        out,
        "--pytest-args",
        "-k subprocess_env_keeps",
    )
    assert second.returncode == 1, second.stdout[-3000:] + second.stderr[-3000:]
    stages = _stages(out)
    assert stages["import"]["status"] == "fail"
    log = (out / "import.log").read_text()
    pkg = os.path.realpath(out / "build" / "pkg")
    # the build is what the tests import, not the checkout's zsseg_rt/ (which has no _C) ...
    assert f"zsseg_rt from {pkg}/zsseg_rt/__init__.py" in log and f"native module {pkg}/zsseg_rt/_C" in log
    assert "CUDA is not usable by this build" in log  # ... and no GPU here
    assert stages["pytest:top"]["status"] == "pass", (out / "pytest_top.log").read_text()[-3000:]
    assert re.search(r'tests="[1-9]', (out / "pytest_top.xml").read_text())
    assert "passed" in (out / "pytest_top.log").read_text()
    memcheck = stages["sanitizers:memcheck"]
    assert memcheck["status"] == "missing prerequisite"  # no C++ test binaries: ctest never built them
    assert any("run the ctest stage first" in line for line in memcheck["missing"])
    assert [(s["name"], s["rc"]) for s in memcheck["steps"]] == [("memcheck_pytest", 0)]
    assert stages["bench"]["status"] == "fail" and "no usable CUDA device" in (out / "bench_cuda.log").read_text()
    assert stages["engine"]["status"] == "fail" and "no usable CUDA device" in (out / "engine.log").read_text()

    # 3. a stage run again replaces its entry (no --wheels now: the site installed before is still used); a C++ test
    # binary under a hanging sanitizer is stopped by the stage's time bound
    cpp = out / "build" / "cpp"
    cpp.mkdir(parents=True)
    (cpp / "zsseg_cpp_tests").write_text("#!/bin/sh\nexit 0\n")
    (cpp / "zsseg_cpp_tests").chmod(0o755)
    third = _gpu_check(env, "--only", "prereqs,sanitizers:racecheck", "--out", out, "--quick", "--stage-timeout", "4")
    assert third.returncode == 1, third.stdout[-3000:] + third.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    names = [s["name"] for s in report["stages"]]
    listed = _gpu_check(env, "--list").stdout.split()
    assert names == listed and len(set(names)) == len(names)  # one entry per stage, in order
    assert "pytest:ops" in listed and "pytest:top" in listed and "sanitizers:synccheck" in listed
    stages = {s["name"]: s for s in report["stages"]}
    assert all(s["status"] in STATUSES for s in stages.values())
    assert "--stage-timeout 4" in stages["prereqs"]["command"] and "ftfy" not in "\n".join(stages["prereqs"]["missing"])
    assert stages["build"]["status"] == "missing prerequisite" and stages["pytest:top"]["status"] == "pass"  # kept
    racecheck = stages["sanitizers:racecheck"]
    assert racecheck["status"] == "timeout" and racecheck["steps"][0]["rc"] in (124, 137), racecheck
    assert racecheck["seconds"] < 60
    assert stages["pytest:ops"]["status"] == "not run" and report["complete"] is False and report["pass"] is False
    md = (out / "report.md").read_text()
    assert "| ctest | missing prerequisite |" in md and "apt-get install libgtest-dev" in md
    assert "| sanitizers:racecheck | timeout |" in md and "| pytest:ops | not run |" in md


def test_gpu_check_refuses_unknown_stages_and_arguments(tmp_path):
    for args in (["--only", "pytest:nowhere"], ["--bogus"], ["--stage-timeout", "soon"]):
        run = _gpu_check(dict(os.environ), *args, "--out", tmp_path / "out", timeout=60)
        assert run.returncode == 2 and "gpu_check:" in run.stderr, (args, run.stderr)


def test_the_pytest_pieces_cover_every_test_file():
    stages = _gpu_check(dict(os.environ), "--list", timeout=60).stdout.split()
    pieces = [s.split(":", 1)[1] for s in stages if s.startswith("pytest:")]
    files = sorted(str(p.relative_to(REPO / "python_tests")) for p in (REPO / "python_tests").rglob("test_*.py"))
    covered = [f for f in files if ("/" not in f and "top" in pieces) or f.split("/", 1)[0] in pieces]
    assert covered == files


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
    checkout (appended to the end of sys.path), run from the report folder."""
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
    env["PY"] = str(_bare_python(tmp_path / "py"))  # this venv's editable zsseg_rt would win over any path
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
    _fake_wheel(tmp_path, "numpy", "99.0")
    _fake_wheel(tmp_path, "torch", "99.0")
    _fake_wheel(tmp_path, "pytest", "99.0")  # installed here: not taken
    _fake_wheel(tmp_path, "zsseg_fake_top", "1.0", requires=["zsseg_fake_dep>=2", "numpy", "torch"])
    _fake_wheel(tmp_path, "zsseg_fake_dep", "1.0")
    _fake_wheel(tmp_path, "zsseg_fake_dep", "2.0", requires=['zsseg_fake_never; extra == "unused"'])
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


# ---- a real build without CUDA (slow: compiles the native module) --------------------------------------------------
@pytest.mark.slow
def test_gpu_check_build_and_import_with_a_fake_nvidia_smi(tmp_path):
    tools = _tools(tmp_path / "bin", cc="7.5", nvcc=FAKE_NVCC_ACCEPTS)
    out = tmp_path / "report"
    env = _env(
        tools,
        _bare_python(tmp_path / "py"),
        ZSSEG_GPU_CHECK_CMAKE_DEFINES="ZS_WITH_CUDA=OFF;ZS_QUICK_BUILD=ON;CMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF",
        CMAKE_BUILD_PARALLEL_LEVEL="2",
    )
    run = _gpu_check(env, "--only", "build,import", "--out", out, timeout=1200)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]  # no GPU: the import check must fail
    report = json.loads((out / "report.json").read_text())
    stages = {s["name"]: s["status"] for s in report["stages"] if s["status"] != "not run"}
    assert stages == {"build": "pass", "import": "fail"}, stages
    assert report["pass"] is False and report["environment"]["driver"] == "000.00 (fake)"
    log = (out / "import.log").read_text()
    pkg = os.path.realpath(out / "build" / "pkg")
    # the build made here is what the tests import, not the checkout's zsseg_rt/ (which has no _C) ...
    assert f"zsseg_rt from {pkg}/zsseg_rt/__init__.py" in log
    assert f"native module {pkg}/zsseg_rt/_C" in log
    # ... and a build that cannot use CUDA stops the check with the reason
    assert "CUDA is not usable by this build: zsseg_rt was built without CUDA" in log
    assert "| build | pass |" in (out / "report.md").read_text()
