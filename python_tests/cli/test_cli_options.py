"""Every option of the ``zsseg`` command line is passed by a test that checks what it does (issue 40 item 4).

``COVERAGE`` maps each option of every ``zsseg`` subcommand ("zsseg COMMAND OPTION", keyed on the option's longest
spelling: a new choice value of an option is no new option) to the tests that pass it through the CLI and check its
effect. ``test_every_cli_option_is_in_the_coverage_table`` walks the real parser tree (``zsseg_rt.cli.build_parser``,
not a list that could drift) and fails when an option has no entry, an entry names no option, a test that does not
exist or a test whose source does not pass the option; ``test_the_coverage_guard_fails_on_an_untested_option`` is its
control, run every time (an option added to the real parser without an entry is reported).

How far an effect is checked: most tests run the command for real and check its output (files, metrics, bundles,
frames, stdout). Where the CLI hands an option to a library call whose behaviour the library's own tests cover, or
whose real effect needs what this machine lacks, the test checks the exact value that reaches that call: the train
recipe options in the resolved recipe (`--print-config` prints the object `train` is given) and, for
`--batch-size/--grad-accum/--num-workers/--amp/--amp-dtype`, in the real training loop too; Ray's start, the batch job
and the Serve deployment behind recorders (python_tests/scale/ runs them for real); TensorRT builds with a fake
toolchain; a V4L2 camera with a fake capture. ``NOT_HERE`` lists the options whose real effect cannot be had here,
each with a reason from the fixed vocabulary ``NOT_HERE_REASONS`` (needs a GPU, TensorRT, a camera, a remote Ray
cluster) and what is checked instead.

Mutation record (each was run and made the named test fail):
* the "zsseg eval --split" entry removed from ``COVERAGE``: the guard names it as an option without a test;
* ``spec["split"] = args.split`` dropped in ``eval/cli.py`` (now ``cli/eval.py``): test_eval_split_and_dataset_config (4 images, not 2);
* ``--ignore-bad-labels`` not mapped to ``on_bad_label``: test_eval_ignore_bad_labels;
* the ``--ray`` refusal of ZeroSeg's protocol options removed: test_eval_ray_options_reach_the_actor_pool;
* ``onnx_export._check_opset`` not called: test_export_opset_clip_weights_and_config (`--opset 17` exported);
* ``camera --loop`` not passed to the runner: test_camera_loop_max_frames_and_progress (2 frames, not 5);
* ``train --dist-backend`` dropped (the code before this file: ``train/cli.py`` never passed it on):
  test_train_dist_backend_reaches_the_process_group;
* ``train --num-workers`` not passed on by ``train/cli.py``:
  test_train_batch_size_grad_accum_num_workers_and_amp_reach_the_loop (a single-process loader).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.assets import SAMPLES_DIR  # noqa: E402
from zsseg_rt.console.arguments import ENGINE_COMMANDS, engine_rows  # noqa: E402

HERE = Path(__file__).resolve().parent.parent  # python_tests: COVERAGE names its tests relative to it


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch intra-op thread (as conftest gives eval/ and train/): the tiny models' many small ops run 20x
    slower with a second thread on a busy 2-core machine (a 1 s evaluation took 26 s)."""
    try:
        import torch
    except ImportError:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _run(capsys, *argv):
    """``zsseg ARGV`` in this process: (exit code, stdout, stderr); an argparse refusal gives its exit code, a
    ``SystemExit(message)`` exit code 1 and the message on stderr (as the interpreter prints it)."""
    message = ""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
        message = "" if stop.code is None or isinstance(stop.code, int) else f"{stop.code}\n"
    captured = capsys.readouterr()
    return code, captured.out, captured.err + message


def _ok(capsys, *argv):
    code, out, err = _run(capsys, *argv)
    assert code == 0, (argv, out[-2000:], err[-3000:])
    return out, err


@pytest.fixture()
def engines(monkeypatch):
    """Every ``zsseg_rt.runtime.Engine`` a command builds in this process, recorded (they run as they are)."""
    import zsseg_rt.runtime as runtime

    made = []

    class RecordedEngine(runtime.Engine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cli_kwargs = kwargs
            made.append(self)

    monkeypatch.setattr(runtime, "Engine", RecordedEngine)
    return made


def _cuda_usable() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


# ------------------------------------------------------------------------------------------------ eval


@pytest.fixture(scope="module")
def voc_copy(tmp_path_factory):
    """The packaged VOC samples (4 images, split val) with a second split 'pair' listing two of them."""
    root = tmp_path_factory.mktemp("voc") / "VOC"
    shutil.copytree(SAMPLES_DIR, root)
    ids = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    (root / "ImageSets" / "Segmentation" / "pair.txt").write_text("\n".join(ids[:2]) + "\n")
    return root, ids


def _eval_json(capsys, bundle, *argv):
    out, _ = _ok(capsys, "eval", bundle, "--backend", "onnxruntime", "--no-progress", "--json", *argv)
    return json.loads(out)


def test_eval_split_and_dataset_config(voc_copy, tiny_bundle, tmp_path, capsys):
    """`--split pair` reads that split's list (2 images, not val's 4); `--dataset-config SPEC.json` is the same
    evaluation from a JSON dataset spec (its split and root), --dataset/--data-root not needed."""
    root, ids = voc_copy
    whole = _eval_json(capsys, tiny_bundle, "--dataset", "voc", "--data-root", root)
    pair = _eval_json(capsys, tiny_bundle, "--dataset", "voc", "--data-root", root, "--split", "pair")
    assert whole["images"] == len(ids) == 4 and whole["dataset"] == "voc_val"
    assert pair["images"] == 2 and pair["dataset"] == "voc_pair" and pair["valid_pixels"] < whole["valid_pixels"]
    spec = tmp_path / "dataset.json"
    spec.write_text(json.dumps({"type": "voc", "root": str(root), "split": "pair"}))
    from_spec = _eval_json(capsys, tiny_bundle, "--dataset-config", spec)
    assert from_spec.pop("speed")["images"] == pair.pop("speed")["images"] == 2  # a measurement of each run
    assert from_spec == pair


def test_eval_ignore_bad_labels(voc_copy, tiny_bundle, tmp_path, capsys):
    """A label with values outside the classes is refused in one line; `--ignore-bad-labels` evaluates it with
    those pixels ignored (exactly them: the valid pixel count drops by their number)."""
    from PIL import Image

    root = tmp_path / "VOC"
    shutil.copytree(voc_copy[0], root)
    first = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[0]
    label_path = root / "SegmentationClass" / f"{first}.png"
    label = Image.open(label_path)
    values = np.array(label)
    clean = int(((values >= 1) & (values <= 20)).sum())  # VOC: 0 background and 255 are ignored
    values[:10, :10] = 50  # not a VOC class
    bad = Image.fromarray(values, mode="P")
    bad.putpalette(label.getpalette())
    bad.save(label_path)
    base = ["--dataset", "voc", "--data-root", root]
    code, _, err = _run(capsys, "eval", tiny_bundle, *base, "--backend", "onnxruntime", "--no-progress")
    assert code != 0 and "outside the 20 classes" in err and len(err.strip().splitlines()) == 1, err
    ignored = _eval_json(capsys, tiny_bundle, *base, "--ignore-bad-labels")
    reference = _eval_json(capsys, tiny_bundle, "--dataset", "voc", "--data-root", voc_copy[0])
    was_valid = int(((np.array(label)[:10, :10] >= 1) & (np.array(label)[:10, :10] <= 20)).sum())
    assert ignored["valid_pixels"] == reference["valid_pixels"] - was_valid
    assert clean > 0 and ignored["images"] == 4


def test_eval_skip_corrupt(voc_copy, tiny_bundle, tmp_path, capsys):
    """An undecodable image stops the evaluation in one line; `--skip-corrupt` skips and counts it."""
    root = tmp_path / "VOC"
    shutil.copytree(voc_copy[0], root)
    first = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[0]
    photo = root / "JPEGImages" / f"{first}.jpg"
    photo.write_bytes(photo.read_bytes()[:2000])  # truncated
    base = ["--dataset", "voc", "--data-root", root]
    code, _, err = _run(capsys, "eval", tiny_bundle, *base, "--backend", "onnxruntime", "--no-progress")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "--skip-corrupt" in err, err
    metrics = _eval_json(capsys, tiny_bundle, *base, "--skip-corrupt")
    assert (metrics["images"], metrics["skipped"]) == (3, 1) and first in metrics["skipped_files"][0]


def test_eval_backend_per_class_and_progress(voc_copy, tiny_bundle, capsys, engines):
    """`--backend torch` evaluates the bundle with the torch backend (its checkpoint), the default with ONNX
    Runtime; `--no-per-class` prints the summary without the per-class rows; `--no-progress` hides the bar."""
    root, _ = voc_copy
    base = ["eval", tiny_bundle, "--dataset", "voc", "--data-root", root, "--limit", "2"]
    table, err = _ok(capsys, *base, "--backend", "torch")
    short, quiet = _ok(capsys, *base, "--no-per-class", "--no-progress")
    assert [engine.backend.name for engine in engines] == ["torch", "onnxruntime"]
    assert "aeroplane" in table and "aeroplane" not in short and "mIoU" in short
    assert "2/2" in err and "2/2" not in quiet  # the progress bar's count


def test_eval_ray_options_reach_the_actor_pool(voc_copy, tiny_bundle, zeroseg_native, capsys, monkeypatch):
    """`--ray --workers 2 --gpus-per-worker 0.5 --cpus-per-worker 2 --address A` start (or join) that cluster and
    that pool (the real pool: python_tests/scale/test_parallel_eval.py; GPUs and a remote cluster are not here, so
    Ray's start and the pool are recorders). ZeroSeg's own protocol options are refused with --ray before Ray starts
    (the actor pool runs the generic evaluation: they used to be dropped silently)."""
    _ray_or_skip()
    import zsseg_rt.eval.parallel as parallel
    import zsseg_rt.scale as scale

    seen = {}
    monkeypatch.setattr(scale, "init_ray", lambda address=None, num_cpus=None: seen.update(address=address))

    def evaluate_parallel(checkpoint, spec, **kwargs):
        seen.update(spec=spec, **kwargs)
        return {"images": 0, "skipped": 0, "mode": kwargs["mode"], "source": "bundle", "mIoU": 0.0}

    monkeypatch.setattr(parallel, "evaluate_parallel", evaluate_parallel)
    root, _ = voc_copy
    argv = ["eval", tiny_bundle, "--dataset", "voc", "--data-root", root, "--ray", "--workers", "2"]
    argv += ["--gpus-per-worker", "0.5", "--cpus-per-worker", "2", "--address", "ray://head:10001", "--json"]
    _ok(capsys, *argv, "--no-progress", "--backend", "openvino", "--precision", "auto")
    assert seen["address"] == "ray://head:10001" and seen["workers"] == 2
    assert (seen["backend"], seen["precision"]) == ("openvino", "auto")
    assert (seen["gpus_per_worker"], seen["cpus_per_worker"], seen["progress"]) == (0.5, 2.0, False)
    assert seen["spec"]["root"] == str(root)
    native, weights, coco = zeroseg_native
    seen.clear()
    zeroseg = ["eval", native, "--dataset", "coco_object", "--data-root", coco, "--ray", "--text-weights", weights]
    code, _, err = _run(capsys, *zeroseg, "--thresholds", "groupvit")
    assert code != 0 and "--text-weights, --thresholds" in err and "--ray" in err and not seen, err


def test_eval_unseen_overrides_the_split(voc_copy, tiny_bundle, capsys):
    """`--unseen cat,dog`: those two are the unseen classes (per class and in mIoU_unseen), not VOC's split."""
    root, _ = voc_copy
    default = _eval_json(capsys, tiny_bundle, "--dataset", "voc", "--data-root", root)
    chosen = _eval_json(capsys, tiny_bundle, "--dataset", "voc", "--data-root", root, "--unseen", "cat,dog")
    assert chosen["unseen"] == ["cat", "dog"] and default["unseen"] != ["cat", "dog"]
    assert [n for n, row in chosen["per_class"].items() if not row["seen"]] == ["cat", "dog"]
    assert default["per_class"]["cat"]["seen"] and not default["per_class"]["sofa"]["seen"]


@pytest.fixture(scope="module")
def training_free_bundle(tmp_path_factory):
    """`zsseg export --config training_free_tiny_test --clip-weights FILE --opset 19 --max-classes 32`: a tiny
    training-free bundle, exported through the CLI (the export options' test checks what it holds)."""
    pytest.importorskip("torch")
    import torch
    from safetensors.torch import save_file

    from zsseg_rt.contract.common.clip import build_clip
    from zsseg_rt.models.training_free.config import load_training_free_config

    root = tmp_path_factory.mktemp("training_free")
    torch.manual_seed(11)
    weights = root / "tiny_clip.safetensors"
    clip = build_clip(load_training_free_config("training_free_tiny_test"))
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))
    bundle = root / "bundle"
    argv = ["export", str(bundle), "--config", "training_free_tiny_test", "--clip-weights", str(weights)]
    photos = [str(root / "mine.png"), str(SAMPLES_DIR / "JPEGImages" / "2011_000025.jpg")]  # not the default set
    cv2.imwrite(photos[0], np.random.default_rng(1).integers(0, 255, (50, 70, 3), np.uint8))
    argv += ["--opset", "19", "--max-classes", "32", "--verify-images", *photos]
    assert cli.main(argv) == 0
    return str(bundle), str(weights), photos


