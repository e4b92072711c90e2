"""The GPU probe's plumbing (checks/gpu_probe.py), on the CPU in seconds: parts in child processes under their time
bounds and the budget, probe.json rewritten before and after every part (a cut keeps what finished), a part that
raises recorded with its traceback head and followed by the next, a part cut at its bound keeping what it measured,
and every part that needs CUDA saying "skipped: no CUDA" where there is none, never "ok". The stand-in parts
(``--dry-run``) import no torch; the real parts' table is checked without running them.
"""

from __future__ import annotations

import importlib
import json
import math
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
    """Every part once in the acceptance's order or the extras; each one's function there; its min_s its time
    (measured on the H100, or an estimate that says so) + 20 %, within its bound; P4 and P3's graphs (the engine
    stage's measurements) gone; the stage's definition names the acceptance's parts."""
    assert sorted(probe.ORDER + probe.EXTRA_ORDER) == sorted(p for p in probe.PARTS if p != "P0")
    assert not set(probe.ORDER) & set(probe.EXTRA_ORDER) and "P4" not in probe.PARTS
    for part in probe.PARTS.values():
        assert callable(getattr(importlib.import_module(part.module), part.function)), part.function
        assert part.min_s == math.ceil(round(part.seconds * 1.2, 6)) and 0 < part.min_s <= part.bound_s <= 150, part
        assert part.source.startswith(
            ("est.", "H100 2026-11-26, record", "H200 2026-11-27, record", "H200 2026-11-28, record")
        ), part
    assert probe.PARTS["P3"].min_s >= 52  # the whole P3 measured 42.9 s: below its 40 s min_s then (the review)
    assert (probe.PARTS["P3"].seconds, probe.PARTS["P8"].seconds) == (42.9, 18.95)
    # refitted to the H200's probe at 7f842ed (record 171349): P10 6.7 s (copying P2's bundle), P9 25.4 s, P7 10.6 s
    # then (12 s est. with the graphs per batch size now); P6 the H200's 1.17 s of b235fde; P2 reuses the engine
    # stage's tiny bundle (the H100's 0.57 s), as the plan's first command runs the engine stage before the probe
    assert (probe.PARTS["P2"].seconds, probe.PARTS["P6"].seconds, probe.PARTS["P10"].seconds) == (0.6, 1.17, 6.7)
    assert probe.ORDER.index("P2") == 0 and "engine" in next(c for c in _plan_commands() if "probe" in c)
    assert probe.PARTS["P9"].seconds >= 25.4 and probe.PARTS["P7"].seconds >= 10.6
    assert "_graph_frames" not in (ROOT / "checks" / "_gpu_probe_parts.py").read_text()
    stages = importlib.import_module("checks.gpu_stages")
    assert list(stages.stage("probe").probe_parts) == probe.ORDER
    # the default budget is the lease plan's (at most 5 device minutes with the starts of the children)
    assert probe.DEFAULT_BUDGET_S <= 300


def test_the_streams_run_is_capped_at_30_s(probe):
    """P7S (the multi-source streams benchmark) is cut at 30 s whatever its part's bound (the review: P7's streams
    took what was left of the probe); P7 (the batched call) no longer runs it."""
    parts = importlib.import_module("checks._gpu_probe_parts")
    assert parts.STREAMS_CAP_S == 30 and probe.PARTS["P7S"].bound_s <= 45
    source = (ROOT / "checks" / "_gpu_probe_parts.py").read_text()
    batch = source.split("def part_batch(", 1)[1].split("\ndef ", 1)[0]
    assert "benchmarks" not in batch and "min(STREAMS_CAP_S, ctx.left()" in source


