"""The one vocabulary check, used by the Engine and by the models' text encoders."""

import pytest

from zsseg_rt.pipeline import validate_class_names


def test_strings_are_comma_separated_and_stripped():
    assert validate_class_names("cat, sofa ,floor") == ["cat", "sofa", "floor"]
    assert validate_class_names(["  cat", "big dog "]) == ["cat", "big dog"]
    assert validate_class_names(("a",), max_classes=1) == ["a"]


@pytest.mark.parametrize(
    "names, error, match",
    [
        ([], ValueError, "class list is empty"),
        (["cat", " "], ValueError, r"positions \[2\] are empty"),  # counted from 1, as a person counts
        ("cat,,dog", ValueError, r"positions \[2\] are empty"),
        (["cat", "dog", "Cat"], ValueError, r"duplicate class name 'Cat' \(positions 1 and 3"),
        (["big  dog", "Big dog"], ValueError, "duplicate class name"),
        (["cat", 3], TypeError, "class name #2 is int, expected str"),
    ],
)
def test_bad_vocabularies(names, error, match):
    with pytest.raises(error, match=match):
        validate_class_names(names)


def test_max_classes():
    with pytest.raises(ValueError, match="3 classes given but this bundle supports at most 2"):
        validate_class_names("a,b,c", max_classes=2)


def test_engine_and_models_share_it():
    from zsseg_rt.runtime import validate_class_names as runtime_check

    assert runtime_check is validate_class_names
    pytest.importorskip("torch")
    from zsseg_rt.contract.common.text import validate_class_names as model_check

    assert model_check is validate_class_names
