"""The GPU probe's plumbing (checks/gpu_probe.py), on the CPU in seconds: parts in child processes under their time
bounds and the budget, probe.json rewritten before and after every part (a cut keeps what finished), a part that
raises recorded with its traceback head and followed by the next, a part cut at its bound keeping what it measured,
and every part that needs CUDA saying "skipped: no CUDA" where there is none, never "ok". The stand-in parts
(``--dry-run``) import no torch; the real parts' table is checked without running them.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def probe():
    """``checks.gpu_probe`` of this checkout (its root at the END of sys.path while importing, as tools/gpu_check.sh's
    launcher has it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "path", [*sys.path, str(ROOT)])
        return importlib.import_module("checks.gpu_probe")


def _run(tmp_path, *args, timeout=60):
    command = [sys.executable, "-m", "checks", "gpu_probe", "--dry-run", "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [*command, "--work", str(tmp_path / "work"), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((tmp_path / "out" / "probe.json").read_text()), done.stdout


def test_each_part_is_bounded_and_recorded_and_a_failure_does_not_stop_the_next(tmp_path):
    report, stdout = _run(tmp_path)
    parts = {p["id"]: p for p in report["parts"]}
    assert [p["id"] for p in report["parts"]] == ["D1", "D2", "D3", "D4", "D5"] and report["complete"] is True
    assert parts["D1"]["status"] == "ok" and parts["D1"]["measured"] == {"value_ms": 1.5}
    failed = parts["D2"]
    assert failed["status"] == "failed" and failed["error"]["type"] == "ValueError"
    assert failed["error"]["message"] == "a part that raises" and failed["measured"] == {"before_ms": 0.5}
    assert any("dry_raises" in line for line in failed["error"]["traceback_head"])
    cut = parts["D3"]  # sleeps 600 s under a 2 s bound: killed, what it recorded before kept
    assert cut["status"] == "timeout" and cut["measured"] == {"first_ms": 1.0} and cut["seconds"] < 30
    assert parts["D4"]["status"] == "skipped" and parts["D4"]["reason"].startswith("no CUDA")
    assert parts["D5"]["status"] == "skipped" and parts["D5"]["reason"] == "the tool it needs is not installed"
    assert all(p["machine"] and p["what"] for p in report["parts"])
    assert "units" in report and report["machine"]["cuda"] is False
    # at most two files besides probe.json: here the output tails (no ncu report without ncu)
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["probe.json", "probe_log.txt"]
    assert "D2 raises: failed" in stdout


def test_the_budget_skips_what_no_longer_fits_and_parts_run_in_the_order_asked(tmp_path):
    report, _ = _run(tmp_path, "--parts", "D5,D3,D1", "--budget", "7.5")  # 2.5 s once the 5 s margin is kept
    assert [(p["id"], p["status"]) for p in report["parts"]] == [
        ("D5", "skipped"),
        ("D3", "timeout"),
        ("D1", "skipped"),
    ]
    assert report["parts"][2]["reason"].startswith("budget:")
    assert report["parts"][1]["bound_s"] <= 2.5


def test_probe_json_is_written_before_and_after_every_part(probe, tmp_path, monkeypatch):
    """What probe.json held when each part started: every earlier part's record, and this part as running (a cut
    of the lease then keeps what finished)."""
    seen = []

    def launch(part, bound, work, out, device, dry_run, log):
        seen.append((part.id, json.loads((out / "probe.json").read_text())))
        log.write_text("")
        return {"status": "ok", "measured": {}, "seconds": 0.0}

    monkeypatch.setattr(probe, "_launch", launch)
    probe.run_probe(tmp_path / "out", tmp_path / "work", 60, "cuda", ["D1", "D2", "D5"], dry_run=True,
                    machine={"cuda": True, "gpu": "stand-in"})  # fmt: skip
    assert [part for part, _ in seen] == ["D1", "D2", "D5"]
    for index, (part, written) in enumerate(seen):
        assert [(p["id"], p["status"]) for p in written["parts"]] == [(p, "ok") for p, _ in seen[:index]] + [
            (part, "running")
        ]
        assert written["complete"] is False
    final = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert final["complete"] is True and [p["machine"] for p in final["parts"]] == ["stand-in"] * 3


@pytest.mark.parametrize(
    "machine, device, why",
    [({"cuda": False, "cuda_reason": "torch.cuda.is_available() is False"}, "cuda", "torch.cuda.is_available"),
     ({"cuda": True, "gpu": "a GPU"}, "cpu", "--device cpu")],
)  # fmt: skip
def test_every_real_part_that_needs_cuda_says_so_without_it_and_never_runs(probe, tmp_path, monkeypatch, machine,
                                                                           device, why):  # fmt: skip
    monkeypatch.setattr(probe, "_launch", lambda *a, **k: pytest.fail("a part that needs CUDA was started"))
    cuda_parts = [p for p in probe.ORDER if probe.PARTS[p].needs_cuda]
    assert set(probe.ORDER) - set(cuda_parts) == {"P2"}  # the export alone runs on a CPU
    report = probe.run_probe(tmp_path / "out", tmp_path / "work", 280, device, cuda_parts, machine=machine)
    assert [p["id"] for p in report["parts"]] == cuda_parts
    for part in report["parts"]:
        assert part["status"] == "skipped" and part["reason"].startswith("no CUDA") and why in part["reason"], part


def test_the_real_parts_table(probe):
    parts = importlib.import_module("checks._gpu_probe_parts")
    assert sorted(probe.ORDER) == sorted(p for p in probe.PARTS if p != "P0")
    for part in probe.PARTS.values():
        assert callable(getattr(parts, part.function)), part.function
        assert 0 < part.min_s <= part.bound_s <= 150
    # the default budget is the lease plan's (at most 5 device minutes with the starts of the children)
    assert probe.DEFAULT_BUDGET_S <= 300


def test_an_unknown_part_is_refused(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "checks", "gpu_probe", "--dry-run", "--parts", "D1,P9", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "unknown part(s) ['P9']" in done.stderr
