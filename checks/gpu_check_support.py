"""The Python side of ``tools/gpu_check.sh``: its Python prerequisites, the installer of the carried wheels, the
import check and the verdicts of the C++ tests and compute-sanitizer runs (the run record: checks/gpu_record.py).

Usage (tools/gpu_check.sh runs these; standard library only, so they work on a bare machine before anything is
installed):
    python -m checks gpu_check_support python-deps --group acceptance             # what is missing, one line each
    python -m checks gpu_check_support python-deps --group acceptance --wheels DIR --site SITE   # install only that
    python -m checks gpu_check_support python-deps ... --harness    # first the test tools, whatever the image has
    python -m checks gpu_check_support harness-pins                 # the test tools' wheels to carry (pins)
    python -m checks gpu_check_support pytest-harness               # pytest's plugin arguments (no autoload)
    python -m checks gpu_check_support import-check --build DIR [--require-cuda]
    python -m checks gpu_check_support gtest-verdict --xml REPORT [--cuda]
    python -m checks gpu_check_support sanitizer-verdict --log LOG [--xml REPORT --cuda]
    python -m checks gpu_check_support probe-verdict --json PROBE.json

Python dependencies: the requirements of pyproject.toml (group acceptance: the project's, the torch/export/opencv
extras and the test tools at requirements.txt's pins; all: the build system's too) with every distribution they
require in turn (what ``pip check`` walks, read from the installed distributions' metadata). A requirement counts as present when a distribution of that name is installed, or, for a
package installed without metadata (a distribution's OpenCV, a vendor's torch), when its module can be found. The
versions the machine has are used as they are (pyproject's pins are the development set): a version outside a
requirement's range is reported as a note, not as missing. Every package the project names (requirements.txt and
pyproject.toml) gets a ``version:`` line: the image's version beside the pins, and the one the stage runs where it
carries another (the test tools: checks/_harness.py); tools/gpu_check.sh puts these lines in the record's notes.

``--wheels DIR`` installs, with ``pip install --no-index --no-deps --target SITE``, only the distributions that are
missing, and the missing ones that those wheels require in turn (read from the wheels' own metadata): never one the
machine already has, never numpy, torch or NVIDIA's CUDA libraries (they must match the machine's driver), and
nothing whose module the system can already import, so SITE (which tools/gpu_check.sh puts on PYTHONPATH) shadows
nothing of the system's site-packages.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ._requirements import (
    REPO,
    Wheel,
    _packaging,
    _toml_arrays,
    canonical,
    requirement_pins,
    wheels_in,
)

# Test tools the acceptance run needs beside pyproject's requirements, at requirements.txt's pins
TEST_REQUIREMENTS = ["pytest", "hypothesis", "pytest-xdist"]
# pyproject extras the acceptance run imports (models, export, images); not scale (Ray: its tests skip without it)
EXTRAS = ("torch", "export", "opencv")
# Never installed from --wheels: they must match the machine's CUDA driver and are what everything else links to
PROTECTED = ("numpy", "torch")
PROTECTED_PREFIXES = ("nvidia-", "triton")
# Distribution -> module, where the module's name is not the distribution's (for packages without metadata)
MODULE_OF = {
    "opencv-python": "cv2",
    "opencv-python-headless": "cv2",
    "opencv-contrib-python": "cv2",
    "opencv-contrib-python-headless": "cv2",
    "pillow": "PIL",
    "open-clip-torch": "open_clip",
    "pyyaml": "yaml",
    "protobuf": "google.protobuf",
    "scikit-build-core": "scikit_build_core",
    "onnxruntime-gpu": "onnxruntime",
    "beautifulsoup4": "bs4",
}
MISSING_RC = 3  # a prerequisite's "step" in the prereqs stage: listed under the missing prerequisites
STATUS_ORDER = ("pass", "fail", "timeout", "missing prerequisite", "not run")


# ---- requirements ----------------------------------------------------------------------------------------------
def project_requirements(group: str, pyproject: Path = REPO / "pyproject.toml") -> List[str]:
    """The requirement strings of ``group``: build (the build system), runtime (the project's dependencies),
    acceptance (runtime, the extras the acceptance run imports and the test tools at the pins of requirements.txt
    beside ``pyproject``: what a machine that installs the built wheel needs) or all (acceptance and build).
    Self-references (``zsseg_rt[...]``) dropped."""
    arrays = _toml_arrays(pyproject.read_text(encoding="utf-8"))
    pins = requirement_pins(pyproject.with_name("requirements.txt"))
    tools = [pins.get(canonical(name), name) for name in TEST_REQUIREMENTS]
    build = arrays.get("build-system", {}).get("requires", [])
    runtime = arrays.get("project", {}).get("dependencies", [])
    if group == "build":
        found = list(build)
    elif group == "runtime":
        found = list(runtime)
    elif group in ("acceptance", "all"):
        extras = arrays.get("project.optional-dependencies", {})
        found = list(runtime) + [r for e in EXTRAS for r in extras.get(e, [])] + tools
        found = (list(build) if group == "all" else []) + found
    else:
        raise ValueError(f"unknown group {group!r} (build, runtime, acceptance, all)")
    return [r for r in found if canonical(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) != "zsseg-rt"]


def installed_distributions() -> Dict[str, importlib.metadata.Distribution]:
    """Installed distributions by canonical name, the first on sys.path winning (what an import would get)."""
    found: Dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata is not None else None
        if name and canonical(name) not in found:
            found[canonical(name)] = dist
    return found


def module_of(name: str) -> str:
    return MODULE_OF.get(canonical(name), canonical(name).replace("-", "_"))


def module_present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def is_protected(name: str) -> bool:
    name = canonical(name)
    return name in PROTECTED or name.startswith(PROTECTED_PREFIXES)


def _wanted(requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (list(extras) or [""]))


class Resolution:
    """What the machine has of a group's requirements, what is missing and, with a wheel folder, what to install."""

    def __init__(self) -> None:
        self.present: Dict[str, str] = {}  # canonical name -> version ("" when found by module only)
        self.missing: Dict[str, str] = {}  # canonical name -> the line to print (what, why, how to get it)
        self.notes: List[str] = []
        self.install: Dict[str, Wheel] = {}


def resolve(requirements: List[str], wheel_folder: Optional[Path] = None) -> Resolution:
    """Walks ``requirements`` and everything they require (installed metadata, or a chosen wheel's metadata)."""
    pkg = _packaging()
    Requirement = pkg.requirements.Requirement
    installed = installed_distributions()
    wheels = wheels_in(wheel_folder)
    result = Resolution()
    queue: List[Tuple[str, str, bool]] = [(r, "the acceptance run (pyproject.toml, requirements.txt)", True)
                                          for r in requirements]  # fmt: skip
    seen: Set[str] = set()
    while queue:
        text, parent, top = queue.pop(0)
        try:
            req = Requirement(text)
        except Exception as exc:  # a malformed requirement in some distribution's metadata: reported, not fatal
            result.notes.append(f"note: cannot parse the requirement {text!r} of {parent}: {exc}")
            continue
        name = canonical(req.name)
        key = name + "[" + ",".join(sorted(req.extras)) + "]"
        dist = installed.get(name)
        version = str(dist.version) if dist is not None else result.present.get(name, "")
        if name in result.install:
            version = str(result.install[name].version)
        if version and req.specifier and not req.specifier.contains(version, prereleases=True):
            what = "pins" if top else "requires"
            result.notes.append(f"note: {parent} {what} {req}, this machine has {req.name} {version}")
        if key in seen:
            continue
        seen.add(key)
        requires: List[str] = []
        if dist is not None:
            result.present[name] = str(dist.version)
            requires = list(dist.requires or [])
        elif name in result.install:
            requires = result.install[name].requires()
        elif name in result.present or module_present(module_of(name)):
            result.present.setdefault(name, "")  # installed without metadata (e.g. a distribution's package)
        elif is_protected(name):
            result.missing[name] = (
                f"MISSING Python: {req.name} (needed by {parent}): install the build for this machine's CUDA "
                "(the image's, or pip/conda with network); gpu_check never installs numpy, torch or NVIDIA's "
                "libraries from the carried wheels"
            )
        else:
            candidates = [w for w in wheels.get(name, []) if not req.specifier or req.specifier.contains(w.version)]
            candidates = candidates or wheels.get(name, [])
            if candidates:
                result.install[name] = candidates[0]
                requires = candidates[0].requires()
            else:
                where = f"not among the carried wheels ({wheel_folder})" if wheel_folder else "no wheels given"
                result.missing[name] = (
                    f"MISSING Python: {req} (needed by {parent}): {where}; add it to CARRIED_PYTHON in "
                    "checks/gpu_stages.py and rebuild the artefacts (tools/gpu_artifacts.sh), or by hand on a machine "
                    f"with network: pip download --no-deps --dest DIR '{req.name}{req.specifier}'"
                )
        for sub in requires:
            try:
                child = Requirement(sub)
            except Exception as exc:
                result.notes.append(f"note: cannot parse the requirement {sub!r} of {req.name}: {exc}")
                continue
            if _wanted(child, req.extras):
                queue.append((sub, f"{req.name}", False))
    return result


def _top_level_names(site: Path) -> List[str]:
    names = []
    for entry in site.iterdir():
        if entry.name in ("bin", "__pycache__") or entry.name.endswith((".dist-info", ".data", ".pth")):
            continue
        if entry.is_dir() or entry.suffix in (".py", ".so", ".pyd"):
            names.append(entry.name.split(".", 1)[0])
    return sorted(set(names))


def install_missing(resolution: Resolution, site: Path, python: str = sys.executable) -> List[str]:
    """pip-installs the chosen wheels into ``site`` (no index, no dependencies: the resolution chose them all).
    Returns lines saying what it did. Raises CalledProcessError when pip fails."""
    if not resolution.install:
        return ["wheels: nothing to install (every requirement is present)"]
    site.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(site))
    files = [str(w.path) for w in resolution.install.values()]
    cmd = [python, "-m", "pip", "install", "--no-index", "--no-deps", "--only-binary=:all:", "--no-compile"]
    cmd += ["--no-cache-dir", "--target", str(site), *files]
    subprocess.run(cmd, check=True, stdout=sys.stdout, stderr=sys.stderr)
    lines = [f"wheels: installed {w.path.name} into {site}" for w in resolution.install.values()]
    # Nothing in SITE may shadow a module the system already has (SITE is on PYTHONPATH, ahead of site-packages)
    shadow_check = (
        "import importlib.util, sys\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        spec = importlib.util.find_spec(name)\n"
        "    except Exception:\n"
        "        spec = None\n"
        "    if spec is not None:\n"
        "        print(name)\n"
    )
    new = [n for n in _top_level_names(site) if any(e.split(".", 1)[0] == n for e in set(os.listdir(site)) - before)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.realpath(p) != os.path.realpath(site)
    )
    found = subprocess.run(
        [python, "-c", shadow_check, *new], capture_output=True, text=True, env=env, cwd=str(site.parent)
    ).stdout.split()
    for name in found:
        for entry in site.iterdir():
            if entry.name.split(".", 1)[0] == name and not entry.name.endswith(".dist-info"):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        lines.append(f"wheels: removed {name} from {site}: the system already provides that module")
    return lines


