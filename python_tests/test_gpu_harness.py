"""The acceptance run's test tools are the project's (issue 78; review of b235fde, section 2): pytest, pluggy,
iniconfig, pytest-xdist and execnet at requirements.txt's pins, carried as wheels and installed into a stage's site
ahead of the image's own (checks/_harness.py), pytest run with no plugin autoloaded and its plugins named; each stage
record names the image's version of every package the project pins, beside the pin.

The image of the H200 run of b235fde had pytest 9.1.1, CI 9.2.0: a conftest hook that imports ``_pytest.nodeid``
(9.2.0 only) in xdist's workers ended every pytest step there. Here a Python whose pytest is "another version" (a
package that refuses to be imported: gpu_fakes.bare_python ``other``) runs the stage's pytest command only with the
carried harness installed ahead of it; without it (the old stage) the same command fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gpu_fakes
import pytest

REPO = gpu_fakes.REPO
harness = gpu_fakes.load_check("_harness")
support = gpu_fakes.load_check("gpu_check_support")

# The suite the stage's pytest command runs here: a hook that runs only in xdist's workers (as conftest.py's
# _xdist_groups_in_test_ids) imports a module of pytest 9.2.0 and leaves a file per worker naming the plugins loaded
# (the -n 0 that the rehearsal used never reached it)
CONFTEST = """
import os
def pytest_collection_modifyitems(config, items):
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker:
        import _pytest.nodeid  # noqa: F401  (pytest 9.2.0 has it; the image's 9.1.1 did not)
        names = sorted(str(name) for name, _ in config.pluginmanager.list_name_plugin())
        with open(os.path.join(os.environ["ZSSEG_HARNESS_MARKS"], worker), "w") as marks:
            marks.write(" ".join(names))
"""
TESTS = """
import pytest

@pytest.mark.xdist_group("one")
def test_grouped():
    pass

def test_alone():
    pass
"""


def _wheels(folder: Path) -> Path:
    """This environment's harness as wheels at its pins (what tools/gpu_artifacts.sh downloads)."""
    folder.mkdir()
    for name in harness.HARNESS:
        gpu_fakes.repack(name, folder)
    return folder


def _stage_pytest(python: Path, tests: Path, sites, workers: str) -> subprocess.CompletedProcess:
    """The stage's pytest command (tools/gpu_check.sh do_pytest): PYTHONSAFEPATH=1, the stage's site on PYTHONPATH,
    no plugin autoloaded, the harness's plugins named, --dist loadgroup, from a work folder."""
    env = gpu_fakes.stage_env(sites, ZSSEG_HARNESS_MARKS=str(tests))
    command = [str(python), "-m", "pytest", str(tests), "-q", "-p", "no:cacheprovider", "--rootdir", str(tests)]
    command += [*harness.PYTEST_ARGS, "-n", workers, "--dist", "loadgroup"]
    return subprocess.run(command, cwd=tests.parent, env=env, capture_output=True, text=True, timeout=300)


def test_the_stage_runs_the_carried_harness_whatever_pytest_the_image_has(tmp_path):
    """The image's pytest is another version (it refuses to be imported here): the carried harness installed into
    the stage's site runs the stage's pytest command with two xdist workers, each worker's hook reaching pytest
    9.2.0's module. The control: the same command without the harness (the old stage) fails on the image's pytest."""
    python = gpu_fakes.bare_python(tmp_path / "py", other={"pytest": "9.1.1"})
    site = tmp_path / "site" / "deps"
    lines = harness.install(_wheels(tmp_path / "wheels"), site, python=str(python))
    text = "\n".join(lines)
    assert "harness: installed pytest 9.2.0" in text and "(ahead of the image's 9.1.1)" in text, text
    assert f"harness: pytest 9.2.0 imported from {site}" in text
    assert "harness: packaging" in text and "of the image serves" in text  # the image's own packaging kept
    tests = tmp_path / "work" / "tests"
    tests.mkdir(parents=True)
    (tests / "conftest.py").write_text(CONFTEST)
    (tests / "test_tiny.py").write_text(TESTS)
    run = _stage_pytest(python, tests, [tmp_path / "site" / "pkg", site], "2")
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    assert sorted(p.name for p in tests.iterdir() if p.name.startswith("gw")) == ["gw0", "gw1"]
    plugins = (tests / "gw0").read_text().split()  # the named ones; none of the image's (anyio's is installed here)
    assert {"xdist.plugin", "_hypothesis_pytestplugin"} <= set(plugins) and not any("anyio" in n for n in plugins)
    old = _stage_pytest(python, tests, [tmp_path / "site" / "pkg"], "2")  # the control: the image's pytest
    assert old.returncode != 0 and "the image's pytest 9.1.1 (a fake)" in old.stderr, old.stderr[-2000:]


