"""The image twin's machinery (tools/image_twin.sh, checks/image_twin.py) on small synthetic cases, one per class of
failure the H200 lease of b235fde met and CI could not see (issue 78 item 2), each with its control:

(a) a conftest that imports ``_pytest.nodeid`` under pytest-xdist's ``--dist loadgroup``: every worker dies under
    the image's pytest (9.1.1), not under the development pin (9.2.0), nor without xdist (the old rehearsal's -n 0);
(b) an assertion that holds for OpenCV 4's float-map ``remap`` (the 1/32-pixel grid) fails under the image's
    OpenCV (5.0.0.93: the exact bilinear);
(c) a program that starts ``python -m checks`` as a child dies "No module named checks" under the stage's launcher
    and environment (tools/gpu_check.sh's run_module, PYTHONSAFEPATH=1, a work folder as cwd), passes from the
    checkout as CI runs it, and passes under the launcher when the child is started through the launcher too.

The venv of (a) and (b) holds the image's versions of checks/image_twin.py image_versions (uv, from PyPI: seconds with its
cache). The verdict's rules and the stand-ins are checked on made-up reports and a scratch site."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gpu_fakes
import pytest
from support import subprocess_env

REPO = gpu_fakes.REPO
image_twin = gpu_fakes.load_check("image_twin")
UV = Path(sys.executable).parent / "uv"


@pytest.fixture(scope="module")
def image_python(tmp_path_factory) -> str:
    """A CPython 3.12 venv with the image's pytest, pytest-xdist, NumPy and OpenCV (image_versions')."""
    python = image_twin.python312()
    assert python, "no CPython 3.12 here (tools/image_twin.sh needs one: pyenv's or python3.12 on PATH)"
    assert UV.is_file(), f"uv is not in the development venv ({UV}): tools/setup_env.sh installs it"
    venv = tmp_path_factory.mktemp("image_venv") / "venv"
    wanted = [req for req, _ in image_twin.image_versions() if req.split("==")[0] in ("numpy", "opencv-python-headless",
                                                                           "pytest", "pytest-xdist")]  # fmt: skip
    subprocess.run([str(UV), "venv", "-q", "--python", python, str(venv)], check=True, timeout=120)
    subprocess.run([str(UV), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *wanted], check=True,
                   timeout=600)  # fmt: skip
    return str(venv / "bin" / "python")


def _stage_pytest(python: str, tests: Path, work: Path, *args: str) -> subprocess.CompletedProcess:
    """pytest as a stage runs it: from a work folder, PYTHONSAFEPATH=1, --dist loadgroup."""
    work.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONSAFEPATH="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTHONPATH", None)
    command = [python, "-m", "pytest", str(tests), "-q", "-p", "no:cacheprovider", "--rootdir", str(tests), *args]
    return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)


# b235fde's hook, reduced: the private import only where xdist's loadgroup worker runs it
PRIVATE_HOOK = """
import os

def pytest_collection_modifyitems(config, items):
    if not (os.environ.get("PYTEST_XDIST_WORKER") and getattr(config.option, "loadgroup", False)):
        return
    from _pytest.nodeid import coerce_node_id  # noqa: F401
"""
PUBLIC_HOOK = """
import os

def pytest_collection_modifyitems(config, items):
    if not (os.environ.get("PYTEST_XDIST_WORKER") and getattr(config.option, "loadgroup", False)):
        return
    for item in items:
        item.nodeid  # the public API only
"""
GROUPED_TESTS = """
import pytest

@pytest.mark.xdist_group("one")
def test_grouped():
    pass

def test_plain():
    pass
