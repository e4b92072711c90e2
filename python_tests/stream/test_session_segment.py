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
    resized = [{"image": os.path.join(photos, "p0.png"), "from": [64, 48], "to": [56, 42]}]
    assert session.summary["resized"] == resized

    caplog.clear()
    refused = tmp_path / "refused"
    options["outputs"] = [f"views:labels:{refused}"]
    session = Session(photos, tiny_bundle, classes="cat,dog", **options)
    assert session.run() == 0  # skipped_fails=False: a source of images warns and goes on
    assert _visible(refused) == ["classes.json", "p1_labels.png", "p1_mask.png"]
    [(path, why)] = session.skipped
    assert path == os.path.join(photos, "p0.png") and "limit" in why, why
    assert session.summary["skipped"] == [{"image": path, "error": why}] and session.summary["resized"] == []
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


def test_in_order_runs_the_sources_one_after_another_as_segment_does(tmp_path, tiny_bundle):
    """``in_order=True``: every image of the first folder, then the second's (zsseg segment's order; side by side a
    runner takes a frame of each source in turn)."""
    from zsseg_rt.stream import Session

    first = _photos(tmp_path / "first", [(48, 64)] * 3)
    second = _photos(tmp_path / "second", [(32, 40)] * 3)
    session = Session(
        [first, second], tiny_bundle, classes="cat,dog", outputs=["null"], engine_options=_EXACT, in_order=True
    )
    with session:
        seen = [(item.source, os.path.basename(item.frame.path)) for item in session]
    assert seen == [("first", f"p{i}.png") for i in range(3)] + [("second", f"p{i}.png") for i in range(3)]
    assert session.exit_code == 0


def test_in_order_refuses_a_live_source_before_the_model_loads(tmp_path, tiny_bundle):
    from zsseg_rt.errors import OptionError
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", [(48, 64)])
    given = [photos, "http://127.0.0.1:9/clip.avi"]  # not opened: refused first
    with pytest.raises(OptionError, match="in_order=True runs the sources one after another.*live source"):
        Session(given, tiny_bundle, classes="cat,dog", outputs=["null"], in_order=True).run()


def test_in_order_tracks_each_sequence_with_one_tracker(tmp_path):
    """With ``in_order`` and ``track``, the images of one folder are one sequence however they are given (one file
    at a time, a folder, a glob), a video file its own, a glob over two folders its own: segment's ``sequence_of``."""
    from stream_fakes import write_band_clip

    from zsseg_rt.input_files import sequence_of
    from zsseg_rt.stream.loop.session_options import sequence_key
    from zsseg_rt.stream.sources import open_source

    photos = _photos(tmp_path / "photos", [(48, 64), (48, 64)])
    other = _photos(tmp_path / "other", [(48, 64)])
    clip = str(write_band_clip(tmp_path / "clip.avi", frames=2, fps=10.0, size=(64, 48)))
    given = [
        os.path.join(photos, "p0.png"),
        os.path.join(photos, "p1.png"),
        photos,
        os.path.join(photos, "*.png"),
        clip,
        str(tmp_path / "*" / "p0.png"),
    ]
    keys = [sequence_key(open_source(text), number) for number, text in enumerate(given)]
    folder = os.path.realpath(photos)
    assert keys == [folder, folder, folder, folder, os.path.realpath(clip), 5]
    assert sequence_of(os.path.join(other, "p0.png")) == os.path.realpath(other)


def test_a_write_the_disk_refuses_stops_the_run_and_says_how_far_it_got(tmp_path, tiny_bundle, monkeypatch):
    """A full disk at the second image's views: the run stops with the write's error, the image it stopped at and
    what is kept (the first image's views and the class map), as ``zsseg segment`` says it."""
    from zsseg_rt.io_safety import OutputWriteError
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", [(48, 64)] * 4)
    out = tmp_path / "out"
    real_replace = os.replace

    def full_disk(source, target, *args, **kwargs):  # the disk takes the class map and the first image's views only
        taken = (str(out / "p0"), str(out / "classes.json"), str(out / ".zsseg-meaning.json"))
        if str(target).startswith(str(out)) and not str(target).startswith(taken):
            raise OSError(28, os.strerror(28))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk)
    session = Session(photos, tiny_bundle, classes="cat,dog", outputs=[f"views:{out}"], engine_options=_EXACT)
    with pytest.raises(OutputWriteError) as caught:
        session.run()
    message = str(caught.value)
    assert message.startswith(f"cannot write {str(out / 'p1_overlay.png')!r}: No space left on device"), message
    assert (
        "; stopped at image 2 of 4 (the results of 1 images before it are kept; the others were not segmented)"
        in message
    )
    assert _visible(out) == ["classes.json", "p0_overlay.png"]


