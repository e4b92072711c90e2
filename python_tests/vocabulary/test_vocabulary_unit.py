"""The vocabulary unit (zsseg_rt.vocabulary): one rule for "the same name", entries, templates, the text cache."""

import threading

import numpy as np
import pytest

from zsseg_rt.vocabulary import (
    Vocabulary,
    VocabularyEntry,
    embed_names,
    embed_prompt_groups,
    expand_templates,
    load_templates,
    name_key,
    parse_class_text,
    same_name,
    seen_mask,
    template_sets,
    validate_class_names,
)
from zsseg_rt.vocabulary.text_cache import TextEmbeddingCache


def test_one_rule_for_the_same_name():
    assert same_name("Cat", " cat") and same_name("cat", "c&#97;t") and same_name("potted  plant", "Potted plant")
    assert not same_name("cat", "cats") and not same_name("t-shirt", "tshirt")
    # the duplicate check and the seen-class match are the same rule
    with pytest.raises(ValueError, match="duplicate class name"):
        validate_class_names(["c&#97;t", "Cat"])
    assert seen_mask(["c&#97;t", "dog", "Potted  Plant"], ["cat", "potted plant"]).tolist() == [True, False, True]


def test_bundle_calibration_uses_the_one_rule():
    from zsseg_rt.bundle.meta import BundleMeta

    meta = BundleMeta.__new__(BundleMeta)
    meta.seen_class_names, meta.calibration_bias = ["cat", "potted plant"], -0.1
    assert meta.class_bias(["C&#65;T", "dog", " potted   plant "]) == [-0.1, 0.0, -0.1]


def test_vocabulary_entries():
    vocab = Vocabulary.parse("cat, sofa , floor", max_classes=3)
    assert vocab.labels == ["cat", "sofa", "floor"] and len(vocab) == 3 and vocab[1] == VocabularyEntry.of("sofa")
    assert vocab == Vocabulary.parse(["cat", "sofa", "floor"]) and hash(vocab) == hash(
        Vocabulary.parse("cat,sofa,floor")
    )
    with pytest.raises(ValueError, match="at most 2"):
        Vocabulary.parse("cat, sofa, floor", max_classes=2)
    # an entry holding several names is seen when any of them is
    several = Vocabulary([VocabularyEntry("person", ("person", "Pedestrian")), VocabularyEntry.of("tree")])
    assert several.seen_mask(["pedestrian"]).tolist() == [True, False]
    assert several[0].keys == ("person", "pedestrian")


def test_class_list_text_and_templates():
    assert parse_class_text("a, b\n# comment\n\nc # trailing\n") == ["a", "b", "c"]
    assert expand_templates(["cat", "dog"], ["a {}", "the {}."]) == ["a cat", "the cat.", "a dog", "the dog."]
    assert load_templates("single") == list(template_sets()["single"])
    with pytest.raises(ValueError, match="exactly one"):
        load_templates(["a {} {}"])


class _CharTokenizer:
    """Stand-in for ClipTokenizer: one id per character (< 77 ids)."""

    context_length = 16

    def __call__(self, texts):
        out = np.zeros((len(texts), self.context_length), np.int32)
        for row, text in enumerate(texts):
            ids = [1] + [ord(ch) % 50 + 2 for ch in text][: self.context_length - 2] + [99]
            out[row, : len(ids)] = ids
        return out


def _encoder(dim=6):
    rng = np.random.default_rng(0)
    table = rng.standard_normal((100, dim)).astype(np.float32)

    def encode(tokens):  # [P, L] -> [P, D]: a function of the ids before the padding only, as a text encoder
        return (table[tokens] * (tokens != 0)[..., None]).sum(axis=1)

    return encode


def _reference(groups, dim=6):
    encode, tok = _encoder(dim), _CharTokenizer()
    rows = []
    for group in groups:
        emb = encode(tok(group)).astype(np.float64)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        mean = emb.mean(axis=0)
        rows.append(mean / np.linalg.norm(mean))
    return np.array(rows)


