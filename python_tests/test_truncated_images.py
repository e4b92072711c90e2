"""One policy for truncated and damaged images (issue 37, defect 2): the shared reader (``zsseg_rt.image_io``),
``Engine(path)``, ``zsseg segment``, ``zsseg batch``'s and ``zsseg serve``'s decoding of bytes and the camera's image
folder refuse the same truncated JPEG / PNG with the same one-line message, and no decoder writes to stderr
(libjpeg's "Premature end of JPEG file", libpng's errors). A 46 KB JPEG whose header claims 20000x20000 is refused, not
decoded into a 6324x6324 overlay of grey. Partial images are segmented only when asked for
(``Engine(allow_partial_images=True)``, ``--allow-partial-images``).

Before the fix, ``Engine`` and ``zsseg segment`` segmented the truncated JPEG (half grey) with libjpeg's warning on
stderr, while ``serve`` and ``batch`` refused it; the serve message said the size twice."""

from __future__ import annotations

import glob
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from zsseg_rt.assets import SAMPLES_DIR  # noqa: E402
from zsseg_rt.image_io import ImageReadError, decode_image_bytes, read_image_bgr, read_image_fitted  # noqa: E402

DECODER_NOISE = ("Premature end", "Corrupt JPEG", "libpng", "libjpeg", "[ERROR", "[ WARN")


def _sample() -> str:
    return sorted(glob.glob(os.path.join(str(SAMPLES_DIR), "JPEGImages", "*.jpg")))[0]  # 500x338, 46 KB


