"""A name is read one way everywhere (issue 87, L1 and L2).

L1 (G93): with ``--unknown-below``, ``--classes "b,&#117;nknown"`` was accepted (``classes.json`` held
``"&#117;nknown"`` beside ``"255": "unknown"``) though the duplicate rule says ``&#117;nknown`` "reads 'unknown'":
the reserved-name check compared lower-cased text, not the one rule of the same name (``vocabulary.name_key``).

L2 (G94): ``--classes VOC21`` ran as one class named "VOC21" while ``voc21`` is the benchmark's 21 classes (and
``Voc21`` got "did you mean 'voc21'?"): a named vocabulary is recognised whatever its case
(``vocabulary.named_vocabulary_name``), by the Engine, ``zsseg segment``, ``zsseg batch`` (and ``zsseg serve``'s
``?classes=``: ``python_tests/scale/test_serve_vocabularies.py``)."""

from __future__ import annotations

import json
import re

import pytest

from zsseg_rt.vocabulary import Vocabulary, named_vocabulary, named_vocabulary_name

ENTITY = "&#117;nknown"
REFUSED = (
    f"a class is named 'unknown' ('{ENTITY}' reads 'unknown': names are compared as the CLIP tokenizer reads them, "
    "case, spacing and HTML entities aside), the name of the label unknown_below gives (--unknown-below)"
)


def test_the_reserved_name_written_as_an_entity_is_refused(tiny_bundle):
    from zsseg_rt.runtime import Engine
    from zsseg_rt.runtime.result import check_unknown_name

    with pytest.raises(ValueError, match=re.escape(REFUSED)):
        Engine(tiny_bundle, f"b,{ENTITY}", backend="onnxruntime", prepare=None, unknown_below=0.5)
    for spelling in (ENTITY, "&#x75;nknown", "unkn&#111;wn", "&amp;#117;nknown"):  # open_clip unescapes twice
        with pytest.raises(ValueError, match="reads 'unknown'"):
            check_unknown_name(["b", spelling], 0.5)
    check_unknown_name(["b", ENTITY], None)  # the threshold off: a class like any other
    check_unknown_name(["b", "&#117;nknowns"], 0.5)  # another name


def test_segment_refuses_the_entity_with_the_threshold(tmp_path, tiny_bundle, capsys):
    from zsseg_rt import cli
    from zsseg_rt.assets import sample_images

    out = tmp_path / "out"
    argv = ["segment", str(sample_images()[0]), "--bundle", tiny_bundle, "--classes", f"b,{ENTITY}"]
    assert cli.main([*argv, "--unknown-below", "0.5", "-o", str(out), "--backend", "onnxruntime"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"zsseg segment: error: {REFUSED}") and len(err.strip().splitlines()) == 1, err
    assert not (out / "classes.json").exists()


@pytest.mark.parametrize("spelling", ["VOC21", "Voc21", " voc21 ", "vOc21"])
def test_a_named_vocabulary_in_any_case(spelling):
    assert named_vocabulary_name(spelling) == "voc21"
    assert Vocabulary.parse(spelling) == named_vocabulary("voc21")
    assert [entry.label for entry in Vocabulary.parse(spelling + ",").entries] == [spelling.strip()]  # one class
    with pytest.raises(ValueError, match=re.escape("did you mean 'voc21'?")):
        Vocabulary.parse(spelling.replace("21", "2l"))


def test_named_vocabulary_name_takes_only_one_name():
    for text in ("voc21,cat", "voc21; cat", "voc", "", None, 21, ["voc21"]):
        assert named_vocabulary_name(text) is None, text


def test_segment_and_batch_read_voc21_in_upper_case(tmp_path, tiny_bundle):
    """``zsseg segment P --classes VOC21``: the run's classes.json names voc21's 21 classes (it named one, "VOC21");
    ``prepare_batch`` records the named vocabulary (its workers load it by name) and its classes."""
    import cv2
    import numpy as np

    from zsseg_rt import cli
    from zsseg_rt.assets import sample_images
    from zsseg_rt.scale.batch import prepare_batch

    out = tmp_path / "out"
    argv = ["segment", str(sample_images()[0]), "--bundle", tiny_bundle, "--classes", "VOC21", "-o", str(out)]
    assert cli.main([*argv, "--backend", "onnxruntime"]) == 0
    labels = list(named_vocabulary("voc21").labels)
    assert len(labels) == 21 and list(json.loads((out / "classes.json").read_text()).values()) == labels
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8, 3), np.uint8))
    job = prepare_batch(str(folder), str(tmp_path / "batch"), tiny_bundle, "VOC21")
    assert job.vocabulary == "voc21" and job.names == labels