@pytest.mark.parametrize("trim", [False, True])
def test_prompt_groups_average_equal_and_unequal_groups(trim):
    tok, encode = _CharTokenizer(), _encoder()
    templates = ["a {}", "the {}!"]
    got = embed_names(["cat", "dog"], templates, tok, encode, 6, trim)
    assert got.dtype == np.float32 and got.shape == (2, 6)
    np.testing.assert_allclose(got, _reference([["a cat", "the cat!"], ["a dog", "the dog!"]]), atol=1e-6)
    groups = [["a cat", "the cat!", "a kitty", "the kitty!"], ["a dog"]]  # a class with two names: 4 prompts
    np.testing.assert_allclose(embed_prompt_groups(groups, tok, encode, 6, trim), _reference(groups), atol=1e-6)


def test_text_cache_encodes_only_new_names_and_is_bounded():
    calls = []

    def encode(names, templates):
        calls.append(list(names))
        return np.array([[len(n), len(templates)] for n in names], np.float32)

    cache = TextEmbeddingCache(encode, maxsize=3)
    np.testing.assert_array_equal(cache.embed(["a", "bb"], ("x {}",)), [[1, 1], [2, 1]])
    cache.embed(["bb", "ccc"], ("x {}",))
    assert calls == [["a", "bb"], ["ccc"]] and len(cache) == 3
    cache.embed(["dddd"], ("x {}",))  # evicts the least recently used ("a")
    assert len(cache) == 3 and ("a", ("x {}",)) not in cache and ("bb", ("x {}",)) in cache
    cache.discard("bb", ["x {}"])
    cache.embed(["bb"], ("x {}",))
    assert calls[-1] == ["bb"]


def test_text_cache_is_thread_safe():
    def encode(names, templates):
        return np.array([[hash(n) % 1000] for n in names], np.float32)

    cache = TextEmbeddingCache(encode, maxsize=5)
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(200):
            names = [f"n{i}" for i in rng.choice(12, 4, replace=False)]
            out = cache.embed(names, ("{}",))
            if out[:, 0].tolist() != [hash(n) % 1000 for n in names]:
                errors.append(names)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) <= 5


def test_name_key_is_the_tokenizer_cleaning():
    from zsseg_rt.vocabulary.tokenizer import clean_text

    for name in ["Cat", "  A  b ", "c&amp;d", "caf\u00e9"]:
        assert name_key(name) == clean_text(name)


@pytest.mark.parametrize(
    "old, names",
    [
        ("zsseg_rt.bundle.tokenizer", ["ClipTokenizer", "build_tokenizer_json", "clean_text", "expand_templates"]),
        ("zsseg_rt.pipeline.vocabulary", ["validate_class_names", "validate_templates", "validate_class_bias"]),
        ("zsseg_rt.data.vocab", ["VOCAB_DIR", "load_class_names"]),
    ],
)
def test_deprecated_import_paths_still_work(old, names):
    import importlib
    import sys
    import warnings

    import zsseg_rt.vocabulary as unit

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message) for w in caught)
    for name in names:
        assert getattr(module, name) is getattr(unit, name)


# ---------------------------------------------------------------------------------------------- synonyms
def test_a_class_may_have_synonyms():
    vocab = Vocabulary.parse("person; man ;woman, cat")
    assert vocab.labels == ["person", "cat"] and vocab.names == ["person", "man", "woman", "cat"]
    assert vocab.texts == ["person; man; woman", "cat"] and vocab.has_synonyms
    assert vocab.class_of().tolist() == [0, 0, 0, 1] and vocab.class_of().dtype == np.int32
    assert validate_class_names(["person;man", "cat"]) == ["person; man", "cat"]
    assert Vocabulary.parse(["person; man", VocabularyEntry("feline", ("cat", "kitty"))]).labels == ["person", "feline"]
    # every name counts: a name may appear once in the whole vocabulary
    for bad, match in (("cat; Cat", "twice in position 1"), ("person; man, Man", "positions 1 and 2")):
        with pytest.raises(ValueError, match=match):
            Vocabulary.parse(bad)
    with pytest.raises(ValueError, match="empty synonym"):
        Vocabulary.parse("person;; man")
    # the ';' of an HTML entity is no separator ("c&#97;t" is "cat" to the tokenizer)
    assert Vocabulary.parse("c&#97;t; kitty").names == ["c&#97;t", "kitty"]
    # seen when one of its names is (the calibration and the two-stage seen mask)
    assert seen_mask(["person; pedestrian", "tree"], ["Pedestrian"]).tolist() == [True, False]