def _photo() -> np.ndarray:
    return cv2.imread(_sample())


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory):
    """``{"jpeg": truncated JPEG, "png": truncated PNG, "forged": a complete ~46 KB JPEG whose header says
    20000x20000, "good": the intact JPEG}`` (paths)."""
    root = tmp_path_factory.mktemp("bad_images")
    photo = _photo()
    with open(_sample(), "rb") as handle:
        jpeg = handle.read()
    png = cv2.imencode(".png", photo)[1].tobytes()
    paths = {}
    for name, data in (("jpeg", jpeg[: len(jpeg) // 2]), ("png", png[: len(png) // 2]), ("good", jpeg)):
        paths[name] = str(root / f"{name}.{'png' if name == 'png' else 'jpg'}")
        with open(paths[name], "wb") as handle:
            handle.write(data)
    forged = bytearray(jpeg)
    sof = forged.index(b"\xff\xc0")  # baseline frame header: FF C0, length, precision, height, width
    forged[sof + 5 : sof + 9] = (20000).to_bytes(2, "big") * 2
    paths["forged"] = str(root / "forged.jpg")
    with open(paths["forged"], "wb") as handle:
        handle.write(bytes(forged))
    assert 30_000 < len(forged) < 60_000
    return paths


def _message(call) -> str:
    with pytest.raises(ImageReadError) as refused:
        call()
    return str(refused.value)


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_the_shared_reader_refuses_a_truncated_image_in_one_line_without_decoder_noise(bad_images, kind, capfd):
    path = bad_images[kind]
    message = _message(lambda: read_image_bgr(path))
    assert message.startswith(f"cannot decode image {path!r}: truncated {kind.upper()}"), message
    assert "\n" not in message and "--allow-partial-images" in message
    with open(path, "rb") as handle:
        data = handle.read()
    # zsseg batch decodes each file's bytes with what=f"image {path!r}": the very same message
    assert _message(lambda: decode_image_bytes(data, what=f"image {path!r}")) == message
    assert _message(lambda: read_image_fitted(path)) == message  # zsseg segment's reader
    captured = capfd.readouterr()  # file-descriptor level: what libjpeg / libpng write to stderr
    assert not any(noise in captured.err for noise in DECODER_NOISE), captured.err


def test_the_serve_message_says_the_size_once(bad_images):
    from zsseg_rt.scale.serve_http import RequestError, decode_request_image

    with open(bad_images["jpeg"], "rb") as handle:
        body = handle.read()
    with pytest.raises(RequestError) as refused:
        decode_request_image(body, 40_000_000)
    message = str(refused.value)
    assert refused.value.status == 400 and "truncated JPEG" in message, message
    assert message.count(f"({len(body)} bytes)") == 1, message  # was "(15453 bytes) (15453 bytes)"
    assert "--allow-partial-images" not in message and "Engine(" not in message, message  # a web client sets neither


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_engine_refuses_it_with_the_same_message_and_segments_it_only_on_request(tiny_bundle, bad_images, kind, capfd):
    from zsseg_rt import Engine

    path = bad_images[kind]
    expected = _message(lambda: read_image_bgr(path))
    engine = Engine(tiny_bundle, classes="cat, dog", backend="onnxruntime")
    assert _message(lambda: engine(path)) == expected  # was segmented silently (the JPEG half grey)
    partial = Engine(tiny_bundle, classes="cat, dog", backend="onnxruntime", allow_partial_images=True)
    result = partial(path)
    assert result.labels.shape == _photo().shape[:2]
    captured = capfd.readouterr()
    assert not any(noise in captured.err for noise in DECODER_NOISE), captured.err


def _segment(argv, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "zsseg_rt.cli", "segment", *argv], capture_output=True, text=True, timeout=timeout
    )


def test_zsseg_segment_refuses_them_with_the_same_message_and_no_decoder_noise(tiny_bundle, bad_images, tmp_path):
    images = [bad_images["jpeg"], bad_images["png"], bad_images["good"]]
    out = _segment([*images, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(tmp_path / "o"), "--json"])
    assert out.returncode == 1, out.stderr
    rows = json.loads(out.stdout)
    for row, kind in zip(rows, ("jpeg", "png")):
        expected = _message(lambda kind=kind: read_image_bgr(bad_images[kind]))
        assert row["error"] == expected
        assert f"zsseg segment: skipped {bad_images[kind]}: {expected}" in out.stderr.splitlines()
    assert "error" not in rows[2] and os.path.isfile(rows[2]["overlay"])  # the intact image is segmented
    assert not any(noise in out.stderr for noise in DECODER_NOISE), out.stderr
    assert "Traceback" not in out.stderr

    partial = _segment(
        [bad_images["jpeg"], "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(tmp_path / "p.png")]
        + ["--allow-partial-images"]
    )
    assert partial.returncode == 0 and os.path.isfile(tmp_path / "p.png"), partial.stderr
    assert not any(noise in partial.stderr for noise in DECODER_NOISE), partial.stderr


def test_a_small_jpeg_claiming_20000x20000_is_refused_not_decoded(tiny_bundle, bad_images, tmp_path, capfd):
    path = bad_images["forged"]
    message = _message(lambda: read_image_fitted(path))  # was decoded at 1/8 and resized: 6324x6324 of grey
    assert "corrupt JPEG" in message and "20000x20000" in message, message
    assert _message(lambda: read_image_bgr(path, max_pixels=0)) == message  # no limit: still refused
    assert _message(lambda: read_image_fitted(path, allow_partial=True)) == message  # not a partial image
    out = _segment([path, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(tmp_path / "f.png")])
    assert out.returncode == 1 and message in out.stderr and not os.path.exists(tmp_path / "f.png"), out.stderr
    assert not any(noise in out.stderr for noise in DECODER_NOISE), out.stderr
    assert not any(noise in capfd.readouterr().err for noise in DECODER_NOISE)


def test_the_camera_folder_source_skips_them_with_the_same_message(bad_images, tmp_path, caplog):
    import shutil

    from zsseg_rt.stream.sources import ImageFolderSource

    for kind in ("jpeg", "png", "good"):
        shutil.copy(bad_images[kind], tmp_path / os.path.basename(bad_images[kind]))
    with caplog.at_level(logging.WARNING, logger="zsseg_rt.stream"):
        source = ImageFolderSource(str(tmp_path))
        source.open()
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
    assert len(frames) == 1  # good.jpg; jpeg.jpg and png.png are skipped
    expected = set()
    for kind in ("jpeg", "png"):
        path = str(tmp_path / os.path.basename(bad_images[kind]))
        expected.add(f"skipped {path}: {_message(lambda path=path: read_image_bgr(path))}")  # which file, and why
    assert {record.getMessage() for record in caplog.records} == expected
    partial = ImageFolderSource(str(tmp_path), allow_partial=True)
    partial.open()
    count = 0
    while partial.read() is not None:
        count += 1
    assert count == 3


def test_complete_images_of_every_kind_still_decode_as_before(tmp_path):
    """The checks never refuse a complete image: progressive, optimised, grey, restart markers, 4:4:4 JPEGs, PNGs of
    every colour type, WebP, BMP, TIFF; and the pixels are OpenCV's as before."""
    from PIL import Image

    photo = _photo()
    rgb = Image.fromarray(photo[:, :, ::-1])
    variants = {
        "progressive.jpg": dict(progressive=True),
        "optimised.jpg": dict(optimize=True),
        "444.jpg": dict(subsampling=0),
        "q1.jpg": dict(quality=1),
    }
    for name, options in variants.items():
        rgb.save(tmp_path / name, "JPEG", **options)
    rgb.convert("L").save(tmp_path / "grey.jpg", "JPEG")
    rgb.convert("P").save(tmp_path / "palette.png")
    rgb.convert("LA").save(tmp_path / "grey_alpha.png")
    rgb.convert("RGBA").save(tmp_path / "rgba.png")
    cv2.imwrite(str(tmp_path / "restart.jpg"), photo, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])
    for extension in (".webp", ".bmp", ".tif", ".ppm"):
        cv2.imwrite(str(tmp_path / f"photo{extension}"), photo)
    black = Image.new("RGB", (6000, 4000))
    black.save(tmp_path / "black.jpg", "JPEG", optimize=True, progressive=True)  # the least data per block
    for path in sorted(tmp_path.iterdir()):
        assert np.array_equal(read_image_bgr(str(path), max_pixels=0), cv2.imread(str(path))), path.name


def test_a_complete_jpeg_with_extraneous_bytes_is_decoded_silently(tmp_path, capfd):
    """libjpeg decodes a JPEG with stray bytes between two segments, with "Corrupt JPEG data: 3 extraneous bytes
    before marker" on stderr; the image is complete, so it is decoded (by Pillow, silently), not refused."""
    with open(_sample(), "rb") as handle:
        clean = handle.read()
    app0_end = 4 + int.from_bytes(clean[4:6], "big")
    path = tmp_path / "quirky.jpg"
    path.write_bytes(clean[:app0_end] + b"\x00\x00\x00" + clean[app0_end:])
    assert np.array_equal(read_image_bgr(str(path)), _photo())
    assert not any(noise in capfd.readouterr().err for noise in DECODER_NOISE)


def test_zsseg_segment_counts_a_damaged_image_given_twice_twice(tiny_bundle, bad_images, tmp_path, capsys):
    """The same damaged file given twice is two failed images: two "error" entries in --json, in the order the files
    were given, "2 of 3 images failed" (on the Session it was one entry and "1 of 3": the source counted a skipped path
    once, as for a loop's laps; then its two entries came together: each path was placed at its first place)."""
    from zsseg_rt import cli

    bad, good = bad_images["jpeg"], bad_images["good"]
    argv = ["segment", bad, good, bad, "--bundle", tiny_bundle, "--classes", "cat,dog", "--backend", "onnxruntime"]
    code = cli.main([*argv, "-o", str(tmp_path / "o"), "--json"])
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert code == 1 and [("error" in row, row["image"]) for row in rows] == [  # in the order given
        (True, bad),
        (False, good),
        (True, bad),
    ]
    assert "zsseg segment: 2 of 3 images failed (see above)" in captured.err.splitlines(), captured.err
