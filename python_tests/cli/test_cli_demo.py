"""The README's main job resolves weights in the documented order and says plainly when there are none."""

import types

import pytest

pytest.importorskip("torch")

from zsseg_rt.cli import demo  # noqa: E402


def _args(**over):
    base = dict(
        official=None,
        native=None,
        clip_weights=None,
        method="scclip-vitb16",
        config="zegclip_tiny_test",
        allow_random_weights=False,
    )
    base.update(over)
    return types.SimpleNamespace(**base)


def test_no_weights_says_so_and_refuses_without_the_random_flag(monkeypatch, capsys):
    monkeypatch.delenv("ZSSEG_CHECKPOINT", raising=False)

    def offline(name, pretrained=None, **_):
        if pretrained:
            raise RuntimeError("Failed to download weights for tag 'openai'")
        raise AssertionError("random weights must not be used without --allow-random-weights")

    monkeypatch.setattr("zsseg_rt.models.create_model", offline)
    with pytest.raises(SystemExit) as exit_info:
        demo._resolve_model(_args())
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    out = captured.out
    assert "No model weights are available" in out and "--official" in out and "--clip-weights" in out
    # N12 (issue 64): the README's `zsseg demo` without weights never named the flag tools/run_demo.sh passes
    assert "zsseg demo --allow-random-weights" in out, out
    assert captured.err.strip().splitlines() == [
        "zsseg demo: error: no model weights (see above): give a checkpoint (--official, --native) or CLIP weights "
        "(--clip-weights), or pass --allow-random-weights to run the pipeline on random weights"
    ]


def test_a_long_reason_is_cut_at_a_sentence_end_not_mid_word():
    """The offline reason is one long line ending in advice the message repeats: it used to be cut at 200
    characters, mid-word ("Give a local file instead: --clip-weigh")."""
    reason = (
        "could not get the CLIP weights 'openai' of ViT-B-16: they are not in the local Hugging Face cache and "
        "downloading is off (no network, or HF_HUB_OFFLINE is set). Give a local file instead: --clip-weights "
        "/path/to/ViT-B-16.pt (an OpenAI archive, an open_clip state_dict or a .safetensors file)"
    )
    assert demo._first_sentence(RuntimeError(reason)) == reason.split(". ")[0]
    assert demo._first_sentence(RuntimeError("short reason\nsecond line")) == "short reason"
    words = demo._first_sentence(RuntimeError("word " * 100))
    assert words.endswith("word ...") and len(words) <= 244


def test_random_weights_are_labelled(monkeypatch, capsys):
    monkeypatch.delenv("ZSSEG_CHECKPOINT", raising=False)
    calls = []

    def offline(name, pretrained=None, **_):
        calls.append((name, pretrained))
        if pretrained:
            raise RuntimeError("offline")
        return "random-model"

    monkeypatch.setattr("zsseg_rt.models.create_model", offline)
    model, source, title, bundle = demo._resolve_model(_args(allow_random_weights=True))
    assert model == "random-model" and source is None and bundle.endswith("-random")
    assert "RANDOM WEIGHTS" in title and "RANDOM WEIGHTS" in capsys.readouterr().out
    assert calls == [("scclip-vitb16", "openai"), ("zegclip_tiny_test", None)]


def test_explicit_clip_file_that_fails_is_an_error_not_a_fallback(monkeypatch, tmp_path):
    monkeypatch.delenv("ZSSEG_CHECKPOINT", raising=False)

    def broken(name, pretrained=None, **_):
        raise ValueError(f"cannot read {pretrained}")

    monkeypatch.setattr("zsseg_rt.models.create_model", broken)
    with pytest.raises(ValueError, match="cannot read"):
        demo._resolve_model(_args(clip_weights=str(tmp_path / "ViT-B-16.pt"), allow_random_weights=True))


