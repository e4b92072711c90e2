"""ZegFormer bundle: export (graphs, meta.json, integrity, verification at export) and ``zsseg_rt.Engine`` with
ONNX Runtime against ``predict_zegformer`` in PyTorch on real photos, at tiny size with random weights."""

from __future__ import annotations

import glob
import json
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from zsseg_rt import Engine  # noqa: E402
from zsseg_rt.bundle import BundleError, Files, load_meta, verify_files, write_meta  # noqa: E402
from zsseg_rt.export import onnx_export  # noqa: E402
from zsseg_rt.image_io import read_image_bgr  # noqa: E402
from zsseg_rt.models import create_model  # noqa: E402
from zsseg_rt.models.zegformer.export import flips_beyond_ties  # noqa: E402
from zsseg_rt.models.zegformer.predict import predict_zegformer  # noqa: E402
from zsseg_rt.runtime.engine_cache import EngineMismatchError  # noqa: E402
from zsseg_rt.runtime.pipelines import TwoStagePipeline  # noqa: E402

SAMPLES = sorted(
    glob.glob(os.path.join(os.path.dirname(onnx_export.__file__), "..", "assets", "samples", "JPEGImages", "*.jpg"))
)
LABEL_AGREEMENT = 0.999
SCORE_ATOL = 1e-3


def _tiny_model():
    torch.manual_seed(0)
    m = create_model("zegformer_tiny_test").eval()
    with torch.no_grad():  # masks partly on, partly off; a CLIP branch that matters in the fusion
        for layer in m.predictor.mask_embed.layers:
            layer.weight.mul_(4.0)
        m.clip_logit_scale.fill_(math.log(100.0))
    return m


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


@pytest.fixture(scope="module")
def bundle(model, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("zegformer") / "bundle")
    return onnx_export.export_bundle(model, out, max_classes=32, verify_images=SAMPLES[:2])


def _agree(engine_result, labels_ref, scores_ref):
    """(label agreement, or 1.0 when every differing pixel is a near-tie of the reference; max score error)."""
    agreement = float((engine_result.labels == labels_ref).mean())
    score_err = float(np.abs(engine_result.scores - scores_ref.max(0)).max())
    if agreement < 1.0 and flips_beyond_ties(scores_ref, labels_ref, engine_result.labels, score_err) == 0:
        agreement = 1.0
    return agreement, score_err


def test_bundle_layout_meta_and_export_verification(bundle):
    meta = load_meta(bundle)
    assert meta.family == "zegformer"
    assert sorted(os.listdir(bundle)) == sorted(
        [Files.META, Files.MASK_BRANCH, Files.CLIP_IMAGE_ENCODER, Files.TEXT_ENCODER, Files.TOKENIZER]
    )
    verify_files(meta)  # every file hashed, meta_sha256 present, nothing unlisted
    zeg = meta.raw["two_stage"]
    assert meta.pipeline == "two_stage" and meta.raw["pipeline"] == "two_stage" and "zegformer" not in meta.raw
    assert len(zeg["clip_templates"]) == 32 and zeg["fusion"] == "ensemble" and zeg["clip_cls_style"] == "cropmask"
    assert zeg["clip_logit_scale"] == pytest.approx(100.0, rel=1e-5)
    assert zeg["resize"] == "pil_bilinear"  # detectron2's ResizeShortestEdge on uint8 = PIL bilinear (official)
    report = meta.raw["verification"]
    assert report["passed"] is True
    graphs = {case["graph"] for case in report["cases"]}
    assert graphs == {"text_encoder", "mask_branch", "clip_image_encoder", "engine"}
    engine_cases = [c for c in report["cases"] if c["graph"] == "engine"]
    assert len(engine_cases) == 3  # the synthetic image and two photos
    for case in engine_cases:
        assert case["label_agreement"] >= LABEL_AGREEMENT and case["max_abs"] <= SCORE_ATOL


def test_engine_matches_pytorch_on_real_photos(bundle, model):
    engine = Engine(bundle, classes=list(model.config.class_names), backend="onnxruntime", device="cpu")
    assert isinstance(engine, Engine) and isinstance(engine.pipeline, TwoStagePipeline)
    for path in SAMPLES:
        bgr = read_image_bgr(path)
        result = engine(bgr)  # BGR, as OpenCV reads it
        assert result.labels.shape == bgr.shape[:2] and result.class_names == list(model.config.class_names)
        labels, scores = predict_zegformer(model, np.ascontiguousarray(bgr[:, :, ::-1]))
        agreement, score_err = _agree(result, labels, scores)
        assert agreement >= LABEL_AGREEMENT and score_err <= SCORE_ATOL, (path, agreement, score_err)
        assert len(np.unique(labels)) > 1  # a non-trivial comparison


