"""CI's rehearsal of the acceptance run: the plan's commands (checks/gpu_stages.py: PLAN, each a `--stage A,B,C`
call as the device tool makes it) on a fake bare machine, from artefacts
made once by tools/gpu_artifacts.sh (in its cheap form for CI, seconds instead of minutes: it packs this
environment's zsseg_rt as the wheel, a small GoogleTest stand-in for the C++ tests and wheels repacked from this
environment, then checks sizes and libraries and writes the manifest as for a real build), in a copy of the checkout
as the device tool sends it (no .git) with only the carried folder beside it. It proves that no stage builds anything (cmake, nvcc, ninja, make and the compilers refuse and log
every call; pip installs only wheels), that each stage installs and imports the carried wheel (not the checkout, not
this environment's zsseg_rt), runs its steps and writes its run record with the coverage hash of the tree it ran on,
that each command leaves at most the 8 files the device tool brings back, that stale or tampered artefacts are
refused before anything runs, and that the 64 MiB limit refuses an oversized carry (the session's build is the
control).

No GPU here: every step that needs CUDA fails, with its reason, and so does every stage; what passes is the plumbing.
Skipped on the GPU machine itself (ZSSEG_NO_BUILD: it would build the artefacts there)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import gpu_fakes
import pytest
from support import NO_BUILD, NO_BUILD_REASON, import_from_checkout

pytestmark = pytest.mark.skipif(NO_BUILD, reason=NO_BUILD_REASON)

REPO = gpu_fakes.REPO
HIDDEN = ("ftfy", "wcwidth", "open_clip_torch")  # what the GPU image lacks: carried as wheels
# What the GPU image has in another version than CI (the H200's pytest 9.1.1): here a package that refuses to be
# imported, so a stage's pytest steps pass only on the test tools the stage carries (checks/_harness.py)
OTHER = {"pytest": "9.1.1"}


def _artifacts_command(out: Path, prebuilt: dict, pywheels: Path, build: Path) -> list:
    command = ["bash", str(REPO / "tools" / "gpu_artifacts.sh"), "--out", str(out), "--python", sys.executable]
    command += ["--wheel", str(prebuilt["wheel"]), "--cpp-tests", str(prebuilt["cpp"])]
    return command + ["--pywheels", str(pywheels), "--build-dir", str(build), "--allow-dirty"]


def _run(command, env=None, timeout=1500) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """The artefacts (built once: the real script, cheap configuration), the device copy and the fake machine."""
    root = tmp_path_factory.mktemp("gpu_rehearsal")
    if shutil.which("g++") is None or not Path("/usr/lib/x86_64-linux-gnu/libgtest.a").is_file():
        pytest.skip("the C++ stand-in needs g++ and Debian's libgtest-dev (tools/setup_env.sh installs it)")
    prebuilt = {"wheel": gpu_fakes.env_wheel(root), "cpp": gpu_fakes.standin_cpp_tests(root)}
    pywheels = root / "pywheels"
    pywheels.mkdir()
    for name in (*HIDDEN, *gpu_fakes.load_check("_harness").HARNESS):  # the test tools too, at their pins
        gpu_fakes.repack(name, pywheels)
    gpu_fakes.fake_wheel(pywheels, "numpy", "99.0")  # the machine has these: never to be installed from the carry
    gpu_fakes.fake_wheel(pywheels, "torch", "99.0")
    env = dict(os.environ, ZSSEG_VENV=str(Path(sys.executable).parent.parent))
    t0 = time.monotonic()
    built = _run(_artifacts_command(root / "artifacts", prebuilt, pywheels, root / "build"), env=env)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    print(f"artefacts built in {time.monotonic() - t0:.0f} s")
    tree = gpu_fakes.device_copy(root / "tree", root / "artifacts")
    coverage = gpu_fakes.load_check("gpu_artifacts").coverage(tree)  # the copy's, before anything ran in it
    tools = gpu_fakes.fake_tools(root / "bin")
    python = gpu_fakes.bare_python(root / "py", hide=HIDDEN, other=OTHER)
    return {"root": root, "tree": tree, "tools": tools, "python": python, "built": built, "pywheels": pywheels,
            "prebuilt": prebuilt, "env": env, "coverage": coverage}  # fmt: skip


def _command(machine, stages: str, *args: str, tree: Path = None, name: str = "") -> tuple:
    """Runs one command (``stages``: "A,B,C", as `--stage` takes them) on the fake machine from the device copy;
    returns (process, {stage: its record}, every file left in the record folder: what the device tool brings back)."""
    tree = tree or machine["tree"]
    records = machine["root"] / "records" / (name or stages.replace(",", "_"))
    env = gpu_fakes.machine_env(machine["tools"], machine["python"], ZSSEG_GPU_CHECK_REHEARSAL=gpu_fakes.REHEARSAL)
    command = [
        "bash",
        str(tree / "tools" / "gpu_check.sh"),
        "--stage",
        stages,
        "--artifacts",
        str(tree / "gpu_artifacts"),
    ]
    command += ["--out", str(machine["root"] / "out"), "--record-dir", str(records), *args]
    run = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=1200)
    found = {}
    for stage in stages.split(","):
        written = sorted(records.glob(f"rehearsal_*_{stage}.json"))
        assert written, f"no record of {stage}:\n{run.stdout[-4000:]}\n{run.stderr[-3000:]}"
        found[stage] = json.loads(written[-1].read_text())
    return run, found, sorted(p.relative_to(records).as_posix() for p in records.rglob("*") if p.is_file())


def _only(tree: Path, *keep: str) -> list:
    """pytest arguments that collect nothing of python_tests but ``keep`` (folders, top-level test files or a
    folder's test files): the rehearsal runs each stage's pytest command as the GPU machine would, on cheap tests."""
    tests = tree / "python_tests"
    tops = {k.partition("/")[0] for k in keep}
    inner = {k.partition("/")[0]: [] for k in keep if "/" in k}
    for k in keep:
        if "/" in k:
            inner[k.partition("/")[0]].append(k.partition("/")[2])
    children = [e for e in sorted(tests.iterdir()) if e.is_dir() or (e.name.startswith("test_") and e.suffix == ".py")]
    args = [f"--ignore={e}" for e in children if e.name not in tops]
    for top, files in inner.items():
        args += [f"--ignore={e}" for e in sorted((tests / top).glob("test_*.py")) if e.name not in files]
    return args


def _steps(record: dict) -> dict:
    return {s["name"]: s for s in record["steps"]}


def _logged(machine, record: dict, member: str) -> str:
    """A file of a record's logs tarball (beside the record, in its command's record folder)."""
    tarball = next((machine["root"] / "records").rglob(record["logs"]["file"]))
    with tarfile.open(tarball) as tar:
        return tar.extractfile(member).read().decode(errors="replace")


def _setup_ran(record: dict, machine) -> None:
    steps = _steps(record)
    assert steps["artifacts"]["rc"] == 0 and steps["install"]["rc"] == 0, record
    # the command's first stage installs the site, the others reuse it (tools/gpu_check.sh setup: issue 86 item 6)
    if "python_deps" in steps:
        assert steps["python_deps"]["rc"] == 0, record
    else:
        logged = _logged(machine, record, "logs/install.log")
        assert logged.startswith("reused: ") and " of this command installed it from " in logged, logged
    # no CUDA on this machine: the import check fails, naming the wheel it imported (not the checkout's zsseg_rt)
    assert steps["import"]["rc"] == 1 and "CUDA is not usable by this build" in "\n".join(steps["import"]["tail"])
    manifest = machine["tree"] / "gpu_artifacts" / "manifest.json"
    assert record["artifacts"]["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert record["rehearsal"] == gpu_fakes.REHEARSAL and record["machine"]["gpu"].startswith("Fake GPU")
    assert record["tree"] == {"build_inputs_match": True, "tests_match": True, "tests_differing": []}
    # the test tools ahead of the image's other pytest, and each pinned package's version on the image beside its pin
    notes = "\n".join(record["notes"])
    assert "harness: installed pytest 9.2.0" in notes and "(ahead of the image's 9.1.1)" in notes, notes
    assert (
        "version: pytest 9.1.1 on the image; pinned ==9.2.0 (requirements.txt); the stage runs the carried 9.2.0"
        in notes
    )
    assert "version: torch " in notes and "pinned ==" in notes


# The cheap tests each pytest stage runs here, by command of the plan (one --pytest-args per command: it is appended
# to every pytest step of the command; each stage's own targets already leave out the other stages' pieces)
CHEAP = {
    "ops": ("pipeline", "test_rescaled_size_matches_mmcv_formula"),
    "models": ("vocabulary", "test_one_rule_for_the_same_name"),
    "suite": ("cli/test_cli_help.py", "test_version"),
    "sanitizers": (
        "ops/test_stream_order_cuda.py",
        "test_out_on_cuda_is_written_in_place_and_equals_the_allocating_call",
    ),
}


def test_the_plans_commands_run_from_the_carried_artefacts(machine):
    """Each command of the plan, its stages in one invocation as the device tool runs them, from a bare work folder
    per stage: the records say what ran, what failed for want of a GPU, the coverage hash of the tree they ran on
    (computed once, before the first stage); nothing was built; each command left at most 8 files."""
    gpu_record, gpu_stages = gpu_fakes.load_check("gpu_record"), gpu_fakes.load_check("gpu_stages")
    tree = machine["tree"]
    records = {}
    calls = gpu_fakes.load_check("gpu_plan").lease_plan()
    assert [c["stages"] for c in calls] == [list(c) for c in gpu_stages.PLAN]
    for call in calls:
        cheap = [CHEAP[s] for s in call["stages"] if s in CHEAP]
        selection = " or ".join(name for _, name in cheap)
        # the ops step on two xdist workers, as every stage runs (--dist loadgroup is the stage's own): what only a
        # worker runs (conftest.py's groups hook) is exercised here; the other steps in-process (-n 0: cheap)
        workers = "2" if "ops" in call["stages"] else "0"
        args = ["-n", workers, "-k", f"'{selection}'", *_only(tree, *(keep for keep, _ in cheap))]
        run, found, files = _command(machine, ",".join(call["stages"]), "--pytest-args", " ".join(args))
        assert run.returncode == 1, run.stdout[-3000:]  # no GPU: no stage passes
        assert len(files) <= gpu_stages.FILES_PER_COMMAND and len(files) <= call["files"], files
        assert len(files) == 2 * len(call["stages"]), files  # each stage's record and logs (the probe's packed)
        installed = [s for s in call["stages"] if "python_deps" in _steps(found[s])]
        assert installed == call["stages"][:1], (call["stages"], installed)  # once per command, by its first stage
        records.update(found)
    assert gpu_fakes.build_calls(machine["tools"]) == [], "a stage called a build tool"
    for stage in gpu_stages.STAGES:
        record = records[stage.name]
        assert record["stage"] == stage.name and record["budget_s"] == stage.budget_s and record["status"] == "fail"
        _setup_ran(record, machine)
        assert gpu_record.refusal(record).startswith("a rehearsal"), "a rehearsal must never be committed"
        assert record["coverage"]["sha256"] == machine["coverage"][stage.name]["sha256"], stage.name
        assert record["coverage"]["built_sha256"] and record["logs"]["sha256"]
    engine = _steps(records["engine"])
    assert "no usable CUDA device" in "\n".join(engine["engine"]["tail"]) and engine["engine_targets"]["rc"] == 1
    assert engine["cpp"]["rc"] == 0 and engine["cpp"]["tests"]["passed"] == 2  # the carried C++ tests ran ...
    assert "FAIL: did not run: StandInCuda.MatchesCpu (no CUDA device" in "\n".join(engine["cpp_cuda_ran"]["tail"])
    assert engine["bench"]["rc"] != 0 and engine["bench_targets"]["rc"] == 1
    probe = _steps(records["probe"])
    if not (REPO / "checks" / "gpu_probe.py").is_file():  # until the probe lands: a failed step that says why
        assert probe["probe"]["rc"] == 1 and "NO PROBE: checks/gpu_probe.py" in "\n".join(probe["probe"]["tail"])
    else:  # its stand-in parts here: its JSON into the record, its files into the logs (the folder is gone)
        assert probe["probe"]["rc"] == 0 and probe["probe_report"]["rc"] == 0, probe
        assert records["probe"]["probe"]["dry_run"] is True and records["probe"]["probe"]["complete"] is True
        assert "probe/probe.json" in records["probe"]["probe_files"]
    assert records["probe"]["status"] == "fail"  # no GPU: the import check failed
    for stage, piece in (("ops", "ops"), ("models", "models"), ("suite", "export")):
        step = _steps(records[stage])[f"pytest:{','.join(gpu_stages.pieces_of(gpu_stages.stage(stage)))}"]
        assert step["rc"] == 0 and step["tests"]["passed"] == 1, step
        assert any(f.startswith("pytest -k ") for f in records[stage]["filters"])  # a rehearsal's selection: partial
        assert all(v == "absent" for v in records[stage]["must_run"].values())
    assert records["models"]["deselected"]["marker"] == "not host_only"
    assert "bringing up nodes..." in _logged(machine, records["ops"], "logs/pytest_ops.log")  # xdist's workers ran
    assert "pytest==9.1.1" in _logged(machine, records["ops"], "logs/pip_freeze.txt")  # the image's, not the stage's
    sanitizers = _steps(records["sanitizers"])
    assert [n for n in sanitizers if n not in ("artifacts", "install", "python_deps", "import")] == [
        "memcheck_cpp", "memcheck_cpp_verdict", "racecheck_cpp", "racecheck_cpp_verdict",
        "synccheck_cpp", "synccheck_cpp_verdict", "memcheck_pytest", "memcheck_pytest_verdict",
    ]  # fmt: skip
    assert sanitizers["memcheck_cpp_verdict"]["rc"] == 1  # the CUDA tests did not run under it
    assert sanitizers["memcheck_pytest"]["rc"] == 0 and sanitizers["memcheck_pytest_verdict"]["rc"] == 0
    # ... but its one test skipped for want of a GPU: that fails the stage on a GPU machine
    assert sanitizers["memcheck_pytest"]["tests"]["gpu_skips"], sanitizers["memcheck_pytest"]["tests"]


def test_stale_or_tampered_artefacts_stop_a_stage_before_it_runs(machine, tmp_path):
    """A build input changed after the build (the wheel would test other code) and a carried file changed: the stage
    records what is missing and runs none of its steps. The control is the test above (the same copy verifies)."""
    tree = gpu_fakes.device_copy(tmp_path / "tree", machine["tree"] / "gpu_artifacts")
    source = tree / "csrc" / "cuda" / "upsample.cu"
    source.write_text(source.read_text() + "\n// changed after the build\n")
    (tree / "gpu_artifacts" / "pywheels" / "numpy-99.0-py3-none-any.whl").write_bytes(b"tampered")
    run, found, _ = _command(machine, "ops", tree=tree, name="stale")
    record = found["ops"]
    assert run.returncode == 1 and record["status"] == "missing prerequisite"
    missing = "\n".join(record["missing"])
    assert "build inputs differ" in missing and "changed: csrc/cuda/upsample.cu" in missing
    assert "pywheels/numpy-99.0-py3-none-any.whl differs from its manifest entry" in missing
    assert [s["name"] for s in record["steps"]] == ["artifacts"]


def test_the_size_limit_refuses_an_oversized_carry(machine, tmp_path):
    """64 MiB for the working tree and the carry together: 40 MiB more of wheels is refused before anything is
    built, with the sizes, and the artefacts folder is left as it was. The control: the session's build passed the
    same check (its sizes are printed, under the limit)."""
    assert "of the device tool's 64 MiB" in machine["built"].stdout
    heavy = tmp_path / "pywheels"
    heavy.mkdir()
    for wheel in machine["pywheels"].iterdir():
        (heavy / wheel.name).write_bytes(wheel.read_bytes())
    (heavy / "ballast-1.0-py3-none-any.whl").write_bytes(os.urandom(40 * 1024 * 1024))
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / "manifest.json").write_text('{"the previous artefacts": true}')
    refused = _run(_artifacts_command(out, machine["prebuilt"], heavy, tmp_path / "build"), env=machine["env"])
    assert refused.returncode == 1, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert (
        "exceed the device tool's 64 MiB" in refused.stderr
        and "ballast-1.0-py3-none-any.whl 40.0 MiB" in refused.stderr
    )
    assert "refused before building" in refused.stderr and "== the manifest" not in refused.stdout
    assert [p.name for p in out.iterdir()] == ["manifest.json"] and "previous" in (out / "manifest.json").read_text()
    # a folder that is not earlier artefacts is never replaced (--out docs would have deleted docs/)
    (out / "manifest.json").unlink()
    (out / "notes.md").write_text("not artefacts")
    kept = _run(
        _artifacts_command(out, machine["prebuilt"], machine["pywheels"], tmp_path / "build"), env=machine["env"]
    )
    assert kept.returncode == 1 and "holds no manifest.json: not replacing" in kept.stderr
    assert [p.name for p in out.iterdir()] == ["notes.md"]


def test_the_carried_binaries_need_only_system_libraries(machine):
    """Debian's libgtest is static and the CUDA runtime static: the manifest lists each binary's libraries."""
    gpu_artifacts = import_from_checkout("checks.gpu_artifacts")
    manifest = json.loads((machine["tree"] / "gpu_artifacts" / "manifest.json").read_text())
    needed = {lib for facts in manifest["binaries"].values() for elf in facts.values() for lib in elf["needed"]}
    assert needed and needed <= gpu_artifacts.ALLOWED_NEEDED, needed
    assert any(name.startswith("cpp/") for name in manifest["binaries"])
    # the control: a binary that needs a library beyond the system's is refused (Python's own _ssl: libssl)
    ssl = Path(__import__("_ssl").__file__)
    target = machine["root"] / "control" / "cpp"
    target.mkdir(parents=True)
    (target / "zsseg_cpp_tests").write_bytes(ssl.read_bytes())
    facts, problems = gpu_artifacts.binary_facts(target.parent, "cpp/zsseg_cpp_tests")
    assert problems and "libssl" in problems[0] and "may lack" in problems[0]
