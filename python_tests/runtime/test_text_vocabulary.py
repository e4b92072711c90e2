"""Vocabulary edits cost only what changed, and the text encoder runs only up to the longest prompt's end token."""

import numpy as np
import pytest

from zsseg_rt.bundle import Names
from zsseg_rt.runtime import Engine
from zsseg_rt.vocabulary import expand_templates

TEMPLATES = ("a photo of a {}.", "a blurry photo of the {} in the scene.")


class CountingBackend:
    """Wraps a backend and records the shape of every ``encode_text`` call."""

    def __init__(self, inner):
        self.inner = inner
        self.text_calls = []

    def encode_text(self, tokens):
        self.text_calls.append(tokens.shape)
        return self.inner.encode_text(tokens)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def prompts_encoded(self):
        return sum(shape[0] for shape in self.text_calls)


@pytest.fixture()
def engine(tiny_bundle):
    eng = Engine(tiny_bundle, backend="onnxruntime")
    eng.backend = CountingBackend(eng.backend)
    return eng


def test_bundle_text_graph_has_a_dynamic_sequence_axis(engine):
    axes = engine.meta.io["text"]["dynamic_axes"][Names.TOKENS]
    assert axes == {0: Names.NUM_PROMPTS, 1: Names.TOKEN_LENGTH}


def test_trimmed_tokens_give_the_full_length_embeddings(engine):
    names = ["person", "potted plant", "a very long class name with many many words in it", "tv"]
    tokens = engine.tokenizer(expand_templates(names, TEMPLATES))  # [P, 77]
    full = engine.backend.inner.encode_text(tokens)
    length = int(np.count_nonzero(tokens, axis=1).max())
    assert length < tokens.shape[1] // 3  # the point of trimming: far fewer than 77 positions
    trimmed = engine.backend.inner.encode_text(np.ascontiguousarray(tokens[:, :length]))
    np.testing.assert_allclose(trimmed, full, rtol=0, atol=2e-6)  # fp32, different reduction lengths only
    # mutation self-check: cutting one position too many (the end token of the longest prompt) changes the result
    cut = engine.backend.inner.encode_text(np.ascontiguousarray(tokens[:, : length - 1]))
    assert np.abs(cut - full).max() > 1e-3


def test_engine_embeddings_match_untrimmed_encoding(engine):
    names = ["cat", "dog", "dining table", "sky"]
    engine.set_classes(names, templates=TEMPLATES)
    got = engine._vocab[1]
    assert all(shape[1] < 77 for shape in engine.backend.text_calls)
    tokens = engine.tokenizer(expand_templates(names, TEMPLATES))
    ref = engine.backend.inner.encode_text(tokens).reshape(len(names), len(TEMPLATES), -1).astype(np.float64)
    ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
    ref = ref.mean(axis=1)
    ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)


def test_adding_one_class_encodes_only_its_prompts(engine):
    base = ["person", "bottle", "chair", "sofa", "tv"]
    engine.set_classes(base, templates=TEMPLATES)
    assert engine.backend.prompts_encoded() == len(base) * len(TEMPLATES)
    engine.backend.text_calls.clear()
    engine.set_classes(base + ["bicycle"], templates=TEMPLATES)
    assert engine.backend.prompts_encoded() == len(TEMPLATES)
    engine.backend.text_calls.clear()
    engine.set_classes(["tv", "person"], templates=TEMPLATES)  # reordered subset: nothing to encode
    assert engine.backend.prompts_encoded() == 0
    engine.set_classes(["tv", "person"], templates=TEMPLATES[:1])  # other templates: a different cache entry
    assert engine.backend.prompts_encoded() == 2


def test_class_embedding_does_not_depend_on_the_rest_of_the_vocabulary(tiny_bundle):
    alone = Engine(tiny_bundle, classes=["cat"], backend="onnxruntime")
    crowd = Engine(
        tiny_bundle, classes=["an extremely long and wordy description of a room", "dog", "cat"], backend="onnxruntime"
    )
    np.testing.assert_array_equal(alone._vocab[1][0], crowd._vocab[1][2])


def test_cache_is_bounded(engine):
    engine.text_cache_size = 3
    engine.set_classes(["a", "b"], templates=TEMPLATES[:1])
    engine.set_classes(["c", "d"], templates=TEMPLATES[:1])
    assert len(engine.text_cache) == 3
    assert engine.class_names == ["c", "d"]


def test_old_bundles_without_the_axis_keep_full_length(engine):
    engine._trim_tokens = False
    engine.set_classes(["cat", "dog"], templates=TEMPLATES[:1])
    assert {shape[1] for shape in engine.backend.text_calls} == {77}
