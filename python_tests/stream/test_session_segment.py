"""What ``zsseg segment`` does that a Python ``Session`` does too, by its options (``fit_images``, ``skipped_fails``)
and outputs (``views:out.png``): a photo over the pixel limit segmented resized to fit it with a note, an unreadable
image skipped while the others go on (the run's exit code 1 and the image named in ``session.skipped`` and the
summary), one image's views written as one file and its siblings."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

_EXACT = {"backend": "onnxruntime", "mode": "exact"}


def _photos(folder, sizes):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(11)
    for index, (height, width) in enumerate(sizes):
        cv2.imwrite(str(folder / f"p{index}.png"), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return str(folder)


def _visible(folder) -> list:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def test_a_photo_over_the_limit_is_segmented_resized_with_fit_images_and_skipped_without(tmp_path, tiny_bundle, caplog):
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", [(48, 64), (32, 40)])  # 3072 pixels (over 2400), 1280 (under)
    caplog.set_level(logging.WARNING)
    out = tmp_path / "fit"
    options = {"outputs": [f"views:labels:{out}"], "engine_options": _EXACT, "max_pixels": 2400}
    session = Session(photos, tiny_bundle, classes="cat,dog", fit_images=True, **options)
    assert session.run() == 0
    assert _visible(out) == ["classes.json", "p0_labels.png", "p0_mask.png", "p1_labels.png", "p1_mask.png"]
    assert cv2.imread(str(out / "p0_labels.png"), cv2.IMREAD_UNCHANGED).shape == (42, 56)  # 64x48 fitted to 2400
    assert cv2.imread(str(out / "p1_labels.png"), cv2.IMREAD_UNCHANGED).shape == (32, 40)  # as it was
    notes = [message for message in caplog.messages if "segmented resized to 56x42" in message]
    assert len(notes) == 1 and "p0.png is 64x48" in notes[0], caplog.messages
    assert session.skipped == [] and session.summary["skipped"] == []

    caplog.clear()
    refused = tmp_path / "refused"
    options["outputs"] = [f"views:labels:{refused}"]
    session = Session(photos, tiny_bundle, classes="cat,dog", **options)
    assert session.run() == 0  # skipped_fails=False: a source of images warns and goes on
    assert _visible(refused) == ["classes.json", "p1_labels.png", "p1_mask.png"]
    [(path, why)] = session.skipped
    assert path == os.path.join(photos, "p0.png") and "limit" in why, why
    assert session.summary["skipped"] == [{"image": path, "error": why}]
    assert any(message.startswith("skipped") and "p0.png" in message for message in caplog.messages)


def test_an_unreadable_image_is_skipped_the_others_go_on_and_skipped_fails_exits_1(tmp_path, tiny_bundle):
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", [(48, 64), (48, 64)])
    broken = tmp_path / "photos" / "broken.png"
    broken.write_bytes(b"not a png")
    out = tmp_path / "out"
    session = Session(
        photos, tiny_bundle, classes="cat,dog", outputs=[f"views:{out}"], engine_options=_EXACT, skipped_fails=True
    )
    assert session.run() == 1
    assert _visible(out) == ["classes.json", "p0_overlay.png", "p1_overlay.png"]
    assert [path for path, _ in session.skipped] == [str(broken)]
    assert [entry["image"] for entry in session.summary["skipped"]] == [str(broken)]
    assert session.summary["outputs"][0]["frames"] == 2
    with open(out / "classes.json") as record:
        assert json.load(record) == {"0": "cat", "1": "dog"}


def test_one_image_into_one_file_and_its_siblings_as_segment_writes_them(tmp_path, tiny_bundle, capsys):
    """``views:overlay,mask,labels:out.png`` with one image: ``out.png`` (the first view), ``out_mask.png``,
    ``out_labels.png`` and ``out_classes.json``, the files of ``zsseg segment IMAGE -o out.png``; a run that reads
    more than one image is refused before anything opens."""
    from zsseg_rt import cli
    from zsseg_rt.outputs.plan import OutputRefused
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", [(48, 64), (32, 40)])
    image = os.path.join(photos, "p0.png")
    by_cli, by_session = tmp_path / "cli", tmp_path / "session"
    os.makedirs(by_cli)
    os.makedirs(by_session)
    argv = ["segment", image, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(by_cli / "out.png")]
    assert cli.main([*argv, "--visualize", "overlay,mask", "--save-labels", "--backend", "onnxruntime"]) == 0
    capsys.readouterr()
    spec = f"views:overlay,mask,labels:{by_session / 'out.png'}"
    session = Session(image, tiny_bundle, classes="cat,dog", outputs=[spec], engine_options=_EXACT)
    assert session.run() == 0
    expected = ["out.png", "out_classes.json", "out_labels.png", "out_mask.png"]
    assert _visible(by_session) == _visible(by_cli) == expected
    with open(by_session / "out_classes.json") as ours, open(by_cli / "out_classes.json") as theirs:
        assert json.load(ours) == json.load(theirs) == {"0": "cat", "1": "dog"}
    np.testing.assert_array_equal(
        cv2.imread(str(by_session / "out_labels.png"), cv2.IMREAD_UNCHANGED),
        cv2.imread(str(by_cli / "out_labels.png"), cv2.IMREAD_UNCHANGED),
    )
    assert session.summary["outputs"] == [
        {"path": str(by_session / "out.png"), "kind": "views", "frames": 1, "views": ["overlay", "mask", "labels"]}
    ]
    with pytest.raises(OutputRefused, match="names one image file, but the run reads 2 images: give a folder"):
        Session(photos, tiny_bundle, classes="cat,dog", outputs=[f"views:{tmp_path / 'two.png'}"]).run()
    assert not os.path.exists(tmp_path / "two.png")
