"""meta.json's ``whole_image`` section (bundles whose image graph takes any size: whole-image inference) through the
schema every load checks, and the Engine's ``inference`` choice on a bundle without it (no torch here: the
runtime-only venv runs this file). Each malformed field is refused with what was expected; the section is refused
where it cannot hold (a fixed-size image graph, another pipeline)."""

from __future__ import annotations

import copy

import pytest
from test_bundle_meta import _write_bundle

from zsseg_rt.bundle import BundleError, WholeImage, default_graph_io, load_meta
from zsseg_rt.bundle.schema import check_meta_schema

WHOLE = {
    "fit": "pad",
    "logits_to": "rescaled",
    "max_side": 2048,
    "max_short_side": 528,
    "default": "whole",
    "vocabularies": {"voc20": "whole", "ade20k": "windows"},
    "encoder_bytes_per_token": 4608,
    "encoder_bytes_per_token_pair": 24,
}
ANY_SIZE_IO = default_graph_io(("patch_grid",), any_size=True)


def test_a_whole_image_bundle_loads_with_its_section(tmp_path):
    meta = load_meta(_write_bundle(tmp_path, whole_image=WHOLE, io=ANY_SIZE_IO))
    assert meta.whole_image == WHOLE
    assert meta.io["image"]["dynamic_axes"]["image"] == {0: "batch", 2: "height", 3: "width"}
    assert meta.io["image"]["dynamic_axes"]["patch_grid"] == {0: "batch", 1: "grid_height", 2: "grid_width"}
    assert meta.io["head"]["dynamic_axes"]["mask_logits"] == {
        0: "batch",
        1: "num_classes",
        2: "grid_height",
        3: "grid_width",
    }
    assert WholeImage.FITS == ("pad", "crop") and WholeImage.INFERENCE == ("whole", "windows")
    (tmp_path / "fixed").mkdir()
    assert load_meta(_write_bundle(tmp_path / "fixed")).whole_image is None  # every bundle before it


def _base(tmp_path):
    import json

    bundle = _write_bundle(tmp_path, whole_image=WHOLE, io=ANY_SIZE_IO)
    with open(f"{bundle}/meta.json", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"fit": "stretch"}, "whole_image: expected fit: one of ('pad', 'crop'), got 'stretch'"),
        ({"logits_to": "window"}, "logits_to: one of ('rescaled', 'original')"),
        ({"max_side": 2050}, "whole_image.max_side: a multiple of patch_size 16"),
        ({"max_short_side": 48}, "whole_image.max_short_side: a multiple of patch_size 16 and at least image_size 64"),
        ({"max_short_side": 4096}, "max_short_side <= max_side, got 4096 > 2048"),
        ({"default": "slide"}, "default: one of ('whole', 'windows')"),
        ({"vocabularies": {"voc20": "slide"}}, "vocabularies: an object of {vocabulary: one of ('whole', 'windows')}"),
        ({"encoder_bytes_per_token": -1}, "encoder_bytes_per_token: an integer in [0,"),
        ({"max_side": None}, "max_side: an integer"),
    ],
)
def test_a_malformed_section_is_refused_saying_what_was_expected(tmp_path, change, message):
    raw = _base(tmp_path)
    raw["whole_image"] = dict(WHOLE, **change)
    problems = check_meta_schema(raw)
    assert any(message in p for p in problems), problems


def test_the_section_needs_an_image_graph_of_any_size_in_the_windowed_pipeline(tmp_path):
    raw = _base(tmp_path)
    assert check_meta_schema(raw) == []
    missing = copy.deepcopy(raw)
    del missing["whole_image"]["fit"]
    assert any("lacks ['fit']" in p for p in check_meta_schema(missing))
    fixed = dict(raw, io=default_graph_io(("patch_grid",)))
    assert any("the image graph must take any size" in p for p in check_meta_schema(fixed))
    from zsseg_rt.bundle import schema

    # (the two-stage pipeline's own section is checked first: the cross-field rule alone)
    assert "only bundles of the windowed pipeline run whole images" in schema._whole_image_problems(raw, "two_stage")[0]
    (tmp_path / "bad").mkdir()
    written = _write_bundle(tmp_path / "bad", whole_image=dict(WHOLE, fit="stretch"), io=ANY_SIZE_IO)
    with pytest.raises(BundleError, match="malformed: whole_image: expected fit"):
        load_meta(written)


def test_inference_whole_is_refused_on_a_fixed_size_bundle(tiny_bundle):
    """``Engine(inference="whole")`` on a bundle whose image graph has one size says why and what to do; "auto"
    runs windows there; an unknown choice is refused."""
    pytest.importorskip("onnxruntime")
    from zsseg_rt import Engine

    with pytest.raises(ValueError, match=r"inference='whole' needs a bundle whose image graph takes any size"):
        Engine(tiny_bundle, backend="onnxruntime", inference="whole")
    with pytest.raises(ValueError, match=r"^inference: expected one of 'auto', 'whole', 'windows', got 'slide'$"):
        Engine(tiny_bundle, backend="onnxruntime", inference="slide")
    engine = Engine(tiny_bundle, classes=["cat", "dog"], backend="onnxruntime")
    import numpy as np

    assert engine(np.zeros((40, 60, 3), np.uint8)).inference == "windows"
