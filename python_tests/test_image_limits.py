"""The pixel limit at decode (issue 16.2, CLI side): hostile PNGs are refused from their header, before OpenCV
allocates anything, and the limit is configurable (argument, ``ZSSEG_MAX_PIXELS``, default 40 MP)."""

import json
import subprocess
import sys

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from support import write_bilevel_png  # noqa: E402

from zsseg_rt.image_io import (  # noqa: E402
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    ImageReadError,
    ImageTooLargeError,
    max_pixels_limit,
    read_image_bgr,
)


@pytest.fixture(scope="module")
def hostile_pngs(tmp_path_factory):
    """8000x8000 (~8 KB), 20000x20000 (~48 KB) valid PNGs and a 40000x40000 header with truncated data."""
    root = tmp_path_factory.mktemp("hostile")
    paths = {}
    for side, complete in ((8000, True), (20000, True), (40000, False)):
        paths[side] = str(root / f"black_{side}.png")
        size = write_bilevel_png(paths[side], side, side, complete)
        assert size < 60_000, size  # tiny files
    return paths


def test_the_fixture_files_are_real_images(hostile_pngs):
    reduced = cv2.imread(hostile_pngs[8000], cv2.IMREAD_REDUCED_GRAYSCALE_8)  # 1000x1000: cheap to decode
    assert reduced is not None and reduced.shape == (1000, 1000) and reduced.max() == 0


@pytest.mark.parametrize("side", [8000, 20000, 40000])
def test_hostile_png_is_refused_with_its_size(hostile_pngs, side):
    with pytest.raises(ImageTooLargeError, match=rf"{side}x{side} = .* MP, over the 40 MP limit.*--max-pixels"):
        read_image_bgr(hostile_pngs[side])


