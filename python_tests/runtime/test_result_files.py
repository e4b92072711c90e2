"""The result-level facts of every saved file, in one place (issue 80, item 2: "the unknown id, the palette applied
once where results become files"): ``class_map`` (``classes.json`` of ``zsseg segment`` and ``--labels-out``,
``Result.class_map``), ``label_colors`` (the views' and ``zsseg serve``'s colours) and ``Result.encoded_view`` (the
bytes of a saved view: ``zsseg segment``'s files and ``zsseg batch``'s label PNGs). Control: before, each command
wrote its own (segment and labels.py a class map each, batch its own PNG depth and write, serve its own unknown
colour padding); these names did not exist and every test here fails."""

from __future__ import annotations

import re

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from zsseg_rt.runtime.result import (  # noqa: E402
    UNKNOWN_COLOR,
    Result,
    class_map,
    label_colors,
    palette,
    unknown_label,
)


def _result(classes: int, unknown: bool) -> Result:
    labels = np.arange(12, dtype=np.int32).reshape(3, 4) % classes
    if unknown:
        labels[0, 0] = unknown_label(classes)
    return Result(labels, np.zeros(labels.shape, np.float32), [f"c{i}" for i in range(classes)],
                  unknown_below=0.5 if unknown else None)  # fmt: skip


def test_the_class_map_names_the_unknown_label_at_its_id():
    assert class_map(["a", "b"]) == {"0": "a", "1": "b"}
    assert class_map(["a", "b"], 255) == {"0": "a", "1": "b", "255": "unknown"}
    assert _result(3, True).class_map() == class_map(["c0", "c1", "c2"], 255)


def test_the_label_colors_put_the_unknown_colour_at_its_id():
    assert np.array_equal(label_colors(3), palette(3))
    colors = label_colors(3, 255)
    assert colors.shape == (256, 3) and np.array_equal(colors[:3], palette(3))
    assert tuple(colors[255]) == UNKNOWN_COLOR
    result = _result(3, True)  # the mask view draws the unknown pixel in that colour, every class in its own
    rgb = Result(result.labels, result.scores, result.class_names, color_order="rgb", unknown_below=0.5).to_color()
    assert np.array_equal(rgb, colors[result.labels])


@pytest.mark.parametrize(("classes", "unknown", "dtype"), [(3, False, np.uint8), (255, True, np.uint8),
                                                           (256, True, np.uint16), (300, False, np.uint16)])  # fmt: skip
def test_the_labels_view_is_8_bit_when_every_id_fits(classes, unknown, dtype, tmp_path):
    result = _result(classes, unknown)
    data = result.encoded_view("labels", ".png")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == dtype and np.array_equal(decoded, result.labels)
    result.write_view("labels", str(tmp_path / "x.png"))  # the file segment writes: the same bytes
    assert (tmp_path / "x.png").read_bytes() == data


def test_a_view_without_an_image_writer_is_refused_in_one_line(tmp_path):
    with pytest.raises(OSError, match=r"OpenCV could not write '.*x\.nope': no image writer for '\.nope'"):
        _result(3, False).write_view("labels", str(tmp_path / "x.nope"))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["x.jpg", "x.JPEG", "x.webp", "x.bmp"])
def test_a_label_map_in_another_format_than_png_or_tiff_is_refused(tmp_path, name):
    """Issue 87, L5 (G90): ``write_view("labels", "x.jpg")`` wrote a JPEG without a word (0.1 % of the ids changed,
    one became 2, no class). Refused in one line naming PNG, nothing written; PNG and TIFF keep every id (8 and
    16-bit)."""
    suffix = name.rsplit(".", 1)[1]
    said = (
        f"a label map is written lossless (its values are class ids): give a .png file name (or .tif), got '.{suffix}'"
    )
    with pytest.raises(ValueError, match=re.escape(said)):
        _result(3, False).write_view("labels", str(tmp_path / name))
    assert not list(tmp_path.iterdir())
    for classes in (3, 300):
        for kept in ("x.png", "x.tif", "x.TIFF"):
            result = _result(classes, False)
            result.write_view("labels", str(tmp_path / kept))
            decoded = cv2.imread(str(tmp_path / kept), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(decoded, result.labels), (classes, kept)
    _result(3, False).write_view("mask", str(tmp_path / "m.jpg"))  # a picture may be lossy