"""


def _tests(folder: Path, hook: str) -> Path:
    folder.mkdir()
    (folder / "conftest.py").write_text(textwrap.dedent(hook))
    (folder / "test_grouped.py").write_text(textwrap.dedent(GROUPED_TESTS))
    return folder


def test_a_conftest_importing_pytest_private_nodeid_fails_under_the_images_pytest(image_python, tmp_path):
    """(a): the image's pytest under xdist's loadgroup: every worker's collection dies (an internal error, no test
    run). Controls: the development pytest (9.2.0 has the module), -n 0 (no worker: the hook returns first), and a
    hook on the public API, each under the same stage-like run."""
    private = _tests(tmp_path / "private", PRIVATE_HOOK)
    run = _stage_pytest(image_python, private, tmp_path / "work", "-n", "2", "--dist", "loadgroup")
    # the run fails and no test runs: xdist's controller exits 3 (internal error) or 1 (its own assertion on the
    # dead workers), as it races; both are the stage dying at collection
    assert run.returncode != 0 and " passed" not in run.stdout, run.stdout[-2000:]
    assert "No module named '_pytest.nodeid'" in run.stdout + run.stderr
    ours = _stage_pytest(sys.executable, private, tmp_path / "work", "-n", "2", "--dist", "loadgroup")
    assert ours.returncode == 0 and "2 passed" in ours.stdout, ours.stdout[-2000:]  # CI's pytest: passes
    serial = _stage_pytest(image_python, private, tmp_path / "work", "-n", "0")
    assert serial.returncode == 0 and "2 passed" in serial.stdout, serial.stdout[-2000:]  # the old rehearsal's -n 0
    public = _tests(tmp_path / "public", PUBLIC_HOOK)
    fixed = _stage_pytest(image_python, public, tmp_path / "work", "-n", "2", "--dist", "loadgroup")
    assert fixed.returncode == 0 and "2 passed" in fixed.stdout, fixed.stdout[-2000:]


REMAP_TEST = """
import cv2
import numpy as np

def test_float_map_remap_is_on_the_1_32_grid():
    # OpenCV 4's rule for float maps: the coordinate rounded to 1/32 of a pixel (0.3 -> 10/32), then bilinear
    src = np.array([[0.0, 4.0], [0.0, 4.0]], np.float32)
    map_x, map_y = np.full((1, 1), 0.3, np.float32), np.zeros((1, 1), np.float32)
    got = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0, 0]
    assert abs(got - 4.0 * round(0.3 * 32) / 32) <= 2 * np.spacing(np.float32(4)), (cv2.__version__, float(got))
"""


def test_an_opencv_4_assumption_fails_under_the_images_opencv(image_python, tmp_path):
    """(b): a remap result that holds for OpenCV 4.14 (the pin: 1.25) fails under 5.0.0.93 (1.2, the exact
    bilinear), as the filter's remap test did on the H200. The control: the development venv's OpenCV passes it."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_remap.py").write_text(textwrap.dedent(REMAP_TEST))
    run = _stage_pytest(image_python, tests, tmp_path / "work", "-n", "0")
    assert run.returncode == 1 and "'5.0.0', 1.2" in run.stdout, run.stdout[-2000:]
    ours = _stage_pytest(sys.executable, tests, tmp_path / "work", "-n", "0")
    assert ours.returncode == 0 and "1 passed" in ours.stdout, ours.stdout[-2000:]


PARENT = """
import subprocess, sys

if sys.argv[1:] == ["child"]:
    print("child ran")
    sys.exit(0)
LAUNCHER = ("import runpy, sys; sys.path.append(sys.argv[1]); sys.argv = [sys.argv[2]] + sys.argv[3:]; "
            "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")
if sys.argv[1:] == ["parent", "naive"]:
    command = [sys.executable, "-m", "checks", "child"]
else:
    command = [sys.executable, "-c", LAUNCHER, {tree!r}, "checks", "child"]
done = subprocess.run(command, capture_output=True, text=True)
print(done.stdout + done.stderr)
sys.exit(done.returncode)
"""


def test_a_child_python_m_checks_dies_under_the_stages_launcher(image_python, tmp_path):
    """(c): a checkout whose program starts ``python -m checks child``, run as the engine stage runs it (the twin's
    run_program: tools/gpu_check.sh's run_module, PYTHONSAFEPATH=1, the work folder as cwd, the stage's site on
    PYTHONPATH): the child dies "No module named checks". Controls: the same program from the checkout without
    PYTHONSAFEPATH (how CI ran it: passes), and under the launcher with the child started through the launcher. (The
    image's Python: the development venv's editable install puts this checkout on every path.)"""
    tree = tmp_path / "tree"
    (tree / "checks").mkdir(parents=True)
    (tree / "tools").mkdir()
    (tree / "tools" / "gpu_check.sh").write_text((REPO / "tools" / "gpu_check.sh").read_text())
    (tree / "checks" / "__init__.py").write_text("")
    (tree / "checks" / "__main__.py").write_text(PARENT.format(tree=str(tree)))
    work, site = tmp_path / "work", tmp_path / "site"
    work.mkdir()
    staged = image_twin.run_program(tree, image_python, site, work, ["checks", "parent", "naive"], timeout=120)
    assert staged.returncode == 1 and "No module named checks" in staged.stdout, staged.stdout + staged.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    ci = subprocess.run([image_python, "-m", "checks", "parent", "naive"], cwd=tree, env=env, capture_output=True,
                        text=True, timeout=120)  # fmt: skip
    assert ci.returncode == 0 and "child ran" in ci.stdout, ci.stdout + ci.stderr
    fixed = image_twin.run_program(tree, image_python, site, work, ["checks", "parent", "launcher"], timeout=120)
    assert fixed.returncode == 0 and "child ran" in fixed.stdout, fixed.stdout + fixed.stderr


