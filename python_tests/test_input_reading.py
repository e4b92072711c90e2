"""Reading what users give (issue 75, E11, E13): a phone photo opened with PIL is turned upright as its path is, and
the pixel limit's environment variable is named when its value is wrong."""

from __future__ import annotations

import io

import numpy as np
import pytest


def _exif_photo(orientation: int) -> bytes:
    """A 40x24 JPEG (wider than high) whose EXIF says to turn it (6: 90 degrees clockwise), left half dark."""
    from PIL import Image

    pixels = np.full((24, 40, 3), 220, np.uint8)
    pixels[:, :20] = 30
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes(), quality=95)
    return out.getvalue()


@pytest.mark.time_bound(120)
@pytest.mark.parametrize("orientation", [6, 1])
def test_a_pil_image_is_turned_upright_as_its_file_is(tmp_path, tiny_bundle, orientation):
    """E13 (B39): ``Engine(PIL.Image.open(p))`` gave labels 375x500 where ``Engine(p)``, serve and cv2.imread gave
    500x375 (EXIF orientation 6 ignored). Control: orientation 1 (upright) is left as it is."""
    from PIL import Image

    from zsseg_rt import Engine

    path = tmp_path / "phone.jpg"
    path.write_bytes(_exif_photo(orientation))
    engine = Engine(tiny_bundle, classes="a,b", backend="onnxruntime")
    from_path = engine(str(path))
    with Image.open(path) as opened:
        from_pil = engine(opened)
    assert from_path.labels.shape == ((40, 24) if orientation == 6 else (24, 40))
    assert from_pil.labels.shape == from_path.labels.shape
    assert np.array_equal(from_pil.labels, from_path.labels)


@pytest.mark.time_bound(60)
def test_a_wrong_pixel_limit_in_the_environment_is_named(monkeypatch):
    """E11 (B32): ``ZSSEG_MAX_PIXELS=-1`` said "the pixel limit must be >= 0", not which setting held it. Control: the
    argument's own error says the limit, as before, and a good value is read."""
    from zsseg_rt.image_io import max_pixels_limit

    monkeypatch.setenv("ZSSEG_MAX_PIXELS", "-1")
    with pytest.raises(ValueError) as refused:
        max_pixels_limit()
    assert str(refused.value) == "ZSSEG_MAX_PIXELS must be a whole number of pixels >= 0 (0 = no limit), got '-1'"
    monkeypatch.setenv("ZSSEG_MAX_PIXELS", "1_000")
    assert max_pixels_limit() == 1000
    with pytest.raises(ValueError, match=r"^the pixel limit must be >= 0 \(0 = no limit\), got -2$"):
        max_pixels_limit(-2)


@pytest.mark.time_bound(120)
def test_the_memory_limit_cites_the_document_that_holds_its_section(tiny_bundle):
    """E12 (B35): the working-memory refusal cited "README 'Input limits and memory'", a section of docs/usage.md.
    The cited document holds the section (the control: the heading is read from it)."""
    import re

    from support import REPO

    from zsseg_rt import Engine
    from zsseg_rt.pipeline import InputLimitError

    engine = Engine(tiny_bundle, classes="a,b", backend="onnxruntime", max_memory_mb=1)
    with pytest.raises(InputLimitError) as refused:
        engine(np.zeros((900, 1200, 3), np.uint8))
    cited = re.search(r"\((\S+), '([^']+)'\)", str(refused.value))
    assert cited is not None and "README" not in str(refused.value), refused.value
    document, section = cited.groups()
    headings = [line.lstrip("#").strip() for line in (REPO / document).read_text().splitlines() if line[:1] == "#"]
    assert (document, section) == ("docs/usage.md", "Input limits and memory") and section in headings