def python_deps(args) -> int:
    requirements = project_requirements(args.group) + list(args.also or [])
    wheels = Path(args.wheels) if args.wheels else None
    from . import _harness

    image = _harness.image_distributions([args.site] if args.site else [])  # before anything is installed
    if args.harness:
        try:
            if wheels is None or not args.site:
                raise _harness.HarnessMissing("--harness needs --wheels and --site")
            for line in _harness.install(wheels, Path(args.site)):
                print(line)
        except (_harness.HarnessMissing, subprocess.CalledProcessError) as exc:
            print(f"MISSING harness: {exc}")
            return 1
        if args.site not in sys.path:
            sys.path.insert(0, args.site)
        importlib.invalidate_caches()
    resolution = resolve(requirements, wheels)
    if wheels is not None and args.site:
        site = Path(args.site)
        try:
            for line in install_missing(resolution, site):
                print(line)
        except subprocess.CalledProcessError as exc:
            print(f"MISSING Python: installing wheels from {wheels} failed (pip exit {exc.returncode})")
            return 1
        if str(site) not in sys.path:
            sys.path.insert(0, str(site))
        importlib.invalidate_caches()
        resolution = resolve(requirements, None)  # what the tests will see now
    for note in resolution.notes:
        print(note)
    used = {name: str(dist.version) for name, dist in installed_distributions().items()}
    for line in _harness.version_lines(image, used):
        print(line)
    for line in resolution.missing.values():
        print(line)
    print(f"python ({args.group}): {len(resolution.present)} distributions present, {len(resolution.missing)} missing")
    return 1 if resolution.missing else 0


