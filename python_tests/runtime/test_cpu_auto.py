"""backend="auto" on a CPU (issue 54): the fastest path whose accuracy gate passed on this CPU, by the speed its record
measured; said in one log line; a refused gate falls back with its reason; an explicit choice is never overridden;
with ``prepare="background"`` frames never wait for the preparation, and the Engine switches once it is ready.

The records are written here as the preparers write them (``write_record`` at the key the row computes on this
CPU), with speeds chosen by the test: what is checked is the choice, not the preparers (test_openvino_precision.py
and prepare/test_ort_int8.py gate real ones). OpenVINO bf16 records carry no artefact (bf16 is compiled at load), so
they open for real on a CPU with bf16; the tests that open one skip elsewhere."""

from __future__ import annotations

import logging
import shutil
import threading

import numpy as np
import pytest
from support import VOCAB10, require_backend, skip_unless_a_cpu_path_can_be_prepared

from zsseg_rt.bundle import load_meta
from zsseg_rt.runtime import Engine, upgrade
from zsseg_rt.runtime.backends import cpu_auto
from zsseg_rt.runtime.backends.cpu_auto import cpu_candidates, cpu_policy
from zsseg_rt.runtime.cpu_features import cpu_features
from zsseg_rt.runtime.precision_records import PER_PHOTO_FIELD, SPEED_FIELD, VOCABULARIES_FIELD, write_record

ROLES = ("image", "head", "text")
HAS_BF16 = cpu_features().x86 and cpu_features().bf16 in ("amx-bf16", "avx512-bf16")
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason=f"this CPU has no bf16 arithmetic ({cpu_features().summary()})")
IMAGE = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    require_backend("openvino")
    return shutil.copytree(tiny_bundle, str(tmp_path / "bundle"))


def _record(meta, backend: str, precision: str, speedup: float, passed: bool = True) -> None:
    """A gate record for ``backend`` ``precision`` where the row's ``gated_choices`` looks (no artefact)."""
    found, _ = cpu_candidates(meta, ROLES)
    (choice,) = [c for row, c in found if (row.name, c.precision) == (backend, precision)]
    assert choice.key is not None, choice.describe()  # this CPU can run it
    verdict = "passed" if passed else "FAILED"
    gate = {
        "passed": passed,
        "accepted": passed,
        "summary": f"accuracy gate {verdict}: 99.70% labels agree (test)",
        PER_PHOTO_FIELD: True,
        VOCABULARIES_FIELD: [{"name": "voc20", "classes": 20, "of": 20, "agreement": 0.997, "worst_photo": 0.997}],
    }
    write_record(choice.root, choice.key, gate, extra={SPEED_FIELD: {"speedup": speedup}})


@needs_bf16
def test_the_fastest_gated_record_runs_and_a_fake_slower_one_does_not(bundle, caplog):
    """OpenVINO bf16 recorded 2.5x: auto runs it and the log line says what, why and the gate. The same record faked
    at 0.9x (slower than the exact path): auto runs ONNX Runtime fp32. Control: the ranking is the records' doing."""
    meta = load_meta(bundle)
    _record(meta, "openvino", "bf16", 2.5)
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        engine = Engine(bundle, classes=VOCAB10, backend="auto", device="cpu")
    assert (engine.backend.name, engine.backend.precision) == ("openvino", "bf16")
    chosen = engine.auto_choice
    assert (chosen.backend, chosen.precision, chosen.speedup) == ("openvino", "bf16", 2.5)
    assert "backend='auto' runs openvino bf16 on this CPU" in caplog.text and "2.50x" in caplog.text
    assert "accuracy gate passed: 99.70%" in caplog.text and "precision='fp32'" in caplog.text
    engine(IMAGE)

    _record(meta, "openvino", "bf16", 0.9)
    slower = Engine(bundle, classes=VOCAB10, backend="auto", device="cpu")
    assert (slower.backend.name, slower.backend.precision) == ("onnxruntime", "fp32")
    assert "openvino bf16 0.90x" in slower.auto_choice.line()


