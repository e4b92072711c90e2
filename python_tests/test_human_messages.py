"""Messages say what was given and what was expected, in a person's terms (issue 51, defect 9):

* `zsseg export --official photo.png` quoted torch's advice to load the file with `weights_only=False` (arbitrary code
  execution) for a file that is no checkpoint at all: it now says what the file is and what was expected; a real
  checkpoint holding pickled objects names the object instead of torch's advice (and its terminal colour codes);
* `Engine("a_file")` said "bundle directory not found" for a path that exists: it says it is a file, and that a
  bundle is a directory;
* places in a list counted from 0 ("positions 0 and 1", "image 2 of the list" for the third): they count from 1, as
  a person counts (a Python list's item also gets its index)."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")


def _photo(path):
    cv2.imwrite(str(path), np.full((12, 16, 3), 90, np.uint8))
    return str(path)


def test_export_of_a_photo_says_it_is_no_checkpoint(tmp_path, capsys):
    pytest.importorskip("torch")
    from zsseg_rt import cli

    photo = _photo(tmp_path / "photo.png")
    for flag, expected in (
        (["--official", photo], "Expected an official ZegCLIP checkpoint: a .pth file written by torch.save"),
        (["--clip-weights", photo, "--config", "sclip-vitb16"], "Expected CLIP weights: a .pt/.pth/.bin state dict"),
    ):
        code = cli.main(["export", str(tmp_path / "out"), *flag])
        err = capsys.readouterr().err
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert f"{photo} is not a PyTorch checkpoint: it is a PNG image" in err or (
            f"{photo} is not a weight file: it is a PNG image" in err
        ), err
        assert expected in err and "weights_only" not in err, err
    assert not (tmp_path / "out").exists()


def test_what_a_file_that_is_no_checkpoint_is(tmp_path):
    torch = pytest.importorskip("torch")
    import zipfile

    from zsseg_rt.contract.common.weights import checkpoint_file_problem

    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "notes.pth").write_text("lr = 0.1\n")
    cv2.imwrite(str(tmp_path / "photo.jpg"), np.zeros((8, 8, 3), np.uint8))
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as archive:
        archive.writestr("a.txt", "x")
    header = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    (tmp_path / "weights.bin").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    torch.save({"a": torch.zeros(2)}, tmp_path / "new.pth")
    torch.save({"a": torch.zeros(2)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    found = {name: checkpoint_file_problem(tmp_path / name) for name in sorted(p.name for p in tmp_path.iterdir())}
    assert found == {
        "empty.pth": "an empty file (0 bytes)",
        "legacy.pth": None,
        "new.pth": None,
        "notes.pth": "a text file",
        "photo.jpg": "a JPEG image",
        "photos.zip": "a zip archive that torch.save did not write (no data.pkl in it)",
        "weights.bin": "a safetensors file (give it the .safetensors extension)",
    }


def test_a_checkpoint_with_pickled_objects_names_the_object(tmp_path):
    torch = pytest.importorskip("torch")
    from zsseg_rt.contract.common.weights import WeightsError, read_official_state

    torch.save({"state_dict": {"w": torch.zeros(2)}, "meta": {"epoch": np.float64(3.0)}}, tmp_path / "ck.pth")
    with pytest.raises(WeightsError) as refused:
        read_official_state(tmp_path / "ck.pth", "ZegCLIP", "its README", "an mmcv", ("state_dict",), "Re-save it.")
    message = str(refused.value)
    assert "refused to load (it holds a pickled numpy" in message and "multiarray.scalar" in message, message
    assert "weights_only` set to `False`" not in message and "\x1b[" not in message, message


def test_a_file_given_as_a_bundle_is_said_to_be_a_file(tmp_path):
    from zsseg_rt.bundle import BundleError
    from zsseg_rt.runtime import Engine

    photo = _photo(tmp_path / "photo.png")
    with pytest.raises(BundleError) as refused:
        Engine(photo, classes="cat")
    assert str(refused.value).startswith(f"{photo!r} is a file, not a bundle: a bundle is a directory"), refused.value
    with pytest.raises(BundleError, match="bundle directory not found"):
        Engine(str(tmp_path / "nowhere"), classes="cat")


@pytest.mark.parametrize(
    "names, message",
    [
        ("cat,,dog", "class names at positions [2] are empty strings"),
        (["cat", "dog", "Cat"], "duplicate class name 'Cat' (positions 1 and 3"),
        ("person; man, Man", "positions 1 and 2"),
        ("cat; Cat", "twice in position 1"),
        (["cat", 3], "class name #2 is int, expected str"),
    ],
)
def test_class_names_are_counted_from_one(names, message):
    from zsseg_rt.vocabulary import validate_class_names

    with pytest.raises((TypeError, ValueError)) as refused:
        validate_class_names(names)
    assert message in str(refused.value), refused.value


def test_templates_and_vocabulary_entries_are_counted_from_one():
    from zsseg_rt.vocabulary import Vocabulary, VocabularyEntry, validate_templates

    with pytest.raises(ValueError, match=r"template #2 'a photo' must contain exactly one empty"):
        validate_templates(["a photo of a {}.", "a photo"])
    with pytest.raises(ValueError, match=r"vocabulary entry #2 has no label"):
        Vocabulary.checked([VocabularyEntry.of("cat"), VocabularyEntry(" ", ("dog",))])
    with pytest.raises(ValueError, match=r"classes 1 and 2 have the same label 'cat'"):
        Vocabulary.checked([VocabularyEntry("cat", ("cat",)), VocabularyEntry("cat", ("kitty",))])


def test_identical_prompts_and_list_items_are_counted_from_one(tiny_bundle):
    from zsseg_rt.runtime import Engine

    engine = Engine(tiny_bundle, classes="cat,dog", backend="onnxruntime")
    with pytest.raises(ValueError) as refused:
        engine.set_classes(["cat", "t-shirt", "t - shirt"])
    assert "'t-shirt' (position 2) and 't - shirt' (position 3) give identical prompts" in str(refused.value)
    good = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError) as refused:
        engine([good, good, np.zeros((0, 20, 3), np.uint8)])
    assert str(refused.value).startswith("image 3 of the list (index 2): "), refused.value