@pytest.mark.host_only  # zsseg export on the CPU (torch.onnx and ONNX Runtime's CPU verification): CI's
def test_export_opset_clip_weights_and_config(training_free_bundle, tmp_path, capsys):
    """The bundle exported with `--config training_free_tiny_test --clip-weights FILE --opset 19 --max-classes 32
    --verify-images A B`: every graph is opset 19 (the default is 18), as meta.json says; the family and config are
    the ones asked for, its weights the file's, 32 classes at most, verified on those two photos.

    `--opset 17` is refused: torch's dynamo exporter (the text encoder's) starts at opset 18 and, when it cannot
    convert the graph down, keeps 18 with a logged warning; the export used to write that text_encoder.onnx at 18
    while meta.json recorded 17 (found by this test; `onnx_export._check_opset` now refuses it)."""
    import onnx

    from zsseg_rt.bundle import load_meta

    bundle, weights, photos = training_free_bundle
    meta = load_meta(bundle)
    assert meta.raw["opset"] == 19 and meta.max_classes == 32
    for name in ("image_encoder.onnx", "head.onnx", "text_encoder.onnx"):
        model = onnx.load(os.path.join(bundle, name), load_external_data=False)
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [19], name
    assert meta.family == "training_free" and meta.architecture["config"]["name"] == "training_free_tiny_test"
    assert meta.raw["weights"]["kind"] == "clip" and meta.raw["weights"]["source"] == weights
    inputs = {case.get("input") for case in meta.raw["verification"]["cases"]} - {None, "random"}
    assert inputs == set(photos), inputs
    argv = ["export", tmp_path / "b17", "--config", "training_free_tiny_test", "--clip-weights", weights]
    code, _, err = _run(capsys, *argv, "--opset", "17", "--max-classes", "8")
    assert code != 0 and "text_encoder.onnx: torch's ONNX exporter wrote opset 18, not the 17 asked for" in err, err
    assert not (tmp_path / "b17").exists()


@pytest.mark.host_only  # zsseg eval, backend auto and onnxruntime: ONNX Runtime on the CPU there too: CI's
def test_eval_settings_official_or_the_bundles_own(training_free_bundle, voc_copy, capsys):
    """`--settings official` (default) runs the family's official settings for the dataset, says so and records
    it; `--settings bundle` runs the bundle's own post-processing and records "bundle"."""
    bundle = training_free_bundle[0]
    root, _ = voc_copy
    base = ["--dataset", "voc", "--data-root", root, "--limit", "1"]
    official = _eval_json(capsys, bundle, *base, "--settings", "official")
    own = _eval_json(capsys, bundle, *base, "--settings", "bundle")
    assert official["evaluation_settings"]["dataset_key"] == "voc20"
    assert official["evaluation_settings"]["settings"]["short_side"] == 336  # SCLIP's official VOC setting
    assert own["evaluation_settings"]["settings"] == "bundle"
    assert official["mIoU"] != own["mIoU"]  # the official short side 336 vs the bundle's 64: another result
    out, _ = _ok(capsys, "eval", bundle, *base, "--backend", "onnxruntime", "--no-progress", "--settings", "bundle")
    assert "sclip: the bundle's own settings" in out and "official sclip settings" not in out, out


@pytest.fixture(scope="module")
def zeroseg_native(tmp_path_factory):
    """A tiny native ZeroSeg checkpoint, the CLIP weights of its teacher's text tower, and a tiny COCO-Object
    dataset (2 images of GroupViT's layout): the dataset whose background threshold differs between the tables."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from zsseg_rt.contract.common.convert import save_native
    from zsseg_rt.models import create_model
    from zsseg_rt.models.zeroseg.teacher import CLIPTeacher

    root = tmp_path_factory.mktemp("zeroseg")
    torch.manual_seed(0)
    model = create_model("zeroseg_tiny_test")
    save_native(model, root / "native")
    torch.manual_seed(5)
    clip = CLIPTeacher(model.config, None).clip
    weights = root / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))
    coco = root / "coco"
    (coco / "images" / "val2017").mkdir(parents=True)
    (coco / "annotations" / "val2017").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(2):
        cv2.imwrite(str(coco / "images" / "val2017" / f"{i:012d}.jpg"), rng.integers(0, 255, (48, 64, 3), np.uint8))
        label = np.zeros((48, 64), np.uint8)
        label[10:40, 8 + 20 * i : 30 + 20 * i] = 1 + 17 * i  # a thing (person, dog) on background
        cv2.imwrite(str(coco / "annotations" / "val2017" / f"{i:012d}_instanceTrainIds.png"), label)
    return str(root / "native"), str(weights), str(coco)


def test_eval_zeroseg_text_weights_thresholds_and_background_threshold(zeroseg_native, capsys):
    """A ZeroSeg checkpoint has no text tower: without `--text-weights` it is refused naming the flag; with it
    the classes are embedded by that CLIP and evaluated. `--thresholds` picks the background threshold table
    (COCO-Object: paper 0.35, GroupViT 0.95); `--background-threshold` overrides both."""
    native, weights, coco = zeroseg_native
    base = ["eval", native, "--dataset", "coco_object", "--data-root", coco, "--no-progress"]
    code, _, err = _run(capsys, *base)
    assert code != 0 and "--text-weights" in err, err
    paper = json.loads(_ok(capsys, *base, "--text-weights", weights, "--json")[0])
    groupvit = json.loads(_ok(capsys, *base, "--text-weights", weights, "--thresholds", "groupvit", "--json")[0])
    override = ["--thresholds", "groupvit", "--background-threshold", "0.5", "--json"]
    fixed = json.loads(_ok(capsys, *base, "--text-weights", weights, *override)[0])
    assert (paper["background_threshold"], groupvit["background_threshold"]) == (0.35, 0.95)
    assert fixed["background_threshold"] == 0.5 and paper["num_classes"] == 81 and paper["images"] == 2
    whole = json.loads(_ok(capsys, *base, "--text-weights", weights, "--mode", "whole", "--device", "cpu", "--json")[0])
    assert paper["mode"] == "slide" and whole["mode"] == "whole"  # --mode: the windows of a PyTorch checkpoint
    import torch

    if not torch.cuda.is_available():  # --device cuda where there is none: refused (with one: used)
        code, _, err = _run(capsys, *base, "--text-weights", weights, "--device", "cuda")
        assert code != 0 and err.startswith("zsseg eval: error:") and "nvidia" in err.lower(), err


# ------------------------------------------------------------------------------------------------ build-engine


class _FakeToolchain:
    """TensorRT is not here: engine files are written as text, and the engines the accuracy gate runs are ONNX
    Runtime (identical outputs: the gate passes). ``jobs``: what each build was asked for."""

    version = "10.3.0"

    def __init__(self):
        from zsseg_rt.runtime.device.cuda_driver import DeviceInfo

        self.device = DeviceInfo("Orin (nvgpu)", (8, 7), multiprocessors=8, total_memory_mib=7620)
        self.jobs = []

    def build(self, job):
        self.jobs.append(job)
        os.makedirs(os.path.dirname(job.engine_path), exist_ok=True)
        with open(job.engine_path, "wb") as handle:
            handle.write(f"engine {job.key.digest()}".encode())

    def backend(self, meta, engine_paths):
        from zsseg_rt.runtime.backends import open_reference

        return open_reference(meta)


def test_build_engine_max_batch_opt_classes_workspace_precision_and_force(tiny_bundle, tmp_path, capsys, monkeypatch):
    """`zsseg build-engine` (TensorRT; a fake toolchain here, as no GPU is): `--max-batch 3` is the image engine's
    batch range, `--opt-classes 8` the head's tuned class count, `--workspace 2` the builder's 2 GiB, `--precision
    fp16-pinned` the engines' precision; a second run reuses the cached engines, `--force` builds them again."""
    from zsseg_rt.prepare.tensorrt import build as trt_build

    toolchain = _FakeToolchain()
    monkeypatch.setattr(trt_build, "TensorRTToolchain", lambda: toolchain)
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    argv = ["build-engine", bundle, "--max-batch", "3", "--opt-classes", "8", "--workspace", "2"]
    out, _ = _ok(capsys, *argv, "--precision", "fp16-pinned")
    jobs = {job.role: job for job in toolchain.jobs}
    assert sorted(jobs) == ["head", "image", "text"] and out.strip().splitlines()[-1].startswith("fp16-pinned engines")
    assert jobs["image"].ranges["batch"][1:] == (3, 3) and jobs["head"].ranges["num_classes"][1] == 8
    assert all(job.workspace_bytes == 2 << 30 for job in toolchain.jobs)
    assert {job.key.precision for job in toolchain.jobs} == {"fp16-pinned"}
    out, _ = _ok(capsys, *argv, "--precision", "fp16-pinned")
    assert len(toolchain.jobs) == 3 and "nothing (all cached)" in out
    _ok(capsys, *argv, "--precision", "fp16-pinned", "--force")
    assert len(toolchain.jobs) == 6


# ------------------------------------------------------------------------------------------------ convert


def _zegformer_to_official():
    """``to_official`` of python_tests/models/zegformer/test_zegformer_official.py: a native ZegFormer state dict in
    the official (detectron2) key layout, the inverse of the import map that file checks."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_zegformer_layout", HERE / "models" / "zegformer" / "test_zegformer_official.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.to_official


def test_convert_clip_pretrained_fills_a_zegformer_checkpoint_without_clip(tmp_path, capsys):
    """An official ZegFormer checkpoint holds no CLIP weights: `zsseg convert` refuses it naming
    --clip-pretrained; with `--clip-pretrained FILE` the native checkpoint's CLIP tensors are the file's."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from zsseg_rt.contract.common.clip import build_clip
    from zsseg_rt.models import create_model, load_config

    torch.manual_seed(0)
    model = create_model("zegformer_tiny_test")
    checkpoint = tmp_path / "zegformer.pth"
    torch.save({"model": _zegformer_to_official()(model.state_dict(), include_clip=False)}, checkpoint)
    torch.manual_seed(9)
    clip = build_clip(load_config("zegformer_tiny_test")).state_dict()
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.items()}, str(weights))
    native = tmp_path / "native"
    base = ["convert", checkpoint, native, "--config", "zegformer_tiny_test"]
    code, _, err = _run(capsys, *base)
    assert code != 0 and "holds no CLIP weights" in err and "--clip-pretrained" in err and not native.exists(), err
    out, _ = _ok(capsys, *base, "--clip-pretrained", weights)
    assert "wrote" in out
    state = create_model(str(native)).state_dict()
    assert torch.equal(state["clip_visual.proj"], clip["visual.proj"])
    assert torch.equal(state["text_encoder.token_embedding.weight"], clip["token_embedding.weight"])
    assert torch.equal(state["predictor.query_embed.weight"], model.state_dict()["predictor.query_embed.weight"])


