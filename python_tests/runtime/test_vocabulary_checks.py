"""Issue 16 item 4: vocabularies that would silently give garbage are refused, and a refused ``set_classes``
leaves the current vocabulary as it was (tiny bundle, ONNX Runtime)."""

import numpy as np
import pytest

from zsseg_rt.pipeline import validate_class_bias, validate_class_names, validate_templates


# ---- pure checks (no bundle) ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "template, match",
    [
        ("a photo", r"exactly one empty '\{\}'.*found 0 field"),
        ("a photo of a {0}", r"found 1 field.*\{0\}"),
        ("a photo of a {x}", r"\{x\}"),
        ("{} and {}", "found 2 field"),
        ("a {:>5}", r"\{:>5\}"),
        ("a {c}", r"\{c\}"),
        ("a {} }", "not a valid format string"),
    ],
)
def test_bad_templates_are_refused(template, match):
    with pytest.raises(ValueError, match=match):
        validate_templates([template])


def test_a_plain_string_is_one_template():
    # before: tuple("a photo of a {}") gave one template per character
    assert validate_templates("a photo of a {}.") == ("a photo of a {}.",)
    assert validate_templates(["a {}", "{{literal}} {}"]) == ("a {}", "{{literal}} {}")


@pytest.mark.parametrize("templates, error", [([], ValueError), ([3], TypeError), (5, TypeError)])
def test_template_container_errors(templates, error):
    with pytest.raises(error):
        validate_templates(templates)


@pytest.mark.parametrize(
    "names",
    [["cat", "CAT"], ["big dog", "big\t dog"], ["cat", "c&#97;t"], ["fish & chips", "fish &amp; chips"]],
)
def test_names_equal_after_clip_normalisation_are_duplicates(names):
    with pytest.raises(ValueError, match="duplicate class name"):
        validate_class_names(names)


@pytest.mark.parametrize(
    "bias, error, match",
    [
        ([0.1], ValueError, r"shape \[2\]"),
        ([[0.1, 0.2]], ValueError, r"shape \[2\]"),
        ([0.1, float("nan")], ValueError, r"finite.*classes \[1\]"),
        ([0.1, float("inf")], ValueError, "finite"),
        ([0.1, 1e39], ValueError, "finite"),  # overflows float32
        (["0.1", "0.2"], TypeError, "numbers"),
        ([True, False], TypeError, "numbers"),
        ([object(), 1], TypeError, "numbers"),
        ("ab", TypeError, "numbers"),
    ],
)
def test_bad_class_bias(bias, error, match):
    with pytest.raises(error, match=match):
        validate_class_bias(bias, 2)


def test_good_class_bias():
    out = validate_class_bias(np.array([1, 2]), 2)
    assert out.dtype == np.float32 and out.tolist() == [1.0, 2.0]


# ---- through the Engine -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tiny_bundle):
    from zsseg_rt import Engine

    return Engine(tiny_bundle, classes=["cat", "floor", "sky"], backend="onnxruntime", device="cpu")


BAD_CALLS = [
    (dict(names=["cat", "dog"], templates="a photo"), ValueError, "exactly one empty"),
    (dict(names=["cat", "dog"], templates=["{0}"]), ValueError, "exactly one empty"),
    (dict(names=["cat", "dog"], templates=["{} {}"]), ValueError, "found 2 field"),
    (dict(names=["cat", "Cat "]), ValueError, "duplicate class name"),
    (dict(names=["t-shirt", "t - shirt"]), ValueError, "identical prompts once tokenised"),
    (dict(names=["cat", "x" * 300 + "a", "x" * 300 + "b"]), ValueError, "identical prompts once tokenised"),
    (dict(names=["cat", "dog"], class_bias=[0.1]), ValueError, "shape"),
    (dict(names=["cat", "dog"], class_bias=[0.1, float("nan")]), ValueError, "finite"),
    (dict(names=["cat", "dog"], class_bias=["a", "b"]), TypeError, "numbers"),
]


@pytest.mark.parametrize("kwargs, error, match", BAD_CALLS)
def test_refused_set_classes_keeps_the_previous_vocabulary(engine, kwargs, error, match):
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    before = engine(image)
    vocab = engine._vocab
    with pytest.raises(error, match=match):
        engine.set_classes(**kwargs)
    assert engine._vocab is vocab and engine.class_names == ["cat", "floor", "sky"]
    after = engine(image)
    np.testing.assert_array_equal(after.labels, before.labels)


def test_a_plain_string_template_is_one_template_in_the_engine(engine):
    engine.set_classes(["cat", "dog"], templates="a photo of a {}.")
    one = engine._vocab[1]
    engine.set_classes(["cat", "dog"], templates=["a photo of a {}."])
    np.testing.assert_array_equal(engine._vocab[1], one)
    engine.set_classes(["cat", "floor", "sky"])


def test_set_text_embeddings_validates_bias_before_install(engine):
    vocab = engine._vocab
    with pytest.raises(ValueError, match="finite"):
        engine.set_text_embeddings(["a", "b"], np.ones((2, engine.meta.embed_dim)), class_bias=[0.0, float("inf")])
    with pytest.raises(TypeError, match="numeric"):
        engine.set_text_embeddings(["a", "b"], np.array([["x"] * engine.meta.embed_dim] * 2))
    assert engine._vocab is vocab