def test_a_tool_the_image_lacks_must_be_carried_and_every_pin_must_exist(tmp_path):
    """packaging is installed only where the image has none that pytest accepts: an image without it needs the
    carried wheel, and says so in one line when it is not there; an always-installed tool absent from the carry or a
    tool requirements.txt does not pin is refused with what to do."""
    python = gpu_fakes.bare_python(tmp_path / "py", hide=("packaging",))
    wheels = _wheels(tmp_path / "wheels")
    with pytest.raises(harness.HarnessMissing, match=r"^packaging==\S+ is not among the carried wheels in "):
        harness.install(wheels, tmp_path / "site", python=str(python))
    assert not (tmp_path / "site").exists()  # refused before pip ran
    (next(wheels.glob("execnet-*.whl"))).unlink()
    with pytest.raises(harness.HarnessMissing, match=r"execnet==\S+ .* pip download --no-deps --dest DIR"):
        harness.carried_harness(wheels)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text((REPO / "requirements.txt").read_text().replace("pluggy==", "pluggy>="))
    with pytest.raises(harness.HarnessMissing, match="requirements.txt pins no version of pluggy"):
        harness.harness_pins(requirements)


def test_the_test_tools_are_pinned_and_every_pin_is_reported_beside_the_image_version(tmp_path):
    """The dependency check reads requirements.txt too: the test tools at its pins (they were unpinned: the image's
    pytest 9.1.1 went unremarked), the harness pins are requirements.txt's, and the version lines name every pinned
    package with the image's version beside each pin, and the carried version the stage runs where it differs."""
    pins = support.requirement_pins()
    assert {"pytest==9.2.0", "pytest-xdist==3.8.0"} <= set(support.project_requirements("acceptance"))
    assert harness.harness_pins() == [pins[support.canonical(n)] for n in (*harness.HARNESS, *harness.IF_NEEDED)]
    (tmp_path / "requirements.txt").write_text("torch==2.14.1  # the PyTorch side\nray[data,serve]==2.60.0\n")
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["pybind11==3.1.0"]\n[project]\ndependencies = ["numpy>=1.24,<3"]\n'
        '[project.optional-dependencies]\ntorch = ["torch==2.14.1", "timm"]\nown = ["zsseg_rt[torch]"]\n'
    )
    lines = harness.version_lines({"torch": "2.11.0", "numpy": "2.5.2"}, {"torch": "2.11.0", "ray": "2.60.0"},
                                  tmp_path / "pyproject.toml")  # fmt: skip
    assert lines == [
        "version: torch 2.11.0 on the image; pinned ==2.14.1 (requirements.txt, pyproject.toml)",
        "version: ray no distribution on the image; pinned ==2.60.0 (requirements.txt); the stage runs the carried 2.60.0",
        "version: pybind11 no distribution on the image; pinned ==3.1.0 (pyproject.toml)",
        "version: numpy 2.5.2 on the image; pinned <3,>=1.24 (pyproject.toml)",
        "version: timm no distribution on the image; pinned any version (pyproject.toml)",
    ]


def test_the_stage_installs_the_harness_and_reports_versions_through_one_step(tmp_path):
    """tools/gpu_check.sh's python_deps step (``python-deps --harness``) on this Python: the harness first, then the
    version lines; without the carried tools it fails with one MISSING line (the stage lists it as missing)."""
    env = gpu_fakes.stage_env([])
    command = [sys.executable, "-c", "import sys; sys.path.append(sys.argv[1]); from checks import gpu_check_support "
               "as s; sys.exit(s.main(sys.argv[2:]))", str(REPO), "python-deps", "--group", "build", "--harness",
               "--wheels", str(tmp_path), "--site", str(tmp_path / "site")]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stdout.startswith("MISSING harness: pytest==9.2.0 is not among"), run.stdout


def test_an_image_version_the_harness_refuses_is_replaced_by_the_carried_one(tmp_path):
    """packaging is taken from the image only where its version is one the carried pytest accepts: an image with
    packaging 19.0 (pytest 9.2.0 asks for a later one) gets the carried wheel, installed ahead of it, said so (issue
    79 item 2, mutant harness-takes-any-image-version: every image version was taken). Control: the first test, where
    the image's own packaging serves."""
    python = gpu_fakes.bare_python(tmp_path / "py", other={"packaging": "19.0"})
    wheels = _wheels(tmp_path / "wheels")
    gpu_fakes.repack("packaging", wheels)
    text = "\n".join(harness.install(wheels, tmp_path / "site", python=str(python)))
    assert "harness: installed packaging " in text and "(ahead of the image's 19.0)" in text, text
    assert "harness: packaging 19.0 of the image serves" not in text, text


def test_a_harness_imported_from_elsewhere_than_its_site_is_refused(tmp_path, monkeypatch):
    """After pip, the stage's Python must import the carried pytest from the stage's site: a pytest found elsewhere
    first (the image's, put ahead by a .pth of its own, here a probe that answers so) is refused in one line naming
    both (issue 79 item 2, mutant harness-import-unchecked: only the probe's exit status was read). Control: the
    first test, where the probe finds it in the site."""
    python = gpu_fakes.bare_python(tmp_path / "py")
    site = tmp_path / "site"
    real = harness.subprocess.run

    def shadowed(command, *args, **kwargs):
        if len(command) == 3 and command[1] == "-c" and "xdist.plugin" in command[2]:
            return subprocess.CompletedProcess(command, 0, "9.1.1\n/image/site-packages/pytest/__init__.py\n", "")
        return real(command, *args, **kwargs)

    monkeypatch.setattr(harness.subprocess, "run", shadowed)
    with pytest.raises(harness.HarnessMissing, match=r"^the installed harness is not the one imported: pytest 9\.1\.1 "
                       r"from /image/site-packages/pytest/__init__\.py, not from "):  # fmt: skip
        harness.install(_wheels(tmp_path / "wheels"), site, python=str(python))