PEAK_RSS_DRIVER = r"""
import json, sys
import cv2, numpy as np
from zsseg_rt.image_io import ImageTooLargeError, read_image_bgr
def reset_peak():  # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
def peak_mb():
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:")) / 1024.0
def rss_mb():
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024.0
paths = json.loads(sys.argv[1])
read_image_bgr(paths["small"])  # warm up every import and decoder
reset_peak()
before = rss_mb()
errors = []
for key in ("8000", "20000", "40000"):
    try:
        read_image_bgr(paths[key])
    except ImageTooLargeError as exc:
        errors.append(str(exc))
refused = peak_mb()
reset_peak()
before_decode = rss_mb()
image = read_image_bgr(paths["decodable"], max_pixels=0)  # the same measurement sees a real decode
decoded = peak_mb()
print(json.dumps({"refused_mb": refused - before, "decoded_mb": decoded - before_decode, "errors": errors,
                  "shape": list(image.shape)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS is read from /proc/self (Linux)")
def test_refusal_costs_no_memory_and_a_real_decode_does(hostile_pngs, tmp_path):
    small, decodable = str(tmp_path / "small.png"), str(tmp_path / "decodable.png")
    cv2.imwrite(small, np.zeros((8, 8, 3), np.uint8))
    write_bilevel_png(decodable, 4000, 4000)  # 16 MP -> 48 MB decoded
    paths = {str(k): v for k, v in hostile_pngs.items()} | {"small": small, "decodable": decodable}
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_DRIVER, json.dumps(paths)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert len(report["errors"]) == 3
    # Refusing the 64 / 400 / 1600 MP images must not decode them (192 MB / 1.2 GB / 4.8 GB): under 16 MB of
    # peak growth. The 48 MB decode afterwards proves the measurement would have seen a decode.
    assert report["refused_mb"] < 16, report
    assert report["decoded_mb"] > 40, report
    assert report["shape"] == [4000, 4000, 3]


def test_limit_from_argument_environment_and_default(tmp_path, monkeypatch):
    path = str(tmp_path / "a.png")
    cv2.imwrite(path, np.zeros((20, 30, 3), np.uint8))  # 600 pixels
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    assert max_pixels_limit() == DEFAULT_MAX_PIXELS == 40_000_000
    assert read_image_bgr(path).shape == (20, 30, 3)
    with pytest.raises(ImageTooLargeError, match="30x20"):
        read_image_bgr(path, max_pixels=599)
    assert read_image_bgr(path, max_pixels=600).shape == (20, 30, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "500")
    with pytest.raises(ImageTooLargeError, match="0.0005 MP limit"):
        read_image_bgr(path)
    assert read_image_bgr(path, max_pixels=0).shape == (20, 30, 3)  # the argument wins; 0 = no limit
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=MAX_PIXELS_ENV):
        max_pixels_limit()
    with pytest.raises(ValueError, match=">= 0"):
        max_pixels_limit(-1)


def test_unreadable_files_raise_image_read_error(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    truncated = tmp_path / "truncated.png"
    write_bilevel_png(str(truncated), 64, 64, complete=False)  # a valid header, too little data
    for path, match in (
        (tmp_path / "missing.png", "does not exist"),
        (tmp_path / "text.png", "not an image"),
        (tmp_path / "empty.jpg", r"is empty \(0 bytes\)"),  # said "not an image" (zsseg batch says "empty")
        (tmp_path, "is a directory"),
        (truncated, "cannot decode"),
    ):
        with pytest.raises(ImageReadError, match=match):
            read_image_bgr(str(path))


def test_image_folder_source_skips_images_over_the_limit(tmp_path, hostile_pngs):
    import shutil

    from zsseg_rt.stream.sources import ImageFolderSource

    shutil.copy(hostile_pngs[40000], tmp_path / "a_huge.png")
    cv2.imwrite(str(tmp_path / "b_ok.png"), np.full((6, 5, 3), 7, np.uint8))
    source = ImageFolderSource(str(tmp_path))
    source.open()
    frame = source.read()
    assert frame is not None and frame.shape == (6, 5, 3) and int(frame[0, 0, 0]) == 7
    assert source.read() is None and source.ended


@pytest.mark.parametrize("reader", ["opencv", "pyav"])
def test_video_source_over_the_limit_is_refused_before_reading_frames(tmp_path, reader):
    from zsseg_rt.stream.sources import OpenCVSource, PyAVFileSource, SourceError, parse_source

    if reader == "pyav":
        pytest.importorskip("av")  # the reader of video files when PyAV is installed
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 48))
    assert writer.isOpened()
    for value in range(3):
        writer.write(np.full((48, 64, 3), value * 40, np.uint8))
    writer.release()

    def source(limit):
        return OpenCVSource(parse_source(path), max_pixels=limit) if reader == "opencv" else PyAVFileSource(path, limit)

    with pytest.raises(SourceError, match="64x48 .* over the"):
        source(64 * 48 - 1).open()
    allowed = source(64 * 48)
    allowed.open()
    frame = allowed.read()
    allowed.close()
    assert frame is not None and frame.shape == (48, 64, 3)


def test_dataset_images_are_checked_before_decoding(tmp_path, hostile_pngs, monkeypatch):
    from zsseg_rt.data.labels import CorruptFileError, read_image

    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    with pytest.raises(CorruptFileError, match="20000x20000 .* over the 40 MP limit"):
        read_image(hostile_pngs[20000])
    small = str(tmp_path / "s.png")
    cv2.imwrite(small, np.zeros((5, 7, 3), np.uint8))
    assert read_image(small).shape == (5, 7, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "34")
    with pytest.raises(CorruptFileError, match="7x5"):
        read_image(small)


def test_pillow_own_limit_is_restored(hostile_pngs):
    from PIL import Image

    from zsseg_rt.image_io import image_size

    saved = Image.MAX_IMAGE_PIXELS
    assert image_size(hostile_pngs[40000]) == (40000, 40000)  # over Pillow's 2x89 MP bomb limit, yet read
    assert Image.MAX_IMAGE_PIXELS == saved


def test_fitted_read_resizes_what_decodes_cheaply_and_refuses_the_rest(tmp_path, hostile_pngs):
    from zsseg_rt.image_io import read_image_fitted

    rng = np.random.default_rng(0)

    def write(name, height, width):
        path = str(tmp_path / name)
        cv2.imwrite(path, rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        return path

    limit = 10_000
    for path, shape in ((write("a.jpg", 200, 400), (200, 400)), (write("b.png", 100, 130), (100, 130))):
        image, resized = read_image_fitted(path, limit)  # a JPEG 8x over (reduced decode), a PNG 1.3x over
        assert image.shape[0] * image.shape[1] <= limit and resized["from"] == [shape[1], shape[0]]
        assert abs(image.shape[1] / image.shape[0] - shape[1] / shape[0]) < 0.05 and "--max-pixels 0" in resized["note"]
    for path in (write("c.png", 100, 200), write("d.jpg", 1000, 800)):  # a PNG 2x over, a JPEG 80x over
        with pytest.raises(ImageTooLargeError, match="MP limit"):
            read_image_fitted(path, limit)
    with pytest.raises(ImageTooLargeError):
        read_image_fitted(hostile_pngs[8000], None)  # 64 MP PNG: 1.6x the 40 MP default, decoded full size: refused
    small = write("e.png", 50, 50)
    assert read_image_fitted(small, limit)[1] is None and read_image_fitted(small, 0)[1] is None
    with pytest.raises(ImageTooLargeError):
        read_image_fitted(write("f.jpg", 200, 400), limit, resize=False)


def test_a_45_megapixel_phone_photo_fits_the_default_limit(tmp_path):
    from zsseg_rt.image_io import read_image_fitted

    path = str(tmp_path / "phone.jpg")
    photo = np.zeros((5200, 8660, 3), np.uint8)
    photo[:, :, 1] = np.linspace(0, 255, 8660, dtype=np.uint8)[None, :]  # a gradient: the resize must keep it
    assert cv2.imwrite(path, photo, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del photo
    image, resized = read_image_fitted(path)
    height, width = image.shape[:2]
    assert height * width <= DEFAULT_MAX_PIXELS and height * width > 0.99 * DEFAULT_MAX_PIXELS
    assert abs(width / height - 8660 / 5200) < 1e-3 and resized["from"] == [8660, 5200]
    assert abs(int(image[height // 2, width // 2, 1]) - 128) < 8  # the middle of the gradient stays the middle