def test_the_ranking_follows_the_measured_speed(bundle):
    """Two gated records: the faster by its measured speed goes first, whatever the rows' order; the exact
    reference is always last."""
    meta = load_meta(bundle)
    found, _ = cpu_candidates(meta, ROLES)
    runnable = [(row.name, c.precision) for row, c in found if c.key is not None]
    if len(runnable) < 2:
        pytest.skip(f"needs two reduced precisions this CPU can run, has {runnable}")
    for speed, (backend, precision) in zip((1.5, 3.0), runnable[:2]):
        _record(meta, backend, precision, speed)
    plan = cpu_policy(meta, ROLES)
    assert [(c.backend, c.precision) for _, _, c in plan] == [runnable[1], runnable[0], ("onnxruntime", "fp32")]
    for speed, (backend, precision) in zip((3.0, 1.5), runnable[:2]):
        _record(meta, backend, precision, speed)
    assert [(c.backend, c.precision) for _, _, c in cpu_policy(meta, ROLES)][0] == runnable[0]


def test_a_refused_gate_falls_back_with_its_reason_in_the_log(bundle, caplog):
    """Every precision this CPU can run recorded refused (at a speed that would win): auto runs ONNX Runtime fp32
    and its log line names each refusal and the gate's summary."""
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    meta = load_meta(bundle)
    found, _ = cpu_candidates(meta, ROLES)
    runnable = [(row.name, c.precision) for row, c in found if c.key is not None]
    assert runnable, "this CPU runs some reduced precision (ONNX Runtime int8 runs on any x86-64 / Arm64 CPU)"
    for backend, precision in runnable:
        _record(meta, backend, precision, 4.0, passed=False)
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        engine = Engine(bundle, classes=VOCAB10, backend="auto", device="cpu")
    assert (engine.backend.name, engine.backend.precision) == ("onnxruntime", "fp32")
    assert "no faster path has passed the accuracy gate" in caplog.text
    for backend, precision in runnable:
        assert f"{backend} {precision}: refused (accuracy gate FAILED" in caplog.text


@needs_bf16
def test_an_explicit_choice_is_never_overridden(bundle):
    """A faster gated record is there; backend='onnxruntime' and backend='auto', precision='fp32' still run the
    exact ONNX Runtime fp32 graphs (control: backend='auto' alone runs the record's path)."""
    meta = load_meta(bundle)
    _record(meta, "openvino", "bf16", 2.5)
    named = Engine(bundle, classes=VOCAB10, backend="onnxruntime", device="cpu")
    assert (named.backend.name, named.backend.precision) == ("onnxruntime", "fp32")
    exact = Engine(bundle, classes=VOCAB10, backend="auto", device="cpu", precision="fp32")
    assert (exact.backend.name, exact.backend.precision) == ("onnxruntime", "fp32")
    control = Engine(bundle, classes=VOCAB10, backend="auto", device="cpu")
    assert (control.backend.name, control.backend.precision) == ("openvino", "bf16")
    with pytest.raises(ValueError, match="applies to backend='auto'"):
        Engine(bundle, classes=VOCAB10, backend="onnxruntime", prepare="background")


@needs_bf16
def test_a_live_camera_never_waits_for_quantisation(bundle, monkeypatch):
    """prepare='background' with a preparation that blocks until the test lets it go (the quantisation): frames
    run on the exact path meanwhile (they could not if anything waited for it); once it has written its record the
    next frame runs the prepared path. No timing: the preparation is held by an Event, not a delay."""
    meta = load_meta(bundle)
    release, started = threading.Event(), threading.Event()

    def preparation(meta_, stop):
        started.set()
        release.wait()
        _record(meta, "openvino", "bf16", 2.5)
        return 0

    monkeypatch.setattr(upgrade, "run_preparation", preparation)
    engine = Engine(bundle, classes=VOCAB10, backend="auto", device="cpu", prepare="background")
    assert (engine.backend.name, engine.backend.precision) == ("onnxruntime", "fp32")
    started.wait()
    exact = [engine(IMAGE).labels for _ in range(3)]  # the preparation is still held: nothing waits for it
    assert (engine.backend.name, engine.backend.precision) == ("onnxruntime", "fp32")
    release.set()
    engine._upgrade.wait()
    upgraded = engine(IMAGE)
    assert (engine.backend.name, engine.backend.precision) == ("openvino", "bf16")
    assert upgraded.labels.shape == exact[0].shape
    engine.close()