def test_run_time_vocabulary_with_synonyms_and_unseen_classes(bundle, model):
    names = ["cat", "sofa, couch", "road", "tvmonitor", "person"]  # road: not a training class
    engine = Engine(bundle, backend="onnxruntime", device="cpu")
    engine.set_classes(names)
    assert engine.class_names == names
    rgb = np.ascontiguousarray(read_image_bgr(SAMPLES[0])[:, :, ::-1])
    result = engine(rgb, color_order="rgb")
    labels, scores = predict_zegformer(model, rgb, names)
    agreement, score_err = _agree(result, labels, scores)
    assert agreement >= LABEL_AGREEMENT and score_err <= SCORE_ATOL
    # a vocabulary change: cached names are not encoded again, and the new vocabulary is used
    calls = []
    original = engine.backend.encode_text
    engine.backend.encode_text = lambda tokens: calls.append(len(tokens)) or original(tokens)
    engine.set_classes(names[::-1])
    assert calls == []
    again = engine([rgb, rgb], color_order="rgb")
    assert len(again) == 2 and again[0].class_names == names[::-1]
    np.testing.assert_array_equal(again[0].labels, len(names) - 1 - result.labels)
    engine.set_classes(["cat", "dog"])
    assert calls  # a new name is encoded


def test_bad_use_is_refused_clearly(bundle):
    # TensorRT serves two-stage bundles once `zsseg build-engine` built their engines: here none are (and no
    # TensorRT may be installed); python_tests/prepare/test_tensorrt_two_stage.py builds and runs them
    with pytest.raises((ImportError, EngineMismatchError), match="(?i)tensorrt"):
        Engine(bundle, backend="tensorrt")
    with pytest.raises(ValueError, match="mode must be 'exact'"):
        Engine(bundle, mode="fast")
    engine = Engine(bundle, classes="cat, dog", backend="onnxruntime")
    with pytest.raises(NotImplementedError, match="two text-embedding sets"):
        engine.set_text_embeddings(["cat"], np.zeros((1, 32), np.float32))
    with pytest.raises(ValueError, match="color_order"):
        engine(np.zeros((40, 50, 3), np.uint8), color_order="hsv")
    from zsseg_rt.prepare.tensorrt import build as trt_build

    with pytest.raises(ValueError, match="two-stage bundles build fp16, fp16-pinned or fp32"):
        trt_build.build_engine_set(bundle, "int8")
    from zsseg_rt import cli

    assert cli.main(["build-engine", bundle, "--precision", "int8"]) == 2  # one line on stderr, no traceback


def test_tampered_bundle_is_refused(bundle, tmp_path):
    import shutil

    copy = shutil.copytree(bundle, tmp_path / "b")
    with open(copy / Files.CLIP_IMAGE_ENCODER, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="corrupted or was modified"):
        Engine(str(copy), backend="onnxruntime")
    raw = json.loads((copy / Files.META).read_text())
    raw["two_stage"]["resize"] = "lanczos"  # a resize this runtime does not have (a newer bundle's)
    write_meta(str(copy / Files.META), raw)
    with pytest.raises(BundleError, match=r"resize: one of \('pil_bilinear',\), got 'lanczos'"):
        load_meta(str(copy))
    del raw["two_stage"]
    write_meta(str(copy / Files.META), raw)
    with pytest.raises(BundleError, match="needs this section"):
        load_meta(str(copy))


@pytest.mark.slow  # a second export (~12 s)
def test_export_check_catches_a_runtime_that_disagrees(model, tmp_path, monkeypatch):
    """The export-time Engine check is not a formality: a wrong fusion on the runtime side fails the export and
    leaves nothing behind."""
    from zsseg_rt.runtime.pipelines import two_stage as runtime

    real = runtime.fuse_scores
    monkeypatch.setattr(runtime, "fuse_scores", lambda z, c, seen, mode, lam: real(z, c, seen, "ensemble_all", lam))
    with pytest.raises(onnx_export.ExportError, match="does not reproduce PyTorch"):
        onnx_export.export_bundle(model, str(tmp_path / "b"), max_classes=32)
    assert os.listdir(tmp_path) == []


def test_cli_segment_runs_a_zegformer_bundle(bundle, tmp_path, capsys):
    from zsseg_rt import cli

    out = tmp_path / "seg.png"
    code = cli.main(["segment", SAMPLES[0], "--bundle", bundle, "--classes", "cat,dog,person,sofa", "-o", str(out)])
    assert code == 0 and out.is_file()
    assert cli.main(["segment", SAMPLES[0], "--bundle", bundle, "--classes", "cat", "--backend", "tensorrt"]) != 0
    assert "tensorrt" in capsys.readouterr().err.lower()  # not installed here, or no engines built