@pytest.mark.host_only  # zsseg convert: a checkpoint read and written on the CPU (no device): CI's
def test_convert_allow_missing_text_encoder_and_overwrite(tmp_path, capsys):
    """An official ZegCLIP checkpoint without text_encoder.* tensors is refused (missing keys); with
    `--allow-missing-text-encoder` it converts, the checkpoint's own tensors kept. Converting again into the same
    directory is refused, and done with `--overwrite`."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    from support import GOLDEN

    from zsseg_rt.models import create_model
    from zsseg_rt.models.zegclip.config import load_zegclip_config

    official = load_file(str(GOLDEN / "zegclip_tiny" / "official_tiny.safetensors"))
    no_text = {k: v for k, v in official.items() if not k.startswith("text_encoder.")}
    checkpoint = tmp_path / "no_text.pth"
    torch.save({"state_dict": no_text}, checkpoint)
    config = load_zegclip_config("zegclip_tiny_test", decoder_ffn_dim=128).to_dict()  # the golden model's
    (tmp_path / "golden.json").write_text(json.dumps(config))
    native = tmp_path / "native"
    base = ["convert", checkpoint, native, "--config", tmp_path / "golden.json"]
    code, _, err = _run(capsys, *base)
    assert code != 0 and "missing key(s): text_encoder." in err and not native.exists(), err
    _ok(capsys, *base, "--allow-missing-text-encoder")
    state = create_model(str(native)).state_dict()
    key = next(k for k in state if k.startswith("decode_head.") and k in official)
    assert torch.equal(state[key], official[key])
    written = (native / "model.safetensors").stat().st_mtime_ns
    code, _, err = _run(capsys, *base, "--allow-missing-text-encoder")  # DST holds a checkpoint already
    assert code != 0 and "overwrite" in err and (native / "model.safetensors").stat().st_mtime_ns == written, err
    _ok(capsys, *base, "--allow-missing-text-encoder", "--overwrite")
    assert (native / "model.safetensors").stat().st_mtime_ns != written


# ------------------------------------------------------------------------------------------------ train


def test_train_print_config_shows_the_recipe_the_options_make(tmp_path, capsys):
    """`--print-config` prints the resolved recipe and trains nothing; each recipe option is in it."""
    pytest.importorskip("torch")
    work = tmp_path / "work"
    argv = ["train", "tiny_test", "--print-config", "--work-dir", work, "--set", "lr=0.25", "--data-root", tmp_path]
    argv += ["--pretrained", "clip.pt", "--init-from", "start.pt", "--iterations", "7", "--batch-size", "4"]
    argv += ["--grad-accum", "2", "--num-workers", "1", "--seed", "5", "--amp", "--amp-dtype", "bfloat16"]
    out, _ = _ok(capsys, *argv, "--fail-on-corrupt")
    recipe = json.loads(out)
    assert recipe["work_dir"] == str(work) and recipe["lr"] == 0.25 and recipe["dataset"]["root"] == str(tmp_path)
    assert (recipe["pretrained"], recipe["init_from"]) == ("clip.pt", "start.pt")
    assert (recipe["iterations"], recipe["batch_size"], recipe["grad_accum"]) == (7, 4, 2)
    assert (recipe["num_workers"], recipe["seed"], recipe["amp"], recipe["amp_dtype"]) == (1, 5, True, "bfloat16")
    assert recipe["on_corrupt"] == "raise" and not work.exists()  # printed, nothing trained
    out, _ = _ok(capsys, "train", "tiny_test", "--print-config", "--set", 'on_corrupt="raise"', "--skip-corrupt")
    assert json.loads(out)["on_corrupt"] == "skip"
    plain = json.loads(_ok(capsys, "train", "tiny_test", "--print-config")[0])
    assert (plain["iterations"], plain["amp"], plain["pretrained"]) == (300, False, None)  # the recipe's own


def _train(capsys, work, *extra):
    argv = ["train", "tiny_test", "--work-dir", work, "--iterations", "3", "--batch-size", "2", "--device", "cpu"]
    out, err = _ok(capsys, *argv, "--set", "checkpoint_interval=1", *extra)
    return json.loads(out[out.index("{") :]), err


def test_train_stop_after_resume_no_resume_device_and_progress(tmp_path, capsys):
    """`--stop-after 1` stops after one iteration; the next run resumes from the newest checkpoint (the default),
    `--no-resume` starts again at 0, `--resume CKPT` continues from that checkpoint; `--no-progress` hides the
    progress bar a run otherwise draws; `--device cpu` trains on the CPU, `--device cuda` is refused without one."""
    torch = pytest.importorskip("torch")
    work = tmp_path / "work"
    first, err = _train(capsys, work, "--stop-after", "1", "--no-progress")
    assert first["iteration"] == 1 and "it/s" not in err and "s/it" not in err, err
    second, err = _train(capsys, work, "--stop-after", "1")
    assert second["iteration"] == 2 and ("it/s" in err or "s/it" in err), err  # resumed; a progress bar drawn
    again, _ = _train(capsys, work, "--stop-after", "1", "--no-resume", "--no-progress")
    assert again["iteration"] == 1
    resumed, _ = _train(capsys, work, "--resume", work / "checkpoints" / "iter_0000002.pt", "--no-progress")
    assert resumed["iteration"] == 3 and Path(resumed["native"]).is_dir()
    assert torch.load(resumed["checkpoint"], weights_only=False)["iteration"] == 3
    if not torch.cuda.is_available():
        code, _, err = _run(capsys, "train", "tiny_test", "--work-dir", tmp_path / "gpu", "--device", "cuda")
        assert code != 0 and "cuda" in err.lower(), err


def test_train_pretrained_and_init_from_are_the_starting_weights(tmp_path, capsys):
    """With lr 0 a run ends where it started: `--pretrained FILE` puts the file's CLIP weights in the model,
    `--init-from DIR` the whole model of that checkpoint (another seed would start elsewhere)."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    from zsseg_rt.contract.common.clip import build_clip
    from zsseg_rt.models import load_config

    torch.manual_seed(4)
    clip = build_clip(load_config("zegclip_tiny_p8_test", image_size=64)).state_dict()
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.items()}, str(weights))
    frozen = ["--set", "lr=0", "--set", "warmup_iters=0", "--iterations", "1", "--no-progress"]
    first, _ = _train(capsys, tmp_path / "a", "--pretrained", weights, *frozen)
    start = load_file(os.path.join(first["native"], "model.safetensors"))
    assert torch.equal(start["backbone.proj"], clip["visual.proj"])
    assert torch.equal(start["text_encoder.token_embedding.weight"], clip["token_embedding.weight"])
    second, _ = _train(capsys, tmp_path / "b", "--init-from", first["native"], "--seed", "99", *frozen)
    end = load_file(os.path.join(second["native"], "model.safetensors"))
    assert end.keys() == start.keys() and all(torch.equal(end[k], start[k]) for k in start)
    control, _ = _train(capsys, tmp_path / "c", "--seed", "99", *frozen)
    other = load_file(os.path.join(control["native"], "model.safetensors"))
    assert not all(torch.equal(other[k], start[k]) for k in start)


def test_train_batch_size_grad_accum_num_workers_and_amp_reach_the_loop(tmp_path, capsys, monkeypatch):
    """One real training iteration with `--batch-size 4 --grad-accum 2 --num-workers 1 --amp --amp-dtype bfloat16`:
    the loader yields micro-batches of 2 images (a global batch of 4 in 2 accumulation steps), 2 of them in the
    iteration, loaded in a worker process (a multi-process loader iterator), and the forward passes run under CPU
    bfloat16 autocast; without the options, the recipe's: 1 batch of 8, in this process, autocast disabled. (The
    loader and torch.autocast are wrapped to record what they were given; both run as they are.)"""
    torch = pytest.importorskip("torch")
    import torch.utils.data as torch_data

    seen = {"iterators": [], "batches": [], "autocast": []}

    class RecordedLoader(torch_data.DataLoader):
        def __iter__(self):
            iterator = super().__iter__()
            seen["iterators"].append(type(iterator).__name__)
            for batch in iterator:
                seen["batches"].append(int(batch[0].shape[0]))
                yield batch

    real_autocast = torch.autocast

    def autocast(device_type, dtype=None, enabled=True, **kwargs):
        seen["autocast"].append((device_type, dtype, enabled))
        return real_autocast(device_type, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr(torch_data, "DataLoader", RecordedLoader)
    monkeypatch.setattr(torch, "autocast", autocast)
    base = ["train", "tiny_test", "--iterations", "1", "--device", "cpu", "--no-progress"]
    _ok(capsys, *base, "--work-dir", tmp_path / "a", "--batch-size", "4", "--grad-accum", "2", "--num-workers", "1")
    assert seen["iterators"] == ["_MultiProcessingDataLoaderIter"] and seen["batches"] == [2, 2], seen
    assert seen["autocast"] == [("cpu", torch.float16, False)] * 2  # no --amp: disabled (the recipe's dtype)
    seen.update(iterators=[], batches=[], autocast=[])
    _ok(capsys, *base, "--work-dir", tmp_path / "b", "--amp", "--amp-dtype", "bfloat16")
    assert seen["iterators"] == ["_SingleProcessDataLoaderIter"] and seen["batches"] == [8], seen
    assert seen["autocast"] == [("cpu", torch.bfloat16, True)], seen


@pytest.fixture()
def corrupt_folder_dataset(tmp_path):
    """`--set dataset=...` for a 4-image synthetic folder dataset one of whose images is not an image."""
    from zsseg_rt.data import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "data", length=4, size=(64, 64), num_classes=6, unseen=["cyan checker"])
    (root / "images" / "00001.png").write_bytes(b"not an image")
    return f"dataset={json.dumps({'type': 'folder', 'root': str(root), 'unseen': ['cyan checker']})}"


def test_train_skip_corrupt_and_fail_on_corrupt(tmp_path, capsys, corrupt_folder_dataset):
    """`--fail-on-corrupt` stops at an undecodable image in one line; `--skip-corrupt` (over a recipe that says
    raise) trains on and counts it."""
    pytest.importorskip("torch")
    data = ["--set", corrupt_folder_dataset, "--no-progress"]
    code, _, err = _run(capsys, "train", "tiny_test", "--work-dir", tmp_path / "a", *data, "--fail-on-corrupt")
    assert code != 0 and "00001.png" in err and "--skip-corrupt" in err, err
    summary, _ = _train(capsys, tmp_path / "b", *data, "--set", 'on_corrupt="raise"', "--skip-corrupt")
    assert summary["iteration"] == 3 and summary["skipped_samples"] == 1


def test_train_skip_corrupt_counts_with_loader_workers(tmp_path, capsys, corrupt_folder_dataset):
    """`--num-workers 1`: the data is loaded in a worker process; a skipped image is still counted. (Found by this
    test: the workers' skips were recorded in their own copies of the dataset and the summary said 0; the trainer
    now shares the record with them through a multiprocessing manager. Control: without the sharing this fails.)"""
    pytest.importorskip("torch")
    summary, _ = _train(capsys, tmp_path, "--set", corrupt_folder_dataset, "--skip-corrupt", "--num-workers", "1")
    assert summary["skipped_samples"] == 1


def test_train_dist_backend_reaches_the_process_group(tmp_path, capsys, monkeypatch):
    """Under torchrun (WORLD_SIZE > 1) `--dist-backend gloo` is the backend of the process group. A real second
    process group needs torchrun with two ranks (nccl: GPUs): here init_process_group is replaced by a recorder.
    The option used to be parsed and dropped (zsseg_rt.train.cli never passed it on: found by this test)."""
    pytest.importorskip("torch")
    from support import record_process_groups

    seen = record_process_groups(monkeypatch)
    base = ["train", "tiny_test", "--work-dir", tmp_path, "--device", "cpu", "--no-progress"]
    for backend in ("gloo", "mpi"):
        code, _, err = _run(capsys, *base, "--dist-backend", backend)
        assert code != 0 and "process group recorded" in err, err
    _run(capsys, *base)
    assert seen == ["gloo", "mpi", "gloo"]  # the last: no --dist-backend with --device cpu -> gloo, GPU or not


# ------------------------------------------------------------------------------------------------ camera


@pytest.fixture()
def frames_folder(tmp_path):
    """Two smooth 64x48 images (JPEG keeps them within a grey level or two), an image folder source."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rows, cols = np.mgrid[0:48, 0:64]
    for i in range(2):
        image = np.stack([rows * 4 + 20 * i, cols * 3, 200 - cols * 2 - rows], axis=-1).clip(0, 255)
        cv2.imwrite(str(folder / f"f{i}.png"), image.astype(np.uint8))
    return folder


def _stats(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _read_stderr_until(proc, pattern, seconds=120):
    """Lines of ``proc``'s stderr up to the first matching ``pattern`` (a regex); returns (lines, match)."""
    lines, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(pattern, line)
        if found:
            return lines, found
    raise AssertionError(f"no {pattern!r} in the camera's output:\n{''.join(lines)[-3000:]}")