def test_an_unknown_part_is_refused(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "checks", "gpu_probe", "--dry-run", "--parts", "D1,P9", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "unknown part(s) ['P9']" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "checks", "gpu_probe", "--parts", "P4", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "unknown part(s) ['P4']" in done.stderr and "P5E" in done.stderr


@pytest.fixture(scope="module")
def video():
    """``checks._gpu_probe_video`` (P9, P10) of this checkout, as the probe's child imports it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "path", [*sys.path, str(ROOT)])
        return importlib.import_module("checks._gpu_probe_video")


def test_the_first_divergence_says_where_and_by_how_much(video):
    """P10's report when a device value differs from the CPU's: how many differ, the first index, both values with
    their bits, the largest difference in ulps, the inputs there; None when equal (NaN equal to NaN, as
    assert_array_equal); a shape or dtype mismatch said as such."""
    import numpy as np

    cpu = np.linspace(0, 1, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    cpu[0, 0, 0] = np.nan
    plane = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert video.first_divergence(cpu.copy(), cpu, {"plane": plane}) is None
    device = cpu.copy()
    device[1, 2, 1] = np.nextafter(device[1, 2, 1], np.float32(2))  # one ulp up: what an FMA's single rounding gives
    device[1, 2, 3] = np.nextafter(device[1, 2, 3], np.float32(2))
    found = video.first_divergence(device, cpu, {"plane": plane, "same": cpu * 2})
    assert found["differing"] == 2 and found["of"] == 24 and found["first_index"] == [1, 2, 1]
    assert found["max_ulps"] == 1 and 0 < found["max_abs_diff"] < 1e-6
    assert found["device"]["hex"] == float(device[1, 2, 1]).hex() != found["cpu"]["hex"]
    assert found["inputs_there"] == {"plane": [{"value": "9.0", "hex": float(9).hex()}],
                                     "same": video._value(cpu[1, 2, 1] * 2)}  # fmt: skip
    labels = np.zeros((3, 4), np.int32)
    moved = labels.copy()
    moved[2, 0] = 5
    assert video.first_divergence(moved, labels)["first_index"] == [2, 0]
    assert video.first_divergence(moved, labels)["device"] == 5
    assert "shape_or_dtype" in video.first_divergence(labels.astype(np.int64), labels)


def test_the_cpu_and_device_comparison_of_the_temporal_ops(video):
    """P10's comparison on the CPU alone (the "device" the CPU kernels again: equal, the control) and with a
    read-back that changes one value by one ulp (reported: the op, the output, where)."""
    import numpy as np

    same = video.comparisons(np.array, np.asarray, scales=(1,))
    assert sorted(same) == ["blend_x1", "hold_x1", "propagate_x1"] and all(c["equal"] for c in same.values())

    def changed(array):
        out = np.array(np.asarray(array))
        if out.dtype == np.float32 and out.ndim == 3:  # the blend's state
            out[2, 3, 4] = np.nextafter(out[2, 3, 4], np.float32(np.inf))
        return out

    found = video.comparisons(np.array, changed, scales=(1,))
    assert found["blend_x1"]["equal"] is False and found["hold_x1"]["equal"] and found["propagate_x1"]["equal"]
    state = found["blend_x1"]["divergences"]["state"]
    assert state["first_index"] == [2, 3, 4] and state["differing"] == 1 and state["max_ulps"] == 1
    assert {"current", "previous", "doubt"} <= set(state["inputs_there"])


def test_junit_outcomes_name_each_test_as_the_stage_lists_it(video, tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite><testcase classname="python_tests.ops.test_temporal_ops" name="test_cuda_matches_cpu"/>'
        '<testcase classname="python_tests.runtime.test_video_device_cuda" name="test_x[stabilize]">'
        '<failure message="AssertionError: frame 3: 12 pixels differ&#10;more">trace</failure></testcase>'
        '<testcase classname="python_tests.runtime.test_video_device_cuda" name="test_y">'
        '<skipped message="no usable CUDA device"/></testcase></testsuite></testsuites>'
    )
    assert video.junit_outcomes(xml) == {
        "python_tests/ops/test_temporal_ops.py::test_cuda_matches_cpu": "passed",
        "python_tests/runtime/test_video_device_cuda.py::test_x[stabilize]": "failed: AssertionError: frame 3: 12 "
        "pixels differ",
        "python_tests/runtime/test_video_device_cuda.py::test_y": "skipped: no usable CUDA device",
    }
    # what P10 runs: the ops stage's must-run tests of the temporal kernels and the device filter (or their file)
    ops = {test for test, _ in importlib.import_module("checks.gpu_stages").OPS_MUST_RUN}
    assert all(t in ops or any(o.startswith(t + "::") for o in ops) for t in video.MUST_RUN)
    assert {o for o in ops if "temporal" in o or "video_device" in o} <= {
        o for o in ops if any(o == t or o.startswith(t + "::") for t in video.MUST_RUN)}  # fmt: skip


def test_the_clip_the_artefacts_carry_for_live(tmp_path, monkeypatch):
    """``gpu_artifacts clip``: the first frames of a video (here a synthetic one standing in for OpenCV's vtest.avi)
    as MJPG with what it is beside it; without the sample, a synthetic clip; a source that decodes to nothing is
    refused. The probe's P9 reads it back."""
    cv2 = pytest.importorskip("cv2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "path", [*sys.path, str(ROOT)])
        artifacts = importlib.import_module("checks.gpu_artifacts")
        video = importlib.import_module("checks._gpu_probe_video")
    source = video.write_synthetic_clip(tmp_path / "source.avi", frames=12, size=(160, 120))
    info = artifacts.write_clip(tmp_path / "clips", str(source), frames=10)
    assert info["frames"] == 10 and (info["width"], info["height"]) == (160, 120)
    assert info["source"] == "the first 10 frames of source.avi"
    assert json.loads((tmp_path / "clips" / "live.json").read_text()) == info
    assert len(video._frames(tmp_path / "clips" / "live.avi", 24)) == 10
    monkeypatch.setattr(artifacts, "CLIP_SOURCES", ())
    info = artifacts.write_clip(tmp_path / "synthetic", frames=6)
    assert info["source"].startswith("synthetic") and info["frames"] == 6
    (tmp_path / "empty.avi").write_bytes(b"not a video")
    with pytest.raises(artifacts.Refused, match="no frame could be read"):
        artifacts.write_clip(tmp_path / "bad", str(tmp_path / "empty.avi"))
    assert cv2.VideoCapture(str(tmp_path / "synthetic" / "live.avi")).isOpened()


# ---- the bundle once, P9 whatever fails (the H200 run of b235fde, review section 6) ---------------------------------
def test_p2_runs_before_every_part_that_takes_its_bundle(probe):
    """P10 ran first on the H200 and its pytest run exported the tiny bundle that P2 exported again. Control: that
    order is named as a problem."""
    assert probe.order_problems(probe.ORDER) == [] and probe.ORDER[0] == "P2"
    assert set(probe.NEEDS_BUNDLE) <= set(probe.ORDER)
    assert probe.order_problems(["P10", "P2", "P9", "P7", "P6"]) == [
        "P10 runs before P2, whose bundle it takes: it would export its own"
    ]
    assert probe.order_problems(["P10", "P6"]) == []  # no P2 asked for: each exports what it needs


def _context(probe, tmp_path):
    import time

    (tmp_path / "work").mkdir(exist_ok=True)
    return probe.Context(tmp_path / "part.json", tmp_path / "work", tmp_path / "out", "cuda", time.monotonic() + 60)


@pytest.mark.parametrize("p2_ran", [True, False], ids=["after_p2", "alone"])
def test_p10s_pytest_run_copies_p2s_tiny_bundle(probe, video, tmp_path, monkeypatch, p2_ran):
    """P10 hands its pytest run P2's tiny bundle through the variable python_tests/conftest.py's tiny_bundle fixture
    reads, so the fixture copies it instead of exporting its own. Control: without P2's bundle (P10 alone) it is
    exported once, by P10 itself."""
    import numpy as np

    ctx = _context(probe, tmp_path)
    engine = importlib.import_module("checks.gpu_engine")
    bundle = ctx.work / f"{engine.TINY_CONFIG}_bundle"
    exported = []

    def export(config, out_dir, max_classes, scale_weights):  # gpu_engine._export's export without torch
        exported.append(config)
        (out_dir / f"{config}_bundle").mkdir(parents=True, exist_ok=True)
        (out_dir / f"{config}_bundle" / "meta.json").write_text("{}")
        (out_dir / f"{config}_native").mkdir(exist_ok=True)
        return str(out_dir / f"{config}_bundle")

    if p2_ran:  # what P2 left; the real _export reuses it (it imports torch only to export)
        export(engine.TINY_CONFIG, ctx.work, 32, True)
        exported.clear()
    else:
        monkeypatch.setattr(engine, "_export", export)
    ran = []
    monkeypatch.setattr(video, "_needs_zsseg_cuda", lambda: None)
    monkeypatch.setattr(video, "_device_io", lambda: (np.array, np.asarray))
    monkeypatch.setattr(video, "comparisons", lambda put, get: {})
    monkeypatch.setattr(video.subprocess, "run",
                        lambda command, **kw: ran.append(kw) or subprocess.CompletedProcess(command, 0, "", ""))  # fmt: skip
    video.part_temporal_kernels(ctx)
    assert len(ran) == 1 and ran[0]["env"][video.TINY_BUNDLE_ENV] == str(bundle)
    assert ctx.measured["tiny_bundle"] == {"path": str(bundle), "reused": p2_ran}
    assert exported == ([] if p2_ran else [engine.TINY_CONFIG])
    conftest = (ROOT / "python_tests" / "conftest.py").read_text()
    assert f'PREBUILT_BUNDLE_ENV = "{video.TINY_BUNDLE_ENV}"' in conftest


class _FakeSegmenter:
    """A VideoSegmenter stand-in: labels = the frame; raises at frame ``fail_at`` (as the device filter raised
    ``class_state``'s error on the H200)."""

    def __init__(self, device, fail_at=None):
        self.on_device, self.fail_at, self.seen = device, fail_at, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, frame):
        if self.seen == self.fail_at:
            raise ValueError("class_state: the state (120, 160) must not be larger than the rescaled image (64, 85)")
        self.seen += 1
        return type("Result", (), {"labels": frame})()

    def stats(self):
        return {"frames": self.seen}


def test_p9_records_an_error_per_mode_and_frame_and_runs_the_rest(video):
    """One exception lost every P9 number on the H200: now an error at a frame of one mode's device run is recorded
    (which frame, the error) with what it made before, and the host run, the other mode and the agreement over the
    frames both made still come; a refused device run says why. Control: nothing fails, nothing recorded as such."""
    import numpy as np

    frames = [np.full((2, 3), k, np.int32) for k in range(4)]
    recorded = {}

    def make(device, options, fail=True):
        if device and options.get("keyframe_every") and fail:
            raise ValueError("device=True is not possible: the Engine runs on the host")
        return _FakeSegmenter(device, 1 if device and options.get("stabilize") and fail else None)

    found = video.compare_modes(make, frames, record=recorded.__setitem__)
    assert list(recorded) == ["stabilize", "keyframe_every_4"] and recorded == found
    device, host = found["stabilize"]["device"], found["stabilize"]["host"]
    assert device["failed_at_frame"] == 1 and device["frames_done"] == 1 and device["stats"] == {"frames": 1}
    assert device["error"]["type"] == "ValueError" and "class_state" in device["error"]["message"]
    assert device["on_device"] is True and "labels" not in device
    assert "error" not in host and host["frames_done"] == 4 and "median_ms" in host
    assert found["stabilize"]["frames_compared"] == 1 and found["stabilize"]["labels_equal_host_min"] == 1.0
    keyframes = found["keyframe_every_4"]
    assert (
        keyframes["device"]["refused"].startswith("device=True is not possible")
        and keyframes["host"]["frames_done"] == 4
    )
    assert "frames_compared" not in keyframes
    clean = video.compare_modes(lambda device, options: make(device, options, fail=False), frames)
    for mode in clean.values():
        assert mode["frames_compared"] == 4 and all("error" not in mode[side] for side in ("device", "host"))


@pytest.mark.parametrize("fails", ["engine", "frame", None], ids=["engine_fails", "a_frame_fails", "control"])
def test_p9_runs_live_whatever_the_filter_comparisons_did_and_then_fails(probe, video, tmp_path, monkeypatch, fails):
    """The comparisons' Engine could not be made (or the clip read), or a device run raised at a frame: recorded,
    ``zsseg camera --live`` still runs (its own process), and then the part fails naming what raised (an error is
    not a measurement: the stage's probe verdict fails on it). Control: nothing fails, the part passes."""
    ctx = _context(probe, tmp_path)
    lived = []

    def filter_modes(ctx, bundle, clip):
        if fails == "engine":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        device = {"frames_done": 24}
        if fails == "frame":
            device = {"frames_done": 3, "failed_at_frame": 3, "error": {"type": "ValueError", "message": "class_state"}}
        ctx.record("stabilize", {"frames": 24, "device": device, "host": {"frames_done": 24}})

    monkeypatch.setattr(video, "_needs_zsseg_cuda", lambda: None)
    monkeypatch.setattr(video, "_tiny_here", lambda ctx: str(ctx.work / "zegclip_tiny_test_bundle"))
    monkeypatch.setattr(video, "clip_path", lambda ctx: ctx.work / "synthetic_clip.avi")
    monkeypatch.setattr(video, "_filter_modes", filter_modes)
    monkeypatch.setattr(video, "_live", lambda ctx, bundle, clip: lived.append(clip.name) or {"exit_code": 0})
    if fails is None:
        assert video.part_video(ctx) == {}
    else:
        message = ("the comparisons' Engine: RuntimeError: CUDA error: an illegal memory access"
                   if fails == "engine" else "stabilize on the device at frame 3: ValueError: class_state")  # fmt: skip
        with pytest.raises(RuntimeError, match="P9: 1 run[(]s[)] raised .*" + message):
            video.part_video(ctx)
    assert lived == ["synthetic_clip.avi"] and ctx.measured["live"] == {"exit_code": 0}
    assert ("filter_error" in ctx.measured) == (fails == "engine")
    if fails == "engine":
        assert ctx.measured["filter_error"]["type"] == "RuntimeError"


def _plan_commands():
    from checks import gpu_stages

    return [list(command) for command in gpu_stages.PLAN]


@pytest.mark.parametrize("part", ["P9", "P7"])
def test_p9_and_p7_take_the_tiny_bundle_where_the_full_size_one_is_there(probe, video, tmp_path, monkeypatch, part):
    """In the plan's first command the engine stage has exported both bundles before the probe: P9 and P7 still take
    the tiny one, whose Engine their times (and so the stage's budget) were estimated on and whose 64-px input is
    the device filter's enlarging geometry (P9 at b235fde). Control: the extras' choice (``_bundle_here``) takes the
    full-size one there."""
    parts = importlib.import_module("checks._gpu_probe_parts")
    engine = importlib.import_module("checks.gpu_engine")
    ctx = _context(probe, tmp_path)
    for config in (engine.TINY_CONFIG, parts._full_config()):
        (ctx.work / f"{config}_bundle").mkdir(parents=True)
        (ctx.work / f"{config}_bundle" / "meta.json").write_text("{}")
    monkeypatch.setattr(engine, "_export", lambda config, out_dir, *a, **k: str(out_dir / f"{config}_bundle"))
    taken = []

    class Taken(Exception):
        pass

    def model(bundle):
        taken.append(Path(bundle).name)
        raise Taken

    def modes(ctx, bundle, clip):
        taken.append(Path(bundle).name)

    monkeypatch.setattr(parts, "_needs_zsseg_cuda", lambda: None)
    monkeypatch.setattr(video, "_needs_zsseg_cuda", lambda: None)
    monkeypatch.setattr(parts, "_cuda_model", model)
    monkeypatch.setattr(video, "clip_path", lambda ctx: ctx.work / "synthetic_clip.avi")
    monkeypatch.setattr(video, "_filter_modes", modes)
    monkeypatch.setattr(video, "_live", lambda ctx, bundle, clip: {"exit_code": 0})
    if part == "P7":
        with pytest.raises(Taken):
            parts.part_batch(ctx)
    else:
        video.part_video(ctx)
    assert taken == [f"{engine.TINY_CONFIG}_bundle"]
    assert Path(parts._bundle_here(ctx)).name == f"{parts._full_config()}_bundle"  # the control
