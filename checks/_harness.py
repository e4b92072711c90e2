"""The project's test tools on the GPU image (issue 78; review of b235fde, section 2): pytest and its xdist plugin at
requirements.txt's pins, carried as wheels and installed into a stage's site AHEAD of the image's site-packages,
whatever version the image has, and pytest run with its plugins named, none autoloaded. The harness is the
project's; the product's dependencies stay the image's.

Why: the image's pytest was 9.1.1, CI's 9.2.0; python_tests/conftest.py imported ``_pytest.nodeid`` (9.2.0 only)
in the xdist workers' hook, and every pytest step of the H200 run of b235fde ended with INTERNALERROR before a test
ran. The image's own plugins (pytest-benchmark, cov, mock, timeout) also loaded into every run.

    harness_pins()                  # ["pytest==9.2.0", ...]: what tools/gpu_artifacts.sh downloads (pip download
                                    # --no-deps) into gpu_artifacts/pywheels
    install(wheels, site)           # the harness from those wheels into site (a stage's $SITE/deps): lines saying
                                    # what it did; HarnessMissing when a pinned wheel is not carried
    PYTEST_ARGS                     # how every pytest step of a stage runs: autoload off, the plugins named
    version_lines(image_distributions(...), used)   # one "version:" line per package the project names: the
                                    # image's version beside the pins (requirements.txt, pyproject.toml), and the
                                    # one the stage runs where it carries another (a stage record's notes)

Used by tools/gpu_check.sh (through ``python -m checks gpu_check_support python-deps --harness``, ``harness-pins``,
``pytest-harness``) and by CI's image twin. Standard library only (pip does the install), like gpu_check_support.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List

from ._requirements import (
    REPO,
    REQUIREMENTS,
    Wheel,
    _packaging,
    _toml_arrays,
    canonical,
    requirement_pins,
    wheels_in,
)

# Always installed from the carry, ahead of the image's own: they only run the tests
HARNESS = ("pytest", "pluggy", "iniconfig", "pytest-xdist", "execnet")
# Carried too, installed only where the image has none that the harness accepts (other packages of the image use
# them: a newer one would change the product's environment)
IF_NEEDED = ("packaging", "pygments")
# Every pytest step of a stage: no plugin autoloaded (the image's pytest-benchmark, cov, mock, timeout stay out),
# the ones the tests need named: xdist (-n, --dist loadgroup) and Hypothesis' (loaded by its entry point in CI;
# its @given tests run without it, but its settings profiles and reports come from it). pytest's option (>= 8.4,
# which the harness is), not PYTEST_DISABLE_PLUGIN_AUTOLOAD=1: the variable would reach every pytest that a test
# starts, where a `-n 0` then fails for want of xdist (test_gpu_check.py's host_only run); xdist's workers get the
# option from their controller.
PYTEST_ARGS = ("--disable-plugin-autoload", "-p", "xdist.plugin", "-p", "_hypothesis_pytestplugin")


class HarnessMissing(Exception):
    """A pinned harness wheel is not carried, or the installed harness is not the one imported."""


def harness_pins(requirements: Path = REQUIREMENTS) -> List[str]:
    """HARNESS and IF_NEEDED at requirements.txt's pins ("pytest==9.2.0", ...). Raises HarnessMissing naming a tool
    that requirements.txt does not pin (the carry would be whatever the index serves that day)."""
    pins = requirement_pins(requirements)
    unpinned = [name for name in (*HARNESS, *IF_NEEDED) if "==" not in pins.get(canonical(name), "")]
    if unpinned:
        raise HarnessMissing(f"requirements.txt pins no version of {', '.join(unpinned)} (name==version expected)")
    return [pins[canonical(name)] for name in (*HARNESS, *IF_NEEDED)]


def _pinned_wheel(pin: str, wheels: Dict[str, List[Wheel]], folder: Path) -> Wheel:
    name, _, version = pin.partition("==")
    found = [w for w in wheels.get(canonical(name), []) if str(w.version) == version]
    if not found:
        have = ", ".join(w.path.name for w in wheels.get(canonical(name), [])) or "none"
        raise HarnessMissing(f"{pin} is not among the carried wheels in {folder} (of {name}: {have}); rebuild the "
                             f"artefacts (tools/gpu_artifacts.sh) or: pip download --no-deps --dest DIR '{pin}'")  # fmt: skip
    return found[0]


def carried_harness(wheels: Path, requirements: Path = REQUIREMENTS) -> List[Wheel]:
    """HARNESS's wheels in ``wheels`` at their pins (HarnessMissing names the first one absent)."""
    carried = wheels_in(wheels)
    return [_pinned_wheel(pin, carried, wheels) for pin in harness_pins(requirements)[: len(HARNESS)]]


def _stage_env(site: Path) -> Dict[str, str]:
    """This environment with ``site`` first on PYTHONPATH (as tools/gpu_check.sh puts $SITE/deps ahead)."""
    entries = [str(site), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(e for e in entries if e)))


def image_versions(python: str, site: Path) -> Dict[str, str]:
    """The distributions ``python`` sees without ``site`` (canonical name -> version, the first on its path)."""
    code = ("import importlib.metadata as m, json\nfound = {}\nfor d in m.distributions():\n"
            "    name = d.metadata['Name'] if d.metadata is not None else None\n"
            "    if name:\n        found.setdefault(name, d.version)\nprint(json.dumps(found))\n")  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.realpath(p) != os.path.realpath(site)
    )
    run = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd="/")  # no package in cwd
    if run.returncode != 0:
        raise HarnessMissing(f"{python} could not list its distributions: {run.stderr.strip()[-300:]}")
    return {canonical(name): version for name, version in json.loads(run.stdout).items()}


