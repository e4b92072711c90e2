"""``zsseg segment`` with every input a user has (issue 75, item 3 and E3, E6, E8, E14): a video file segmented frame
by frame with the outputs of a photo, a glob through a symbolic-link loop that ends, a FIFO / device / socket refused
with one line, an animated GIF's first frame said, a run stopped half-way that keeps ``classes.json`` beside the label
maps it wrote, and one owner per output folder. In-process runs of the tiny bundle; every test bounded in time (a
hang, E3's and E8's defect, is a named failure)."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import write_band_clip  # noqa: E402


def _image(path, height=20, width=30, seed=0) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))
    return str(path)


def _segment(capsys, *argv):
    """``zsseg segment ARGV`` in this process: ``(exit code, stdout, stderr lines)``."""
    from zsseg_rt import cli

    code = cli.main(["segment", *argv, "--backend", "onnxruntime"])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


@pytest.mark.time_bound(120)
def test_a_recursive_glob_through_a_symlink_loop_ends(tmp_path, tiny_bundle, capsys, monkeypatch):
    """E3 (B45): ``"d/loop/**/*.png"`` with ``up -> ..`` and ``self -> ../loop`` in d/loop ran for minutes, its
    memory growing 7 MB/s (glob followed the links round). Now each real folder is entered once: the one photo."""
    from zsseg_rt.input_files import expand_glob

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d" / "loop").mkdir(parents=True)
    os.symlink("..", tmp_path / "d" / "loop" / "up")
    os.symlink("../loop", tmp_path / "d" / "loop" / "self")
    _image(tmp_path / "d" / "loop" / "one.png")
    _image(tmp_path / "d" / "two.png", seed=1)
    assert expand_glob("d/loop/**/*.png") == ["d/loop/one.png", "d/loop/up/two.png"]
    assert expand_glob("d/**/*.png") == ["d/loop/one.png", "d/two.png"]
    code, out, err = _segment(capsys, "d/loop/**/*.png", "--bundle", tiny_bundle, "--classes", "a,b", "-o", "out")
    assert code == 0, err
    assert sorted(os.listdir("out")) == [".zsseg-meaning.json", "classes.json", "one_overlay.png", "two_overlay.png"]


@pytest.mark.time_bound(60)
def test_a_glob_without_a_loop_matches_as_glob_does(tmp_path, monkeypatch):
    """The control: on a tree without links the loop-safe glob finds what glob.glob(recursive=True) finds."""
    import glob

    from zsseg_rt.input_files import expand_glob

    monkeypatch.chdir(tmp_path)
    for path in ("x.png", "a/y.png", "a/b/z.png", "c/w.jpg", ".hidden/q.png", "a/.h.png"):
        _image(tmp_path / path)
    for pattern in ("**/*.png", "a/**/*.png", "*/*.png", "**/b/*.png", f"{tmp_path}/**/*.png", "**", "a/**"):
        assert expand_glob(pattern) == sorted(glob.glob(pattern, recursive=True)), pattern


@pytest.mark.time_bound(60)
@pytest.mark.parametrize("kind", ["fifo", "device", "socket"])
def test_a_fifo_a_device_or_a_socket_is_refused_with_one_line(tmp_path, tiny_bundle, capsys, kind):
    """E8 (B46): a FIFO named ``fifo.jpg`` blocked until killed. FIFOs, devices and sockets are refused before the
    model loads, in one line; the Engine and the image reader refuse them too."""
    from zsseg_rt.image_io import ImageReadError, read_image_bgr

    listener = None
    if kind == "fifo":
        path, words = str(tmp_path / "fifo.jpg"), "a FIFO (named pipe)"
        os.mkfifo(path)
    elif kind == "device":
        path, words = "/dev/null", "a character device"
    else:
        path, words = str(tmp_path / "s.jpg"), "a socket"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
    try:
        code, out, err = _segment(capsys, path, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / "o"))
        assert code == 1 and err == [
            f"zsseg segment: error: {path!r} is {words}, not an image or video file: give a regular file"
        ], err
        assert not os.path.exists(tmp_path / "o")
        with pytest.raises(ImageReadError, match=f"image {path!r} is {words.replace('(', '.').replace(')', '.')}"):
            read_image_bgr(path)
    finally:
        if listener is not None:
            listener.close()


@pytest.mark.time_bound(300)
def test_a_video_file_is_segmented_frame_by_frame_with_a_photos_outputs(tmp_path, tiny_bundle, capsys):
    """Item 3: ``zsseg segment clip.avi`` was "cannot read image ...: not an image". Its frames are segmented as
    photos are, each with its views and label map (``clip_000003_overlay.png``), one classes.json; the label maps
    equal the Engine's on each frame; the JSON names the frame."""
    from zsseg_rt import Engine

    clip = write_band_clip(tmp_path / "clip.avi", frames=4)
    photo = _image(tmp_path / "p.png")
    out = tmp_path / "out"
    argv = [clip, photo, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(out), "--save-labels", "--json"]
    code, stdout, err = _segment(capsys, *argv)
    assert code == 0, err
    assert any("clip.avi is a video: each of its frames is segmented" in line for line in err), err
    names = sorted(os.listdir(out))
    frames = [f"clip_{i:06d}_{view}.png" for i in range(4) for view in ("labels", "mask", "overlay")]
    assert names == sorted(
        frames + [".zsseg-meaning.json", "classes.json", "p_labels.png", "p_mask.png", "p_overlay.png"]
    )
    summaries = json.loads(stdout)
    assert [(s["image"], s.get("frame")) for s in summaries] == [(clip, i) for i in range(4)] + [(photo, None)]
    engine = Engine(tiny_bundle, classes="a,b", backend="onnxruntime")
    capture = cv2.VideoCapture(clip)
    for index in range(4):
        ok, frame = capture.read()
        assert ok
        written = cv2.imread(str(out / f"clip_{index:06d}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(written, engine(frame).labels), index
    capture.release()
    code, _, err = _segment(capsys, clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(out))
    assert code == 1 and len(err) == 1 and "clip_000000_overlay.png' (and 3 more) exists already" in err[0], err
    code, _, err = _segment(capsys, clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(out / "one.png"))
    assert code == 1 and err == [
        f"zsseg segment: error: -o {str(out / 'one.png')!r} names one image file, but {clip!r} is a video (a file "
        "per frame): give a folder (-o DIR), or `zsseg camera` for an overlay video"
    ], err


@pytest.mark.time_bound(120)
def test_an_animated_gif_says_only_its_first_frame_is_segmented(tmp_path, tiny_bundle, capsys):
    """E14 (B40): a 2-frame GIF was segmented from its first frame, silently. Control: a still GIF says nothing."""
    from PIL import Image

    frames = [Image.new("RGB", (24, 16), color) for color in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(tmp_path / "still.gif")
    for name, said in (("anim.gif", True), ("still.gif", False)):
        path = str(tmp_path / name)
        code, _, err = _segment(
            capsys, path, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / f"o_{name}")
        )
        assert code == 0, err
        note = f"zsseg segment: note: {path} holds 2 frames (an animated or multi-page image): only its first is "
        assert any(line.startswith(note) for line in err) == said, err


@pytest.mark.time_bound(300)
@pytest.mark.parametrize("stop", ["signal", "full disk"])
def test_a_stopped_run_keeps_the_class_map_of_its_label_maps(tmp_path, tiny_bundle, capsys, monkeypatch, stop):
    """E6 (B56, B63-64): a segment run stopped at image 2 of 3 (Ctrl-C, or a full disk) kept image 1's label map
    without classes.json, which says what its ids mean. Now the class map is written before the first label map;
    a run that wrote no map still writes none."""
    from zsseg_rt import cli
    from zsseg_rt.runtime import Engine

    images = [_image(tmp_path / "in" / f"img{i}.png", seed=i) for i in range(3)]
    out = tmp_path / "out"
    if stop == "signal":
        real, calls = Engine.__call__, []

        def interrupted(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt  # Ctrl-C while image 2 is segmented
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Engine, "__call__", interrupted)
    else:
        real_replace = os.replace

        def full_disk(source, target, *args, **kwargs):  # the disk takes classes.json and image 1's files only
            if os.path.basename(str(target)).startswith(("img1", "img2")):
                raise OSError(28, os.strerror(28))
            return real_replace(source, target, *args, **kwargs)

        monkeypatch.setattr(os, "replace", full_disk)
    argv = ["segment", *images, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(out), "--save-labels"]
    assert cli.main([*argv, "--backend", "onnxruntime"]) == (130 if stop == "signal" else 1)
    capsys.readouterr()
    assert sorted(os.listdir(out)) == [
        ".zsseg-meaning.json",
        "classes.json",
        "img0_labels.png",
        "img0_mask.png",
        "img0_overlay.png",
    ]
    assert json.loads((out / "classes.json").read_text()) == {"0": "a", "1": "b"}


@pytest.mark.time_bound(60)
def test_zsseg_batchs_glob_through_a_symlink_loop_ends(tmp_path):
    """E3 for `zsseg batch "d/loop/**/*.png"` (its plan reads a local glob the same way): the one photo, at once."""
    from zsseg_rt.scale.batch import plan_batch

    (tmp_path / "d" / "loop").mkdir(parents=True)
    os.symlink("..", tmp_path / "d" / "loop" / "up")
    os.symlink("../loop", tmp_path / "d" / "loop" / "self")
    photo = _image(tmp_path / "d" / "loop" / "one.png")
    plan = plan_batch(str(tmp_path / "d" / "loop" / "**" / "*.png"), str(tmp_path / "out"))
    assert plan.sources == [photo], plan


@pytest.mark.time_bound(120)
def test_a_missing_input_is_refused_before_the_model_loads(tmp_path, tiny_bundle, capsys, monkeypatch):
    """F17: ``zsseg segment good.png nothere.png`` said "skipped nothere.png: does not exist" once the model had
    loaded (seconds for ViT-B). Now one line before it loads (the Engine is never made), naming the path."""
    from zsseg_rt.runtime import Engine

    def loaded(self, *args, **kwargs):
        raise AssertionError("the model loaded")

    monkeypatch.setattr(Engine, "__init__", loaded)
    good = _image(tmp_path / "good.png")
    missing = [str(tmp_path / "nothere.png"), str(tmp_path / "gone.png")]
    os.symlink(str(tmp_path / "nowhere.png"), tmp_path / "link.png")
    for given, said in (
        ([good, missing[0]], f"{missing[0]!r} does not exist"),
        ([missing[1], good, missing[0]], f"{missing[1]!r} (and 1 more) does not exist"),
        ([str(tmp_path / "link.png")], f"{str(tmp_path / 'link.png')!r} is a symbolic link to nothing"),
    ):
        code, _, err = _segment(capsys, *given, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / "o"))
        assert code == 1 and len(err) == 1 and err[0].startswith(f"zsseg segment: error: {said}: give an"), err
    assert not (tmp_path / "o").exists()


@pytest.mark.time_bound(300)
@pytest.mark.parametrize("as_json", [False, True])
def test_an_interrupted_run_ends_with_its_speed_and_where_its_results_are(
    tmp_path, tiny_bundle, capsys, monkeypatch, as_json
):
    """F17: a segment run stopped by Ctrl-C (or SIGTERM) printed neither the Speed line nor "results in" (camera
    prints both). Now both, of the images done, then the interruption (exit 130); ``--json``: the results so far on
    stdout, the Speed line on stderr."""
    from zsseg_rt import cli
    from zsseg_rt.runtime import Engine

    images = [_image(tmp_path / "in" / f"img{i}.png", seed=i) for i in range(3)]
    real, calls = Engine.__call__, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while image 3 is segmented
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "__call__", interrupted)
    out = tmp_path / "out"
    argv = ["segment", *images, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(out), "--backend", "onnxruntime"]
    assert cli.main([*argv, *(["--json"] if as_json else [])]) == 130
    said = capsys.readouterr()
    where = f"results in {out} (label ids -> class names: {out / 'classes.json'})"
    speed = "(onnxruntime fp32, 30x20)"
    if as_json:
        assert [entry["image"] for entry in json.loads(said.out)] == images[:2]
        assert [line for line in said.err.splitlines() if line.startswith("Speed: ")][0].endswith(speed), said.err
    else:
        lines = said.out.splitlines()
        assert lines[-2].startswith("Speed: ") and lines[-2].endswith(speed) and lines[-1] == where, said.out
    assert said.err.strip().splitlines()[-1] == "zsseg segment: interrupted (SIGINT)", said.err