@needs_bf16  # the recorded path is OpenVINO bf16: a CPU without bf16 arithmetic never takes it (it failed there)
def test_a_video_filter_switches_to_the_prepared_path_too(bundle, monkeypatch):
    """zsseg camera --stabilize / --keyframe-every call ``engine.segment_with_class_scores``, not ``engine(...)``: a
    background preparation that has finished is taken there too (it was not: the stream kept the exact path for good).
    No timing: the preparation is held by an Event."""
    meta = load_meta(bundle)
    release = threading.Event()

    def preparation(meta_, stop):
        release.wait()
        _record(meta, "openvino", "bf16", 2.5)
        return 0

    monkeypatch.setattr(upgrade, "run_preparation", preparation)
    engine = Engine(bundle, classes=VOCAB10, backend="auto", device="cpu", prepare="background")
    exact = engine.segment_with_class_scores([IMAGE])
    assert (engine.backend.name, engine.backend.precision) == ("onnxruntime", "fp32")
    release.set()
    engine._upgrade.wait()
    upgraded = engine.segment_with_class_scores([IMAGE])
    assert (engine.backend.name, engine.backend.precision) == ("openvino", "bf16")
    assert upgraded[0].labels.shape == exact[0].labels.shape and upgraded[0].class_scores is not None
    engine.close()


def test_a_row_that_does_not_import_says_why_in_the_log_line(bundle, monkeypatch):
    """A CPU row whose library fails to import (missing, or installed but broken here) is left out of the choice
    with the import error's own words in the line (the benchmark's fresh processes print it: a path that a fresh
    process did not choose must say why)."""
    real = cpu_auto.load_reference

    def load(reference):
        if reference.startswith("zsseg_rt.runtime.backends.openvino."):
            raise ImportError("libopenvino.so.2026: cannot open shared object file")
        return real(reference)

    monkeypatch.setattr(cpu_auto, "load_reference", load)
    plan = cpu_policy(load_meta(bundle), ROLES)
    assert "openvino: not installed (libopenvino.so.2026: cannot open shared object file)" in plan[-1][2].line()


def test_a_gain_within_measurement_noise_does_not_replace_the_exact_path(bundle):
    """A record measured 1.05x (below MIN_SPEEDUP): auto runs exact fp32 and says why; at MIN_SPEEDUP it runs."""
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    meta = load_meta(bundle)
    found, _ = cpu_candidates(meta, ROLES)
    (backend, precision) = next((row.name, c.precision) for row, c in found if c.key is not None)
    _record(meta, backend, precision, 1.05)
    plan = cpu_policy(meta, ROLES)
    assert [(c.backend, c.precision) for _, _, c in plan] == [("onnxruntime", "fp32")]
    assert f"{backend} {precision}: 1.05x is below the {cpu_auto.MIN_SPEEDUP:.2f}x" in plan[0][2].line()
    _record(meta, backend, precision, cpu_auto.MIN_SPEEDUP)
    assert (cpu_policy(meta, ROLES)[0][2].backend, cpu_policy(meta, ROLES)[0][2].precision) == (backend, precision)


