"""Every program of the repository starts from any directory with torch's compiler stack already imported, and
none can shadow a standard-library module.

A script puts its own directory first on ``sys.path``; a file there named like a standard-library module is then
found instead of it by anything imported later (seen on a GPU machine: torch's compiler imports ``cProfile``,
which imported ``tools/profile.py`` as ``profile`` and failed with ``module 'profile' has no attribute 'run'``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parent.parent
PROGRAM_DIRS = ("tools", "benchmarks", "checks")


def _run(code: str, cwd: Path, extra_path: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = extra_path + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_no_program_is_named_like_a_standard_library_module():
    """Only tools/profile.py (the documented command) has such a name, and it stands in for the module."""
    named = [
        str(path.relative_to(REPO))
        for folder in PROGRAM_DIRS
        for path in (REPO / folder).glob("*.py")
        if path.stem in sys.stdlib_module_names
    ]
    assert named == [os.path.join("tools", "profile.py")], named
    # benchmarks and checks are packages; tools/ keeps profile.py and the extractors of checked-in upstream data
    # (run by hand against a clone of the upstream repository, documented in docs/tensorrt.md)
    left = sorted(p.name for p in (REPO / "tools").glob("*.py") if not p.name.startswith("extract_"))
    assert left == ["profile.py"], left


def test_tools_profile_is_the_stdlib_module_when_imported_as_profile(tmp_path):
    """As a script run: tools/ first on sys.path, then torch's compiler (cProfile -> profile), then the script."""
    tools = REPO / "tools"
    code = f"""
import runpy, sys, sysconfig
sys.path.insert(0, {str(tools)!r})  # what running tools/profile.py does to sys.path
import torch._dynamo, cProfile, profile
assert profile.__file__.startswith(sysconfig.get_paths()["stdlib"]), profile.__file__
assert callable(profile.run) and callable(cProfile.run)
cProfile.run("sum(range(10))", sort="calls")  # the standard profilers work
sys.argv = [{str(tools / "profile.py")!r}, "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    sys.exit(exc.code)
"""
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "--bundle" in out.stdout and "--compare" in out.stdout
    plain = subprocess.run(
        [sys.executable, str(tools / "profile.py"), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert plain.returncode == 0 and "--bundle" in plain.stdout, plain.stderr[-2000:]


def test_every_benchmark_and_check_answers_help_from_another_directory(tmp_path):
    """``python -m benchmarks NAME --help`` / ``python -m checks NAME --help`` for every NAME, torch._dynamo first."""
    code = """
import io, sys, contextlib
import torch._dynamo
failed = []
for package in ("benchmarks", "checks"):
    runner = __import__(package + ".__main__", fromlist=["main"])
    for name in runner.names():
        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                runner.main([name, "--help"])
            failed.append((package, name, "no exit"))
        except SystemExit as exc:
            if exc.code not in (0, None) or "usage" not in buffer.getvalue():
                failed.append((package, name, exc.code))
    print(package, len(runner.names()))
assert not failed, failed
"""
    out = _run(code, tmp_path, extra_path=str(REPO))
    assert out.returncode == 0, out.stderr[-3000:]
    counts = dict(line.split() for line in out.stdout.split("\n") if line.startswith(("benchmarks", "checks")))
    assert int(counts["benchmarks"]) >= 9 and int(counts["checks"]) >= 3
    listing = _run("import sys; from benchmarks.__main__ import main; sys.exit(main([]))", tmp_path, str(REPO))
    assert listing.returncode == 2 and "names: " in listing.stdout and "ops" in listing.stdout
