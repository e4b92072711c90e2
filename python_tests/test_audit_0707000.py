"""The assertions the mutation audit of 0707000 found missing (issue 75, item 8; the audit's survivors M01, M03, M05,
M06, M07, M08, M11, M12): each test here fails with its mutant applied (checks/mutants.py holds them, with these
tests), and each is bounded in time."""

from __future__ import annotations

import shutil
import signal

import numpy as np
import pytest

CLASSES = ["person", "bottle", "chair", "sofa", "tv", "cat"]


# ---- M01: a user's edit to a recorded label map is never taken for zsseg_rt's ---------------------------------------
@pytest.mark.time_bound(300)
def test_a_label_map_a_user_changed_since_is_refused_even_with_overwrite(tmp_path, tiny_bundle, capsys):
    """A run wrote --labels-out; the user then rewrites 000001.png (another size: their own picture); the run again
    with --overwrite is refused (rc 1, the manifest's words) and the user's file keeps its bytes (rule 3 of
    zsseg_rt.outputs.plan: the manifest records each map's size). Control: the maps unchanged are replaced."""
    pytest.importorskip("cv2")
    from stream_fakes import write_band_clip

    from zsseg_rt import cli

    clip = write_band_clip(tmp_path / "clip.avi", frames=4)
    labels = tmp_path / "labels"
    argv = ["camera", clip, "--bundle", tiny_bundle, "--classes", "a,b", "--labels-out", str(labels), "--no-progress"]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--overwrite"]) == 0  # the control: its own maps, unchanged, are replaced
    capsys.readouterr()
    mine = b"my own picture, not a label map"
    (labels / "000001.png").write_bytes(mine)
    assert cli.main([*argv, "--overwrite"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(
        f"zsseg camera: error: {str(labels / '000001.png')!r} was not written"
    ), err
    assert "(not in .zsseg-outputs.json, or changed since)" in err[0], err
    assert (labels / "000001.png").read_bytes() == mine


# ---- M03: zsseg serve keeps an inherited SIG_IGN (nohup) -------------------------------------------------------------
@pytest.mark.time_bound(60)
@pytest.mark.parametrize("inherited", ["ignored", "default"])
def test_serve_keeps_an_ignored_sigint_ignored(monkeypatch, inherited):
    """`nohup zsseg serve` starts with SIGINT ignored: serve's own handler must not replace it (a Ctrl-C meant for
    the terminal would stop the server). Control: from a terminal (SIGINT at its default) serve's handler is set."""
    from zsseg_rt.cli import serve

    seen = {}
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN if inherited == "ignored" else signal.default_int_handler)
    try:
        monkeypatch.setattr(serve, "_start_and_serve", lambda args, started: seen.update(sigint=signal.getsignal(2)))
        monkeypatch.setattr(serve, "_shut_down", lambda args, started: None)
        assert serve._run_serve(object()) == 0
    finally:
        signal.signal(signal.SIGINT, before)
    assert seen["sigint"] == (signal.SIG_IGN if inherited == "ignored" else serve._stop_once), seen


# ---- M05: the announced cost of a preparation is the measured one ---------------------------------------------------
@pytest.mark.time_bound(60)
def test_the_announced_cost_is_near_the_measured_six_minutes(tmp_path):
    """The demo's ViT-B/16 bundle (a 345 MB image encoder), 3 paths to prepare: measured 335 CPU-s at 7ee728b
    (5.6 min, CHANGELOG.md) and 200.8 CPU-s at the paths' cost ratios (3.3 min; BENCHMARKS.md "Preparing the CPU
    paths"), which the announcement says since issue 79 F13 (the dry-run's estimates, one function): about 2.5 to
    4.5 min (it said 21 before 7ee728b)."""
    import re

    from zsseg_rt.bundle import Files, graph_files
    from zsseg_rt.runtime.upgrade import preparation_cost

    sizes = {Files.IMAGE_ENCODER: 345_000_000}
    files = {}
    for name in set(graph_files("windowed").values()) | {Files.IMAGE_ENCODER}:
        path = tmp_path / str(name)
        with open(path, "wb") as handle:
            handle.truncate(sizes.get(name, 20_000_000))  # sparse: no disk taken
        files[name] = str(path)

    class Meta:
        pipeline = "windowed"

        @staticmethod
        def file(name):
            return files[name]

    from types import SimpleNamespace

    paths = [("onnxruntime", "int8"), ("openvino", "bf16"), ("openvino", "int8")]  # the demo's three
    said = preparation_cost(Meta(), [SimpleNamespace(backend=b, precision=p) for b, p in paths])
    minutes = re.match(r"about (\d+(?:\.\d)?) min of CPU time", said)
    assert minutes is not None and 2.5 <= float(minutes.group(1)) <= 4.5, said


# ---- M06: one fp32 reference for every gate of a preparation ---------------------------------------------------------
@pytest.mark.time_bound(900)
def test_a_preparations_gates_share_one_reference(tiny_bundle, tmp_path, monkeypatch):
    """``prepare_and_keep`` (what `zsseg build-engine --backend auto` runs) gives every gate of the preparation the
    same fp32 reference (shared_reference: its side computed once; the measured speed-up of e48b612, 168 -> 141 s).
    The CPU is faked, so that the same two paths gate on every CPU (issue 79 item 2: on an AVX2 CPU without VNNI only
    one gated and the test skipped, so the mutant lived there): an x86 CPU with AVX2 and AVX-512 VNNI and no bf16
    (ONNX Runtime int8 and OpenVINO int8 gate; the bf16 paths are "cannot"). Control: exactly those two gates ran."""
    from types import SimpleNamespace

    from support import require_backend

    from zsseg_rt.prepare import gate
    from zsseg_rt.prepare.auto import prepare_and_keep
    from zsseg_rt.runtime import cpu_features

    require_backend("openvino")
    bf16 = {"avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
    flags = (cpu_features._read_flags() - bf16) | {"avx2", "avx512_vnni"}
    monkeypatch.setattr(cpu_features, "_read_flags", lambda path="/proc/cpuinfo": flags)
    monkeypatch.setattr(cpu_features, "platform", SimpleNamespace(machine=lambda: "x86_64"))
    assert (cpu_features.cpu_features().int8_dot_product, cpu_features.cpu_features().bf16) == ("avx512-vnni", "none")
    bundle = shutil.copytree(tiny_bundle, str(tmp_path / "bundle"))
    given = []
    real = gate.gate_reference

    def spied(meta, threads=0):
        given.append(real(meta, threads))
        return given[-1]

    monkeypatch.setattr(gate, "gate_reference", spied)
    prepare_and_keep(bundle, force=True)
    assert len(given) == 2, f"{len(given)} gates ran on the faked CPU (ONNX Runtime int8 and OpenVINO int8 expected)"
    assert len({id(reference) for reference in given}) == 1, f"{len(given)} gates, {len(set(map(id, given)))} refs"


# ---- M07: a scene cut is judged by the step's flow, not the flow composed to the anchor ------------------------------
class _Flow:
    """A flow estimator whose motion says: each step confident (0.95), the flow to the anchor far less (0.5)."""

    def prepare(self, frame, color_order="bgr"):
        return np.ascontiguousarray(frame[::2, ::2, 0])

    def estimate(self, small, previous, anchor, to_anchor):
        from zsseg_rt.stream.video_filter.temporal import Motion

        h, w = small.shape
        return Motion(np.zeros((h, w, 2), np.float32), np.ones((h, w), bool), 0.5, 0.95, 0.0)


@pytest.mark.time_bound(60)
@pytest.mark.parametrize("adaptive", [False, True])
def test_a_slow_pan_that_loses_the_anchor_is_no_scene_cut(adaptive):
    """A pan (or a growing occluder): each frame's flow to the one before is confident, the flow composed back to the
    keyframe has lost half the frame. That is no scene cut: the frame is propagated (keyframe_every=8), or with
    `adaptive` a keyframe for "low confidence". Control: a step that loses the frame is a scene cut."""
    from zsseg_rt.stream.video_filter.temporal import Motion, StreamFilter, TemporalOptions, _Anchor

    frame = np.zeros((32, 48, 3), np.uint8)
    flow = _Flow()
    stream = StreamFilter(TemporalOptions(keyframe_every=8, adaptive=adaptive), flow=flow)
    vocabulary = ("a", "b")
    stream.anchor = _Anchor(flow.prepare(frame), None, None, None, vocabulary, size=(32, 48))
    plan = stream.plan(frame, vocabulary)
    assert (plan.keyframe, plan.reason) == ((True, "low confidence") if adaptive else (False, "")), plan[:2]
    flow.estimate = lambda *a: Motion(np.zeros((16, 24, 2), np.float32), np.ones((16, 24), bool), 0.5, 0.3, 0.0)
    assert stream.plan(frame, vocabulary).reason == "scene cut"  # the control


# ---- M08: close() forgets the streams ---------------------------------------------------------------------------------
@pytest.mark.time_bound(120)
def test_a_closed_video_segmenter_starts_each_stream_afresh(tiny_bundle):
    """`VideoSegmenter.close()`: "the next frame of a stream starts afresh" (a keyframe, reason "first"), on the host
    too (the only test of close() needed CUDA). Control: without close() the 4th frame is propagated."""
    pytest.importorskip("cv2")
    from zsseg_rt import Engine
    from zsseg_rt.stream import VideoSegmenter

    engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime")
    photo = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    frames = [np.ascontiguousarray(np.roll(photo, 2 * k, axis=1)) for k in range(4)]
    for close in (False, True):
        video = VideoSegmenter(engine, keyframe_every=4)
        first = [video(frame) for frame in frames[:3]]
        assert [r.keyframe for r in first] == [True, False, False], [r.reason for r in first]
        if close:
            video.close()
        result = video(frames[3])
        assert (result.keyframe, result.reason) == (True, "first") if close else not result.keyframe, result.reason


# ---- M11, M12: a switched backend keeps the Engine's threads and max_batch --------------------------------------------
@pytest.mark.time_bound(300)
def test_the_upgraded_path_opens_with_the_engines_threads(tiny_bundle, monkeypatch):
    """backend="auto" on a CPU switches to a prepared path (``plan.reopen()``): the new backend is opened with the
    Engine's ``threads`` (a thread limit was lost at the switch). Control: the first open had them too."""
    from zsseg_rt import Engine
    from zsseg_rt.runtime.backends import select

    opened = []
    real = select._open

    def spied(row, meta, roles, adapter, values, options):  # the Engine's options, by name (OpenRequest.values)
        opened.append(values.threads)
        return real(row, meta, roles, adapter, values, options)

    monkeypatch.setattr(select, "_open", spied)
    engine = Engine(tiny_bundle, classes=CLASSES, device="cpu", threads=1, prepare=None)
    if engine.plan.reopen is None:
        pytest.skip("no CPU auto policy here (a GPU backend ran)")
    assert opened and set(opened) == {1}  # the control
    opened.clear()
    engine.plan.reopen()
    assert opened and set(opened) == {1}, opened


@pytest.mark.time_bound(300)
@pytest.mark.parametrize("max_batch", [2, 8])
def test_a_switched_backend_keeps_the_max_batch(tiny_bundle, max_batch):
    """`replace_backend` builds the device pipeline again: with the Engine's max_batch (it fell back to 4 windows,
    its buffers sized for 4: Jetson memory). Control: the first device pipeline had it."""
    from zsseg_rt import Engine

    engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device_pipeline=True, max_batch=max_batch)
    assert engine.pipeline.device.max_windows == max_batch  # the control
    engine.pipeline.replace_backend(engine.backend, engine.pipeline.backend_plan)
    assert engine.pipeline.device.max_windows == max_batch


# ---- M10: the plan's header counts the calls left after the skips ----------------------------------------------------
@pytest.mark.time_bound(60)
def test_the_gpu_plans_header_counts_only_the_stages_it_runs():
    """`python -m checks gpu_plan` with a stage skipped (its pass current): the header's expected seconds are the
    calls' left, the skipped stage's seconds less (no command is dropped: the gaps stay). Control: nothing skipped,
    the whole plan's."""
    from checks.gpu_plan import arithmetic, lease_plan, plan_text
    from checks.gpu_stages import stage

    whole = arithmetic(lease_plan({}))["acceptance"]["seconds"]
    assert f"expected {whole} s" in plan_text(lease_plan({}), {})  # the control
    skip = {"sanitizers": "its latest record passed (test)"}
    calls = lease_plan(skip)
    assert all(call["stages"] for call in calls) and len(calls) == len(lease_plan({}))  # no command dropped
    assert f"expected {whole - stage('sanitizers').expected_s} s" in plan_text(calls, skip)