def test_the_launcher_is_gpu_checks_own_text(tmp_path):
    """The twin runs tools/gpu_check.sh's run_module as written there; a script without one is refused by name."""
    text = image_twin.launcher_text(REPO / "tools" / "gpu_check.sh")
    assert text.startswith("run_module() {\n") and text.rstrip().endswith("}") and "runpy.run_module" in text
    other = tmp_path / "gpu_check.sh"
    other.write_text("#!/bin/sh\necho no launcher\n")
    with pytest.raises(ValueError, match="no run_module"):
        image_twin.launcher_text(other)


def _work(tmp_path: Path, stage: str, rc: int, cases) -> Path:
    work = tmp_path / stage
    (work / "logs").mkdir(parents=True)
    (work / "steps.tsv").write_text(
        f"install\t0\t1\tlogs/install.log\npytest:ops,runtime\t{rc}\t9\tlogs/pytest_ops.log\n"
    )
    (work / "logs" / "pytest_ops.log").write_text("INTERNALERROR> ModuleNotFoundError: No module named 'x'\n")
    if cases is not None:
        (work / "pytest_ops.xml").write_text(gpu_fakes.junit(cases))
    return work


def test_the_verdict_fails_real_failures_and_counts_the_stand_ins_apart(tmp_path):
    """A failure that is a stand-in's (its mark in the traceback) counts as "needs torch"; any other failure, an
    internal error (no report), or a file of RUN none of whose tests passed fails the stage."""
    chosen = [f"python_tests/{path.replace('.py', '')}.py::test_x" for path, _ in image_twin.RUN["ops"]]
    torch_error = f"ModuleNotFoundError: torch 2.11.0 is {image_twin.STAND_IN_MARK}"
    good = [(c, "passed") for c in chosen] + [("python_tests/ops/test_t.py::test_y", "error", torch_error)]
    problems, counts = image_twin.judge_stage(_work(tmp_path / "good", "ops", 1, good), "ops")
    assert problems == [] and counts == {"passed": len(chosen), "skipped": 0, "needs_torch": 1, "failed": 0}
    bad = good + [("python_tests/ops/test_z.py::test_z", "failed", "AssertionError: 0.09 > 4.8e-07")]
    problems, _ = image_twin.judge_stage(_work(tmp_path / "bad", "ops", 1, bad), "ops")
    assert problems == ["ops: FAILED python_tests.ops.test_z::test_z: AssertionError: 0.09 > 4.8e-07"]
    problems, _ = image_twin.judge_stage(_work(tmp_path / "internal", "ops", 3, None), "ops")
    assert len(problems) == 1 and "pytest exited 3" in problems[0] and "ModuleNotFoundError" in problems[0]
    problems, _ = image_twin.judge_stage(_work(tmp_path / "none", "ops", 0, good[1:]), "ops")
    assert problems == [f"ops: no test of python_tests/{image_twin.RUN['ops'][0][0]} passed (the twin's selection "
                        "ran nothing)"]  # fmt: skip


def test_a_stand_in_has_the_images_version_and_refuses_to_import(tmp_path):
    """torch's stand-in: its metadata at the image's version (the acceptance run's dependency check reads it), an
    import that fails with the twin's mark, and pytest.importorskip that skips."""
    image_twin.write_stand_in(tmp_path, "torch", "2.11.0", "torch")
    probe = ("import importlib.metadata as m, pytest\nprint(m.version('torch'))\ntry:\n    import torch\n"
             "except ModuleNotFoundError as exc:\n    print(exc.name, exc)\n"
             "try:\n    pytest.importorskip('torch')\nexcept pytest.skip.Exception:\n    print('skipped')\n")  # fmt: skip
    env = subprocess_env(str(tmp_path))  # the scratch site first
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert lines[0] == "2.11.0" and lines[1].startswith("torch ") and image_twin.STAND_IN_MARK in lines[1], done
    assert lines[2] == "skipped", done.stdout + done.stderr


