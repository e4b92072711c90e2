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