def test_the_camera_takes_the_engines_default_on_auto_and_none_turns_it_off():
    """zsseg camera: no --prepare leaves the choice to the Engine's default ("auto": background where the records can
    be written; nothing for a named backend), for a live camera and a file alike; --prepare none never prepares,
    --prepare background asks for it (the flag of every command that opens an Engine: zsseg_rt.options)."""
    from zsseg_rt.cli import build_parser
    from zsseg_rt.console.arguments import engine_kwargs
    from zsseg_rt.options import ENGINE_OPTIONS

    parse = build_parser("camera").parse_args
    assert engine_kwargs(parse(["camera", "0", "--bundle", "b"]), "camera")["prepare"] == "auto"
    assert ENGINE_OPTIONS["prepare"].default == "auto"
    assert engine_kwargs(parse(["camera", "0", "--bundle", "b", "--prepare", "none"]), "camera")["prepare"] is None
    background = parse(["camera", "0", "--bundle", "b", "--prepare", "background"])
    assert engine_kwargs(background, "camera")["prepare"] == "background"


def test_the_engines_default_starts_nothing_and_names_the_step(bundle, monkeypatch, caplog):
    """``Engine(bundle)`` with nothing asked (prepare="auto") and no $ZSSEG_AUTO_PREPARE starts no preparation (no
    process, no thread): one line, once per bundle and process, names the missing paths, what preparing them costs
    and the command that does it. The variable set to background starts it (announced in one line with its cost and
    how to decline); none / now decide as asked; another value is refused. Control: the suite's own setting (none)
    says nothing."""
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    started = []

    def preparation(meta_, stop):
        started.append(meta_.path)
        return 0

    monkeypatch.setattr(upgrade, "run_preparation", preparation)
    monkeypatch.setattr(upgrade, "_said", set())
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        engine = Engine(bundle, classes=VOCAB10, device="cpu")  # control: as conftest sets it (none)
    assert engine._upgrade is None and not started and "not prepared yet" not in caplog.text
    monkeypatch.delenv(upgrade.PREPARE_ENV)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        engine = Engine(bundle, classes=VOCAB10, device="cpu")
        Engine(bundle, classes=VOCAB10, device="cpu")  # once per bundle and process
    assert engine._upgrade is None and not started
    notices = [r.getMessage() for r in caplog.records if "not prepared yet" in r.getMessage()]
    assert len(notices) == 1 and f"`zsseg build-engine {bundle} --backend auto` prepares them" in notices[0]
    assert "of CPU time" in notices[0] and "MB kept on disk" in notices[0] and "2-3x faster" in notices[0]
    monkeypatch.setenv(upgrade.PREPARE_ENV, "background")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zsseg_rt"), Engine(bundle, classes=VOCAB10, device="cpu") as engine:
        assert engine._upgrade is not None
        engine._upgrade.wait()
    assert started == [load_meta(bundle).path]
    (line,) = [r.getMessage() for r in caplog.records if "in the background on idle CPU" in r.getMessage()]
    assert "of CPU time" in line and "prepare=None (`--prepare none`" in line and "declines" in line
    monkeypatch.setenv(upgrade.PREPARE_ENV, "later")
    with pytest.raises(
        ValueError, match=r"ZSSEG_AUTO_PREPARE must be one of \['background', 'none', 'now'\], got 'later'"
    ):
        Engine(bundle, classes=VOCAB10, device="cpu")


def test_a_bundle_that_cannot_be_written_is_not_prepared(bundle, monkeypatch, caplog):
    """prepare="background" where ``<bundle>/engines`` cannot be made (a read-only install): the exact path runs,
    nothing is started, and the INFO line says where to prepare them. Control: the same bundle writable prepares."""
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    meta = load_meta(bundle)
    plan = Engine(bundle, device="cpu", prepare=None).plan
    monkeypatch.setattr(upgrade, "_said", set())
    monkeypatch.setattr(upgrade, "_writable", lambda path: False)
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        assert upgrade.decide(meta, plan, "background") is None
    assert "cannot be written" in caplog.text and "zsseg build-engine BUNDLE --backend auto" in caplog.text
    monkeypatch.undo()
    assert upgrade.decide(meta, plan, "background") == "background"
    assert upgrade.decide(meta, plan, None) is None and upgrade.decide(meta, plan, "now") == "now"