@pytest.mark.time_bound(120)
def test_a_dash_for_an_output_is_refused_in_one_line(tmp_path, tiny_bundle, capsys, monkeypatch):
    """F18: ``-o -`` made a folder named ``-``; ``--save-json -`` said "expected a .json file name, got 'none'". A
    dash (standard output) is refused, naming the flag and what prints on standard output, before the model loads;
    on camera too; every output the run's rows write (``--tracks-out -`` wrote a file named ``-``). Nothing is
    made."""
    from zsseg_rt import cli
    from zsseg_rt.runtime import Engine

    def loaded(self, *args, **kwargs):
        raise AssertionError("the model loaded")

    monkeypatch.setattr(Engine, "__init__", loaded)
    monkeypatch.chdir(tmp_path)
    photo = _image(tmp_path / "p.png")
    clip = write_band_clip(tmp_path / "clip.avi", frames=2)
    for command, given, flag, instead in (
        ("segment", [photo, "-o", "-"], "-o", "--json prints the results on standard output"),
        ("segment", [photo, "--save-json", "-"], "--save-json", "--json prints the results on standard output"),
        ("camera", [clip, "-o", "-"], "-o", "-o display:// shows the frames, --preview PORT serves them"),
        ("camera", [clip, "--stats-json", "-"], "--stats-json", "-o display:// shows"),
        ("segment", [photo, "--track", "--tracks-out", "-"], "--tracks-out", "--json prints"),  # (review, item 3)
        ("camera", [clip, "--track", "--tracks-out", "-", "-o", "x1.mcap"], "--tracks-out", "-o display:// shows"),
        ("camera", [clip, "--labels-out", "-"], "--labels-out", "-o display:// shows"),
    ):
        code = cli.main([command, *given, "--bundle", tiny_bundle, "--classes", "a,b"])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 1 and len(err) == 1, err
        assert err[0].startswith(
            f"zsseg {command}: error: {flag} -: writing to standard output is not supported (outputs are files, put "
            f"in place when the run ends): give a file or folder name ({instead}"
        ), err
    assert sorted(os.listdir(tmp_path)) == ["clip.avi", "p.png"]