def _camera_process(tiny_bundle, folder, stats, *extra):
    """`zsseg camera FOLDER --loop --preview 0 --preview-host 127.0.0.2` in a subprocess (logging is configured
    per process: -v can only be seen there); it runs until SIGTERM."""
    from support import subprocess_env

    argv = [sys.executable, "-m", "zsseg_rt.cli", "camera", str(folder), "--bundle", tiny_bundle, "--loop"]
    argv += ["--preview", "0", "--preview-host", "127.0.0.2", "--stats-json", str(stats), *extra]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(OMP_NUM_THREADS="1")
    )


@pytest.mark.parametrize("verbose", [True, False])
def test_camera_class_file_loop_preview_host_and_verbose(tiny_bundle, frames_folder, tmp_path, verbose):
    """`--class-file F`: the vocabulary is the file's; `--loop`: a 2-image folder goes round until stopped
    (more frames processed than it holds); `--preview-host 127.0.0.2`: the preview listens there and only there;
    `-v`: debug lines (the preview's request log) appear, and only with it. The run without -v is also
    `--preview-readonly`: its page has no class box and refuses new classes (405); the other page has the box."""
    import urllib.error
    import urllib.request

    from net_support import listening_addresses

    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\ngrass\n")
    stats = tmp_path / "stats.json"
    extra = ["-v"] if verbose else ["--preview-readonly"]
    proc = _camera_process(tiny_bundle, frames_folder, stats, "--class-file", classes, *extra)
    try:
        lines, found = _read_stderr_until(proc, r"MJPEG preview at http://([\d.]+):(\d+)/")
        host, port = found.group(1), int(found.group(2))
        assert host == "127.0.0.2"
        more, _ = _read_stderr_until(proc, r"streaming folder:")
        lines += more
        assert "(cat, dog, grass)" in more[-1], more[-1]
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/stats", timeout=30) as answer:
            assert answer.status == 200
        # there and only there: the process's listening sockets as the kernel lists them (a refusal probed at
        # 127.0.0.1:PORT came from another xdist worker's server holding that port there: issue 91)
        listening = listening_addresses(proc.pid)
        assert {a for a in listening if a[1] == port} == {("127.0.0.2", port)}, listening
        assert not [a for a in listening if a[0] in ("0.0.0.0", "::", "127.0.0.1")], listening
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/", timeout=30) as answer:
            page = answer.read().decode()
        post = urllib.request.Request(f"http://127.0.0.2:{port}/classes", data=b'{"classes": "a,b"}', method="POST")
        if verbose:
            assert 'id="vocabulary"' in page and "read-only" not in page
        else:
            assert 'id="vocabulary"' not in page and "read-only" in page
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(post, timeout=30)
            assert refused.value.code == 405
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # round the folder more than once
            with urllib.request.urlopen(f"http://127.0.0.2:{port}/stats", timeout=30) as answer:
                if json.loads(answer.read()).get("processed", 0) > 4:
                    break
            time.sleep(0.2)
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = "".join(lines) + err
    assert proc.returncode == 143, text[-3000:]  # SIGTERM: 128 + 15, once the outputs are finalised
    assert _stats(stats)["processed"] > 4  # looped: 2 images, more than twice round
    debug = [line for line in text.splitlines() if " DEBUG " in line]
    if verbose:
        assert any(re.search(r"DEBUG mjpeg [\d.]+: \"GET /stats", line) for line in debug), text[-3000:]
    else:
        assert not debug, debug


def test_camera_loop_max_frames_and_progress(tiny_bundle, frames_folder, tmp_path, capsys):
    """A folder is read once (2 frames) without --loop, round and round with it until `--max-frames 5`; a
    folder's progress bar is drawn unless `--no-progress`."""
    stats = tmp_path / "s.json"
    base = ["camera", frames_folder, "--bundle", tiny_bundle, "--classes", "a,b", "-o", tmp_path / "out"]
    _, err = _ok(capsys, *base, "--stats-json", stats, "--max-frames", "5")
    assert _stats(stats)["processed"] == 2 and "2/2" in err, err  # the bar: 2 of the folder's 2 frames
    _, err = _ok(capsys, *base, "--stats-json", stats, "--max-frames", "5", "--loop", "--no-progress", "--overwrite")
    assert _stats(stats)["processed"] == 5 and "frame/s" not in err and "5/5" not in err, err


def test_camera_backend_device_mode_alpha_and_legend(tiny_bundle, frames_folder, tmp_path, capsys, engines):
    """`--backend onnxruntime --device cpu --mode exact` build that Engine (the camera's default mode is fast);
    `--alpha 0 --no-legend` writes the frames as they came (nothing blended, no legend), the default does not."""
    base = ["camera", frames_folder, "--bundle", tiny_bundle, "--classes", "a,b,c", "--no-progress"]
    _ok(capsys, *base, "-o", tmp_path / "plain", "--backend", "onnxruntime", "--device", "cpu", "--mode", "exact")
    _ok(capsys, *base, "-o", tmp_path / "clear", "--alpha", "0", "--no-legend")
    chosen, default = engines[:2]
    assert (chosen.backend.name, chosen.postprocessor.mode) == ("onnxruntime", "exact")
    assert chosen.cli_kwargs["device"] == "cpu" and chosen.backend.providers == ["CPUExecutionProvider"]
    assert default.postprocessor.mode == "fast" and default.cli_kwargs["backend"] == "auto"
    if not _cuda_usable():  # --device cuda on a machine without one: refused in one line (with one: used)
        code, _, err = _run(capsys, *base, "-o", tmp_path / "gpu", "--device", "cuda", "--backend", "onnxruntime")
        assert code != 0 and err.startswith("zsseg camera: error:") and "cuda" in err.lower(), err
    for i, source in enumerate(sorted(frames_folder.iterdir())):
        photo = cv2.imread(str(source)).astype(int)
        clear = cv2.imread(str(tmp_path / "clear" / f"frame_{i:06d}.jpg")).astype(int)
        plain = cv2.imread(str(tmp_path / "plain" / f"frame_{i:06d}.jpg")).astype(int)
        assert np.abs(clear - photo).mean() < 3  # the photo itself (JPEG rounding)
        assert np.abs(plain - photo).mean() > 10  # labels blended and a legend drawn


def test_camera_max_pixels_and_allow_partial_images(tiny_bundle, tmp_path, capsys):
    """An image folder's frame over `--max-pixels` is skipped with a warning; a truncated image is skipped unless
    `--allow-partial-images`, which segments what it holds."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(1)
    cv2.imwrite(str(folder / "a_small.png"), rng.integers(0, 255, (30, 40, 3), np.uint8))
    cv2.imwrite(str(folder / "b_large.png"), rng.integers(0, 255, (60, 80, 3), np.uint8))
    ok, jpeg = cv2.imencode(".jpg", rng.integers(0, 255, (48, 64, 3), np.uint8))
    (folder / "c_cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])  # truncated
    stats = tmp_path / "s.json"
    base = ["camera", folder, "--bundle", tiny_bundle, "--classes", "a,b", "-o", tmp_path / "out", "--no-progress"]
    _ok(capsys, *base, "--stats-json", stats)
    assert _stats(stats)["processed"] == 2 and _stats(stats)["decode_errors"] == 1  # the truncated one skipped
    _ok(capsys, *base, "--stats-json", stats, "--allow-partial-images", "--overwrite")
    assert _stats(stats)["processed"] == 3
    _ok(
        capsys, *base, "--stats-json", stats, "--max-pixels", "2000", "--overwrite"
    )  # 40x30 = 1200 fits, 80x60 does not
    assert _stats(stats)["processed"] == 1


class _FakeCamera:
    """A V4L2 camera for ``cv2.VideoCapture`` (none is attached here): it delivers frames of the size and rate it
    was asked for with ``set``; the first one opened gives ``frames`` frames and is then lost, later opens fail."""

    frames = 6
    opened: list = []

    def __init__(self, *args):
        self.args = args
        self.settings = {}
        self.left = self.frames if not _FakeCamera.opened else None
        _FakeCamera.opened.append(self)

    def isOpened(self):
        return self.left is not None

    def set(self, prop, value):
        self.settings[prop] = value
        return True

    def get(self, prop):
        defaults = {cv2.CAP_PROP_FRAME_WIDTH: 640, cv2.CAP_PROP_FRAME_HEIGHT: 480, cv2.CAP_PROP_FPS: 30}
        return float(self.settings.get(prop, defaults.get(prop, 0)))

    def read(self):
        if not self.left:
            return False, None
        self.left -= 1
        width, height = int(self.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return True, np.full((height, width, 3), 40 * self.left, np.uint8)

    def release(self):
        pass


@pytest.fixture()
def fake_camera(monkeypatch):
    """``/dev/video0`` answered by ``_FakeCamera``; returns the real ``cv2.VideoCapture`` (to read outputs). A file is
    still opened by the real one (the video sink reads back what OpenCV wrote)."""
    from zsseg_rt.stream.sources import v4l2

    real = cv2.VideoCapture
    _FakeCamera.opened = []
    monkeypatch.setattr(v4l2, "check_v4l2_device", lambda target: None)
    monkeypatch.setattr(
        cv2, "VideoCapture", lambda *args: _FakeCamera(*args) if isinstance(args[0], int) else real(*args)
    )
    return real


def test_camera_width_height_fps_and_every_frame_on_a_live_camera(tiny_bundle, tmp_path, capsys, caplog, fake_camera):
    """A camera (live: frames not taken in time are dropped) asked for `--width 80 --height 60 --fps 15` is set
    to that and delivers 80x60 frames; the output video keeps 15 fps; `--every-frame` processes every frame
    instead of the newest. A real V4L2 device is not attached here: the capture is a fake (the settings it was
    given are what the test reads)."""
    import logging

    caplog.set_level(logging.INFO, logger="zsseg_rt")
    video, stats = tmp_path / "out.avi", tmp_path / "s.json"
    argv = ["camera", "0", "--bundle", tiny_bundle, "--classes", "a,b", "-o", video, "--stats-json", stats]
    argv += ["--max-reconnects", "0"]  # the fake camera is lost after its frames: give up then, not retry forever
    _run(capsys, *argv, "--width", "80", "--height", "60", "--fps", "15", "--every-frame")
    summary = _stats(stats)
    assert summary["processed"] == summary["captured"] == _FakeCamera.frames and summary["dropped"] == 0, summary
    camera = _FakeCamera.opened[0]
    assert camera.args[0] == 0 and camera.args[1] == cv2.CAP_V4L2
    assert {k: camera.settings[k] for k in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS)} == {
        cv2.CAP_PROP_FRAME_WIDTH: 80,
        cv2.CAP_PROP_FRAME_HEIGHT: 60,
        cv2.CAP_PROP_FPS: 15,
    }
    written = fake_camera(str(video))
    size = (int(written.get(cv2.CAP_PROP_FRAME_WIDTH)), int(written.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    fps, count = written.get(cv2.CAP_PROP_FPS), int(written.get(cv2.CAP_PROP_FRAME_COUNT))
    written.release()
    assert size == (80, 60) and fps == pytest.approx(15.0) and count == _FakeCamera.frames
    assert "(every frame)" in caplog.text
    caplog.clear()
    _FakeCamera.opened = []
    _run(capsys, *argv, "--overwrite")
    assert "(newest frame; stale frames dropped)" in caplog.text
    assert cv2.CAP_PROP_FRAME_WIDTH not in _FakeCamera.opened[0].settings  # not asked for: not set


@pytest.mark.parametrize("reconnects", [0, 1])
def test_camera_max_reconnects_gives_up_after_that_many_tries(
    tiny_bundle, tmp_path, capsys, caplog, fake_camera, reconnects
):
    """A lost camera is reopened with backoff; `--max-reconnects N` gives up after N failed tries (exit 1)."""
    import logging

    caplog.set_level(logging.INFO, logger="zsseg_rt")
    argv = ["camera", "0", "--bundle", tiny_bundle, "--classes", "a,b", "-o", tmp_path / "out", "--no-progress"]
    code, _, _ = _run(capsys, *argv, "--max-reconnects", reconnects)
    assert code == 1 and len(_FakeCamera.opened) == 1 + reconnects  # the first open, then N tries
    assert "giving up" in caplog.text or "not back after" in caplog.text, caplog.text


# ------------------------------------------------------------------------------------------------ segment


def test_segment_mode_and_backend_build_that_engine(tiny_bundle, tmp_path, capsys, engines):
    """`zsseg segment --mode fast` runs the fused single-window post-processing (default exact); on a square photo
    the two orders give the same labels here, so the Engine the command built is what is checked; `--backend
    torch` runs the torch backend, `--backend onnxruntime` ONNX Runtime."""
    photo = str(tmp_path / "p.png")
    cv2.imwrite(photo, np.full((64, 64, 3), 90, np.uint8))
    base = ["segment", photo, "--bundle", tiny_bundle, "--classes", "a,b", "--backend", "onnxruntime"]
    _ok(capsys, *base, "-o", tmp_path / "fast.png", "--mode", "fast")
    _ok(capsys, *base, "-o", tmp_path / "exact.png")
    assert [engine.postprocessor.mode for engine in engines] == ["fast", "exact"]
    assert (tmp_path / "fast.png").is_file() and (tmp_path / "exact.png").is_file()
    pytest.importorskip("torch")  # `--backend torch`: the bundle's checkpoint run by PyTorch
    torch_run = ["segment", photo, "--bundle", tiny_bundle, "--classes", "a,b", "-o", tmp_path / "t.png"]
    _ok(capsys, *torch_run, "--backend", "torch")
    assert engines[-1].backend.name == "torch" and engines[0].backend.name == "onnxruntime"


# ------------------------------------------------------------------------------------------------ batch, serve


def _ray_or_skip():
    """Ray imported the way zsseg_rt.scale imports it (loopback mode set first, as the scale tests' cluster needs)."""
    # installed? (not imported: importorskip would import Ray before import_ray sets its loopback mode, and the
    # scale tests' cluster, on this worker later, would come up off 127.0.0.1)
    if importlib.util.find_spec("ray") is None:
        pytest.skip("zsseg batch/serve need the scale extra (ray[data,serve])")
    from zsseg_rt.scale import import_ray

    return import_ray(loopback=True)


def test_batch_options_reach_the_job_and_the_cluster(tiny_bundle, tmp_path, capsys, monkeypatch):
    """Every `zsseg batch` option ends up in the checked job handed to Ray Data (or in the cluster Ray joins).
    Running the job itself is python_tests/scale/test_batch.py's (a Ray cluster; GPUs and a remote cluster are not
    available here): Ray's start and the run are replaced by recorders. `--no-resume` redoes an image a previous
    run finished (with resume it is skipped). `--backend openvino --precision auto` reach every worker's Engine (the
    worker resolves auto on its own CPU: test_openvino_precision.py); without --precision the backend's default."""
    _ray_or_skip()
    import zsseg_rt.scale as scale
    import zsseg_rt.scale.batch as batch

    seen = {}
    monkeypatch.setattr(scale, "init_ray", lambda address=None, num_cpus=None: seen.update(ray=(address, num_cpus)))

    def summarize(job, progress=True):
        seen.update(job=job, progress=progress)
        return {"ok": 0, "skipped": 0, "error": 0, "manifest": "m", "worker_peak_rss_bytes": None, "errors": []}

    monkeypatch.setattr(batch, "summarize_batch", summarize)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), np.full((20, 30, 3), 70, np.uint8))
    out = tmp_path / "out"
    argv = ["batch", folder, out, "--bundle", tiny_bundle, "--classes", "cat,dog", "--address", "ray://head:10001"]
    argv += ["--workers", "1:3", "--gpus-per-worker", "0.5", "--cpus-per-worker", "2", "--batch-size", "7"]
    argv += ["--backend", "onnxruntime", "--device", "cuda", "--mode", "fast", "--no-progress", "--max-pixels", "5000"]
    digest = __import__("zsseg_rt.bundle", fromlist=["bundle_digest"]).bundle_digest(tiny_bundle)
    _ok(capsys, *argv, "--bundle-digest", digest, "--num-cpus", "3")
    job = seen["job"]
    assert seen["ray"] == ("ray://head:10001", 3) and seen["progress"] is False
    assert job.pool == {"min_size": 1, "max_size": 3} and (job.gpus_per_worker, job.cpus_per_worker) == (0.5, 2.0)
    assert job.batch_size == 7 and job.names == ["cat", "dog"]
    wanted = dict(backend="onnxruntime", device="cuda", mode="fast", max_pixels=5000, expected_digest=digest)
    assert {name: job.worker_options[name] for name in wanted} == wanted and job.worker_options["precision"] is None
    assert sorted(os.path.basename(p) for p in job.plan.sources) == ["a.png", "b.png"]
    # a previous run did a.png: resumed it is skipped, with --no-resume it is done again
    from zsseg_rt.scale.batch import MANIFEST, labels_name

    (out / labels_name("a.png")).write_bytes(b"")
    (out / MANIFEST).write_text(json.dumps({"key": "a.png", "status": "ok", "labels": labels_name("a.png")}) + "\n")
    base = ["batch", folder, out, "--bundle", tiny_bundle, "--classes", "cat,dog", "--address", "ray://head:10001"]
    _ok(capsys, *base, "--backend", "openvino", "--precision", "auto")
    assert [os.path.basename(p) for p in seen["job"].plan.sources] == ["b.png"]
    assert seen["job"].worker_options["device"] == "auto" and seen["progress"] is True
    assert (seen["job"].worker_options["backend"], seen["job"].worker_options["precision"]) == ("openvino", "auto")
    _ok(capsys, *base, "--no-resume")
    assert sorted(os.path.basename(p) for p in seen["job"].plan.sources) == ["a.png", "b.png"]