@pytest.mark.slow  # a second export (~15 s)
def test_cli_export_from_a_native_checkpoint(model, tmp_path):
    from zsseg_rt import cli
    from zsseg_rt.contract.common.convert import save_native

    native = save_native(model, tmp_path / "native")
    out = tmp_path / "bundle"
    assert cli.main(["export", str(out), "--native", str(native), "--max-classes", "16"]) == 0
    meta = load_meta(str(out))
    assert meta.family == "zegformer" and meta.max_classes == 16 and meta.raw["verification"]["passed"]
    assert meta.raw["source_checkpoint"] == os.path.abspath(native)
    verify_files(meta)


def test_input_limits_apply(bundle):
    from zsseg_rt.pipeline.limits import InputLimitError

    engine = Engine(bundle, classes="cat, dog", backend="onnxruntime", max_memory_mb=1)
    with pytest.raises(InputLimitError, match="max_memory_mb"):
        engine(np.zeros((300, 400, 3), np.uint8))
    engine = Engine(bundle, classes="cat, dog", backend="onnxruntime", max_pixels=1000)
    with pytest.raises(InputLimitError, match="max_pixels"):
        engine(np.zeros((300, 400, 3), np.uint8))
    assert Engine(bundle, classes="cat", backend="onnxruntime")(np.zeros((30, 40, 3), np.uint8)).labels.shape == (
        30,
        40,
    )


def test_runtime_module_needs_no_torch():
    import subprocess
    import sys

    from support import subprocess_env

    code = "import sys, zsseg_rt.runtime.pipelines.two_stage; sys.exit('torch' in sys.modules or 'open_clip' in sys.modules)"
    env = subprocess_env()
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_evaluate_accepts_a_zegformer_engine(bundle, model):
    """``evaluate`` with a ZegFormer Engine object (a subclass) takes the bundle path, and its labels are the
    Engine's on every image."""
    from zsseg_rt.data import SyntheticDataset
    from zsseg_rt.eval import evaluate

    ds = SyntheticDataset(length=2, size=(48, 80), num_classes=4, seed=3, unseen=["blue water"])
    engine = Engine(bundle, backend="onnxruntime", device="cpu")
    metrics = evaluate(engine, ds, progress=False)
    assert metrics["images"] == 2 and engine.class_names == list(ds.class_names)
    for index in range(2):  # image 0 has exact ties (gaps 1e-17..1e-6) between classes of this random model
        rgb, _ = ds.load(index)
        labels, scores = predict_zegformer(model, rgb, list(ds.class_names))
        agreement, score_err = _agree(engine(rgb, color_order="rgb"), labels, scores)
        assert agreement >= LABEL_AGREEMENT and score_err <= SCORE_ATOL


def test_flips_beyond_ties_counts_only_clear_disagreements():
    scores = np.array([[[0.9, 0.5, 0.2]], [[0.1, 0.5 - 1e-7, 0.1]]], dtype=np.float32)  # [C=2, 1, 3]
    labels_ref = scores.argmax(0)
    flipped = 1 - labels_ref
    assert flips_beyond_ties(scores, labels_ref, labels_ref, 1e-6) == 0
    assert flips_beyond_ties(scores, labels_ref, flipped, 1e-6) == 2  # pixels 0 and 2; pixel 1 is a near-tie
    assert flips_beyond_ties(scores, labels_ref, flipped, 1.0) == 0


@pytest.mark.slow  # one export per case (~15 s each)
@pytest.mark.parametrize("fusion,style", [("none", "cropmask"), ("ensemble_all", "mask"), ("clip_only", "crop")])
def test_other_fusions_and_crop_styles_export_and_match(tmp_path, fusion, style):
    model = _tiny_model()
    model.config.fusion, model.config.clip_cls_style = fusion, style
    bundle = onnx_export.export_bundle(model, str(tmp_path / "b"), max_classes=32, verify_images=SAMPLES[:1])
    meta = load_meta(bundle)
    assert meta.raw["two_stage"]["fusion"] == fusion and meta.raw["two_stage"]["clip_cls_style"] == style
    engine = Engine(bundle, classes=list(model.config.class_names), backend="onnxruntime")
    rgb = np.ascontiguousarray(read_image_bgr(SAMPLES[1])[:, :, ::-1])
    labels, scores = predict_zegformer(model, rgb)
    agreement, score_err = _agree(engine(rgb, color_order="rgb"), labels, scores)
    assert agreement >= LABEL_AGREEMENT and score_err <= SCORE_ATOL