def test_a_failed_preparation_says_why_and_where_its_log_is_and_is_not_retried(bundle, monkeypatch, caplog):
    """N14: a background preparation that fails (here: the real one, its quantiser made to raise) records why and
    its log; the Engine's warning carries both, and the next Engine(prepare="background") starts nothing, saying the
    same once. Control: `zsseg build-engine --backend auto` retries (and, ending well, removes the record), after
    which a background preparation is started again."""
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    import json
    import os

    from zsseg_rt.prepare import auto

    meta = load_meta(bundle)
    root = os.path.join(bundle, "engines")
    monkeypatch.setattr(upgrade, "_said", set())

    def failing(stop):  # the child's doing, in process: the preparation raises, main() records it
        monkeypatch.setattr(auto, "prepare_and_keep", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space")))
        return auto.main([bundle, "--threads", "1"])

    with caplog.at_level(logging.WARNING, logger="zsseg_rt"):
        engine = Engine(bundle, classes=VOCAB10, device="cpu", prepare=None)
        held = upgrade.BackgroundUpgrade(meta, engine.plan, failing)
        held.wait()
    failed = json.load(open(os.path.join(root, upgrade.PREPARE_FAILED)))
    assert "No space" in failed["reason"] and failed["log"].endswith(upgrade.PREPARE_LOG)
    assert f"the background preparation failed ({failed['reason']}" in caplog.text and failed["log"] in caplog.text
    started = []
    monkeypatch.setattr(upgrade, "run_preparation", lambda meta_, stop: started.append(1) or 0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zsseg_rt"):
        again = Engine(bundle, classes=VOCAB10, device="cpu", prepare="background")
    assert again._upgrade is None and not started
    assert "not tried again at each start" in caplog.text and failed["log"] in caplog.text
    monkeypatch.undo()
    from zsseg_rt import cli

    assert cli.main(["build-engine", bundle, "--backend", "auto"]) == 0  # control: retried on request
    assert not os.path.exists(os.path.join(root, upgrade.PREPARE_FAILED))


def test_one_preparation_per_bundle(bundle, caplog):
    """Two preparations of one bundle (two Engines, two processes): the second finds the lock held by the first and
    waits for it instead of quantising again; once the first has ended it goes on. Control: with the lock free it
    goes on at once. No timing: the first preparation is a process the test holds until it has seen the second
    wait."""
    import os
    import subprocess
    import sys

    from zsseg_rt.prepare.auto import PREPARE_LOCK, preparation_lock

    root = os.path.join(bundle, "engines")
    os.makedirs(root, exist_ok=True)
    holder = subprocess.Popen(  # the first preparation: holds the lock until told to go
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); "
            "sys.stdin.readline()",
            os.path.join(root, PREPARE_LOCK),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    waiting, entered = threading.Event(), threading.Event()

    class Seen(logging.Handler):
        def emit(self, record):
            if "another process is preparing" in record.getMessage():
                waiting.set()

    def second():
        with preparation_lock(root):
            entered.set()

    handler = Seen()
    logger = logging.getLogger("zsseg_rt.precision")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    thread = threading.Thread(target=second)
    try:
        thread.start()
        assert waiting.wait(60), "the second preparation did not find the lock held"
        assert not entered.is_set()  # it waits: no second quantisation
        holder.communicate("go\n", timeout=60)
        thread.join(60)
        assert entered.is_set()
    finally:
        logger.removeHandler(handler)
        if holder.poll() is None:
            holder.kill()
    entered.clear()
    second()  # control: the lock is free now
    assert entered.is_set()


def test_closing_the_engine_ends_its_preparation_process(bundle, monkeypatch):
    """N1: no process outlives the Engine's program: ``with Engine(..., prepare="background")`` ends the
    preparation process when the block ends (``close()``). The process stands in for ``python -m
    zsseg_rt.prepare.auto`` (it would run for 10 minutes); control: it runs while the Engine is open."""
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    import sys

    processes = []
    real = upgrade.subprocess.Popen

    def popen(argv, **kwargs):
        assert argv[1:3] == ["-m", upgrade.PREPARER_MODULE] and "--background" in argv
        process = real([sys.executable, "-c", "import time; time.sleep(600)"], **kwargs)
        processes.append(process)
        return process

    monkeypatch.setattr(upgrade.subprocess, "Popen", popen)
    with Engine(bundle, classes=VOCAB10, device="cpu", prepare="background") as engine:
        while not processes:
            engine._upgrade.wait(0.05)
        assert processes[0].poll() is None  # control: it runs while the Engine is open
    assert processes[0].poll() is not None and engine._upgrade is None


def test_build_engine_auto_prepares_gates_and_measures_every_cpu_path(bundle, capsys):
    """`zsseg build-engine BUNDLE --backend auto` on the tiny bundle: every precision this CPU can run gets a record
    (passed or refused, as its gate decides) and each usable one a measured speed; the last line is what auto runs.
    --precision with it is refused."""
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    from zsseg_rt import cli

    assert cli.main(["build-engine", bundle, "--backend", "auto", "--precision", "int8"]) == 2
    assert "give no --precision" in capsys.readouterr().err
    assert cli.main(["build-engine", bundle, "--backend", "auto"]) == 0
    out = capsys.readouterr().out
    assert "backend='auto' runs" in out.splitlines()[-1]
    found, _ = cpu_candidates(load_meta(bundle), ROLES)
    runnable = [c for _, c in found if c.key is not None]
    assert runnable and all(c.status in ("passed", "accepted", "refused") for c in runnable), [
        c.describe() for c in runnable
    ]
    assert all(c.speedup is not None and c.speedup > 0 for c in runnable if c.usable)


@pytest.mark.parametrize(
    "flags, runnable",
    [
        ("fp asimd asimddp", {("onnxruntime", "int8")}),  # Jetson Orin's Cortex-A78AE: SDOT, no bf16
        ("fp asimd asimddp i8mm bf16", {("onnxruntime", "int8"), ("onnxruntime", "bf16")}),  # Neoverse V1/V2
    ],
)
def test_the_choice_on_an_arm64_cpu(bundle, monkeypatch, tmp_path, flags, runnable):
    """Issue 54 item 5: the same policy on Jetson's CPU path and other Arm64 CPUs (their /proc/cpuinfo faked: no Arm
    CPU here): OpenVINO's reduced precisions are x86-only ("cannot", with the reason), ONNX Runtime's int8 (SDOT /
    I8MM) and, with the bf16 extension, bf16 are candidates; a passing int8 record measured faster runs, and a
    refused one falls back to exact fp32 with its reason in the line."""
    pytest.importorskip("onnx", reason="ONNX Runtime int8 is prepared by quantising, which needs the onnx package")
    from zsseg_rt.runtime.backends.onnxruntime import precision as ort_precision
    from zsseg_rt.runtime.backends.openvino import precision as openvino_backend
    from zsseg_rt.runtime.cpu_features import cpu_features as read

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nFeatures\t: {flags}\n")
    arm = read(str(info), "aarch64")
    for module in (ort_precision, openvino_backend):
        monkeypatch.setattr(module, "cpu_features", lambda arm=arm: arm)
    meta = load_meta(bundle)
    found, _ = cpu_candidates(meta, ROLES)
    status = {(row.name, c.precision): c.status for row, c in found}
    assert {k for k, v in status.items() if v == "missing"} == runnable, status
    assert all(v == "cannot" for k, v in status.items() if k[0] == "openvino"), status
    _record(meta, "onnxruntime", "int8", 1.8, passed=False)
    line = cpu_policy(meta, ROLES)[0][2].line()
    assert line.startswith("backend='auto' runs onnxruntime fp32 on this CPU: exact") and "FAILED" in line
    _record(meta, "onnxruntime", "int8", 1.8)
    chosen = cpu_policy(meta, ROLES)[0][2]
    assert (chosen.backend, chosen.precision, chosen.speedup) == ("onnxruntime", "int8", 1.8)