def test_serve_options_reach_the_deployment(tiny_bundle, capsys, monkeypatch):
    """Every `zsseg serve` option ends up in the deployment (or the cluster Ray joins); a wrong --bundle-digest is
    refused before Ray starts. Serving itself is python_tests/scale/test_serve*.py's: here Ray's start and the
    deployment are replaced by recorders, and the recorder stops the server as SIGTERM would."""
    ray = _ray_or_skip()
    from ray import serve as ray_serve

    import zsseg_rt.scale as scale
    import zsseg_rt.scale.serve as serving
    from zsseg_rt.bundle import bundle_digest
    from zsseg_rt.console.errors import Terminated

    seen = {}
    monkeypatch.setattr(scale, "init_ray", lambda address=None, num_cpus=None: seen.update(ray=(address, num_cpus)))

    def run_server(bundle, classes, **kwargs):
        seen.update(bundle=bundle, classes=classes, **kwargs)
        raise Terminated(signal.SIGTERM)  # what the command line's SIGTERM handler raises

    monkeypatch.setattr(serving, "run_server", run_server)
    monkeypatch.setattr(ray_serve, "shutdown", lambda: seen.update(serve_shutdown=True))
    monkeypatch.setattr(ray, "shutdown", lambda: seen.update(ray_shutdown=True))
    monkeypatch.setattr(ray, "is_initialized", lambda: "ray" in seen)  # the recorder stands in for a started Ray
    import socket

    digest = bundle_digest(tiny_bundle)
    with socket.socket() as probe:  # a free port (serve checks it can listen there before Ray starts)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["serve", "--bundle", tiny_bundle, "--classes", "cat,dog", "--host", "127.0.0.1", "--port", port]
    argv += ["--replicas", "2", "--gpus-per-replica", "0.25", "--cpus-per-replica", "1.5", "--max-batch-size", "3"]
    argv += ["--batch-wait-ms", "20", "--backend", "onnxruntime", "--device", "cpu", "--mode", "fast"]
    argv += ["--max-pixels", "9000", "--address", "ray://head:10001", "--num-cpus", "4", "--max-queued", "5"]
    code, _, err = _run(capsys, *argv, "--bundle-digest", "sha256:" + "0" * 64)
    assert code != 0 and "not the pinned one" in err and "ray" not in seen, err
    code, out, err = _run(capsys, *argv, "--bundle-digest", digest)
    assert code == 143, (code, out, err)  # stopped by SIGTERM: 128 + 15
    assert "zsseg serve: SIGTERM: shutting down" in out and seen["serve_shutdown"]  # --address: Serve shut down there
    assert seen["ray"] == ("ray://head:10001", 4)
    got = {k: seen[k] for k in ("host", "port", "replicas", "gpus_per_replica", "cpus_per_replica", "max_batch_size")}
    wanted = dict(host="127.0.0.1", port=port, replicas=2, gpus_per_replica=0.25, cpus_per_replica=1.5)
    assert got == dict(wanted, max_batch_size=3)
    assert seen["max_queued"] == 5  # the replica's bound: 3 + 5 requests at once (default None: twice the batch)
    assert seen["batch_wait_s"] == pytest.approx(0.02) and seen["expected_digest"] == digest
    assert (seen["backend"], seen["device"], seen["mode"], seen["max_pixels"]) == ("onnxruntime", "cpu", "fast", 9000)
    assert seen["classes"] == "cat,dog" and os.path.samefile(seen["bundle"], tiny_bundle)


# ------------------------------------------------------------------------------------------------ profile


def test_profile_options(tiny_bundle, tmp_path, capsys):
    """`zsseg profile`: the sizes, batches, class counts, backends, iterations, warm-up, text iterations, mode and
    timing asked for are what the report holds; --out is where it goes, --no-plot leaves the PNG out, --quiet the
    per-configuration lines; --image is the photo profiled (an unreadable one is refused); --no-verify skips the
    bundle's hash check (a bundle whose file changed is refused without it)."""
    out = tmp_path / "profile"
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((40, 50, 3), 100, np.uint8))
    argv = ["profile", "--bundle", tiny_bundle, "--classes", "3,5", "--resolutions", "64x48,80x60"]
    argv += ["--batch-sizes", "1,2", "--compare", "onnxruntime:cpu", "--iters", "3", "--warmup", "1"]
    argv += ["--text-iters", "2", "--mode", "fast", "--timing", "wall", "--image", photo, "--out", out]
    printed, _ = _ok(capsys, *argv, "--quiet", "--no-plot")
    report = json.loads((out / "profile.json").read_text())
    assert sorted(os.listdir(out)) == ["profile.csv", "profile.json"]  # --no-plot: no profile.png
    combos = {(tuple(r["resolution"]), r["batch"], r["classes"], r["backend"]) for r in report["results"]}
    assert combos == {
        (size, batch, classes, "onnxruntime:cpu")
        for size in ((64, 48), (80, 60))
        for batch in (1, 2)
        for classes in (3, 5)
    }
    assert all(len(r["samples_ms"]["end_to_end"]) == 3 for r in report["results"])
    assert (report["settings"]["iters"], report["settings"]["warmup"], report["settings"]["text_iters"]) == (3, 1, 2)
    assert report["settings"]["mode"] == "fast" and report["backends"][0]["timing"] == "wall"
    assert all(r["distinct_labels"] == 1 for r in report["results"])  # the uniform --image: one label everywhere
    assert "p50" in printed and " B=1 C=3" not in printed  # --quiet: the table only
    code, _, err = _run(capsys, *argv[:5], "--image", tmp_path / "none.png", "--iters", "1", "--out", tmp_path / "x")
    assert code != 0 and "cannot read image" in err
    loud_run = ["profile", "--bundle", tiny_bundle, "--classes", "3", "--resolutions", "64x48", "--iters", "1"]
    loud, _ = _ok(capsys, *loud_run, "--warmup", "0", "--text-iters", "1", "--out", tmp_path / "loud")
    assert " B=1 C=3" in loud and (tmp_path / "loud" / "profile.png").is_file()
    changed = tmp_path / "changed"
    shutil.copytree(tiny_bundle, changed)
    with open(changed / "tokenizer.json", "a", encoding="utf-8") as handle:
        handle.write("\n")  # still a valid tokenizer, no longer the file the bundle's hashes name
    quick = ["profile", "--bundle", changed, "--classes", "3", "--resolutions", "64x48", "--iters", "1"]
    quick += ["--warmup", "0", "--text-iters", "1", "--no-plot", "--quiet", "--out", tmp_path / "changed_out"]
    code, _, err = _run(capsys, *quick)
    assert code != 0 and "tokenizer.json" in err, err
    _ok(capsys, *quick, "--no-verify")


# ------------------------------------------------------------------------------------------------ every command


def _subcommands(parser=None):
    """{name: parser} of the `zsseg` subcommands (of ``parser``, default a new ``cli.build_parser()``)."""
    parser = parser or cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


