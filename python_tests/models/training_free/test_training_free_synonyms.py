"""Synonyms, the background class and named vocabularies through the Engine on tiny training-free bundles, against
the independent torch transcription of the official slide inference with ``query_idx`` (SCLIP / NACLIP
``postprocess_result``: softmax over every name, each class the max over its names' probabilities, area filter,
``prob_thd``), with PAMR on the NACLIP bundle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from zeg_helpers import randomize_

from zsseg_rt.assets import sample_images

TINY_TF = "training_free_tiny_test"
VOC_IMAGES = [str(p) for p in sample_images()]


def _model(method: str, **overrides):
    from zsseg_rt.models import create_model

    torch.manual_seed(0)
    return randomize_(create_model(TINY_TF, method=method, **overrides), seed=1).eval()


@pytest.mark.parametrize(
    "method, overrides",
    [
        ("sclip", {"background_threshold": 0.3, "area_threshold": 0.1}),
        ("naclip", {"pamr_iterations": 10, "background_threshold": 0.155}),  # about the median score
    ],
)
def test_engine_synonyms_follow_the_official_max_rule(method, overrides, tmp_path):
    import cv2
    from training_free_reference import slide_inference

    from zsseg_rt import Engine
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.vocabulary import Vocabulary

    model = _model(method, **overrides)
    out = export_bundle(model, str(tmp_path / "bundle"), max_classes=16, verify_images=())
    vocabulary = Vocabulary.parse("sky; wall; floor, person; man; woman, cat; kitty, dog, car")
    engine = Engine(out, classes=vocabulary, backend="onnxruntime")
    assert engine.meta.postprocess["synonyms"] == "max"
    assert engine.class_names == ["sky", "person", "cat", "dog", "car"]
    assert engine._vocab.text.shape[0] == 10 and engine._vocab.class_of == (0, 0, 0, 1, 1, 1, 2, 2, 3, 4)
    image = cv2.imread(VOC_IMAGES[1])
    result = engine(image)
    labels, scores = slide_inference(
        model, image, vocabulary.names, color_order="bgr", short_side=engine.meta.image_size,
        query_idx=vocabulary.class_of().tolist(),
    )  # fmt: skip
    assert result.labels.max() < 5 and len(np.unique(labels)) > 1
    assert (result.labels == labels).mean() > 0.999
    np.testing.assert_allclose(result.scores, scores, rtol=1e-4, atol=1e-5)  # probabilities, fp32 ORT vs torch
    # the PyTorch inference (zsseg_rt.models.training_free.predict) follows the same rule
    from zsseg_rt.models.training_free.predict import segment

    torch_labels, torch_scores = segment(model, image, vocabulary, color_order="bgr", short_side=engine.meta.image_size)
    assert (torch_labels == labels).mean() > 0.999
    np.testing.assert_allclose(torch_scores, scores, rtol=1e-4, atol=1e-5)
    # Without the area filter the max rule is the same as scoring the ten names as classes and mapping the winning
    # name to its class (the max of a class's names' probabilities is won by its best name; the background
    # threshold compares that same probability). The area filter counts classes, not names: there the two differ
    # (hand-computed in python_tests/pipeline/test_synonym_rules.py::test_area_filter_counts_classes_not_names).
    if overrides.get("area_threshold") is None:
        separate = Engine(out, classes=vocabulary.names, backend="onnxruntime")(image)
        np.testing.assert_array_equal(np.asarray(vocabulary.class_of())[separate.labels], result.labels)
        np.testing.assert_array_equal(separate.scores, result.scores)


def test_named_vocabulary_applies_the_settings_the_bundle_records(tmp_path):
    """``classes="voc21"`` on an SCLIP bundle: the 56 official names in 21 classes, and SCLIP's VOC21 settings the
    bundle records (logit scale 65 instead of the bundle's 40, prob_thd 0.1, area_thd 0.1); a plain list of the
    same entries gets the bundle's own settings."""
    import cv2
    from training_free_reference import slide_inference

    from zsseg_rt import Engine
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.vocabulary import named_vocabulary

    model = _model("sclip")
    out = export_bundle(model, str(tmp_path / "bundle"), max_classes=64, verify_images=())
    voc21 = named_vocabulary("voc21")
    engine = Engine(out, classes="voc21", backend="onnxruntime")
    settings = engine.meta.postprocess["vocabulary_settings"]
    assert settings["voc21"] == {"logit_scale": 65.0, "background_threshold": 0.1, "area_threshold": 0.1}
    assert settings["voc20"]["background_threshold"] is None and "cityscapes" in settings
    assert engine.class_names == voc21.labels and engine.vocabulary.background == 0
    image = cv2.imread(VOC_IMAGES[0])
    result = engine(image)
    labels, scores = slide_inference(
        model, image, voc21.names, color_order="bgr", short_side=engine.meta.image_size,
        background_threshold=0.1, area_threshold=0.1, query_idx=voc21.class_of().tolist(), logit_scale=65.0,
    )  # fmt: skip
    assert (result.labels == labels).mean() > 0.999 and (labels == 0).any()
    np.testing.assert_allclose(result.scores, scores, rtol=1e-4, atol=1e-5)
    # the same entries given one by one are not the named vocabulary: the bundle's own settings (scale 40, none)
    own = Engine(out, classes=list(voc21.entries), backend="onnxruntime")
    assert own.vocabulary.name is None
    own_labels, _ = slide_inference(
        model, image, voc21.names, color_order="bgr", short_side=engine.meta.image_size,
        background_threshold=None, area_threshold=None, query_idx=voc21.class_of().tolist(),
    )  # fmt: skip
    assert (own(image).labels == own_labels).mean() > 0.999 and (own_labels != labels).any()
    # names past the bundle's class rows are refused with the reason
    small = export_bundle(model, str(tmp_path / "small"), max_classes=32, verify_images=())
    with pytest.raises(ValueError, match="56 names given .21 classes with synonyms"):
        Engine(small, classes="voc21", backend="onnxruntime")


def test_torch_model_text_embeddings_average_synonyms():
    """The PyTorch models' text side (all families): a class ``"a; b"`` is every template x every name averaged
    (the mean rule); for the ``"max"`` rule the Engine encodes the names one by one instead."""
    model = _model("sclip")
    both = model.text_embeddings(["cat; kitty"], ["a photo of a {}."])[0]
    one = model.text_encoder.encode(["cat", "kitty"], ["a photo of a {}."], use_cache=False)
    prompts = model.text_encoder.tokenize(["a photo of a cat.", "a photo of a kitty."])
    with torch.no_grad():
        raw = model.text_encoder.encode_tokens(prompts).float()
    expected = torch.nn.functional.normalize(raw.mean(0), dim=-1)
    torch.testing.assert_close(both, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(both, one[0], atol=1e-3)


def test_mean_rule_family_through_the_engine(tiny_bundle):
    """A ``"mean"`` family (ZegCLIP's tiny bundle): ``"cat; kitty"`` is one text row, the mean of both names' prompt
    embeddings, as the PyTorch model's text side computes it (ONNX Runtime vs torch, fp32: 1e-5), no name map."""
    from support import golden_tiny_model

    from zsseg_rt import Engine

    engine = Engine(tiny_bundle, classes="cat; kitty, dog", backend="onnxruntime")
    assert engine.meta.postprocess.get("synonyms", "mean") == "mean" and engine._vocab.class_of is None
    assert engine.class_names == ["cat", "dog"] and engine._vocab.text.shape[0] == 2
    with torch.no_grad():
        expected = golden_tiny_model("zegclip").text_embeddings(["cat; kitty", "dog"]).float().numpy()
    np.testing.assert_allclose(engine._vocab.text, expected, rtol=0, atol=1e-5)
    kitty = Engine(tiny_bundle, classes="kitty, dog", backend="onnxruntime")._vocab.text[0]
    assert not np.allclose(engine._vocab.text[0], kitty, atol=1e-3)  # both names count
