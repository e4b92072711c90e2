"""The lease plan's arithmetic (issue 72 item 5, "a plan with room"; checks/gpu_stages.py, checks/gpu_plan.py,
checks/gpu_probe.py), without a device and without timing anything: with a 120-s start the acceptance takes at most
11 minutes, so that one stage can be rerun in the same 15-minute lease; every stage, the engine's included, is in
the acceptance (issue 78 item 6), and a stage deferred by the rule (none now) would run in that room; the probe's parts all start within their stage's budget, each with its time +
20 % left, so none is cut at its bound; and the check before a lease (the SASS of the bit-exact temporal kernels) is
on the plan's checklist. Each rule with a control that breaks it."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import pytest
from gpu_fakes import load_check

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stages():
    return load_check("gpu_stages")


@pytest.fixture(scope="module")
def plan():
    return load_check("gpu_plan")


@pytest.fixture(scope="module")
def probe():
    return load_check("gpu_probe")


def _script_value(name: str) -> int:
    return int(re.search(rf"^{name}=(\d+)", (REPO / "tools" / "gpu_check.sh").read_text(), re.M).group(1))


# ---- the acceptance within 11 minutes, one stage's rerun in the rest ------------------------------------------------
def test_the_acceptance_takes_at_most_11_minutes_with_a_120_s_start(stages):
    """Start 120 s, 15 s before each later command, each stage's expected seconds: at most 660 s. The 240 s and more
    left of the 900-s lease hold one more command with any one stage even at its full budget and overhead (the worst
    a stage can take before tools/gpu_check.sh stops it). Every stage is in the acceptance, the engine, the ops and
    the probe first, in at most three commands (two: one gap less); each command within the device tool's 10 minutes
    and 8 files."""
    assert (stages.LEASE_S, stages.START_ALLOWANCE_S, stages.PLAN_LIMIT_S) == (900, 120, 660)
    assert stages.PLAN[0] == ("engine", "ops", "probe") and stages.DEFERRED == {}
    commands = stages.acceptance()
    assert commands == [["engine", "ops", "probe"], ["models", "suite", "sanitizers"]] and len(commands) <= 3
    assert {n for command in commands for n in command} == {s.name for s in stages.STAGES}
    seconds = stages.START_ALLOWANCE_S + stages.COMMAND_GAP_S * (len(commands) - 1)
    seconds += sum(stages.stage(name).expected_s for command in commands for name in command)
    sums = stages.lease_arithmetic()
    assert sums["seconds"] == seconds == stages.plan_seconds(commands) <= 660
    assert sums["room_s"] == 900 - seconds >= 240
    worst = max(s.budget_s + stages.STAGE_OVERHEAD_S for s in stages.STAGES)
    assert sums["room_s"] >= stages.COMMAND_GAP_S + worst  # any one stage, at its full budget
    assert sums["room_s"] >= stages.COMMAND_GAP_S + max(s.expected_s for s in stages.STAGES)
    assert sums["rerun_fits_at_budget"] == [s.name for s in stages.STAGES]
    for command in stages.PLAN:
        found = [stages.stage(n) for n in command]
        assert stages.command_timeout(found) <= 600 and sum(stages.files_of(s) for s in found) <= 8
    assert stages.plan_problems() == [] and stages.problems() == []


def test_the_stages_expect_estimates_from_the_h200_records_and_say_so(stages):
    """Each stage's expectation comes from its record of the H200 lease at 7f842ed (2026-11-28, docs/gpu_runs/): the
    ops, models and suite stages their records' own seconds; the engine (new steps since: issue 86), the probe (its
    parts refitted, P7's graphs new) and the sanitizers (their two records timed out; the child-process tests
    deselected since) an estimate that says so ("est.") and names that lease's record it starts from; with every
    record as it is, the calibration passes; an estimate below a record of the stage as defined now is refused
    unless it names that record (the control)."""
    records = {p.name: json.loads(p.read_text()) for p in stages.RUNS.glob("*.json")}
    lease = {r["stage"]: name for name, r in records.items() if name.startswith("2026-11-28T17")}
    assert set(lease) == {s.name for s in stages.STAGES}, lease  # every stage ran in the lease of 7f842ed
    for stage in stages.STAGES:
        record = records[stage.measured]
        assert record["stage"] == stage.name and "_nvidia-h200_" in stage.measured, stage.name
        if stage.expected_from.startswith("est."):
            assert any(name.split("_")[0] in stage.expected_from for name in (stage.measured, lease[stage.name])), (
                stage.name
            )
        else:
            assert stage.measured == lease[stage.name] and stage.expected_s >= record["seconds"], stage.name
    assert stages.calibration_problems() == []
    # the control: the engine (its record is of the stage as defined now) expecting less than its record took is
    # refused, unless its estimate names that record (and so says why)
    engine, table = stages.stage("engine"), stages.STAGES
    latest = max((name for name, r in records.items() if r["stage"] == "engine"
                  and (r.get("coverage") or {}).get("definition_sha256") == stages.definition_sha256(engine)),
                 key=lambda name: records[name].get("finished", ""))  # fmt: skip
    for expected_from, refused in (("est.: faster now", True), (f"est.: faster than {latest}: ...", False)):
        fewer = stages.Stage(**{**engine.__dict__, "expected_s": 100, "expected_from": expected_from})
        try:
            stages.STAGES = tuple(fewer if s.name == "engine" else s for s in table)
            found = [p for p in stages.calibration_problems() if p.startswith("engine:")]
        finally:
            stages.STAGES = table
        assert found == (
            [
                f"engine: its latest record as defined now took {records[latest]['seconds']} s, the plan "
                "expects 100 s: raise expected_s and refit the plan"
            ]
            if refused
            else []
        )


def test_a_deferred_stage_due_runs_in_the_room_which_says_precisely_which_rerun_fits(stages, plan, engine_deferred):
    """The rule kept for a stage the acceptance cannot hold (none now): the engine deferred as it was and due
    (post-processing changed), it runs as a third command in the room; the lease then holds the acceptance, the
    engine, and one rerun of exactly the stages whose gap and expected seconds fit what is left, which the plan
    names."""
    engine = stages.stage("engine")
    whole = stages.lease_arithmetic(stages.PLAN, due=["engine"])
    first = stages.lease_arithmetic(stages.PLAN)
    assert whole["commands"][-1] == ["engine"]
    assert whole["seconds"] == first["seconds"] + stages.COMMAND_GAP_S + engine.expected_s <= stages.LEASE_S
    fits = [s.name for s in stages.STAGES if stages.COMMAND_GAP_S + s.expected_s <= whole["room_s"]]
    assert whole["rerun_fits"] == fits and fits  # at least one stage can still be rerun
    calls = plan.lease_plan({})
    text = plan.plan_text(calls, {}, {"engine": "changed since its latest record"})
    assert f"then {whole['seconds']} s in all, {whole['room_s']} s left: a rerun of one of {', '.join(fits)}" in text
    assert "# command 3 (the rerun room): engine" in text


def test_a_plan_over_11_minutes_or_without_room_is_refused(stages, monkeypatch):
    """The controls: a stage 10 s slower than what the acceptance has left; a stage whose budget no longer fits the
    room; the engine so slow that with it due the lease is over."""
    assert stages.plan_problems() == []
    table = stages.STAGES
    room = stages.PLAN_LIMIT_S - stages.lease_arithmetic()["seconds"]

    def changed(name, **fields):
        monkeypatch.setattr(stages, "STAGES", tuple(stages.Stage(**{**s.__dict__, **fields}) if s.name == name else s
                                                    for s in table))  # fmt: skip

    changed("models", expected_s=stages.stage("models").expected_s + room + 10)
    assert stages.plan_problems() == [
        f"the plan expects {stages.PLAN_LIMIT_S + 10} s with the start, over its 660 s of the 900 s lease"
    ]
    changed("models", budget_s=230)  # within the 10 minutes with its command, not within the room
    room_s = stages.LEASE_S - stages.lease_arithmetic()["seconds"]
    assert stages.plan_problems() == [f"the rerun room ({room_s} s) holds no rerun of models at its budget"]
    monkeypatch.setattr(stages, "STAGES", table)
    monkeypatch.setattr(stages, "DEFERRED", {"engine": "deferred for this test"})  # the rule kept: a deferred stage
    changed("engine", expected_s=400)
    assert "the plan with engine due expects" in stages.plan_problems()[-1]
    monkeypatch.setattr(stages, "DEFERRED", {})
    assert stages.plan_problems()[0].startswith("the plan expects ")  # in the acceptance, the same engine is over


# ---- the probe: every part starts with its time + 20 % left ----------------------------------------------------------
def test_the_probe_runs_every_part_within_its_stage_budget(stages, probe):
    """The probe gets its stage's budget less the stage's setup (5 s in the H100's probe record) and the script's
    reserve (10 s); within that every part of ORDER starts even when each takes 20 % longer than its time, and each
    starts with at least its time + 20 % left, so its bound never cuts it (P3's 40-s min_s under its 42.9 s made the
    stage fail at cf77cf4's rule). The stage expects what its parts take."""
    record = json.loads((stages.RUNS / stages.stage("probe").measured).read_text())
    setup = sum(s["seconds"] for s in record["steps"] if s["name"] in ("artifacts", "install", "python_deps", "import"))
    assert setup == 6  # the H200's probe record at 7f842ed (3 s at b235fde, 5 s in the H100's at cf77cf4)
    budget = stages.stage("probe").budget_s - setup - _script_value("PROBE_RESERVE")
    for pace in (1.0, 1.2):
        rows = probe.schedule(probe.ORDER, budget, pace=pace)
        assert all(row["starts"] for row in rows), rows
    for row in probe.schedule(probe.ORDER, budget):
        part = probe.PARTS[row["id"]]
        assert row["left_s"] >= part.min_s >= part.seconds * 1.2
    # in the plan the probe is not its command's first stage: it reuses the command's site (no install, no pip)
    first = next(c for c in stages.PLAN if "probe" in c)[0] == "probe"
    reused = sum(s["seconds"] for s in record["steps"] if s["name"] in (() if first else ("install", "python_deps")))
    assert stages.stage("probe").expected_s >= math.ceil(setup - reused + probe.expected_seconds(probe.ORDER))
    # the control: the budget of cf77cf4's probe (150 s) for every part there is now cuts the last ones
    assert not all(r["starts"] for r in probe.schedule(probe.ORDER + probe.EXTRA_ORDER, 150))


def test_no_probe_part_re_measures_the_engine_stage(probe):
    """The engine stage times the fp16/bf16 frame graphs with post-processing inside them and each op's host time;
    the probe's acceptance parts measure none of it (P4 gone, P3 its gates only, P1 an extra)."""
    assert "P4" not in probe.PARTS and "P1" in probe.EXTRA_ORDER and "P3" in probe.EXTRA_ORDER
    source = (REPO / "checks" / "_gpu_probe_parts.py").read_text()
    gates = source.split("def part_precisions(", 1)[1].split("\ndef ", 1)[0]
    assert "torch_engine" not in gates and "time_engine" not in source and "encoder_floor" not in source


# ---- the rule kept for a deferred stage (none now): the engine deferred until what it failed on changes -------------
_DEFERRED_ENGINE = (
    "re-measures a known, deterministic failure until what it failed on changes (post-processing, similarity, "
    "upsample, or the check itself: checks/gpu_plan.py ENGINE_TRIGGERS)"
)


@pytest.fixture
def engine_deferred(stages, plan, monkeypatch):
    """The plan as it was with the engine deferred (issue 72 item 5): the rule gpu_plan keeps for a deferred stage."""
    monkeypatch.setattr(stages, "DEFERRED", {"engine": _DEFERRED_ENGINE})
    monkeypatch.setattr(plan, "DEFERRED", stages.DEFERRED)
    monkeypatch.setattr(stages, "PLAN", (("ops", "probe"), ("models", "suite", "sanitizers"), ("engine",)))
    monkeypatch.setattr(plan, "PLAN", stages.PLAN)


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def test_the_engine_is_due_only_when_what_it_failed_on_changed(plan, tmp_path, engine_deferred):
    """Against the commit its latest record ran: another file changed, not due; a post-processing source changed
    (committed or not), or a new one untracked, due and named; no record, or one without a commit, due."""
    root, runs = tmp_path / "repo", tmp_path / "runs"
    (root / "csrc" / "cuda").mkdir(parents=True)
    runs.mkdir()
    (root / "csrc" / "cuda" / "segment_windows_tiled.cu").write_text("// v1\n")
    (root / "README.md").write_text("v1\n")
    _git(root, "init", "-q")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v1")
    assert plan.engine_due(runs, root)[0] and "never ran" in plan.engine_due(runs, root)[1]
    record = {
        "stage": "engine",
        "finished": "2026-11-26T17:42:05+00:00",
        "artifacts": {"commit": _git(root, "rev-parse", "HEAD")},
    }
    (runs / "2026-11-26T174205_h100_engine.json").write_text(json.dumps(record))
    (root / "README.md").write_text("v2\n")
    due, why = plan.engine_due(runs, root)
    assert not due and why.startswith("re-measures a known, deterministic failure") and "2026-11-26T174205" in why
    (root / "csrc" / "cuda" / "segment_windows_variant.cuh").write_text("// new\n")
    assert plan.engine_due(runs, root) == (
        True, f"changed since its latest record 2026-11-26T174205_h100_engine.json (at {record['artifacts']['commit'][:7]}): "
        "csrc/cuda/segment_windows_variant.cuh")  # fmt: skip
    (root / "csrc" / "cuda" / "segment_windows_variant.cuh").unlink()
    (root / "csrc" / "cuda" / "segment_windows_tiled.cu").write_text("// v2\n")
    assert "csrc/cuda/segment_windows_tiled.cu" in plan.engine_due(runs, root)[1]
    (runs / "2026-11-26T174205_h100_engine.json").write_text(json.dumps({"stage": "engine"}))
    assert plan.engine_due(runs, root) == (
        True,
        "its latest record 2026-11-26T174205_h100_engine.json names no commit to compare with",
    )


def test_the_plan_runs_every_stage_and_would_defer_by_the_rule(plan, monkeypatch, capsys, engine_deferred):
    """`gpu_plan` with the engine deferred by the rule: not due, it is named as deferred and the acceptance is the two
    commands; due, it is the third command, in the room, with why; the pre-lease SASS check heads the plan either
    way. Today nothing is deferred: every stage is in the plan's two commands, the engine in the first."""
    monkeypatch.setattr(plan, "current_passes", lambda gpu=None: {})
    monkeypatch.setattr(plan, "deferred_due", lambda: {"engine": (False, "nothing of it changed")})
    assert plan.main([]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# before the lease: python -m checks sass --contraction")
    assert "# skipped: engine (deferred: nothing of it changed)" in text and "--stage engine " not in text
    assert "# the acceptance: 2 command(s), expected" in text and "of the plan's 660 s" in text
    monkeypatch.setattr(plan, "deferred_due", lambda: {"engine": (True, "csrc/cuda/segment_windows.cu changed")})
    assert plan.main(["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["stages"] for c in out["calls"]] == [["ops", "probe"], ["models", "suite", "sanitizers"], ["engine"]]
    assert out["calls"][-1]["in_room"] and out["due"] == {"engine": "csrc/cuda/segment_windows.cu changed"}
    assert out["expected_s"] == out["arithmetic"]["acceptance"]["seconds"] <= 660
    assert out["arithmetic"]["with_due"]["seconds"] <= 900
    monkeypatch.undo()  # the table as it is: nothing deferred, nothing skipped
    monkeypatch.setattr(plan, "current_passes", lambda gpu=None: {})
    assert plan.deferred_due() == {} and plan.main(["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["stages"] for c in out["calls"]] == [["engine", "ops", "probe"], ["models", "suite", "sanitizers"]]
    assert out["due"] == {} and out["skipped"] == {} and out["expected_s"] <= 660


def test_the_plan_can_run_the_sass_check_first_and_stops_when_it_fails(plan, monkeypatch, capsys):
    calls = []

    def run(command, cwd=None, env=None):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(plan.subprocess, "run", run)
    assert plan.main(["--sass"]) == 1
    assert calls[0][-3:] == ["checks", "sass", "--contraction"]
    assert "fix the kernels before a lease" in capsys.readouterr().err