def test_each_run_into_the_next_numbered_folder_as_segment_numbers_them(tmp_path, tiny_bundle):
    """``next_run_directory``: ``runs/segment/exp``, then ``exp2`` (zsseg segment's default folder, from Python)."""
    from zsseg_rt.outputs.plan import next_run_directory
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", [(48, 64)])
    runs = str(tmp_path / "runs" / "segment")
    for expected in ("exp", "exp2"):
        folder = next_run_directory(runs)
        assert os.path.basename(folder) == expected
        Session(photos, tiny_bundle, classes="cat,dog", outputs=[f"views:{folder}"], engine_options=_EXACT).run()
        assert _visible(folder) == ["classes.json", "p0_overlay.png"]
    assert _visible(runs) == ["exp", "exp2"]


def _full_disk_but(monkeypatch, out, kept: str) -> None:
    """The disk takes the class map and the views of image ``kept`` (a stem) only: every other write is refused."""
    real_replace = os.replace

    def full_disk(source, target, *args, **kwargs):
        taken = (str(out / kept), str(out / "classes.json"), str(out / ".zsseg-meaning.json"))
        if str(target).startswith(str(out)) and not str(target).startswith(taken):
            raise OSError(28, os.strerror(28))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk)


def test_the_image_a_full_disk_stopped_at_counts_the_skipped_images_before_it(tmp_path, tiny_bundle, monkeypatch):
    """a0.png unreadable (skipped), then p0, p1, p2; the disk takes p0's views only: the run stopped at p1, the 3rd
    image of the 4 it was given (as ``zsseg segment`` counts them), the views of 1 kept. In order over three files
    given one by one (an unreadable one first): the 3rd of 3, the sources before it counted by the images they read."""
    from zsseg_rt.io_safety import OutputWriteError
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", [(48, 64)] * 3)
    (tmp_path / "photos" / "a0.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    _full_disk_but(monkeypatch, out, "p0")
    session = Session(photos, tiny_bundle, classes="cat,dog", outputs=[f"views:{out}"], engine_options=_EXACT)
    with pytest.raises(OutputWriteError) as caught:
        session.run()
    message = str(caught.value)
    assert message.startswith(f"cannot write {str(out / 'p1_overlay.png')!r}: No space left on device"), message
    assert (
        "; stopped at image 3 of 4 (the results of 1 images before it are kept; the others were not segmented)"
        in message
    )
    assert _visible(out) == ["classes.json", "p0_overlay.png"]

    given = [str(tmp_path / "photos" / name) for name in ("a0.png", "p0.png", "p1.png")]
    out = tmp_path / "in_order"
    _full_disk_but(monkeypatch, out, "p0")
    session = Session(
        given, tiny_bundle, classes="cat,dog", outputs=[f"views:{out}"], engine_options=_EXACT, in_order=True
    )
    with pytest.raises(OutputWriteError) as caught:
        session.run()
    message = str(caught.value)
    assert str(out / "p1_overlay.png") in message, message
    # (the views kept before it are not asserted here: a source's writer may still be writing p0 when p1's fails)
    assert "; stopped at image 3 of 3 (" in message, message


def test_in_order_refuses_looped_sources_without_max_frames_before_anything_opens(tmp_path, tiny_bundle):
    """``in_order`` with ``loop`` and no ``max_frames``: the first source would loop for ever and the second never
    start: refused in one line before an output is made; with ``max_frames`` each source gives that many, in order."""
    from zsseg_rt.errors import OptionError
    from zsseg_rt.stream import Session

    first = _photos(tmp_path / "first", [(48, 64)] * 2)
    second = _photos(tmp_path / "second", [(32, 40)] * 2)
    out = tmp_path / "out"
    options = {"classes": "cat,dog", "engine_options": _EXACT, "in_order": True, "loop": True}
    with pytest.raises(OptionError) as caught:
        Session([first, second], tiny_bundle, outputs=[f"views:{out}"], **options).run()
    assert str(caught.value) == (
        "in_order=True runs the sources one after another, and loop=True restarts first at its end for ever: second "
        "would never start: give max_frames (each source's frames, then the next), or leave loop or in_order out"
    )
    assert caught.value.option == "in_order" and not out.exists()

    session = Session([first, second], tiny_bundle, outputs=["null"], max_frames=3, **options)
    with session:
        seen = [(item.source, os.path.basename(item.frame.path)) for item in session]
    assert seen == [("first", "p0.png"), ("first", "p1.png"), ("first", "p0.png")] + [
        ("second", "p0.png"),
        ("second", "p1.png"),
        ("second", "p0.png"),
    ]


def test_a_looped_folder_names_its_unreadable_image_once(tmp_path, tiny_bundle):
    """``loop`` over a folder with one unreadable image, three laps (``max_frames=3``): the image is skipped on every
    lap and named once in ``session.skipped`` and the summary."""
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", [(48, 64)])
    broken = tmp_path / "photos" / "a0.png"
    broken.write_bytes(b"not a png")
    session = Session(
        photos, tiny_bundle, classes="cat,dog", outputs=["null"], engine_options=_EXACT, loop=True, max_frames=3
    )
    with session:
        seen = [os.path.basename(item.frame.path) for item in session]
    assert seen == ["p0.png"] * 3
    assert [path for path, _ in session.skipped] == [str(broken)]
    assert [entry["image"] for entry in session.summary["skipped"]] == [str(broken)]


def test_a_video_that_cannot_be_opened_is_skipped_the_others_go_on_with_skipped_fails(tmp_path, tiny_bundle):
    """``in_order`` and ``skipped_fails`` over a folder, a video file holding garbage and a real clip: the garbage is
    skipped as ``zsseg segment`` skips it (named in ``session.skipped`` and the summary with its reason), the folder
    and the clip segmented, the exit code 1; without ``skipped_fails`` it stops the run before anything runs."""
    from stream_fakes import write_band_clip

    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", [(48, 64)] * 2)
    garbage = tmp_path / "broken.avi"
    garbage.write_bytes(b"not a video at all" * 64)
    clip = write_band_clip(tmp_path / "clip.avi", frames=3)
    given = [photos, str(garbage), clip]
    options = {"outputs": ["null"], "engine_options": _EXACT, "in_order": True}
    session = Session(given, tiny_bundle, classes="cat,dog", skipped_fails=True, **options)
    with session:
        seen = [item.source for item in session]
    assert seen == ["photos", "photos", "clip", "clip", "clip"]
    assert session.exit_code == 1
    [(path, why)] = session.skipped
    assert path == str(garbage) and "broken" in why and why, why
    assert session.summary["skipped"] == [{"image": str(garbage), "error": why}]
    with pytest.raises(Exception, match="broken"):
        Session(given, tiny_bundle, classes="cat,dog", **options).run()


def test_a_video_that_fails_part_way_is_skipped_with_its_frames_so_far_kept(tmp_path, tiny_bundle, monkeypatch):
    """A video whose decoding fails at its third frame (``in_order``, ``skipped_fails``): its first two frames are
    segmented and written, the video named in ``session.skipped`` with the reason, the next source segmented, the
    exit code 1."""
    from stream_fakes import write_band_clip

    from zsseg_rt.stream import Session
    from zsseg_rt.stream.sources import SourceError
    from zsseg_rt.stream.sources.opencv import OpenCVSource
    from zsseg_rt.stream.sources.pyav_file import PyAVFileSource

    clip = write_band_clip(tmp_path / "clip.avi", frames=5)
    photos = _photos(tmp_path / "photos", [(48, 64)])
    for kind in (PyAVFileSource, OpenCVSource):
        real = kind.read

        def read(self, real=real):
            self.reads = getattr(self, "reads", 0) + 1
            if self.reads == 3 and str(self.name).endswith("clip.avi"):
                raise SourceError("clip.avi: damaged beyond resynchronising")
            return real(self)

        monkeypatch.setattr(kind, "read", read)
    out = tmp_path / "out"
    session = Session(
        [clip, photos],
        tiny_bundle,
        classes="cat,dog",
        outputs=[f"views:labels:{out}"],
        engine_options=_EXACT,
        in_order=True,
        skipped_fails=True,
    )
    assert session.run() == 1
    frames = [f"clip_00000{i}_{kind}.png" for i in range(2) for kind in ("labels", "mask")]
    assert _visible(out) == ["classes.json", *frames, "p0_labels.png", "p0_mask.png"]  # its two frames kept
    [(path, why)] = session.skipped
    assert path == clip and "damaged beyond resynchronising" in why, session.skipped
    assert session.summary["skipped"] == [{"image": clip, "error": why}]


def test_a_glob_over_two_folders_tracks_each_folder_as_segment_does(tmp_path, tiny_bundle, capsys):
    """``track=True`` over ``photos/*/*.png`` (two folders): each folder's images are one sequence with a tracker of
    its own (``sequence_of``), so the second folder's ids start again: the ids ``zsseg segment --objects --track
    --json`` gives the same glob, image by image."""
    from zsseg_rt import cli
    from zsseg_rt.stream import Session

    _photos(tmp_path / "photos" / "a", [(48, 64)] * 3)
    folder = tmp_path / "photos" / "b"
    folder.mkdir()
    rng = np.random.default_rng(5)  # other images than a's: one tracker over both would number on
    for index in range(3):
        cv2.imwrite(str(folder / f"q{index}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    pattern = str(tmp_path / "photos" / "*" / "*.png")
    engine = {"backend": "onnxruntime", "mode": "exact", "object_min_area": 0}
    session = Session(pattern, tiny_bundle, classes="cat,dog", outputs=["null"], engine_options=engine, track=True)
    with session:
        tracked = {item.frame.path: [obj.track_id for obj in item.objects] for item in session}
    argv = [pattern, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(tmp_path / "out"), "--json"]
    flags = ["--backend", "onnxruntime", "--mode", "exact", "--object-min-area", "0", "--objects", "--track"]
    assert cli.main(["segment", *argv, *flags]) == 0
    printed = json.loads(capsys.readouterr().out)
    segmented = {entry["image"]: [obj["track_id"] for obj in entry["objects"]["objects"]] for entry in printed}
    assert len(tracked) == 6 and tracked == segmented
    second = [ids for path, ids in tracked.items() if os.sep + "b" + os.sep in path]
    assert len(second) == 3 and min(second[0]) == min(next(iter(tracked.values())))  # b's ids start again


def test_on_written_tells_each_image_once_its_views_exist_in_run_and_in_a_loop(tmp_path, tiny_bundle):
    """``on_written=``: called once per image with the ``SessionResult`` the app's loop gets (its source, frame,
    result), when that image's view files are on disk already (zsseg segment prints an image's line from it), in
    ``run()`` and in a loop; an exception out of it fails the run, its outputs not put in place."""
    from zsseg_rt.stream import Session, SessionResult

    photos = _photos(tmp_path / "photos", [(48, 64), (32, 40), (40, 48)])
    for way in ("run", "loop"):
        out = tmp_path / way
        told = []

        def on_written(item, out=out, told=told):
            assert isinstance(item, SessionResult)
            stem = os.path.splitext(os.path.basename(item.frame.path))[0]
            files = [os.path.exists(out / f"{stem}_{kind}.png") for kind in ("overlay", "labels")]
            told.append((item.source, stem, files, item.result.labels.shape))

        options = {"outputs": [f"views:overlay,labels:{out}"], "engine_options": _EXACT, "on_written": on_written}
        session = Session(photos, tiny_bundle, classes="cat,dog", **options)
        if way == "run":
            assert session.run() == 0
            looped = None
        else:
            with session:
                looped = [(item.source, item.frame.index, item.result.labels.shape) for item in session]
        assert sorted(stem for _, stem, _, _ in told) == ["p0", "p1", "p2"], way
        assert all(files == [True, True] for _, _, files, _ in told), told
        sizes = {"p0": (48, 64), "p1": (32, 40), "p2": (40, 48)}
        assert all(source == "photos" and shape == sizes[stem] for source, stem, _, shape in told), told
        if looped is not None:
            assert [(s, shape) for s, _, shape in looped] == [("photos", sizes[f"p{i}"]) for i in range(3)]
    failing = Session(
        photos,
        tiny_bundle,
        classes="cat,dog",
        outputs=[f"views:{tmp_path / 'failed'}"],
        engine_options=_EXACT,
        on_written=lambda item: (_ for _ in ()).throw(KeyError("the app's line failed")),
    )
    with pytest.raises(KeyError, match="the app's line failed"):
        failing.run()


def test_a_source_that_cannot_be_opened_keeps_its_place_in_the_summary(tmp_path, tiny_bundle):
    """``skipped_fails`` over a folder, a video file holding garbage and a real clip: the summary's ``sources`` (what
    ``--stats-json`` writes) holds all three in the order given, the garbage one failed with why, no frames, the keys
    of the others."""
    from stream_fakes import write_band_clip

    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos", [(48, 64)] * 2)
    garbage = tmp_path / "broken.avi"
    garbage.write_bytes(b"not a video at all" * 64)
    clip = write_band_clip(tmp_path / "clip.avi", frames=3)
    options = {"outputs": ["null"], "engine_options": _EXACT, "in_order": True, "skipped_fails": True}
    session = Session([photos, str(garbage), clip], tiny_bundle, classes="cat,dog", **options)
    assert session.run() == 1
    [(_, why)] = session.skipped
    sources = session.summary["sources"]
    assert [entry["name"] for entry in sources] == ["photos", "broken", "clip"]
    assert [entry["processed"] for entry in sources] == [2, 0, 3]
    assert [entry["state"] for entry in sources] == ["ended", "failed", "ended"]
    failed = sources[1]
    assert failed["error"] == why and "broken" in why
    assert (failed["captured"], failed["dropped"], failed["fps"], failed["outputs"]) == (0, 0, 0.0, [])
    assert set(failed) == set(sources[0]) == set(sources[2])
    assert json.loads(json.dumps(session.summary))["sources"][1] == failed  # as --stats-json writes it