# ---- the import check --------------------------------------------------------------------------------------------
def import_check(args) -> int:
    """zsseg_rt and its native module must come from the build folder (not the checkout, not another install); with
    --require-cuda, CUDA must be usable by that build."""
    build = os.path.realpath(args.build)
    try:
        import zsseg_rt
        from zsseg_rt import ops

        module = ops.native_module()
    except Exception as exc:  # a missing _C, a broken build: the reason, not a traceback
        print(f"gpu_check: the build in {build} cannot be imported: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("zsseg_rt from", zsseg_rt.__file__)
    print("native module", module.__file__)
    print(
        "cuda_compiled", module.cuda_compiled(), "cuda_available", ops.cuda_available(), "status", module.cuda_status()
    )
    inside = [os.path.realpath(p).startswith(build + os.sep) for p in (zsseg_rt.__file__, module.__file__)]
    if not all(inside):
        print(
            f"gpu_check: the tests would not import the build in {build} (a source tree or another install shadows it)",
            file=sys.stderr,
        )
        return 1
    if args.require_cuda and not ops.cuda_available():
        print("gpu_check: CUDA is not usable by this build: " + ops.cuda_unavailable_reason(), file=sys.stderr)
        return 1
    return 0


# ---- verdicts from what a step wrote -----------------------------------------------------------------------------
def _gtest_cases(xml: Path) -> List[dict]:
    """The test cases of a GoogleTest XML report: suite.name, failed, skipped and the skip message."""
    import xml.etree.ElementTree as ElementTree

    cases = []
    for case in ElementTree.parse(xml).getroot().iter("testcase"):
        skipped, failure = case.find("skipped"), case.find("failure")
        message = skipped.get("message", "") if skipped is not None else ""
        cases.append(
            {
                "suite": case.get("classname", ""),
                "name": f"{case.get('classname')}.{case.get('name')}",
                "skipped": skipped is not None or case.get("result") == "skipped",
                "why": " ".join(line.strip() for line in message.splitlines()[1:] or message.splitlines()),
                "failed": failure is not None,
            }
        )
    return cases


CUDA_SUITE = re.compile(r"^(?!BuildWithoutCuda$).*Cuda$")  # PamrCuda, SegmentCuda, ...: the CUDA kernels' tests
NO_DEVICE = "no CUDA device"  # their GTEST_SKIP message without a usable device (cpp_tests/test_*.cpp)


def gtest_verdict(xml: Optional[str], cuda: bool) -> List[str]:
    """What is wrong with a GoogleTest run: no report, failures, and with ``cuda`` a CUDA test that skipped for want
    of a device (GTEST_SKIP exits 0: on the GPU machine that is a failure) or no CUDA test run at all."""
    if not xml:
        return []
    path = Path(xml)
    if not path.is_file():
        return [f"no GoogleTest report {path} (the binary did not run to its end)"]
    try:
        cases = _gtest_cases(path)
    except Exception as exc:  # a report cut off by a crash or a timeout
        return [f"the GoogleTest report {path} is unreadable ({type(exc).__name__}: {exc})"]
    problems = [f"failed: {c['name']}" for c in cases if c["failed"]]
    print(f"{len(cases)} tests, {sum(c['failed'] for c in cases)} failed, {sum(c['skipped'] for c in cases)} skipped")
    if cuda:
        problems += [f"did not run: {c['name']} ({c['why']})" for c in cases if c["skipped"] and NO_DEVICE in c["why"]]
        ran = [c for c in cases if CUDA_SUITE.search(c["suite"]) and not c["skipped"]]
        print(f"CUDA tests that ran on the device: {len(ran)}")
        if not ran:
            problems.append("no CUDA test (suite *Cuda) ran on the device")
    return problems


# ---- the pytest (JUnit) reports: counts, failures, skips, the must-run tests --------------------------------------------
FAILURE_HEAD_LINES = 15  # of a failure's traceback in the record (its head: the test's own frame and assertion)
FAILURE_LINE_CHARS = 240
MAX_FAILURES = 20  # failures kept per step with their heads (every failed id is listed up to MAX_FAILED_IDS)
MAX_FAILED_IDS = 50
SKIP_REASON_CHARS = 500


def _skip_reason(mark) -> str:
    """A skip's whole reason: the message, or for a module skipped at collection the reason in its text (pytest
    writes "('/path/test_x.py', 2, 'Skipped: REASON')" there and only "collection skipped" as the message)."""
    message, text = (mark.get("message") or "").strip(), (mark.text or "").strip()
    if message == "collection skipped":
        found = re.search(r"'Skipped: (.*)'\)\s*$", text, re.S) or re.search(r'"Skipped: (.*)"\)\s*$', text, re.S)
        message = f"collection skipped: {found.group(1) if found else text or 'no reason given'}"
    elif not message:
        message = re.sub(r"^.*?\.py:\d+: ", "", text) or "skipped"
    return " ".join(message.split())[:SKIP_REASON_CHARS]


def junit_cases(xml: Path) -> List[dict]:
    """The test cases of a JUnit XML report (pytest's or GoogleTest's): id, module, name, outcome and, for a failure
    or error, its message and text (the traceback); for a skip, its reason. Raises on an unreadable report."""
    import xml.etree.ElementTree as ElementTree

    cases = []
    for case in ElementTree.parse(xml).getroot().iter("testcase"):
        module, name = case.get("classname") or "", case.get("name") or ""
        entry = {"id": f"{module}::{name}" if module else name, "module": module, "name": name, "outcome": "passed"}
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        mark = case.find("skipped")
        if bad is not None:
            entry.update(outcome="failed", message=bad.get("message") or "", text=bad.text or "")
        elif mark is not None or case.get("result") == "skipped":
            entry.update(outcome="skipped", reason=_skip_reason(mark) if mark is not None else "skipped")
        cases.append(entry)
    return cases


def failure_head(case: dict) -> List[str]:
    """The head of a failure: its message's first line, then the first lines of its traceback (capped)."""
    lines = [line for line in (case.get("message") or "").splitlines()[:1]]
    lines += [line for line in (case.get("text") or "").splitlines() if line.strip()]
    return [line[:FAILURE_LINE_CHARS] for line in lines[:FAILURE_HEAD_LINES]]


def gpu_skip_allowed(reason: str, allowed: Iterable[Tuple[str, str]]) -> bool:
    """A skip that mentions CUDA or a GPU is allowed on the GPU machine only when it matches the allow-list."""
    from . import gpu_stages

    return not gpu_stages.GPU_WORDS.search(reason) or any(re.search(p, reason) for p, _ in allowed)


def junit_summary(xml: Path, gpu_skips: bool = False) -> Optional[dict]:
    """What a step's report says: counts, every failed id, each failure's head, the skip reasons (whole), and with
    ``gpu_skips`` (pytest on the GPU machine) the skips that mention CUDA or a GPU outside the allow-list (each
    fails the stage). None without a report."""
    from . import gpu_stages

    if not xml.is_file():
        return None
    try:
        cases = junit_cases(xml)
    except Exception as exc:  # a report cut off by a crash or a timeout
        return {"unreadable": f"{xml.name}: {type(exc).__name__}"}
    failed = [c for c in cases if c["outcome"] == "failed"]
    skipped: Dict[str, int] = {}
    for case in cases:
        if case["outcome"] == "skipped":
            skipped[case["reason"]] = skipped.get(case["reason"], 0) + 1
    summary = {
        "tests": len(cases),
        "passed": sum(c["outcome"] == "passed" for c in cases),
        "failed": len(failed),
        "skipped": sum(skipped.values()),
        "failed_tests": [c["id"] for c in failed[:MAX_FAILED_IDS]],
        "failures": [{"id": c["id"], "head": failure_head(c)} for c in failed[:MAX_FAILURES]],
        "skip_reasons": dict(sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
    if gpu_skips:
        summary["gpu_skips"] = {
            why: n
            for why, n in summary["skip_reasons"].items()
            if not gpu_skip_allowed(why, gpu_stages.GPU_SKIP_ALLOWED)
        }
    return summary


def _test_id_parts(test: str) -> Tuple[str, str]:
    """("python_tests.ops.test_x[.Class]", "test_name[param]") of a node id "python_tests/ops/test_x.py[::Class]::
    test_name[param]", as pytest's JUnit report names the case (classname, name)."""
    path, *rest = test.split("::")
    module = path[: -len(".py")].replace("/", ".") if path.endswith(".py") else path.replace("/", ".")
    return ".".join([module] + rest[:-1]), rest[-1] if rest else ""


def must_run_outcomes(cases: Iterable[dict], tests: Iterable[str]) -> Dict[str, str]:
    """Each must-run test's outcome over the cases of its reports: "absent" (no case), "failed" (any), "skipped"
    (any), else "passed". A test id without [params] stands for every parametrisation."""
    cases = list(cases)
    found: Dict[str, str] = {}
    for test in tests:
        module, name = _test_id_parts(test)
        outcomes = {
            c["outcome"]
            for c in cases
            if c["module"] == module and (c["name"] == name or ("[" not in name and c["name"].startswith(name + "[")))
        }
        found[test] = next((o for o in ("failed", "skipped") if o in outcomes), "passed" if outcomes else "absent")
    return found


SANITIZER_SUMMARY = re.compile(r"^=+ (?:\w+ )?SUMMARY: (\d+) (error|hazard)", re.M)


def sanitizer_verdict(log: str) -> List[str]:
    """compute-sanitizer's summaries in its log (one per process it followed): every one must say 0; none at all
    means the process died before it could report (a crash is not a clean run)."""
    path = Path(log)
    text = path.read_text(errors="replace") if path.is_file() else ""
    found = SANITIZER_SUMMARY.findall(text)
    if not found:
        return [f"no compute-sanitizer summary in {path.name}: the program did not run to its end"]
    print(f"{len(found)} sanitizer summaries: " + ", ".join(f"{n} {kind}s" for n, kind in found))
    return [f"compute-sanitizer reported {n} {kind}(s)" for n, kind in found if n != "0"]


def probe_verdict(path: str) -> List[str]:
    """The probe's report (checks/gpu_probe.py writes it after every part): it must exist, be JSON and not say it
    is incomplete (a probe cut at its budget measured only part: not a pass, though what it has is kept)."""
    import json

    report = Path(path)
    if not report.is_file():
        return [f"no probe report {report}: the probe wrote nothing"]
    try:
        data = json.loads(report.read_text())
    except ValueError:
        return [f"the probe report {report.name} is not valid JSON (cut off?)"]
    if not isinstance(data, dict):
        return [f"the probe report {report.name} is no JSON object"]
    print(f"probe report: {', '.join(sorted(data)) or 'empty'}")
    problems = (
        [f"the probe report says it is incomplete: {data.get('not_run') or 'parts did not run'}"]
        if data.get("complete") is False
        else []
    )
    parts = data.get("parts") if not data.get("dry_run") else None  # the dry run's stand-ins fail by design
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        status = part.get("status")
        line = f"probe part {part.get('id')} ({part.get('title')}): {status}: {part.get('reason', '')}".rstrip(": ")
        if status in ("failed", "crashed", "timeout"):
            problems.append(line)
        elif status != "ok":  # skipped (budget, a tool absent): the stage is partial (gpu_record), not failed
            print(f"not measured: {line}")
    return problems


def verdict(args) -> int:
    if args.command == "probe-verdict":
        problems = probe_verdict(args.json)
    else:
        problems = gtest_verdict(getattr(args, "xml", None), getattr(args, "cuda", False))
    if args.command == "sanitizer-verdict":
        problems = sanitizer_verdict(args.log) + problems
    for line in problems:
        print(f"FAIL: {line}")
    print("verdict: " + ("pass" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def harness_pins(args) -> int:
    from . import _harness

    try:
        if args.wheels:  # the always-installed ones must be among them, at their pins
            print("\n".join(str(w.path.name) for w in _harness.carried_harness(Path(args.wheels))))
        else:
            print("\n".join(_harness.harness_pins()))
    except _harness.HarnessMissing as exc:
        print(f"gpu_check_support: {exc}", file=sys.stderr)
        return 1
    return 0


def pytest_harness(args) -> int:
    from . import _harness

    print("\n".join(_harness.PYTEST_ARGS))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    deps = sub.add_parser("python-deps", help="the Python prerequisites: what is missing (and --wheels installs it)")
    deps.add_argument("--group", choices=("build", "runtime", "acceptance", "all"), default="all")
    deps.add_argument("--wheels", help="a folder of wheels to install the missing distributions from")
    deps.add_argument("--site", help="where --wheels installs (pip --target)")
    deps.add_argument("--also", action="append", help="one more requirement (a build tool the system lacks: cmake)")
    deps.add_argument("--harness", action="store_true", help="first install the test tools from --wheels into "
                      "--site at requirements.txt's pins, whatever the machine has (checks/_harness.py)")  # fmt: skip
    deps.set_defaults(func=python_deps)
    pins = sub.add_parser("harness-pins", help="the test tools' pins (the wheels tools/gpu_artifacts.sh carries)")
    pins.add_argument("--wheels", help="instead: check that this folder holds the always-installed ones")
    pins.set_defaults(func=harness_pins)
    plugins = sub.add_parser("pytest-harness", help="pytest's plugin arguments for a stage, one a line")
    plugins.set_defaults(func=pytest_harness)
    imp = sub.add_parser("import-check", help="zsseg_rt and its _C come from this build folder")
    imp.add_argument("--build", required=True)
    imp.add_argument("--require-cuda", action="store_true")
    imp.set_defaults(func=import_check)
    gtest = sub.add_parser("gtest-verdict", help="a GoogleTest XML report: failures, tests that did not run")
    gtest.add_argument("--xml", required=True)
    gtest.add_argument("--cuda", action="store_true", help="the CUDA tests must have run (not skipped: no device)")
    gtest.set_defaults(func=verdict)
    san = sub.add_parser("sanitizer-verdict", help="compute-sanitizer's summaries in a log (and the test report)")
    san.add_argument("--log", required=True)
    san.add_argument("--xml")
    san.add_argument("--cuda", action="store_true")
    san.set_defaults(func=verdict)
    probe = sub.add_parser("probe-verdict", help="the probe's JSON report: there, whole, complete")
    probe.add_argument("--json", required=True)
    probe.set_defaults(func=verdict)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