def test_the_image_files_given_are_one_source_between_video_files(tmp_path, tiny_bundle, capsys, monkeypatch):
    """``zsseg segment`` is a Session over its files (issue 88): the image files of its command line (a shell-expanded
    ``photos/*.jpg`` of any length) are one source, read in the order given, with one capture thread, not one source
    each; a video file between them is a source of its own, and the run keeps their order."""
    from zsseg_rt import cli
    from zsseg_rt.stream.loop import session as session_module
    from zsseg_rt.stream.sources.images import ImageFilesSource

    images = [_image(tmp_path / "in" / f"p{i}.png", seed=i) for i in range(5)]
    clip = write_band_clip(tmp_path / "c.avi", frames=2)
    made = []
    real = session_module.Session.__init__

    def kept(self, sources, *args, **kwargs):
        made.append(list(sources))
        real(self, sources, *args, **kwargs)

    monkeypatch.setattr(session_module.Session, "__init__", kept)
    given = [*images[:3], clip, *images[3:]]
    argv = ["segment", *given, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / "o")]
    assert cli.main([*argv, "--backend", "onnxruntime", "--json"]) == 0
    [sources] = made
    assert [type(source) for source in sources] == [ImageFilesSource, str, ImageFilesSource], sources
    assert sources[0].listing() == images[:3] and sources[1] == clip and sources[2].listing() == images[3:]
    entries = json.loads(capsys.readouterr().out)
    assert [(entry["image"], entry.get("frame")) for entry in entries] == [
        *[(path, None) for path in images[:3]],
        (clip, 0),
        (clip, 1),
        *[(path, None) for path in images[3:]],
    ]