# A command line of each subcommand that fails at once (a missing bundle, checkpoint, source or recipe)
FAILING = {
    "export": lambda tmp, bundle: ["export", tmp / "x", "--native", tmp / "no_checkpoint"],
    "segment": lambda tmp, bundle: ["segment", tmp / "p.png", "--bundle", tmp / "no_bundle", "--classes", "a"],
    "build-engine": lambda tmp, bundle: ["build-engine", tmp / "no_bundle", "--backend", "onnxruntime"],
    "convert": lambda tmp, bundle: ["convert", tmp / "none.pth", tmp / "native"],
    "camera": lambda tmp, bundle: ["camera", tmp / "no_folder", "--bundle", bundle, "--classes", "a"],
    "train": lambda tmp, bundle: ["train", tmp / "no_recipe.json"],
    "eval": lambda tmp, bundle: ["eval", tmp / "no_bundle", "--dataset", "voc", "--data-root", tmp / "no_data"],
    "batch": lambda tmp, bundle: ["batch", tmp, tmp / "out", "--bundle", tmp / "no_bundle", "--classes", "a"],
    "serve": lambda tmp, bundle: ["serve", "--bundle", tmp / "no_bundle", "--classes", "a"],
    "profile": lambda tmp, bundle: ["profile", "--bundle", tmp / "no_bundle"],
    "demo": lambda tmp, bundle: ["demo", "--native", tmp / "no_checkpoint", "--workdir", tmp / "demo"],
}


