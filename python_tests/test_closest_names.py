"""Names that are close to a known one get the closest name (issue 79, F9): a model config (``zsseg export --config
sclip-vitb16x``), a family's own config loader, a training recipe (``zsseg train zegclip_tiny_tst``) and a recipe key
(``--set lrr=0.1``) each answered with a list cut by "...", no suggestion; ``--classes voc2l`` ran silently as a
vocabulary of one class named "voc2l". Now the suggestion comes first (the CLI cuts a long message, the list last);
a one-class vocabulary is still one comma away (``voc2l,``), and a word a vocabulary's name holds (``object``) is a
class as before."""

from __future__ import annotations

import re

import pytest


def test_a_misspelt_model_config_gets_the_closest_name_first():
    from zsseg_rt.contract.registry import family_of

    with pytest.raises(FileNotFoundError) as caught:
        family_of("sclip-vitb16x")
    assert str(caught.value).startswith(
        "model config 'sclip-vitb16x' is neither a file nor a bundled config (did you mean 'sclip_vitb16'?); bundled: ["
    ), caught.value
    with pytest.raises(FileNotFoundError, match=r"a bundled config; bundled: \["):
        family_of("nothing-like-any")  # no close name: no suggestion


def test_a_familys_own_config_loader_gets_the_closest_name_first():
    from zsseg_rt.models.zegclip.config import load_zegclip_config

    with pytest.raises(FileNotFoundError, match=re.escape("(did you mean 'zegclip_tiny_test'?); bundled: [")):
        load_zegclip_config("zegclip_tiny_tst")


def test_a_misspelt_training_recipe_or_key_gets_the_closest_name_first():
    from zsseg_rt.train.config import load_train_config

    with pytest.raises(FileNotFoundError) as caught:
        load_train_config("tiny_tset")
    assert str(caught.value).startswith(
        "training config 'tiny_tset' is neither a file nor a bundled recipe (did you mean 'tiny_test'?); bundled: ["
    ), caught.value
    with pytest.raises(ValueError) as caught:
        load_train_config("tiny_test", ["lrr=0.1"])
    assert "unknown training config keys ['lrr'] ('lrr': did you mean 'lr'?); known keys: [" in str(caught.value)


def test_a_name_close_to_a_named_vocabulary_is_refused_with_it_and_a_comma_makes_it_one_class():
    from zsseg_rt.vocabulary import Vocabulary

    with pytest.raises(ValueError) as caught:
        Vocabulary.parse("voc2l")
    assert str(caught.value) == (
        "classes 'voc2l': no named vocabulary of that name (did you mean 'voc21'?); for one class named so, end it "
        "with a comma: 'voc2l,'"
    )
    with pytest.raises(ValueError, match="did you mean 'cityscapes'"):
        Vocabulary.parse(" cityscape ")
    assert [entry.label for entry in Vocabulary.parse("voc2l,").entries] == ["voc2l"]  # one class, as asked
    for word in ("object", "stuff", "voc", "cat"):  # words, not typos of a vocabulary's name: a class as before
        assert [entry.label for entry in Vocabulary.parse(word).entries] == [word]
    assert len(Vocabulary.parse("voc21").entries) == 21