def test_the_image_versions_are_the_latest_records_pip_freeze():
    """Every package the twin installs is at the version of the latest record's pip freeze (issue 86 item 1: tqdm,
    pillow, filelock, hypothesis, tokenizers and timm were the project's pins, not the image's)."""
    source, frozen = image_twin.latest_freeze()
    assert source and source.startswith("2026-11-28T17"), source  # the H200 run of 7f842ed, or a later one
    versions = dict(req.split("==") for req, _ in image_twin.image_versions())
    assert versions["tqdm"] == frozen["tqdm"] and versions["pillow"] == frozen["pillow"], versions
    for name in image_twin.TWIN_PACKAGES + image_twin.NO_DEPS_PACKAGES:
        assert versions[name] == frozen[image_twin.canonical(name)], name
    assert image_twin.no_deps() == [f"timm=={frozen['timm']}"] and not any(
        r.startswith("timm") for r in image_twin.requirements()
    )


def test_without_a_freeze_the_twin_takes_the_pins_and_says_so(tmp_path):
    """The control: records with no pip freeze (older ones), a damaged tarball, and the newest freeze winning."""
    import io
    import tarfile

    def record(name, freeze):
        with tarfile.open(tmp_path / f"{name}.logs.tar.gz", "w:gz") as archive:
            for member, text in (("logs/pytest.log", "x"), ("logs/pip_freeze.txt", freeze)):
                if text is None:
                    continue
                data = text.encode()
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))

    record("2026-01-01T000000_m_ops", None)
    (tmp_path / "2026-01-02T000000_m_ops.logs.tar.gz").write_bytes(b"not a tarball")
    assert image_twin.latest_freeze(tmp_path) == (None, {})
    pinned = dict(image_twin.image_versions(tmp_path))
    assert pinned[image_twin.requirement_pins()["numpy"]].startswith("the project's pin")
    record("2026-01-03T000000_m_ops", "numpy==9.9.9\nPillow==1.2.3\n")
    record("2026-01-04T000000_m_ops", "numpy==8.8.8\n")  # newer: it wins, pillow falls back to the pin
    source, frozen = image_twin.latest_freeze(tmp_path)
    assert source == "2026-01-04T000000_m_ops.logs.tar.gz" and frozen == {"numpy": "8.8.8"}
    versions = dict(image_twin.image_versions(tmp_path))
    assert versions["numpy==8.8.8"].startswith("the image's pip freeze (2026-01-04")


def test_no_test_names_a_packaged_file_by_a_path_relative_to_the_checkout():
    """The GPU stages run pytest in a work folder (out/gpu_check/STAGE) against the installed wheel, so a test that
    names ``zsseg_rt/assets/...`` relative to the current directory finds nothing there: two suite tests failed so on
    the H200 (2026-11-28T063931). Packaged files come from ``zsseg_rt.assets`` (SAMPLES_DIR and the like)."""
    import re

    pattern = re.compile(r"""["']zsseg_rt/assets/""")
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "python_tests").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and path.name != "test_image_twin.py"
    ]
    assert not found, f"cwd-relative paths to packaged files (use zsseg_rt.assets): {found}"


def test_the_twin_runs_each_stage_under_a_bound_of_its_own_not_the_gpu_machines():
    """A stage's budget (checks/gpu_stages.py) is the 16-core GPU machine's wall time; CI's twin runs it with 2 workers
    beside CI's other stages, and under that bound a slower CPU cut the ops and suite stages mid-run (exit 124, no test
    failing; the CI of 2de4fd9). tools/image_twin.sh hands gpu_check.sh a --budget of its own, by default far above
    every twin stage's GPU budget (90 and 110 s; the twin's pytest took 59 and 80 s of them there)."""
    import re

    script = (REPO / "tools" / "image_twin.sh").read_text(encoding="utf-8")
    call = script[script.index('bash "$TWIN/tree/tools/gpu_check.sh"') :].split(">", 1)[0]
    assert '--budget "$TWIN_STAGE_BUDGET"' in call, call
    default = re.search(r'^TWIN_STAGE_BUDGET="\$\{ZSSEG_TWIN_STAGE_BUDGET:-(\d+)\}"', script, re.M)
    assert default, "tools/image_twin.sh sets no default TWIN_STAGE_BUDGET"
    gpu_stages = gpu_fakes.load_check("gpu_stages")
    gpu_budgets = {name: gpu_stages.stage(name).budget_s for name in image_twin.TWIN_STAGES}
    assert int(default.group(1)) >= 10 * max(gpu_budgets.values()), (default.group(1), gpu_budgets)