def test_every_command_takes_help_and_debug(tiny_bundle, tmp_path, capsys, monkeypatch):
    """`zsseg CMD --help` prints CMD's usage and exits 0; a failing `zsseg CMD ...` prints one line, and with
    `--debug` after the command the traceback instead (every subcommand of the parser tree: a new one needs its
    failing command line in FAILING)."""
    pytest.importorskip("torch")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((8, 8, 3), np.uint8))
    parsers = _subcommands()
    assert sorted(parsers) == sorted(FAILING), "a subcommand without a failing command line in FAILING"
    for command, parser in sorted(parsers.items()):
        for flag in ("--help", "-h"):
            code, out, _ = _run(capsys, command, flag)
            assert code == 0 and out.startswith(f"usage: zsseg {command}"), (command, flag, out[:200])
        if len(parser._actions) <= 2:  # registered without its options: its optional dependencies are not here
            continue
        argv = FAILING[command](tmp_path, tiny_bundle)
        code, _, err = _run(capsys, *argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code != 0 and len(lines) == 1 and lines[0].startswith(f"zsseg {command}: error:"), (command, err)
        code, _, err = _run(capsys, *argv, "--debug")
        assert code != 0 and "Traceback (most recent call last)" in err, (command, err[-2000:])


# ------------------------------------------------------------------------------------------------ the coverage table

_M = "cli/test_cli_options.py::"
_DEMO = "cli/test_cli_demo.py::"
_SEGMENT = "cli/test_cli_segment.py::"
_WHOLE = "models/training_free/test_training_free_whole_engine.py::"
_CAMERA_FAKE = _M + "test_camera_width_height_fps_and_every_frame_on_a_live_camera"
_CAMERA_PROCESS = _M + "test_camera_class_file_loop_preview_host_and_verbose"
_CAMERA_ENGINE = _M + "test_camera_backend_device_mode_alpha_and_legend"
_RECIPE = _M + "test_train_print_config_shows_the_recipe_the_options_make"
_TRAIN_RUN = _M + "test_train_stop_after_resume_no_resume_device_and_progress"
_TRAIN_LOOP = _M + "test_train_batch_size_grad_accum_num_workers_and_amp_reach_the_loop"
_BATCH = _M + "test_batch_options_reach_the_job_and_the_cluster"
_SERVE = _M + "test_serve_options_reach_the_deployment"
_PROFILE = _M + "test_profile_options"
_ZEROSEG_EVAL = _M + "test_eval_zeroseg_text_weights_thresholds_and_background_threshold"
_EVAL_RAY = _M + "test_eval_ray_options_reach_the_actor_pool"
_BUILD = _M + "test_build_engine_max_batch_opt_classes_workspace_precision_and_force"
_EXPORT = _M + "test_export_opset_clip_weights_and_config"

# "zsseg COMMAND OPTION" (the option's longest spelling) -> the tests that pass it (python_tests/FILE::TEST) and check
# what it does. Every test named here must pass one of the option's spellings in its own source (or in a function of
# its file it requests as a fixture or calls): checked by test_every_cli_option_is_in_the_coverage_table.
COVERAGE = {
    "zsseg --help": ("cli/test_cli_errors.py::test_help_lists_every_command_without_importing_torch",),
    "zsseg --version": ("cli/test_cli_help.py::test_version",),
    "zsseg --debug": ("cli/test_cli_errors.py::test_debug_shows_the_traceback",),
    # export
    "zsseg export --config": (
        _EXPORT,
        "cli/test_cli_export.py::test_random_export_shows_progress_and_says_what_it_holds",
    ),
    "zsseg export --official": (
        "models/zegclip/test_cli_official_export.py::test_export_official_checkpoint_then_segment",
    ),
    "zsseg export --native": ("models/zegformer/test_zegformer_export.py::test_cli_export_from_a_native_checkpoint",),
    "zsseg export --clip-weights": (
        _EXPORT,
        "cli/test_cli_export.py::test_offline_clip_weights_fail_fast_in_plain_words",
    ),
    "zsseg export --max-classes": (
        _EXPORT,
        "models/zegformer/test_zegformer_export.py::test_cli_export_from_a_native_checkpoint",
    ),
    "zsseg export --opset": (_EXPORT,),
    "zsseg export --overwrite": ("export/test_overwrite.py::test_real_bundle_is_replaced_atomically",),
    "zsseg export --verify-images": (_EXPORT,),
    "zsseg export --text-weights": (
        "models/zeroseg/test_zeroseg_cli_eval.py::test_cli_export_of_a_zeroseg_checkpoint",
    ),
    "zsseg export --background-threshold": (
        "models/zeroseg/test_zeroseg_cli_eval.py::test_cli_export_of_a_zeroseg_checkpoint",
    ),
    # segment
    "zsseg segment --bundle": (_SEGMENT + "test_same_names_in_two_folders_give_two_overlays",),
    "zsseg segment --classes": (_SEGMENT + "test_classes_with_synonyms_and_named_vocabularies",),
    "zsseg segment --output": (_SEGMENT + "test_same_names_in_two_folders_give_two_overlays",),
    "zsseg segment --visualize": (_SEGMENT + "test_labels_masks_class_map_and_views",),
    "zsseg segment --save-labels": (_SEGMENT + "test_labels_masks_class_map_and_views",),
    "zsseg segment --alpha": (_SEGMENT + "test_labels_masks_class_map_and_views",),
    "zsseg segment --no-legend": (_SEGMENT + "test_labels_masks_class_map_and_views",),
    "zsseg segment --overwrite": (_SEGMENT + "test_existing_outputs_are_never_replaced_silently",),
    "zsseg segment --save-json": (
        "cli/test_cli_segment_coco.py::test_save_json_holds_every_images_label_map_as_pycocotools_reads_it",
        "cli/test_cli_segment_coco.py::test_save_json_is_refused_when_it_exists_kept_when_the_run_stops_and_replaced_"
        "with_overwrite",
    ),
    "zsseg segment --json": (_SEGMENT + "test_labels_masks_class_map_and_views",),
    "zsseg segment --objects": ("cli/test_cli_objects.py::test_segment_objects_in_json_and_as_coco_instances",),
    "zsseg segment --track": ("cli/test_cli_tracks.py::test_segment_track_gives_json_the_ids_the_tracks_file_holds",),
    "zsseg segment --tracks-out": (
        "cli/test_cli_tracks.py::test_segment_track_gives_json_the_ids_the_tracks_file_holds",
        "cli/test_cli_tracks.py::test_tracks_out_over_two_sequences_is_refused",
    ),
    "zsseg segment --backend": (
        _M + "test_segment_mode_and_backend_build_that_engine",
        "cli/test_cli_errors.py::test_unavailable_backend_and_device_are_one_line",
    ),
    "zsseg segment --device": (
        "prepare/test_ort_int8.py::test_the_cli_prepares_int8_ahead_and_segment_runs_it",
        "cli/test_cli_errors.py::test_unavailable_cuda_device_is_one_line",
    ),
    "zsseg segment --mode": (_M + "test_segment_mode_and_backend_build_that_engine",),
    "zsseg segment --precision": ("prepare/test_ort_int8.py::test_the_cli_prepares_int8_ahead_and_segment_runs_it",),
    "zsseg segment --max-pixels": (_SEGMENT + "test_photo_over_the_limit_is_resized_with_a_note",),
    "zsseg segment --inference": (_WHOLE + "test_zsseg_segment_inference_flags",),
    "zsseg segment --whole-fallback": (_WHOLE + "test_zsseg_segment_inference_flags",),
    "zsseg segment --allow-partial-images": (
        "test_truncated_images.py::test_zsseg_segment_refuses_them_with_the_same_message_and_no_decoder_noise",
    ),
    # build-engine
    "zsseg build-engine --backend": (
        "prepare/test_ort_int8.py::test_the_cli_prepares_int8_ahead_and_segment_runs_it",
        "export/test_torch_precision.py::test_the_cli_gates_a_torch_precision_ahead",
    ),
    "zsseg build-engine --precision": (
        _BUILD,
        "export/test_torch_precision.py::test_the_cli_gates_a_torch_precision_ahead",
    ),
    "zsseg build-engine --max-batch": (_BUILD,),
    "zsseg build-engine --opt-classes": (
        _BUILD,
        "prepare/test_accuracy_gate.py::test_cli_build_engine_flags_and_one_line_summary",
    ),
    "zsseg build-engine --workspace": (
        _BUILD,
        "prepare/test_accuracy_gate.py::test_cli_build_engine_flags_and_one_line_summary",
    ),
    "zsseg build-engine --dry-run": (
        "prepare/test_preparation_memory.py::test_dry_run_prints_each_paths_time_disk_and_peak_memory_and_prepares_"
        "nothing",
    ),
    "zsseg build-engine --cache-dir": (
        "prepare/test_preparation_memory.py::test_cache_dir_keeps_the_records_outside_the_bundle_with_their_"
        "measurement_and_vocabularies",
    ),
    "zsseg build-engine --classes": (
        "prepare/test_preparation_memory.py::test_cache_dir_keeps_the_records_outside_the_bundle_with_their_"
        "measurement_and_vocabularies",
    ),
    "zsseg build-engine --force": (
        _BUILD,
        "export/test_torch_precision.py::test_the_cli_gates_a_torch_precision_ahead",
    ),
    "zsseg build-engine --accept-below-gate": (
        "prepare/test_ort_int8.py::test_the_cli_prepares_int8_ahead_and_segment_runs_it",
        "export/test_torch_precision.py::test_the_cli_gates_a_torch_precision_ahead",
    ),
    # convert
    "zsseg convert --config": (_M + "test_convert_clip_pretrained_fills_a_zegformer_checkpoint_without_clip",),
    "zsseg convert --overwrite": (_M + "test_convert_allow_missing_text_encoder_and_overwrite",),
    "zsseg convert --allow-missing-text-encoder": (_M + "test_convert_allow_missing_text_encoder_and_overwrite",),
    "zsseg convert --clip-pretrained": (_M + "test_convert_clip_pretrained_fills_a_zegformer_checkpoint_without_clip",),
    # camera
    "zsseg camera --bundle": ("cli/test_cli_camera.py::test_video_file_every_frame_same_fps_with_progress",),
    "zsseg camera --classes": (_CAMERA_ENGINE,),
    "zsseg camera --class-file": (_CAMERA_PROCESS,),
    "zsseg camera --output": (
        "cli/test_cli_camera.py::test_video_file_every_frame_same_fps_with_progress",
        _CAMERA_ENGINE,
    ),
    "zsseg camera --overwrite": (
        "stream/test_video_output_safety.py::test_camera_refuses_to_replace_outputs_without_overwrite",
    ),
    "zsseg camera --preview": (_CAMERA_PROCESS,),
    "zsseg camera --preview-host": (_CAMERA_PROCESS,),
    "zsseg camera --preview-readonly": (
        _CAMERA_PROCESS,
        "test_user_errors.py::test_preview_readonly_without_a_preview_is_refused",
    ),
    "zsseg camera --backend": (_CAMERA_ENGINE,),
    "zsseg camera --device": (_CAMERA_ENGINE,),
    "zsseg camera --mode": (_CAMERA_ENGINE,),
    "zsseg camera --width": (_CAMERA_FAKE,),
    "zsseg camera --height": (_CAMERA_FAKE,),
    "zsseg camera --fps": (_CAMERA_FAKE,),
    "zsseg camera --loop": (_M + "test_camera_loop_max_frames_and_progress", _CAMERA_PROCESS),
    "zsseg camera --every-frame": (_CAMERA_FAKE,),
    "zsseg camera --prepare": (
        "runtime/test_cpu_auto.py::test_the_camera_takes_the_engines_default_on_auto_and_none_turns_it_off",
    ),
    "zsseg camera --no-progress": (_M + "test_camera_loop_max_frames_and_progress",),
    "zsseg camera --max-frames": (_M + "test_camera_loop_max_frames_and_progress",),
    "zsseg camera --max-reconnects": (_M + "test_camera_max_reconnects_gives_up_after_that_many_tries",),
    "zsseg camera --alpha": (_CAMERA_ENGINE,),
    "zsseg camera --max-pixels": (_M + "test_camera_max_pixels_and_allow_partial_images",),
    "zsseg camera --allow-partial-images": (_M + "test_camera_max_pixels_and_allow_partial_images",),
    "zsseg camera --no-legend": (_CAMERA_ENGINE,),
    "zsseg camera --stats-json": (_M + "test_camera_loop_max_frames_and_progress",),
    "zsseg camera --objects": ("cli/test_cli_objects.py::test_camera_objects_as_coco_instances_of_every_frame",),
    "zsseg camera --track": ("cli/test_cli_tracks.py::test_camera_tracks_out_holds_the_tracks_of_its_label_maps",),
    "zsseg camera --tracks-out": ("cli/test_cli_tracks.py::test_camera_tracks_out_holds_the_tracks_of_its_label_maps",),
    "zsseg camera --save-json": (
        "stream/test_coco_sink.py::test_the_coco_file_holds_every_frame_of_every_source_as_its_label_map",
        "stream/test_coco_sink.py::test_the_coco_file_follows_the_output_plan_and_refuses_a_live_source",
    ),
    "zsseg camera --labels-out": (
        "cli/test_cli_camera_video.py::test_camera_writes_labels_and_video_metrics",
        "cli/test_cli_camera_video.py::test_camera_video_options_are_checked",
    ),
    "zsseg camera --stabilize": ("cli/test_cli_camera_video.py::test_camera_writes_labels_and_video_metrics",),
    "zsseg camera --stabilize-delay": (
        "cli/test_cli_camera_video.py::test_camera_stabilize_delay_is_for_recorded_video",
    ),
    "zsseg camera --keyframe-every": ("cli/test_cli_camera_video.py::test_camera_writes_labels_and_video_metrics",),
    "zsseg camera --live": (
        "cli/test_cli_camera_video.py::test_camera_live_option_is_one_window_keyframes_and_a_cheaper_flow",
        "cli/test_cli_camera_video.py::test_camera_live_runs_one_window_a_keyframe_every_4",
    ),
    "zsseg camera --adaptive-keyframes": (
        "cli/test_cli_camera_video.py::test_camera_video_options_are_checked",
        "cli/test_cli_camera_video.py::test_camera_video_options_reach_the_video_segmenter",
    ),
    "zsseg camera --temporal-consistency": (
        "cli/test_cli_camera_video.py::test_camera_writes_labels_and_video_metrics",
    ),
    "zsseg camera --frame-id": (
        "cli/test_cli_camera_robots.py::test_one_file_for_several_sources_with_a_frame_id_and_no_overlay",
    ),
    "zsseg camera --no-overlay-topic": (
        "cli/test_cli_camera_robots.py::test_one_file_for_several_sources_with_a_frame_id_and_no_overlay",
    ),
    "zsseg camera --verbose": (_CAMERA_PROCESS,),
    # train
    "zsseg train --set": (_RECIPE, _TRAIN_RUN),
    "zsseg train --data-root": (_RECIPE,),
    "zsseg train --work-dir": (_RECIPE, _TRAIN_RUN),
    "zsseg train --pretrained": (_M + "test_train_pretrained_and_init_from_are_the_starting_weights", _RECIPE),
    "zsseg train --init-from": (_M + "test_train_pretrained_and_init_from_are_the_starting_weights", _RECIPE),
    "zsseg train --iterations": (_TRAIN_RUN, _RECIPE),
    "zsseg train --batch-size": (_TRAIN_LOOP, _RECIPE),
    "zsseg train --grad-accum": (_TRAIN_LOOP, _RECIPE),
    "zsseg train --num-workers": (_TRAIN_LOOP, _RECIPE, _M + "test_train_skip_corrupt_counts_with_loader_workers"),
    "zsseg train --seed": (_M + "test_train_pretrained_and_init_from_are_the_starting_weights", _RECIPE),
    "zsseg train --amp": (_TRAIN_LOOP, _RECIPE),
    "zsseg train --amp-dtype": (_TRAIN_LOOP, _RECIPE),
    "zsseg train --device": (_TRAIN_RUN,),
    "zsseg train --dist-backend": (_M + "test_train_dist_backend_reaches_the_process_group",),
    "zsseg train --resume": (_TRAIN_RUN,),
    "zsseg train --no-resume": (_TRAIN_RUN,),
    "zsseg train --skip-corrupt": (_M + "test_train_skip_corrupt_and_fail_on_corrupt", _RECIPE),
    "zsseg train --fail-on-corrupt": (_M + "test_train_skip_corrupt_and_fail_on_corrupt", _RECIPE),
    "zsseg train --stop-after": (_TRAIN_RUN,),
    "zsseg train --no-progress": (_TRAIN_RUN,),
    "zsseg train --print-config": (_RECIPE,),
    # eval
    "zsseg eval --dataset": (_M + "test_eval_split_and_dataset_config",),
    "zsseg eval --data-root": (_M + "test_eval_split_and_dataset_config",),
    "zsseg eval --split": (_M + "test_eval_split_and_dataset_config",),
    "zsseg eval --dataset-config": (_M + "test_eval_split_and_dataset_config",),
    "zsseg eval --mode": (_ZEROSEG_EVAL,),
    "zsseg eval --text-embeddings": (
        "models/zeroseg/test_zeroseg_cli_eval.py::test_cli_eval_native_zeroseg_matches_the_protocol_function",
        "test_user_errors.py::test_eval_refuses_a_pickle_as_text_embeddings_without_running_it",
    ),
    "zsseg eval --unseen": (_M + "test_eval_unseen_overrides_the_split",),
    "zsseg eval --text-weights": (_ZEROSEG_EVAL, _EVAL_RAY),
    "zsseg eval --background-threshold": (_ZEROSEG_EVAL,),
    "zsseg eval --thresholds": (_ZEROSEG_EVAL, _EVAL_RAY),
    "zsseg eval --settings": (_M + "test_eval_settings_official_or_the_bundles_own",),
    "zsseg eval --json": ("cli/test_cli_help.py::test_eval_json_is_a_flag_and_the_old_path_spelling_still_writes",),
    "zsseg eval --save-json": (
        "cli/test_cli_help.py::test_eval_json_is_a_flag_and_the_old_path_spelling_still_writes",
    ),
    "zsseg eval --limit": ("cli/test_cli_help.py::test_eval_json_is_a_flag_and_the_old_path_spelling_still_writes",),
    "zsseg eval --device": (_ZEROSEG_EVAL,),
    "zsseg eval --backend": (_M + "test_eval_backend_per_class_and_progress",),
    "zsseg eval --precision": (_EVAL_RAY, "scale/test_openvino_workers.py::test_eval_workers_run_openvino_auto"),
    "zsseg eval --skip-corrupt": (_M + "test_eval_skip_corrupt",),
    "zsseg eval --ignore-bad-labels": (_M + "test_eval_ignore_bad_labels",),
    "zsseg eval --max-pixels": ("cli/test_cli_errors.py::test_eval_refuses_dataset_images_over_the_limit",),
    "zsseg eval --no-per-class": (_M + "test_eval_backend_per_class_and_progress",),
    "zsseg eval --no-progress": (_M + "test_eval_backend_per_class_and_progress",),
    "zsseg eval --ray": ("scale/test_parallel_eval.py::test_parallel_eval_equals_serial", _EVAL_RAY),
    "zsseg eval --workers": ("scale/test_parallel_eval.py::test_parallel_eval_equals_serial", _EVAL_RAY),
    "zsseg eval --gpus-per-worker": (_EVAL_RAY,),
    "zsseg eval --cpus-per-worker": ("scale/test_parallel_eval.py::test_parallel_eval_equals_serial", _EVAL_RAY),
    "zsseg eval --address": (_EVAL_RAY,),
    # batch
    "zsseg batch --bundle": ("scale/test_batch.py::test_list_file_bad_image_and_cli", _BATCH),
    "zsseg batch --classes": ("scale/test_batch.py::test_list_file_bad_image_and_cli", _BATCH),
    "zsseg batch --workers": ("scale/test_batch.py::test_list_file_bad_image_and_cli", _BATCH),
    "zsseg batch --gpus-per-worker": (_BATCH,),
    "zsseg batch --cpus-per-worker": ("scale/test_batch.py::test_list_file_bad_image_and_cli", _BATCH),
    "zsseg batch --batch-size": (_BATCH,),
    "zsseg batch --backend": ("scale/test_batch.py::test_list_file_bad_image_and_cli", _BATCH),
    "zsseg batch --device": (_BATCH,),
    "zsseg batch --mode": (_BATCH,),
    "zsseg batch --precision": (_BATCH, "scale/test_openvino_workers.py::test_batch_workers_share_the_compiled_cache"),
    "zsseg batch --no-resume": (_BATCH,),
    "zsseg batch --no-progress": (_BATCH,),
    "zsseg batch --max-pixels": (_BATCH, "scale/test_scale_cli.py::test_batch_checks_before_ray"),
    "zsseg batch --bundle-digest": (_BATCH, "scale/test_scale_cli.py::test_batch_checks_before_ray"),
    "zsseg batch --address": (_BATCH,),
    "zsseg batch --num-cpus": (_BATCH, "scale/test_scale_cli.py::test_batch_checks_before_ray"),
    "zsseg batch --objects": ("scale/test_batch_objects.py::test_batch_objects_equal_segments_and_resume",),
    # serve
    "zsseg serve --bundle": (
        _SERVE,
        "scale/test_scale_cli.py::test_serve_is_ready_when_it_says_so_and_stops_cleanly_on_sigterm",
    ),
    "zsseg serve --classes": (
        _SERVE,
        "scale/test_scale_cli.py::test_serve_is_ready_when_it_says_so_and_stops_cleanly_on_sigterm",
    ),
    "zsseg serve --host": (_SERVE, "scale/test_scale_cli.py::test_serve_checks_before_ray"),
    "zsseg serve --port": (
        _SERVE,
        "scale/test_scale_cli.py::test_serve_is_ready_when_it_says_so_and_stops_cleanly_on_sigterm",
    ),
    "zsseg serve --replicas": (_SERVE, "scale/test_scale_cli.py::test_serve_checks_before_ray"),
    "zsseg serve --gpus-per-replica": (_SERVE,),
    "zsseg serve --cpus-per-replica": (
        _SERVE,
        "scale/test_scale_cli.py::test_serve_is_ready_when_it_says_so_and_stops_cleanly_on_sigterm",
    ),
    "zsseg serve --max-batch-size": (_SERVE,),
    "zsseg serve --batch-wait-ms": (_SERVE,),
    "zsseg serve --max-queued": (_SERVE,),
    "zsseg serve --backend": (
        _SERVE,
        "scale/test_scale_cli.py::test_serve_is_ready_when_it_says_so_and_stops_cleanly_on_sigterm",
    ),
    "zsseg serve --device": (_SERVE,),
    "zsseg serve --mode": (_SERVE,),
    "zsseg serve --max-pixels": (
        _SERVE,
        "scale/test_serve_refusals.py::test_limit_refusals_tell_the_client_what_it_can_do",
    ),
    "zsseg serve --bundle-digest": (_SERVE,),
    "zsseg serve --address": (_SERVE,),
    "zsseg serve --num-cpus": (
        _SERVE,
        "scale/test_scale_cli.py::test_serve_is_ready_when_it_says_so_and_stops_cleanly_on_sigterm",
    ),
    # profile
    **{
        f"zsseg profile {flag}": (_PROFILE,)
        for flag in (
            "--bundle",
            "--classes",
            "--resolutions",
            "--batch-sizes",
            "--backends",
            "--iters",
            "--warmup",
            "--text-iters",
            "--mode",
            "--timing",
            "--image",
            "--out",
            "--no-plot",
            "--no-verify",
            "--quiet",
        )
    },
    # demo
    "zsseg demo --official": (_DEMO + "test_demo_config_names_the_official_checkpoints_config_and_the_random_model",),
    "zsseg demo --native": (_DEMO + "test_demo_runs_end_to_end_writes_the_overlay_and_reuses_its_bundle",),
    "zsseg demo --clip-weights": (_DEMO + "test_demo_method_picks_the_model_family_with_local_clip_weights",),
    "zsseg demo --method": (_DEMO + "test_demo_method_picks_the_model_family_with_local_clip_weights",),
    "zsseg demo --config": (_DEMO + "test_demo_config_names_the_official_checkpoints_config_and_the_random_model",),
    "zsseg demo --image": (_DEMO + "test_demo_runs_end_to_end_writes_the_overlay_and_reuses_its_bundle",),
    "zsseg demo --classes": (_DEMO + "test_demo_runs_end_to_end_writes_the_overlay_and_reuses_its_bundle",),
    "zsseg demo --workdir": (_DEMO + "test_demo_runs_end_to_end_writes_the_overlay_and_reuses_its_bundle",),
    "zsseg demo --allow-random-weights": (
        _DEMO + "test_the_random_weights_demo_reuses_its_bundle_shows_progress_and_is_reproducible",
    ),
    "zsseg demo --no-prepare": (_DEMO + "test_demo_prepares_the_faster_cpu_paths_in_view_and_leaves_nothing_running",),
    # every subcommand's own --help and --debug (FAILING lists the subcommands; a new one must be added there)
    **{
        f"zsseg {command} {flag}": (_M + "test_every_command_takes_help_and_debug",)
        for command in FAILING
        for flag in ("--help", "--debug")
    },
}

# The Engine's flags (zsseg_rt.options.ENGINE_OPTIONS, issue 73): every command that opens an Engine takes every
# flagged row, and one test passes each of them, read from the table, on every such command and checks it reaches the
# Engine (or every Ray worker's). Its entries are made from the table, beside the tests above that check what a flag
# does; the guard accepts that test for exactly these keys (it names the flags through the table, not as literals).
ENGINE_FLAG_TEST = "cli/test_cli_engine_flags.py::test_every_engine_flag_reaches_every_commands_engine"
ENGINE_FLAG_KEYS = {f"zsseg {command} {row.flag}" for command in ENGINE_COMMANDS for row in engine_rows(command)}
for _key in sorted(ENGINE_FLAG_KEYS):
    COVERAGE[_key] = tuple(COVERAGE.get(_key, ())) + (ENGINE_FLAG_TEST,)

# Options whose real effect needs what this machine (2 CPU cores, no GPU) lacks. Each is still in COVERAGE: its
# tests pass it through the CLI and check it as far as it can be checked here (the value reaching the code that acts
# on it, behind a recorder or a fake, or a one-line refusal). The reason must be one of NOT_HERE_REASONS (checked by
# the guard); the detail says what the tests check instead.
NOT_HERE_REASONS = ("needs a GPU", "needs TensorRT", "needs a camera", "needs a remote Ray cluster")
_FAKE_TENSORRT = ("needs TensorRT", "built with a fake toolchain: the build jobs it is handed are checked")
_ORT_CUDA = ("needs a GPU", "--device cpu runs (the Engine's providers checked); --device cuda is refused in one line")
_FAKE_V4L2 = "a fake cv2.VideoCapture records what it was set to and delivers frames of that size and rate"
_RAY_GPUS = ("needs a GPU", "the actors' GPU request is checked behind a recorder of Ray's start and the job")
_REMOTE_RAY = ("needs a remote Ray cluster", "the address Ray is asked to join is checked behind a recorder")
NOT_HERE = {
    "zsseg build-engine --max-batch": _FAKE_TENSORRT,
    "zsseg build-engine --opt-classes": _FAKE_TENSORRT,
    "zsseg build-engine --workspace": _FAKE_TENSORRT,
    "zsseg camera --width": ("needs a camera", _FAKE_V4L2),
    "zsseg camera --height": ("needs a camera", _FAKE_V4L2),
    "zsseg camera --fps": ("needs a camera", _FAKE_V4L2 + "; the output video's rate is real"),
    "zsseg camera --every-frame": ("needs a camera", "a live source (the fake V4L2 capture): every frame processed"),
    "zsseg camera --max-reconnects": ("needs a camera", "a camera that goes away: the fake capture is lost for good"),
    "zsseg camera --device": _ORT_CUDA,
    "zsseg segment --device": _ORT_CUDA,
    "zsseg eval --device": ("needs a GPU", "--device cpu runs; --device cuda is refused in one line without a driver"),
    "zsseg train --device": ("needs a GPU", "--device cpu trains; --device cuda is refused without one"),
    "zsseg train --dist-backend": (
        "needs a GPU",
        "nccl needs GPUs, this torch has no mpi and gloo is the CPU default: init_process_group is a recorder",
    ),
    "zsseg eval --gpus-per-worker": _RAY_GPUS,
    "zsseg eval --address": _REMOTE_RAY,
    "zsseg batch --gpus-per-worker": _RAY_GPUS,
    "zsseg batch --address": _REMOTE_RAY,
    "zsseg batch --device": ("needs a GPU", "CUDA in the actors: the workers' Engine options are checked"),
    "zsseg serve --gpus-per-replica": ("needs a GPU", "the deployment's GPU request is checked behind a recorder"),
    "zsseg serve --address": ("needs a remote Ray cluster", "the address joined is checked; Serve is shut down there"),
    "zsseg serve --device": ("needs a GPU", "CUDA in the replicas: the deployment's Engine options are checked"),
}


def _cli_options(parser=None):
    """{"zsseg COMMAND OPTION" (its longest spelling): every spelling of it} for every optional argument of the
    `zsseg` parser tree (``parser``, default a new ``cli.build_parser()``), walked: options, not their choices."""
    found = {}

    def walk(node, command):
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, name)
            elif action.option_strings:
                longest = max(action.option_strings, key=len)
                found[" ".join(filter(None, ("zsseg", command, longest)))] = tuple(action.option_strings)

    walk(parser or cli.build_parser(), "")
    return found


