"""``--track`` and ``--tracks-out`` on the commands (issue 89, item 2): ``zsseg camera CLIP --track --tracks-out`` and
``zsseg segment VIDEO --track --tracks-out --json``: the MOTChallenge file holds, frame by frame, the tracked objects
of the label maps the same run wrote, tracked again here by an ``ObjectTracker`` of the same defaults (the ids are
deterministic); segment's ``--json`` carries the same ids. ``--tracks-out`` over two sequences is refused in one line.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("scipy")
from stream_fakes import write_band_clip  # noqa: E402

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.outputs.labels import read_labels  # noqa: E402
from zsseg_rt.runtime.objects import find_objects  # noqa: E402
from zsseg_rt.runtime.tracking import ObjectTracker  # noqa: E402

ENGINE = ["--backend", "onnxruntime", "--object-min-area", "0"]


def _rows(path):
    """MOTChallenge rows by frame in the run's numbering: ``[(id, (x, y, w, h))]`` (the file counts frames and pixels
    from 1, as MOTChallenge does: read by hand here, not by the package's reader)."""
    rows = defaultdict(list)
    for line in path.read_text().splitlines():
        values = line.split(",")
        assert len(values) == 10 and values[7:] == ["-1", "-1", "-1"]
        assert int(values[0]) >= 1 and int(values[2]) >= 1 and int(values[3]) >= 1, line  # MOTChallenge's origin
        x, y, w, h = (int(v) for v in values[2:6])
        rows[int(values[0]) - 1].append((int(values[1]), (x - 1, y - 1, w, h)))
    return dict(rows)


def test_camera_tracks_out_holds_the_tracks_of_its_label_maps(tmp_path, tiny_bundle, capsys):
    clip = write_band_clip(tmp_path / "clip.avi", frames=6)
    tracks, labels = tmp_path / "tracks.txt", tmp_path / "labels"
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "--no-progress", *ENGINE]
    code = cli.main(["camera", *argv, "--labels-out", str(labels), "--track", "--tracks-out", str(tracks)])
    assert code == 0, capsys.readouterr().err
    assert "rows of" in capsys.readouterr().err or tracks.is_file()  # the "wrote ..." line of the row
    written = _rows(tracks)
    tracker = ObjectTracker()
    for frame in range(6):
        maps = read_labels(str(labels), frame)
        found = tracker.update(find_objects(maps.astype(np.int32), ["a", "b"], min_area=0))
        assert written.get(frame, []) == [(o.track_id, o.box) for o in found]
    assert sum(len(rows) for rows in written.values()) >= 6  # the band clip: a region a frame at least


def test_segment_track_gives_json_the_ids_the_tracks_file_holds(tmp_path, tiny_bundle, capsys):
    clip = write_band_clip(tmp_path / "clip.avi", frames=5)
    tracks = tmp_path / "tracks.txt"
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / "out"), "--json", *ENGINE]
    assert cli.main(["segment", *argv, "--track", "--tracks-out", str(tracks)]) == 0
    printed = json.loads(capsys.readouterr().out)
    shown = {
        entry["frame"]: [(o["track_id"], tuple(o["box"])) for o in entry["objects"]["objects"]] for entry in printed
    }
    assert shown == _rows(tracks) and sorted(shown) == list(range(5))
    ids = {i for rows in shown.values() for i, _ in rows}
    assert len(ids) < sum(len(rows) for rows in shown.values())  # ids kept across frames (not one per object)


def test_tracks_out_over_two_sequences_is_refused(tmp_path, tiny_bundle, capsys):
    clips = [write_band_clip(tmp_path / f"clip{i}.avi", frames=2) for i in range(2)]
    argv = [*clips, "--bundle", tiny_bundle, "--classes", "a,b", "--tracks-out", str(tmp_path / "t.txt")]
    assert cli.main(["segment", *argv]) == 1
    err = capsys.readouterr().err
    assert "holds one sequence of frames, and these inputs are 2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.txt").exists()
    # one video given twice is two sequences too (its frame numbers start again): segment's words, before the model
    argv = [clips[0], clips[0], *argv[2:]]
    assert cli.main(["segment", *argv]) == 1
    err = capsys.readouterr().err
    assert "holds one sequence of frames, and these inputs are 2" in err and len(err.strip().splitlines()) == 1, err


def _image(path, height, width, seed=0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))
    return str(path)


def test_segment_tracks_the_images_of_one_folder_however_named(tmp_path, tiny_bundle, capsys, monkeypatch):
    """Review of this wave, item 6: ``segment a.jpg b.jpg --tracks-out`` tracked two loose images as one sequence,
    but the same folder's images written another way (``../ph/b.png``) were refused as two sequences. The images of
    one folder are one sequence, in the order given, whatever their sizes; two folders are refused, named."""
    _image(tmp_path / "ph" / "a.png", 20, 30)
    _image(tmp_path / "ph" / "b.png", 48, 64, seed=1)  # another size
    other = _image(tmp_path / "other" / "c.png", 20, 30, seed=2)
    monkeypatch.chdir(tmp_path / "ph")
    tracks = tmp_path / "t.txt"
    argv = ["--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / "out"), *ENGINE]
    assert cli.main(["segment", "a.png", "../ph/b.png", *argv, "--tracks-out", str(tracks)]) == 0, capsys.readouterr()
    assert sorted(_rows(tracks)) == [0, 1]  # both images, one file
    capsys.readouterr()
    assert cli.main(["segment", "a.png", other, *argv, "--tracks-out", str(tmp_path / "u.txt"), "--overwrite"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "these inputs are 2 (each video, and the images of each folder, however named, is one: "
        + (f"{tmp_path / 'ph'}, {tmp_path / 'other'}): give one video file, or the images of one folder")
        in err[0]
    ), err
    assert not (tmp_path / "u.txt").exists()


@pytest.mark.parametrize("command", ["segment", "camera"])
def test_track_max_missed_without_track_is_refused(tmp_path, tiny_bundle, capsys, command):
    """Review of this wave, item 6: ``--track-max-missed`` without ``--track`` was taken and changed nothing; now
    refused in one line, as a run option that needs another is (a Session in its keywords); with ``--track`` it
    runs."""
    from zsseg_rt.errors import OptionError
    from zsseg_rt.stream import Session

    source = _image(tmp_path / "p.png", 20, 30) if command == "segment" else write_band_clip(tmp_path / "c.avi", 2)
    argv = [command, source, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / "out"), *ENGINE]
    if command == "camera":
        argv[-len(ENGINE) - 1] = str(tmp_path / "out.mp4")
    assert cli.main([*argv, "--track-max-missed", "3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"zsseg {command}: error: --track-max-missed 3 applies only with --track or --tracks-out FILE: give one of "
        "them too (or leave --track-max-missed out)"
    ], err
    assert cli.main([*argv, "--track-max-missed", "3", "--track"]) == 0
    with pytest.raises(OptionError) as caught:
        Session([source], tiny_bundle, "a,b", outputs=["null"], engine_options={"track_max_missed": 3})
    assert str(caught.value) == (
        "track_max_missed=3 applies only with track=True or tracks_out: give one of them too (or leave "
        "track_max_missed out)"
    )
