"""Exporter: verified bundle contents, atomic writes, refusal of bad arguments."""

import os

import pytest

torch = pytest.importorskip("torch")

from zsseg_rt.bundle import Files, Names, load_meta, verify_files  # noqa: E402
from zsseg_rt.export import onnx_export  # noqa: E402
from zsseg_rt.models import create_model  # noqa: E402
from zsseg_rt.prepare.tensorrt.compat import check_trt_compatibility  # noqa: E402


def test_bundle_contents_and_verification(tiny_bundle):
    meta = load_meta(tiny_bundle)
    verify_files(meta)
    report = meta.raw["verification"]
    assert report["passed"] is True
    assert {c["graph"] for c in report["cases"]} == {"text_encoder", "image_encoder", "head"}
    assert all(c["max_abs"] <= c["atol"] for c in report["cases"])
    assert meta.opset >= 17 and meta.max_classes == 32
    assert meta.raw["io"]["head"]["inputs"] == list(Names.HEAD_INPUTS)
    compat = meta.raw["tensorrt_compatibility"]
    assert all(compat[role]["ok"] and not compat[role]["errors"] for role in ("image", "head", "text")), compat


def test_graphs_have_dynamic_class_and_batch_axes_and_pass_static_trt_check(tiny_bundle):
    import onnx

    head = onnx.load(os.path.join(tiny_bundle, Files.HEAD))
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in head.graph.input}
    assert dims[Names.TEXT_EMBEDDINGS][0] == Names.NUM_CLASSES
    assert dims[Names.IMAGE_GLOBAL][0] == Names.BATCH
    for name in (Files.IMAGE_ENCODER, Files.HEAD, Files.TEXT_ENCODER):
        report = check_trt_compatibility(os.path.join(tiny_bundle, name))
        assert not report.errors, report.format()


def test_failed_verification_leaves_nothing_behind(tmp_path, monkeypatch):
    model = create_model("zegclip_tiny_test")
    monkeypatch.setattr(onnx_export, "verify_bundle", lambda *a, **k: {"passed": False, "cases": []})
    with pytest.raises(onnx_export.ExportError):
        onnx_export.export_bundle(model, str(tmp_path / "b"), max_classes=4)
    assert os.listdir(tmp_path) == []  # no destination, no temporary directory


def test_existing_bundle_is_kept_unless_overwrite(tmp_path, tiny_bundle):
    dest = tmp_path / "b"
    dest.mkdir()
    (dest / "keep.txt").write_text("x")
    model = create_model("zegclip_tiny_test")
    with pytest.raises(FileExistsError, match="overwrite"):
        onnx_export.export_bundle(model, str(dest), max_classes=4)
    assert (dest / "keep.txt").read_text() == "x"


@pytest.mark.parametrize("kwargs, match", [({"opset": 16}, "opset must be >= 17"), ({"max_classes": 0}, "max_classes")])
def test_bad_export_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        onnx_export.export_bundle(create_model("zegclip_tiny_test"), str(tmp_path / "b"), **kwargs)