@pytest.mark.parametrize("trim", [False, True])
def test_the_mean_rule_averages_every_prompt_of_every_name(trim):
    """``"cat; kitty"`` under the mean rule: every template x every name, normalised, averaged, normalised."""
    tok, encode = _CharTokenizer(), _encoder()
    templates = ["a {}", "the {}!"]
    got = embed_names(["cat; kitty", "dog"], templates, tok, encode, 6, trim)
    want = _reference([["a cat", "the cat!", "a kitty", "the kitty!"], ["a dog", "the dog!"]])
    np.testing.assert_allclose(got, want, atol=1e-6)
    # hand-computed: two orthogonal unit prompt embeddings e1, e2 average to (e1 + e2) / sqrt(2)
    basis = {"x": np.eye(6, dtype=np.float32)[0] * 3.0, "y": np.eye(6, dtype=np.float32)[1] * 0.5}

    class Words:
        context_length = 4

        def __call__(self, texts):
            return np.array([[1, ord(t), 99, 0] for t in texts], np.int32)

    two = embed_names(["x; y"], ["{}"], Words(), lambda t: np.stack([basis[chr(r[1])] for r in t]), 6, trim)
    np.testing.assert_allclose(two[0], [2**-0.5, 2**-0.5, 0, 0, 0, 0], atol=1e-7)


def test_named_vocabularies_are_the_official_class_files():
    from zsseg_rt.vocabulary import describe_named, named_vocabularies, named_vocabulary

    assert named_vocabularies() == [
        "ade20k", "cityscapes", "coco_object", "coco_stuff", "context59", "context60", "voc20", "voc21",
    ]  # fmt: skip
    sizes = {"ade20k": 150, "cityscapes": 19, "coco_object": 81, "coco_stuff": 171, "context59": 59,
             "context60": 60, "voc20": 20, "voc21": 21}  # fmt: skip
    for name, size in sizes.items():
        vocab = named_vocabulary(name)
        assert len(vocab) == size and vocab.name == name and "SuleBai/SC-CLIP@0417ba9" in vocab.source
        assert (vocab.background == 0) == (name in ("voc21", "context60", "coco_object"))
    voc21 = Vocabulary.parse("voc21")
    assert voc21 == named_vocabulary("voc21") and len(voc21.names) == 56
    assert (
        voc21[0].label == "background" and voc21[0].names[:3] == ("sky", "wall", "tree") and len(voc21[0].names) == 26
    )
    assert voc21[15].names == (
        "person", "person in shirt", "person in jeans", "person in dress", "person in sweater", "person in skirt",
        "person in jacket",
    )  # fmt: skip
    assert voc21[20].names == ("television monitor", "tv monitor", "monitor", "television", "screen")
    assert named_vocabulary("voc20").labels == voc21.labels[1:]  # the same classes without the background
    assert named_vocabulary("context60")[0] == VocabularyEntry("background", ("background",))
    assert "wood" in named_vocabulary("context60").names  # the official "wood " stripped
    # kept as the official file is: COCO-Object's background lists "bed", also a class of its own
    coco = Vocabulary.parse("coco_object")
    assert coco.names.count("bed") == 2 and coco[0].label == "background"
    with pytest.raises(ValueError, match="at most 80"):
        Vocabulary.parse("coco_object", max_classes=80)
    assert len(describe_named()) == 8 and any(
        line.startswith("voc21: 21 classes, 56 names") for line in describe_named()
    )
    # a list item or a comma-separated string is never a vocabulary's name
    assert Vocabulary.parse(["voc21"]).labels == ["voc21"] and Vocabulary.parse("voc21, cat").labels == ["voc21", "cat"]
    with pytest.raises(KeyError, match="voc21"):
        named_vocabulary("voc22")
