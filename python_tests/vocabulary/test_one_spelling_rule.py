"""A name is read one way everywhere (issue 87, L1).

L1 (G93): with ``--unknown-below``, ``--classes "b,&#117;nknown"`` was accepted (``classes.json`` held
``"&#117;nknown"`` beside ``"255": "unknown"``) though the duplicate rule says ``&#117;nknown`` "reads 'unknown'":
the reserved-name check compared lower-cased text, not the one rule of the same name (``vocabulary.name_key``)."""

from __future__ import annotations

import re

import pytest

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
