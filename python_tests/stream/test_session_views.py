"""The views output (``-o views:DIR``, :mod:`zsseg_rt.outputs.views`): a ``Session`` over a photo folder writes the
files ``zsseg segment FOLDER -o DIR`` writes (the same names, label maps and class map), through the sink segment
writes its own with."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.outputs.views import parse_views_spec  # noqa: E402


def _photos(folder, count=3):
    os.makedirs(folder)
    rng = np.random.default_rng(7)
    for index in range(count):
        size = (48 + 8 * index, 64)
        cv2.imwrite(str(folder / f"p{index}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return str(folder)


def _visible(folder) -> list:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def test_a_session_over_a_photo_folder_writes_what_segment_writes(tmp_path, tiny_bundle, capsys):
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos")
    by_cli, by_session = tmp_path / "cli", tmp_path / "session"
    argv = ["segment", photos, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(by_cli)]
    assert cli.main([*argv, "--visualize", "overlay,mask", "--save-labels", "--backend", "onnxruntime"]) == 0
    capsys.readouterr()
    session = Session(
        photos,
        tiny_bundle,
        classes="cat,dog",
        outputs=[f"views:overlay,mask,labels:{by_session}"],
        engine_options={"backend": "onnxruntime", "mode": "exact"},
    )
    assert session.run() == 0
    expected = [f"p{i}_{kind}.png" for i in range(3) for kind in ("labels", "mask", "overlay")]
    cli_files = _visible(by_cli)
    assert [name for name in cli_files if name.endswith(".png")] == sorted(expected)
    assert _visible(by_session) == cli_files  # the same names, classes.json and its record included
    with open(by_session / "classes.json") as session_map, open(by_cli / "classes.json") as cli_map:
        assert json.load(session_map) == json.load(cli_map) == {"0": "cat", "1": "dog"}
    with open(by_session / ".zsseg-meaning.json") as ours, open(by_cli / ".zsseg-meaning.json") as theirs:
        assert json.load(ours) == json.load(theirs)  # the whole record: classes, unknown label, bundle
    for index in range(3):
        name = f"p{index}_labels.png"
        ours = cv2.imread(str(by_session / name), cv2.IMREAD_UNCHANGED)
        theirs = cv2.imread(str(by_cli / name), cv2.IMREAD_UNCHANGED)
        assert ours.shape == theirs.shape == (48 + 8 * index, 64)
        np.testing.assert_array_equal(ours, theirs)
    outputs = session.summary["outputs"]
    assert [(o["kind"], o["frames"], o["path"]) for o in outputs] == [("views", 3, str(by_session))]


def test_a_second_session_into_the_same_folder_is_refused_without_overwrite(tmp_path, tiny_bundle):
    from zsseg_rt.outputs.plan import OutputRefused
    from zsseg_rt.stream import Session

    photos, out = _photos(tmp_path / "photos", count=1), tmp_path / "out"
    options = {"outputs": [f"views:{out}"], "engine_options": {"backend": "onnxruntime", "mode": "exact"}}
    assert Session(photos, tiny_bundle, classes="cat,dog", **options).run() == 0
    assert _visible(out) == ["classes.json", "p0_overlay.png"]
    before = (out / "p0_overlay.png").read_bytes()
    with pytest.raises(OutputRefused, match="p0_overlay.png.*overwrite=True"):
        Session(photos, tiny_bundle, classes="cat,dog", **options).run()
    assert (out / "p0_overlay.png").read_bytes() == before
    assert Session(photos, tiny_bundle, classes="cat,dog", overwrite=True, **options).run() == 0


def test_the_views_spec_names_its_views_and_folder():
    assert parse_views_spec("views:out/") == (["overlay"], "out/")
    assert parse_views_spec("views:mask,labels:out") == (["mask", "labels"], "out")
    assert parse_views_spec("views:overlay,mask:a:b") == (["overlay", "mask"], "a:b")
    assert parse_views_spec("views:odd:name") == (["overlay"], "odd:name")  # not views: part of the folder
    with pytest.raises(ValueError, match="names no folder"):
        parse_views_spec("views:")


def test_a_session_over_a_video_names_its_frames_as_segment_does(tmp_path, tiny_bundle, capsys):
    """A frame without a file is named by its video and number: ``clip_000000_labels.png``, ..., segment's names."""
    from stream_fakes import write_band_clip

    from zsseg_rt.stream import Session

    clip = write_band_clip(tmp_path / "clip.avi", frames=3, fps=10.0, size=(64, 48))
    by_cli, by_session = tmp_path / "cli", tmp_path / "session"
    argv = ["segment", str(clip), "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(by_cli)]
    assert cli.main([*argv, "--visualize", "mask", "--save-labels", "--backend", "onnxruntime"]) == 0
    capsys.readouterr()
    engine_options = {"backend": "onnxruntime", "mode": "exact"}
    spec = f"views:mask,labels:{by_session}"
    assert Session(str(clip), tiny_bundle, classes="cat,dog", outputs=[spec], engine_options=engine_options).run() == 0
    expected = [f"clip_{index:06d}_{kind}.png" for index in range(3) for kind in ("labels", "mask")]
    assert [name for name in _visible(by_cli) if name.endswith(".png")] == expected
    assert _visible(by_session) == _visible(by_cli)
    for name in expected:
        ours = cv2.imread(str(by_session / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(ours, cv2.imread(str(by_cli / name), cv2.IMREAD_UNCHANGED))


def test_a_session_over_two_folders_writes_them_into_one_as_segment_does(tmp_path, tiny_bundle, capsys):
    """Every source into the one folder (the row is shared), the same stem of the second folder named ``_2``, as
    ``zsseg segment first/ second/ -o DIR`` names it."""
    from zsseg_rt.stream import Session

    first, second = _photos(tmp_path / "first", count=2), _photos(tmp_path / "second", count=1)
    by_cli, by_session = tmp_path / "cli", tmp_path / "session"
    argv = ["segment", first, second, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(by_cli)]
    assert cli.main([*argv, "--save-labels", "--backend", "onnxruntime"]) == 0
    capsys.readouterr()
    engine_options = {"backend": "onnxruntime", "mode": "exact"}
    spec = f"views:overlay,labels:{by_session}"
    assert (
        Session([first, second], tiny_bundle, classes="cat,dog", outputs=[spec], engine_options=engine_options).run()
        == 0
    )
    assert [name for name in _visible(by_cli) if name.endswith("_labels.png")] == [
        "p0_2_labels.png",
        "p0_labels.png",
        "p1_labels.png",
    ]
    assert _visible(by_session) == _visible(by_cli)
    for name in ("p0_labels.png", "p0_2_labels.png", "p1_labels.png"):
        ours = cv2.imread(str(by_session / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(ours, cv2.imread(str(by_cli / name), cv2.IMREAD_UNCHANGED))


def test_a_session_over_image_files_and_a_glob_writes_what_segment_writes(tmp_path, tiny_bundle, capsys):
    """Image files in the order given, and a quoted glob, are sources (each frame with its file): the views of
    ``Session([b, a, "more/*.png"])`` are those of ``zsseg segment b a 'more/*.png'``; an unreadable image is skipped
    by both (segment says so and exits 1; the Session's source warns and goes on)."""
    from zsseg_rt.stream import Session
    from zsseg_rt.stream.sources import parse_source

    photos = _photos(tmp_path / "photos", count=2)
    more = _photos(tmp_path / "more", count=1)
    (tmp_path / "more" / "broken.png").write_bytes(b"not a png")
    given = [os.path.join(photos, "p1.png"), os.path.join(photos, "p0.png"), os.path.join(more, "*.png")]
    assert [parse_source(text).kind for text in given] == ["images", "images", "images"]
    by_cli, by_session = tmp_path / "cli", tmp_path / "session"
    argv = ["segment", *given, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(by_cli), "--save-labels"]
    assert cli.main([*argv, "--backend", "onnxruntime"]) == 1  # broken.png failed
    assert "skipped" in capsys.readouterr().err
    engine_options = {"backend": "onnxruntime", "mode": "exact"}
    spec = f"views:overlay,labels:{by_session}"
    session = Session(given, tiny_bundle, classes="cat,dog", outputs=[spec], engine_options=engine_options)
    assert session.run() == 0  # segment exits 1; the Session's sources warn and go on (docs/usage.md says so)
    labels = ["p0_2_labels.png", "p0_labels.png", "p1_labels.png"]  # more/p0.png comes after photos/p0.png
    assert [name for name in _visible(by_cli) if name.endswith("_labels.png")] == labels
    assert _visible(by_session) == _visible(by_cli)
    for name in labels:
        ours = cv2.imread(str(by_session / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(ours, cv2.imread(str(by_cli / name), cv2.IMREAD_UNCHANGED))
    assert sorted(entry["processed"] for entry in session.summary["sources"]) == [1, 1, 1]
    assert sum(entry.get("decode_errors", 0) for entry in session.summary["sources"]) == 1  # broken.png


def test_an_image_glob_that_matches_nothing_is_refused(tmp_path):
    from zsseg_rt.stream.sources import SourceError, open_source

    source = open_source(str(tmp_path / "*.jpg"))
    with pytest.raises(SourceError, match="no file matches"):
        source.open()


def test_zsseg_camera_takes_the_views_output_and_says_what_it_wrote(tmp_path, tiny_bundle, capsys, caplog):
    caplog.set_level(logging.INFO, logger="zsseg_rt.stream")
    photos, out = _photos(tmp_path / "photos", count=2), tmp_path / "out"
    argv = ["camera", photos, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", f"views:{out}"]
    assert cli.main([*argv, "--backend", "onnxruntime", "--mode", "exact"]) == 0
    assert f"wrote 2 images' views to {out}" in caplog.messages
    assert _visible(out) == ["classes.json", "p0_overlay.png", "p1_overlay.png"]


def test_a_session_into_a_folder_of_another_vocabulary_is_refused_before_its_first_view(tmp_path, tiny_bundle):
    """The class map describes every view of the folder: another vocabulary's run there is refused at its first
    result, nothing of it written (as zsseg segment refuses it: the earlier views would stay beside a class map that
    no longer says what their label values mean)."""
    from zsseg_rt.outputs.meaning import MeaningRefused
    from zsseg_rt.stream import Session

    first, out = _photos(tmp_path / "first", count=1), tmp_path / "out"
    os.makedirs(tmp_path / "second")
    os.rename(os.path.join(first, "p0.png"), tmp_path / "second" / "q0.png")
    cv2.imwrite(os.path.join(first, "p0.png"), np.zeros((48, 64, 3), np.uint8))
    options = {"outputs": [f"views:{out}"], "engine_options": {"backend": "onnxruntime", "mode": "exact"}}
    assert Session(first, tiny_bundle, classes="cat,dog", **options).run() == 0
    with pytest.raises(MeaningRefused, match="p0_overlay.png"):
        Session(str(tmp_path / "second"), tiny_bundle, classes="cat,bird", **options).run()
    assert _visible(out) == ["classes.json", "p0_overlay.png"]
    with open(out / "classes.json") as record:
        assert json.load(record) == {"0": "cat", "1": "dog"}


_EXACT = {"backend": "onnxruntime", "mode": "exact"}


def test_a_named_videos_earlier_frames_are_refused_without_overwrite(tmp_path, tiny_bundle):
    """An earlier run's frames of a source whose name is not its file's stem (``front=clip.avi``) are refused without
    overwrite=True, as an image's files are; the video file's frames are named as segment names them
    (``clip_000000``), whatever the source is called."""
    from stream_fakes import write_band_clip

    from zsseg_rt.outputs.plan import OutputRefused
    from zsseg_rt.stream import Session

    clip = write_band_clip(tmp_path / "clip.avi", frames=2, fps=10.0, size=(64, 48))
    out = tmp_path / "out"
    options = {"outputs": [f"views:{out}"], "engine_options": _EXACT}
    assert Session([f"front={clip}"], tiny_bundle, classes="cat,dog", **options).run() == 0
    assert _visible(out) == ["classes.json", "clip_000000_overlay.png", "clip_000001_overlay.png"]
    before = (out / "clip_000000_overlay.png").read_bytes()
    with pytest.raises(OutputRefused, match="clip_000000_overlay.png.*overwrite=True"):
        Session([f"front={clip}"], tiny_bundle, classes="cat,dog", **options).run()
    assert (out / "clip_000000_overlay.png").read_bytes() == before


def test_a_streams_earlier_frames_are_refused_without_overwrite(tmp_path):
    """A stream's frames (an HTTP or RTSP stream, a camera: no file) are named by the source's name, and the plan
    refuses the ones an earlier run left, without overwrite=True (the plan of a Session's run, checked before any
    source opens)."""
    from zsseg_rt.outputs.plan import OutputRefused
    from zsseg_rt.outputs.run_outputs import RunOutputs
    from zsseg_rt.stream.sources import open_source

    out = tmp_path / "out"
    os.makedirs(out)
    (out / "front_000007_overlay.png").write_bytes(b"an earlier run's")
    stream = open_source("http://127.0.0.1:9/clip.avi")  # not opened: the plan comes first
    given = ([f"views:{out}"], [], None)
    with pytest.raises(OutputRefused, match="front_000007_overlay.png.*overwrite=True"):
        RunOutputs.plan_for(*given, False, [stream], python=True, names=["front"])
    outputs = RunOutputs.plan_for(*given, True, [stream], python=True, names=["front"])
    try:
        assert outputs.staged(f"views:{out}").frames == {"front": "front"}
    finally:
        outputs.plan.release()


def test_a_folder_and_a_video_of_the_same_name_are_named_as_segment_names_them(tmp_path, tiny_bundle, capsys):
    """``clip/`` and ``clip.avi``: the Session's sources are named clip and clip_2, but the video's frames are named
    as segment names them (``clip_000000_overlay.png``)."""
    from stream_fakes import write_band_clip

    from zsseg_rt.stream import Session

    folder = _photos(tmp_path / "clip", count=1)
    clip = write_band_clip(tmp_path / "clip.avi", frames=2, fps=10.0, size=(64, 48))
    by_cli, by_session = tmp_path / "cli", tmp_path / "session"
    argv = ["segment", folder, clip, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(by_cli)]
    assert cli.main([*argv, "--backend", "onnxruntime"]) == 0
    capsys.readouterr()
    options = {"outputs": [f"views:{by_session}"], "engine_options": _EXACT}
    assert Session([folder, clip], tiny_bundle, classes="cat,dog", **options).run() == 0
    expected = ["clip_000000_overlay.png", "clip_000001_overlay.png", "p0_overlay.png"]
    assert [name for name in _visible(by_cli) if name.endswith(".png")] == expected
    assert _visible(by_session) == _visible(by_cli)


def test_an_animated_png_gives_every_frame(tmp_path, tiny_bundle):
    """An animated PNG is read by the file row, frame by frame (4 views), not as one photo (an animated WebP, which
    the file row would read no frame of, stays one)."""
    from PIL import Image

    from zsseg_rt.stream import Session
    from zsseg_rt.stream.sources import parse_source

    rng = np.random.default_rng(3)
    frames = [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in range(4)]
    path = str(tmp_path / "anim.png")
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert parse_source(path).kind == "file"
    webp = str(tmp_path / "anim.webp")  # OpenCV's video reader reads no frame of it: it stays a photo, its first frame
    frames[0].save(webp, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert parse_source(webp).kind == "images"
    out = tmp_path / "out"
    session = Session(path, tiny_bundle, classes="cat,dog", outputs=[f"views:{out}"], engine_options=_EXACT)
    assert session.run() == 0
    assert _visible(out) == [*(f"anim_{index:06d}_overlay.png" for index in range(4)), "classes.json"]


def test_a_glob_reads_only_its_images_and_names_the_video_it_left_out(tmp_path, tiny_bundle, caplog):
    """A glob matching a video and an image: the image's views, one warning naming the video left out, and an old
    ``clip_*`` file of that video does not block a run that never writes it."""
    from stream_fakes import write_band_clip

    from zsseg_rt.stream import Session

    folder = _photos(tmp_path / "mixed", count=1)
    clip = write_band_clip(tmp_path / "mixed" / "clip.avi", frames=2, fps=10.0, size=(64, 48))
    out = tmp_path / "out"
    os.makedirs(out)
    (out / "clip_000000_overlay.png").write_bytes(b"an earlier run's")
    caplog.set_level(logging.WARNING)
    glob = os.path.join(folder, "*")
    session = Session(glob, tiny_bundle, classes="cat,dog", outputs=[f"views:{out}"], engine_options=_EXACT)
    assert session.run() == 0
    assert _visible(out) == ["classes.json", "clip_000000_overlay.png", "p0_overlay.png"]
    assert (out / "clip_000000_overlay.png").read_bytes() == b"an earlier run's"
    left = [message for message in caplog.messages if "left out" in message]
    assert len(left) == 1 and clip in left[0] and "notes.txt" in left[0]


def test_the_same_image_given_twice_is_written_twice_as_segment_writes_it(tmp_path, tiny_bundle, capsys):
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", count=1)
    image = os.path.join(photos, "p0.png")
    by_cli, by_session = tmp_path / "cli", tmp_path / "session"
    argv = ["segment", image, os.path.join(photos, "*.png"), "--bundle", tiny_bundle, "--classes", "cat,dog"]
    assert cli.main([*argv, "-o", str(by_cli), "--backend", "onnxruntime"]) == 0
    capsys.readouterr()
    given = [image, os.path.join(photos, "*.png")]
    session = Session(given, tiny_bundle, classes="cat,dog", outputs=[f"views:{by_session}"], engine_options=_EXACT)
    assert session.run() == 0
    assert _visible(by_cli) == ["classes.json", "p0_2_overlay.png", "p0_overlay.png"]
    assert _visible(by_session) == _visible(by_cli)
    assert session.summary["outputs"][0]["frames"] == 2


def test_a_looped_photo_is_written_into_its_same_files_each_lap(tmp_path, tiny_bundle):
    """loop=True over image files: each lap writes an image's views into the same files (docs/usage.md says so)."""
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", count=1)
    out = tmp_path / "out"
    given = [os.path.join(photos, "p0.png")]
    options = {"outputs": [f"views:{out}"], "engine_options": _EXACT, "loop": True, "max_frames": 3}
    session = Session(given, tiny_bundle, classes="cat,dog", **options)
    assert session.run() == 0
    assert _visible(out) == ["classes.json", "p0_overlay.png"]
    assert session.summary["outputs"][0]["frames"] == 3
