"""The torch-free tokenizer must give exactly open_clip's token ids."""

import unicodedata

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

open_clip = pytest.importorskip("open_clip")

from zsseg_rt.vocabulary import ClipTokenizer, build_tokenizer_json, expand_templates  # noqa: E402
from zsseg_rt.vocabulary.tokenizer import clean_text  # noqa: E402


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    reference = open_clip.get_tokenizer("ViT-B-16")
    path = str(tmp_path_factory.mktemp("tok") / "tokenizer.json")
    build_tokenizer_json(reference.encoder, reference.bpe_ranks, path)
    return reference, ClipTokenizer(path)


FIXED = [
    "a photo of a pottedplant",
    "This is a photo of a small tv monitor.",
    "There is the wall-concrete in the scene.",
    "a photo of a  Café &amp; naïve 123 dog's",
    "",
    "x" * 400,
    "playingfield",
    "hello world " * 40,
    "日本語 テキスト",
    "tab\tand\nnewline",
    "it's a cat's toy, they'll see",
    "emoji 🐈 cat",
]


def test_fixed_strings_match_open_clip(tokenizers):
    reference, ours = tokenizers
    expected = reference(FIXED).numpy()
    got = ours(FIXED)
    assert got.dtype == np.int32 and got.shape == expected.shape == (len(FIXED), 77)
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=150, deadline=None)
# Unassigned code points (Unicode category Cn) are grouped differently by the Rust regex engine of `tokenizers`
# than by Python's `regex` (documented in zsseg_rt/vocabulary/tokenizer.py); every assigned character is covered.
# "Unassigned" is judged on the text as tokenised, after open_clip's cleaning: ftfy can turn assigned characters
# into one this Python's Unicode tables (unicodedata) do not know, which `regex`'s newer tables may already class as
# a letter. Hypothesis found ':Õ\x98': ftfy makes it ':\u0558' (Cn in Unicode 14; a letter for regex 2026.11.19).
@given(st.text(alphabet=st.characters(exclude_categories=("Cn", "Cs")), min_size=0, max_size=60))
def test_random_text_matches_open_clip(tokenizers, text):
    assume(not any(unicodedata.category(ch) == "Cn" for ch in clean_text(text)))
    reference, ours = tokenizers
    np.testing.assert_array_equal(ours([text]), reference([text]).numpy())


def test_expand_templates_is_class_major():
    assert expand_templates(["cat", "dog"], ["a {}", "the {}."]) == ["a cat", "the cat.", "a dog", "the dog."]


def test_combining_ypogegrammeni_is_dropped_like_open_clip(tokenizers):
    """Hypothesis found 'Í\\x85' (ftfy turns it into U+0345, which open_clip's IGNORECASE pattern drops)."""
    ref, ours = tokenizers
    for text in ["Í\x85", "a\u0345b", "x\u0345 y\u0345", "\u0345"]:
        np.testing.assert_array_equal(ours([text]), ref([text]).numpy().astype(np.int32))


def test_a_tokenizer_file_is_read_by_its_content(tokenizers, tmp_path):
    """ClipTokenizer parses a file's content once per process (every Engine, export check and gate of a bundle or
    its copies reads the same tokenizer.json): a copy elsewhere gives the same ids, and a file rewritten in place
    with another vocabulary gives that vocabulary's ids, never the first one's (parsed files are keyed by their
    bytes, not their path)."""
    reference, tokenizer = tokenizers
    first, copy = tmp_path / "first.json", tmp_path / "copy" / "tokenizer.json"
    build_tokenizer_json(reference.encoder, reference.bpe_ranks, str(first))
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    assert np.array_equal(ClipTokenizer(str(first))(FIXED), tokenizer(FIXED))
    assert np.array_equal(ClipTokenizer(str(copy))(FIXED), tokenizer(FIXED))
    # another vocabulary at the same path: without the merges that make "cat" one token, it is spelled in pieces
    ranks = {pair: rank for pair, rank in reference.bpe_ranks.items() if "".join(pair) not in ("ca", "cat</w>")}
    build_tokenizer_json(reference.encoder, ranks, str(copy))
    cat = ClipTokenizer(str(copy))(["cat"])[0]
    assert np.count_nonzero(cat) > np.count_nonzero(tokenizer(["cat"])[0]) == 3  # start, cat, end