def _function_source(lines, functions, node, seen):
    """The lines of ``node`` (a module function of the file ``lines``, with its decorators), then those of the module
    functions (``functions``) it requests as fixtures or calls, and theirs (``seen``: those already in)."""
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    parts = lines[first - 1 : node.end_lineno]
    called = [c.func.id for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)]
    for helper in dict.fromkeys([arg.arg for arg in node.args.args] + called):
        if helper in functions and helper not in seen:
            parts += _function_source(lines, functions, functions[helper], seen | {helper})
    return parts


def _test_sources(names):
    """{"FILE::TEST": the source of TEST and its decorators, with the module functions of FILE it requests as
    fixtures or calls (helpers that build the command line), and theirs} for the tests ``names``; a name whose file
    or test does not exist is left out."""
    sources = {}
    by_file = {}
    for name in names:
        relative, _, test = name.partition("::")
        by_file.setdefault(relative, set()).add(test)
    for relative, tests in by_file.items():
        path = HERE / relative
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        functions = {n.name: n for n in ast.parse("\n".join(lines)).body if isinstance(n, ast.FunctionDef)}
        for test in tests:
            if test.startswith("test_") and test in functions:
                sources[f"{relative}::{test}"] = "\n".join(_function_source(lines, functions, functions[test], {test}))
    return sources


def _coverage_problems(options, coverage=None, not_here=None):
    """What is wrong with ``coverage`` (default COVERAGE) and ``not_here`` (default NOT_HERE) for the CLI options
    ``options`` (``_cli_options()``): one line per problem, none when every option is tested."""
    coverage = COVERAGE if coverage is None else coverage
    not_here = NOT_HERE if not_here is None else not_here
    problems = [
        f"option without a test (add one and its COVERAGE entry): {key}" for key in sorted(set(options) - set(coverage))
    ]
    # a command whose optional dependencies are not installed is registered without its options (its help says what
    # to install): its entries are not stale
    present = {key.split()[1] for key in options if len(key.split()) == 3 and not key.endswith(("--help", "--debug"))}
    problems += [
        f"COVERAGE entry that is no option of the CLI: {key}"
        for key in sorted(set(coverage) - set(options))
        if len(key.split()) == 2 or key.split()[1] in present
    ]
    sources = _test_sources({test for tests in coverage.values() for test in tests})
    for key, tests in sorted(coverage.items()):
        if key not in options:
            continue  # (a command unavailable here: see above)
        if not tests:
            problems.append(f"{key}: no test")
        spellings = options[key]
        for test in tests:
            if test == ENGINE_FLAG_TEST and key in ENGINE_FLAG_KEYS and test in sources:
                continue  # it passes every Engine flag of the table (ENGINE_FLAG_KEYS)
            if test not in sources:
                problems.append(f"{key}: {test} does not exist")
            elif not any(re.search(rf"[\"']{re.escape(s)}[\"']", sources[test]) for s in spellings):
                problems.append(f"{key}: {test} does not pass {' / '.join(spellings)}")
    for key, entry in sorted(not_here.items()):
        if key not in coverage:
            problems.append(f"NOT_HERE entry without tests in COVERAGE: {key}")
        if not (isinstance(entry, tuple) and len(entry) == 2 and entry[0] in NOT_HERE_REASONS and entry[1].strip()):
            problems.append(f"{key}: NOT_HERE needs (one of {NOT_HERE_REASONS}, what is checked instead): {entry!r}")
    return problems


def test_every_cli_option_is_in_the_coverage_table():
    """Every option of every `zsseg` command (the parser tree of `cli.build_parser()`, walked: a new option is in
    it the moment it is added) has an entry in COVERAGE naming tests; every entry is an option; every test named
    exists and passes the option (one of its spellings, quoted, in the test's source or in a function of its file
    it requests as a fixture or calls); an option NOT_HERE lists is in COVERAGE, with a reason from the fixed
    vocabulary NOT_HERE_REASONS. The controls are test_the_coverage_guard_fails_on_an_untested_option (run every
    time) and, recorded: the "zsseg eval --split" entry removed -> "option without a test ... zsseg eval --split"."""
    problems = _coverage_problems(_cli_options())
    assert not problems, "\n".join(problems)


def test_the_coverage_guard_fails_on_an_untested_option():
    """Controls of the guard, on the real parser tree with one thing changed each: an option added to `zsseg
    eval` (`--brand-new-option`) without a COVERAGE entry is reported; an entry naming a test that does not pass
    it, or a test that does not exist, is reported; a NOT_HERE reason outside the vocabulary is reported; a new
    choice value of an existing option (a backend added to `segment --backend`) is no new option: no problem."""
    parser = cli.build_parser()
    commands = _subcommands(parser)
    commands["eval"].add_argument("--brand-new-option", action="store_true")
    options = _cli_options(parser)
    new = "zsseg eval --brand-new-option"
    assert new in options and set(options) - {new} == set(_cli_options())
    assert _coverage_problems(options) == [f"option without a test (add one and its COVERAGE entry): {new}"]
    unseen = _M + "test_eval_unseen_overrides_the_split"
    wrong = dict(COVERAGE, **{new: (unseen, _M + "test_no_such_test")})
    assert _coverage_problems(options, wrong) == [
        f"{new}: {unseen} does not pass --brand-new-option",
        f"{new}: {_M}test_no_such_test does not exist",
    ]
    vague = dict(NOT_HERE, **{"zsseg eval --split": ("too slow", "not run")})
    assert _coverage_problems(_cli_options(), not_here=vague) == [
        "zsseg eval --split: NOT_HERE needs (one of "
        f"{NOT_HERE_REASONS}, what is checked instead): ('too slow', 'not run')"
    ]
    (backend,) = [a for a in commands["segment"]._actions if "--backend" in a.option_strings]
    backend.choices = [*backend.choices, "a-new-backend"]
    assert _cli_options(parser) == options  # options are keyed on their option strings, never on their choices
