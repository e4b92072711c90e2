"""``zsseg eval`` on ZeroSeg: a native student checkpoint (PyTorch, GroupViT slide pipeline) and a ZeroSeg bundle
(Engine), both under the protocol with background as class 0 and the per-dataset threshold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import zsseg_rt
from zsseg_rt.cli.eval import main as eval_main
from zsseg_rt.contract.common.convert import save_native
from zsseg_rt.data import build_dataset
from zsseg_rt.eval.evaluate import evaluate
from zsseg_rt.models import create_model
from zsseg_rt.models.zeroseg.evaluate import evaluate_zeroseg

pytestmark = pytest.mark.single_torch_thread  # one torch thread, as the tests under eval/ and train/

SAMPLES = Path(zsseg_rt.__file__).parent / "assets" / "samples"


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("zeroseg_tiny_test")
    path = tmp_path_factory.mktemp("zs") / "native"
    save_native(model, path)
    text = torch.nn.functional.normalize(torch.randn(20, model.config.embed_dim), dim=-1)
    np.save(path.parent / "text.npy", text.numpy())
    return path, model, text


def test_cli_eval_native_zeroseg_matches_the_protocol_function(native, tmp_path):
    path, model, text = native
    out = tmp_path / "m.json"
    args = [str(path), "--dataset", "voc", "--data-root", str(SAMPLES), "--text-embeddings"]
    args += [str(path.parent / "text.npy"), "--json", str(out), "--no-progress", "--no-per-class"]
    assert eval_main(args) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_classes"] == 21 and metrics["background_threshold"] == 0.95  # VOC, paper's table
    assert "background" in metrics["per_class"] and metrics["images"] == 4
    data = build_dataset({"type": "voc", "root": str(SAMPLES), "split": "val"})
    ref = evaluate_zeroseg(model, text, data, 0.95, progress=False)
    assert abs(metrics["mIoU"] - ref["mIoU"]) < 1e-9


def test_zeroseg_checkpoint_without_text_is_refused(native):
    path, _, _ = native
    data = build_dataset({"type": "voc", "root": str(SAMPLES), "split": "val"})
    with pytest.raises(ValueError, match="no text tower"):
        evaluate(str(path), data, progress=False)


def test_groupvit_thresholds_and_override(native):
    path, _, text = native
    data = build_dataset({"type": "voc", "root": str(SAMPLES), "split": "val"})
    m = evaluate(str(path), data, text_embeddings=text.numpy(), background_threshold=0.1, limit=1, progress=False)
    assert m["background_threshold"] == 0.1 and m["images"] == 1


@pytest.mark.slow  # a real export (~15 s)
def test_cli_eval_zeroseg_bundle_equals_pytorch(native, tmp_path):
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models.zeroseg.export import build_bundle_model

    path, student, _ = native
    torch.manual_seed(3)
    model = build_bundle_model(student, None, 0.95)
    bundle = export_bundle(model, str(tmp_path / "bundle"), max_classes=32)
    data = build_dataset({"type": "voc", "root": str(SAMPLES), "split": "val"})
    got = evaluate(bundle, data, backend="onnxruntime", progress=False)
    text = model.text_embeddings(data.class_names)
    want = evaluate(student, data, text_embeddings=text.numpy(), progress=False)
    assert got["num_classes"] == 21 and got["source"] == "bundle"
    assert abs(got["mIoU"] - want["mIoU"]) < 0.5  # labels >= 99.9 % equal -> mIoU within a fraction of a point
    with pytest.raises(ValueError, match="fixed in its head graph"):
        evaluate(bundle, data, backend="onnxruntime", background_threshold=0.5, progress=False)
    # the same evaluation where torch cannot be imported (a runtime-only install): the same number
    import subprocess
    import sys

    from support import subprocess_env

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from zsseg_rt.data import build_dataset\n"
        "from zsseg_rt.eval.evaluate import evaluate\n"
        f"data = build_dataset({{'type': 'voc', 'root': {str(SAMPLES)!r}, 'split': 'val'}})\n"
        f"print(repr(evaluate({bundle!r}, data, backend='onnxruntime', progress=False)['mIoU']))\n"
    )
    env = subprocess_env()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) == got["mIoU"]


def test_cli_export_of_a_zeroseg_checkpoint_needs_text_weights(native, tmp_path, capsys):
    from zsseg_rt.cli import main as cli_main

    path, _, _ = native
    with pytest.raises(SystemExit, match="no text tower"):
        cli_main(["export", str(tmp_path / "b"), "--native", str(path)])
    assert not (tmp_path / "b").exists()


@pytest.mark.slow  # a real export (~15 s)
def test_cli_export_of_a_zeroseg_checkpoint(native, tmp_path):
    from safetensors.torch import save_file

    from zsseg_rt.bundle import load_meta
    from zsseg_rt.cli import main as cli_main
    from zsseg_rt.models.zeroseg.teacher import CLIPTeacher

    path, student, _ = native
    torch.manual_seed(5)
    clip = CLIPTeacher(student.config, None).clip
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))
    out = tmp_path / "bundle"
    args = ["export", str(out), "--native", str(path), "--text-weights", str(weights)]
    assert cli_main(args + ["--background-threshold", "0.35", "--max-classes", "8"]) == 0
    meta = load_meta(str(out))
    assert meta.family == "zeroseg" and meta.postprocess["background_threshold"] == 0.35
    assert meta.raw["verification"]["passed"]


def test_generic_segmenter_refuses_zeroseg(native):
    from zsseg_rt.eval.evaluate import Segmenter

    _, model, text = native
    with pytest.raises(ValueError, match="own protocol"):
        Segmenter("torch", model, ["a"] * 20, text.numpy(), "slide")


def test_training_checkpoint_of_zeroseg_is_evaluated(native, tmp_path):
    from zsseg_rt.train.checkpoint import save_checkpoint

    path, model, text = native
    state = {"model": model.state_dict(), "model_config": model.config.to_dict(), "train_config": {}}
    ckpt = save_checkpoint(state, tmp_path, 10)
    data = build_dataset({"type": "voc", "root": str(SAMPLES), "split": "val"})
    got = evaluate(str(ckpt), data, text_embeddings=text.numpy(), limit=2, progress=False)
    want = evaluate(str(path), data, text_embeddings=text.numpy(), limit=2, progress=False)
    assert got["source"] == "torch" and got["mIoU"] == want["mIoU"] and got["num_classes"] == 21