def install(wheels: Path, site: Path, python: str = sys.executable, requirements: Path = REQUIREMENTS) -> List[str]:
    """The harness from the carried ``wheels`` into ``site`` (pip --target, no index, no dependencies): HARNESS at
    requirements.txt's pins whatever the image has, IF_NEEDED only where the image has no version that the
    harness's own metadata accepts; then checks that ``python`` with ``site`` first on PYTHONPATH imports that
    pytest and xdist. Returns lines saying what it did ("harness: ..."). Raises HarnessMissing (one line: what is
    missing and how to get it) or CalledProcessError (pip)."""
    Requirement = _packaging().requirements.Requirement
    carried = wheels_in(wheels)
    pins = harness_pins(requirements)
    chosen = [_pinned_wheel(pin, carried, wheels) for pin in pins[: len(HARNESS)]]
    image = image_versions(python, site)
    lines = []
    for pin in pins[len(HARNESS) :]:
        name = canonical(pin.partition("==")[0])
        wanted = [Requirement(r) for w in chosen for r in w.requires()]
        specs = [r.specifier for r in wanted if canonical(r.name) == name and (r.marker is None or r.marker.evaluate())]
        have = image.get(name)
        if have is not None and all(s.contains(have, prereleases=True) for s in specs):
            lines.append(f"harness: {name} {have} of the image serves ({', '.join(map(str, specs)) or 'any'} wanted)")
        elif specs:
            chosen.append(_pinned_wheel(pin, carried, wheels))
    site.mkdir(parents=True, exist_ok=True)
    # compiled once here (pip's default): not by each of the 16 workers (the image may not write bytecode: CI does not)
    cmd = [python, "-m", "pip", "install", "--no-index", "--no-deps", "--only-binary=:all:", "--no-cache-dir"]
    cmd += ["--upgrade", "--target", str(site), *(str(w.path) for w in chosen)]
    subprocess.run(cmd, check=True, stdout=sys.stdout, stderr=sys.stderr)
    for wheel in chosen:
        before = image.get(wheel.name)
        ahead = f" (ahead of the image's {before})" if before else " (the image has none)"
        lines.append(f"harness: installed {wheel.name} {wheel.version} into {site}{ahead}")
    probe = "import pytest, xdist.plugin; print(pytest.__version__); print(pytest.__file__)"
    run = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, env=_stage_env(site), cwd=str(site.parent)
    )
    version, _, where = run.stdout.strip().partition("\n")
    if run.returncode != 0 or not os.path.realpath(where).startswith(os.path.realpath(site) + os.sep):
        raise HarnessMissing(f"the installed harness is not the one imported: pytest {version or '?'} from "
                             f"{where or run.stderr.strip()[-300:]}, not from {site}")  # fmt: skip
    lines.append(f"harness: pytest {version} imported from {site} (run with {' '.join(PYTEST_ARGS)})")
    return lines


# ---- what the stage runs against what the project pins ----------------------------------------------------------
def pinned(pyproject: Path = REPO / "pyproject.toml") -> Dict[str, List[str]]:
    """Every package the project names, by canonical name: its specifiers with their sources ("==2.14.1
    (requirements.txt, pyproject.toml)", "<5,>=4.8 (pyproject.toml)"), requirements.txt's order first, then
    pyproject's (its build system, dependencies and every extra)."""
    Requirement = _packaging().requirements.Requirement
    arrays = _toml_arrays(pyproject.read_text(encoding="utf-8"))
    texts = [(t, "requirements.txt") for t in requirement_pins(pyproject.with_name("requirements.txt")).values()]
    texts += [(t, "pyproject.toml") for t in arrays.get("build-system", {}).get("requires", [])]
    texts += [(t, "pyproject.toml") for t in arrays.get("project", {}).get("dependencies", [])]
    texts += [(t, "pyproject.toml") for ts in arrays.get("project.optional-dependencies", {}).values() for t in ts]
    sources: Dict[str, Dict[str, List[str]]] = {}  # name -> specifier -> sources
    for text, source in texts:
        req = Requirement(text)
        if canonical(req.name) != "zsseg-rt":
            where = sources.setdefault(canonical(req.name), {}).setdefault(str(req.specifier) or "any version", [])
            where += [source] if source not in where else []
    return {name: [f"{spec} ({', '.join(where)})" for spec, where in specs.items()] for name, specs in sources.items()}


def image_distributions(exclude: Iterable[str] = ()) -> Dict[str, str]:
    """The machine's own distributions (canonical name -> version, the first on the path winning): sys.path less
    PYTHONPATH's entries and ``exclude`` (the stage's $SITE: the wheel and what the stage carried)."""
    stage = {os.path.realpath(p) for p in [*os.environ.get("PYTHONPATH", "").split(os.pathsep), *exclude] if p}
    found: Dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=[p for p in sys.path if p and os.path.realpath(p) not in stage]):
        name = dist.metadata["Name"] if dist.metadata is not None else None
        if name:
            found.setdefault(canonical(name), str(dist.version))
    return found


def version_lines(image: Dict[str, str], used: Dict[str, str], pyproject: Path = REPO / "pyproject.toml") -> List[str]:
    """One ``version:`` line per package the project names: the image's version (``image``) beside the pins, and
    the version the stage runs (``used``: what it imports) where that is another (a carried one)."""
    lines = []
    for name, pins in pinned(pyproject).items():
        have = image.get(name) or "no distribution"  # (a package installed without metadata has none either)
        line = f"version: {name} {have} on the image; pinned {', '.join(pins)}"
        if used.get(name) and used[name] != image.get(name):
            line += f"; the stage runs the carried {used[name]}"
        lines.append(line)
    return lines