def test_no_network_is_detected_quickly_and_said_once(monkeypatch, capsys):
    import socket
    import threading

    from zsseg_rt.contract.common import weights

    monkeypatch.delenv("ZSSEG_CHECKPOINT", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens, refused at once
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", hub_constants.HF_HUB_OFFLINE)  # restored afterwards
    # "quickly" without a clock (a wall-time bound fails on a loaded machine): one connection attempt, given the
    # timeout; and an attempt that never returns (a hanging name lookup) does not hold the caller
    attempts, hanging = [], threading.Event()
    real_connect = socket.create_connection

    def connect(address, timeout=None, *args, **kwargs):
        attempts.append((address, timeout))
        if hanging.is_set():
            threading.Event().wait()  # never returns (the daemon thread hub_reachable left behind)
        return real_connect(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    assert weights.hub_reachable(timeout=1.5) is False
    assert attempts == [(("127.0.0.1", 9), 1.5)]
    hanging.set()
    assert weights.hub_reachable(timeout=0.1) is False  # back after its timeout, the attempt still hanging
    monkeypatch.setattr(socket, "create_connection", real_connect)
    seen = {}

    def offline_create(name, pretrained=None, **_):
        seen["offline"] = weights.hub_offline_requested()
        if pretrained:
            raise RuntimeError("cannot find the requested files in the local cache")
        return "random-model"

    monkeypatch.setattr("zsseg_rt.models.create_model", offline_create)
    demo._resolve_model(_args(allow_random_weights=True))
    out = capsys.readouterr().out
    assert seen["offline"] is True  # open_clip was told to use the local cache only: no download retries
    assert out.count("no network") == 1 and "RANDOM WEIGHTS" in out


def test_hub_offline_variable_short_circuits(monkeypatch):
    from zsseg_rt.contract.common import weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights.hub_reachable() is False


def test_the_stock_clip_fallback_is_sc_clip():
    """The demo's default training-free method is the best published one the project implements (SC-CLIP)."""
    from zsseg_rt.cli import build_parser

    args = build_parser().parse_args(["demo"])
    assert args.method == "scclip-vitb16"


# ---- the demo run end to end on tiny models (issue 40 item 2): `zsseg demo` as a user runs it, through the CLI ----


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch intra-op thread, as conftest gives eval/ and train/: the tiny models' small ops (the exports'
    verification) lose more to a second thread than they gain on a busy 2-core machine."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny_native(tiny_bundle):
    """The native checkpoint the session's tiny bundle was exported from (recorded in its meta.json)."""
    import json
    import os

    with open(os.path.join(tiny_bundle, "meta.json"), encoding="utf-8") as handle:
        native = json.load(handle).get("source_checkpoint")
    if not native or not os.path.isdir(native):
        pytest.skip("the tiny bundle was prebuilt elsewhere: its native checkpoint is not here")
    return native


@pytest.fixture(scope="module")
def tiny_clip_weights(tmp_path_factory):
    """Stock-CLIP-layout weights of the tiny test CLIP (the tower of training_free_tiny_test and zegclip_tiny_test),
    as a local --clip-weights file."""
    import torch
    from safetensors.torch import save_file

    from zsseg_rt.contract.common.clip import build_clip
    from zsseg_rt.models.training_free.config import load_training_free_config

    torch.manual_seed(7)
    clip = build_clip(load_training_free_config("training_free_tiny_test"))
    path = tmp_path_factory.mktemp("clip") / "tiny_clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    return str(path)


class _ExportCounter:
    """Counts the demo's calls of ``export_bundle`` (the real one still runs)."""

    def __init__(self, monkeypatch):
        from zsseg_rt.export import onnx_export

        self.calls = 0
        real = onnx_export.export_bundle

        def counting(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(onnx_export, "export_bundle", counting)


def _demo(capsys, *argv):
    from zsseg_rt import cli

    code = cli.main(["demo", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _photo(path, width=96, height=72):
    import cv2
    import numpy as np

    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([rows * 255 // height, cols * 255 // width, (rows + cols) % 256], axis=-1).astype(np.uint8)
    cv2.imwrite(str(path), image)
    return str(path), image


def _file_times(folder):
    import os

    return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in sorted(os.listdir(folder))}


def test_demo_runs_end_to_end_writes_the_overlay_and_reuses_its_bundle(tiny_native, tmp_path, monkeypatch, capsys):
    """`zsseg demo --native DIR --image PHOTO --workdir W --classes ...` exports a bundle under W/bundles, segments
    PHOTO (not the sample) and writes W/demo_overlay.png; the second run reuses the bundle (no export, files
    untouched); no --image segments the shipped sample; a checkpoint of the same name elsewhere is re-exported.

    Mutations checked (each fails this test): `_bundle_matches` always False (the second run re-exports); always
    True (the other checkpoint's run reuses the first bundle); `args.image` ignored in `run_demo` (the overlay is
    the sample's 500x375); `args.workdir` replaced by "out" (nothing under W, an out/ in the current directory)."""
    import os

    import cv2
    import numpy as np

    from zsseg_rt.assets import sample_image
    from zsseg_rt.bundle import load_meta

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a demo that ignored --workdir would write ./out here
    work = tmp_path / "work"
    photo, image = _photo(tmp_path / "photo.png")
    exports = _ExportCounter(monkeypatch)
    argv = ["--native", tiny_native, "--image", photo, "--workdir", str(work), "--classes", "cat,dog,grass"]
    code, out, _ = _demo(capsys, *argv)
    assert code == 0, out
    bundle = work / "bundles" / "native"
    assert exports.calls == 1 and f"exporting + verifying the ONNX bundle -> {bundle}" in out, out
    meta = load_meta(str(bundle))
    assert meta.raw["source_checkpoint"] == os.path.abspath(tiny_native) and meta.raw["demo_config"] == "native"
    assert meta.family == "zegclip" and not meta.raw["weights"]["random"]
    overlay_path = work / "demo_overlay.png"
    overlay = cv2.imread(str(overlay_path))
    assert overlay is not None and overlay.shape == image.shape  # the --image photo, at its size
    assert np.abs(overlay.astype(int) - image).mean() > 5  # labels blended over it, not a copy of the photo
    assert f"{photo} (96x72)" in out and f"overlay written to {overlay_path}" in out
    pixels = out.split("[demo] pixels: ")[1].splitlines()[0]
    assert pixels and all(item.rsplit(" ", 1)[0] in ("cat", "dog", "grass") for item in pixels.split(", ")), pixels
    assert sorted(os.listdir(cwd)) == []  # everything went to --workdir

    before = _file_times(bundle)
    overlay_path.unlink()
    code, out, _ = _demo(capsys, "--native", tiny_native, "--workdir", str(work))  # no --image: the sample
    assert code == 0, out
    assert exports.calls == 1 and f"[demo] reusing bundle {bundle}" in out and "exporting" not in out, out
    assert _file_times(bundle) == before  # reused as it was, not rewritten
    sample = cv2.imread(str(sample_image()))
    assert f"{sample_image()} ({sample.shape[1]}x{sample.shape[0]})" in out
    assert cv2.imread(str(overlay_path)).shape == sample.shape
    assert "20 classes" in out  # no --classes: the model's own (VOC's 20)

    other = tmp_path / "elsewhere" / "native"  # the same checkpoint name, another checkpoint: the bundle is stale
    import shutil

    shutil.copytree(tiny_native, other)
    code, out, _ = _demo(capsys, "--native", str(other), "--workdir", str(work))
    assert code == 0, out
    assert exports.calls == 2 and f"exporting + verifying the ONNX bundle -> {bundle}" in out, out
    assert load_meta(str(bundle)).raw["source_checkpoint"] == str(other)


def test_bundle_matches_needs_the_same_checkpoint_demo_config_and_weights(tmp_path):
    """`_bundle_matches`: no meta.json, another checkpoint, another demo config or other weights (a checkpoint changed
    in place, an older demo's unseeded random weights: no recorded hash) is no match."""
    import json

    bundle = tmp_path / "b"
    assert not demo._bundle_matches(str(bundle), "ckpt", "ckpt", "w1")
    bundle.mkdir()
    source = str(tmp_path / "ckpt")
    meta = {"source_checkpoint": source, "demo_config": "ckpt", demo.WEIGHTS_FIELD: "w1"}
    (bundle / "meta.json").write_text(json.dumps(meta))
    assert demo._bundle_matches(str(bundle), source, "ckpt", "w1")
    assert not demo._bundle_matches(str(bundle), source, "ckpt-other", "w1")
    assert not demo._bundle_matches(str(bundle), str(tmp_path / "other"), "ckpt", "w1")
    assert not demo._bundle_matches(str(bundle), source, "ckpt", "w2")
    (bundle / "meta.json").write_text(json.dumps(dict(meta, source_checkpoint=None)))
    assert demo._bundle_matches(str(bundle), None, "ckpt", "w1")  # random weights: no checkpoint, reused too
    del meta[demo.WEIGHTS_FIELD]
    (bundle / "meta.json").write_text(json.dumps(meta))
    assert not demo._bundle_matches(str(bundle), source, "ckpt", "w1")
    (bundle / "meta.json").write_text("{not json")
    assert not demo._bundle_matches(str(bundle), source, "ckpt", "w1")


def test_random_weights_are_drawn_from_a_fixed_seed():
    """The random-weights model is the same on every run (and the caller's random state is left as it was)."""
    import torch

    from zsseg_rt.models import create_model

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = demo.weights_sha256(demo._seeded_model(create_model, "zegclip_tiny_test"))
    assert torch.equal(torch.rand(1), expected_next)  # fork_rng: the global state untouched
    second = demo.weights_sha256(demo._seeded_model(create_model, "zegclip_tiny_test"))
    unseeded = demo.weights_sha256(create_model("zegclip_tiny_test", pretrained=None))
    assert first == second != unseeded


def test_the_random_weights_demo_reuses_its_bundle_shows_progress_and_is_reproducible(tmp_path, monkeypatch, capsys):
    """`zsseg demo --allow-random-weights` exported its bundle again on every run (47-104 s for ViT-B/16) though its
    help says it reuses it, with new random weights each time, so the bundle the README points at changed and its
    labels with it. Now: the second run reuses it (no export, files untouched, the same labels); a run in another
    folder exports the same weights and the same graphs (byte for byte); the export says its stages and draws
    progress bars on its long ones (their names appear: no timing involved)."""
    import json

    from zsseg_rt.bundle import load_meta

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the stock CLIP tag cannot be had: the random-weights path
    monkeypatch.delenv("ZSSEG_CHECKPOINT", raising=False)
    exports = _ExportCounter(monkeypatch)
    photo, _ = _photo(tmp_path / "photo.png")
    argv = ["--method", "training-free-tiny-test", "--config", "zegclip_tiny_test", "--allow-random-weights"]
    argv += ["--image", photo, "--classes", "cat,dog,grass"]
    work = tmp_path / "work"
    code, out, err = _demo(capsys, *argv, "--workdir", str(work))
    assert code == 0, out + err
    bundle = work / "bundles" / "zegclip_tiny_test-random"
    assert exports.calls == 1 and "No model weights are available" in out and "RANDOM WEIGHTS" in out
    for stage in ("exporting the ONNX graphs", "verifying the bundle against PyTorch with ONNX Runtime"):
        assert f"[demo] {stage}" in out, out
    assert "ONNX graphs:" in err and "verifying against PyTorch:" in err, err[-2000:]  # the bars (stderr)
    pixels = out.split("[demo] pixels: ")[1].splitlines()[0]
    before = _file_times(bundle)
    loaded = load_meta(str(bundle))  # --config CFG with no weights: CFG's model, random (the bundle named CFG-random)
    assert loaded.architecture["config"]["name"] == "zegclip_tiny_test"
    meta = loaded.raw
    assert meta["weights"]["random"] and len(meta[demo.WEIGHTS_FIELD]) == 64

    code, out, err = _demo(capsys, *argv, "--workdir", str(work))
    assert code == 0, out + err
    assert exports.calls == 1 and f"[demo] reusing bundle {bundle}" in out and "exporting" not in out, out
    assert _file_times(bundle) == before  # reused as it was
    assert out.split("[demo] pixels: ")[1].splitlines()[0] == pixels  # the same labels

    other = tmp_path / "other"
    code, out, err = _demo(capsys, *argv, "--workdir", str(other))
    assert code == 0 and exports.calls == 2, out + err
    again = json.loads((other / "bundles" / "zegclip_tiny_test-random" / "meta.json").read_text())
    assert again[demo.WEIGHTS_FIELD] == meta[demo.WEIGHTS_FIELD]
    assert again["files"] == meta["files"]  # every graph file the same, byte for byte (sha256)


def test_demo_method_picks_the_model_family_with_local_clip_weights(tiny_clip_weights, tmp_path, capsys):
    """`--clip-weights FILE --method M`: the bundle is M's (training-free, or any config's family), named
    M-<weights>, its weights recorded as stock CLIP; a second run with the same file reuses it. An unknown method
    is an error naming --method, never "no weights" (the help used to list `naclip`, which did not resolve, and the
    demo then said no weights were available, or with --allow-random-weights ran a random ZegCLIP instead).

    Mutation checked: `create_model(args.method, ...)` replaced by the default method: the bundle's family and
    config are SC-CLIP ViT-B/16's, not the tiny ones asked for (this test fails)."""
    from zsseg_rt.bundle import load_meta

    work = tmp_path / "work"
    for method, family in (("training-free-tiny-test", "training_free"), ("zegclip_tiny_test", "zegclip")):
        code, out, _ = _demo(
            capsys, "--clip-weights", tiny_clip_weights, "--method", method, "--workdir", str(work), "--classes", "a,b"
        )
        assert code == 0, out
        bundle = work / "bundles" / f"{method}-tiny_clip"
        meta = load_meta(str(bundle))
        assert meta.family == family and meta.architecture["config"]["name"] == method.replace("-", "_"), method
        assert meta.raw["weights"]["kind"] == "clip" and meta.raw["weights"]["source"] == tiny_clip_weights
        assert f"[demo] {method} (training-free, CLIP weights {tiny_clip_weights})" in out
    assert (
        load_meta(str(work / "bundles" / "training-free-tiny-test-tiny_clip")).raw["architecture"]["config"]["method"]
        == "sclip"
    )
    code, out, _ = _demo(
        capsys, "--clip-weights", tiny_clip_weights, "--method", "zegclip_tiny_test", "--workdir", str(work)
    )
    assert code == 0 and "reusing bundle" in out, out
    for extra in ([], ["--allow-random-weights"]):
        code, out, err = _demo(capsys, "--method", "naclip", "--workdir", str(work), *extra)
        assert code != 0 and "No model weights" not in out and "RANDOM" not in out, out
        assert err.startswith("zsseg demo: error: --method 'naclip' is not a model config") and "naclip_vitb16" in err


def test_demo_config_names_the_official_checkpoints_config_and_the_random_model(tmp_path, monkeypatch, capsys):
    """`--official CKPT --config CFG`: the checkpoint is read with CFG (the golden tiny ZegCLIP's, which cannot be
    inferred from its keys: the demo used to ignore --config and fail with "pass config=..."); with no weights at all,
    `--allow-random-weights --config CFG` runs CFG's model with random weights, in a bundle named CFG-random: that
    run is test_the_random_weights_demo_reuses_its_bundle_shows_progress_and_is_reproducible's first (the same
    command: checked there, not exported a third time here).

    Mutation checked: `load_official_any(official)` without `config=` (the old code): "cannot infer the config"."""
    import json

    from support import GOLDEN

    from zsseg_rt.bundle import load_meta
    from zsseg_rt.models.zegclip.config import load_zegclip_config

    config = load_zegclip_config("zegclip_tiny_test", decoder_ffn_dim=128).to_dict()
    config["name"] = "golden_tiny"
    config_path = tmp_path / "golden_tiny.json"
    config_path.write_text(json.dumps(config))
    official = str(GOLDEN / "zegclip_tiny" / "official_tiny.safetensors")
    work = tmp_path / "work"
    code, out, err = _demo(capsys, "--official", official, "--config", str(config_path), "--workdir", str(work))
    assert code == 0, out + err
    meta = load_meta(str(work / "bundles" / "official_tiny"))
    assert meta.architecture["config"]["name"] == "golden_tiny" and meta.raw["weights"]["kind"] == "checkpoint"
    assert (work / "demo_overlay.png").is_file()


def test_demo_prepares_the_faster_cpu_paths_in_view_and_leaves_nothing_running(
    tiny_native, tmp_path, monkeypatch, capsys
):
    """Issue 63 item 4 (probe N1, N2): after the overlay the demo prepares the faster CPU paths in the foreground
    (the step and its cost said first, a progress bar), then says what it prepared, how long it took and what it
    added on disk; it starts no process and leaves no thread of a preparation behind (the Engine's own preparation,
    a child process, is never started). Control: --no-prepare prepares nothing and names the command for later."""
    import os
    import threading

    from zsseg_rt.runtime import upgrade

    monkeypatch.delenv(upgrade.PREPARE_ENV)
    started = []
    monkeypatch.setattr(upgrade, "run_preparation", lambda *a, **k: started.append(a) or 1)
    work = tmp_path / "work"
    argv = ["--native", tiny_native, "--workdir", str(work), "--classes", "cat,dog,grass"]
    code, out, _ = _demo(capsys, *argv, "--no-prepare")  # control
    bundle = work / "bundles" / "native"
    assert code == 0 and f"are not prepared: `zsseg build-engine {bundle} --backend auto`" in out, out
    assert not os.path.exists(bundle / "engines")
    code, out, _ = _demo(capsys, *argv)
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("[demo] ")]
    step = next(i for i, line in enumerate(lines) if line.startswith("[demo] preparing the faster CPU paths ("))
    assert "--no-prepare skips this" in lines[step] and "of CPU time" in lines[step] and "MB kept" in lines[step]
    summary = lines[step + 1]
    assert summary.startswith("[demo] prepared in ") and "backend='auto' runs " in summary, out
    assert "the bundle's engines/ folder holds " in summary and " MB (+" in summary, out
    assert os.path.isdir(bundle / "engines") and not started  # in view, in this process: no child
    assert not any(thread.name == "zsseg-auto-prepare" for thread in threading.enumerate())
