"""Tracks on the stream (issue 89, item 2): ``Session(track=True)`` and ``--tracks-out`` on a source whose label maps
are a sequence with known identities (``benchmarks/tracking.py``'s ``crossing``, frames read from an image folder):
the items the app's loop receives carry track ids, the MOTChallenge file (read back by py-motmetrics' own loader)
scores IDF1 1 with no switch against the truth, numbered as the frames are, and the MCAP file's Detection2D ids and
annotation texts are the track ids. Controls: without tracking the file is refused, and the ids are per frame."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("scipy")
motmetrics = pytest.importorskip("motmetrics")
from stream_fakes import frame_number, numbered_frame  # noqa: E402

from benchmarks import tracking  # noqa: E402
from zsseg_rt.outputs.tracks_sink import read_tracks  # noqa: E402
from zsseg_rt.runtime.result import Result  # noqa: E402


class SequenceEngine:
    """Engine-like: each frame's labels are the sequence's map of the frame's number (``numbered_frame``)."""

    def __init__(self, labels):
        self.labels = labels
        self.class_names = list(tracking.NAMES)
        self.backend = types.SimpleNamespace(name="sequence")
        self.weights_banner = ""
        self.device_stats = None

    def set_classes(self, names):
        self.class_names = list(names)

    def __call__(self, frame):
        if isinstance(frame, list):
            return [self(item) for item in frame]
        labels = self.labels[frame_number(frame)]
        return Result(labels=labels.copy(), scores=np.ones(labels.shape, np.float32), class_names=self.class_names)


def _folder(tmp_path: Path, count: int) -> str:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(count):
        cv2.imwrite(str(folder / f"{index:04d}.png"), numbered_frame(index, (tracking.HEIGHT, tracking.WIDTH)))
    return str(folder)


def test_a_tracked_session_writes_motchallenge_tracks_that_score_against_the_truth(tmp_path):
    from zsseg_rt.stream import Session

    sequence = tracking.sequences(frames=16)["crossing"]
    folder, tracks = _folder(tmp_path, 16), tmp_path / "tracks.txt"
    handed = []
    with Session(
        [f"hall={folder}"], SequenceEngine(sequence.labels), tracks_out=str(tracks), outputs=["null"]
    ) as session:
        for item in session:
            handed.append((item.frame.index, [(o.track_id, o.box) for o in item.objects if o.class_id]))
    assert session.exit_code == 0 and [index for index, _ in handed] == list(range(16))
    assert all(track_id is not None for _, found in handed for track_id, _ in found)
    written = motmetrics.io.loadtxt(str(tracks), fmt="mot15-2D")  # its loader: boxes from 1, moved back by 1
    frames = sorted({int(frame) for frame, _ in written.index})
    assert frames == list(range(1, 17))  # MOTChallenge's frames from 1: the label map 000000 is frame 1
    boxes = {
        (int(f), int(i)): tuple(int(v) for v in row[["X", "Y", "Width", "Height"]])
        for (f, i), row in written.iterrows()
    }
    rows = tracks.read_text().splitlines()
    assert all(row.endswith(",-1,-1,-1") and len(row.split(",")) == 10 for row in rows)
    hypotheses = [[] for _ in range(16)]
    every = {}
    for line in rows:
        frame, track_id, x, y, w, h = (int(v) for v in line.split(",")[:6])
        assert boxes[(frame, track_id)] == (x - 1, y - 1, w, h)  # motmetrics reads the box the loop handed out
        every.setdefault(frame - 1, []).append((track_id, (x - 1, y - 1, w, h)))
        if track_id in {i for _, found in handed for i, b in found}:
            hypotheses[frame - 1].append((track_id, (x - 1, y - 1, w, h)))
    assert read_tracks(str(tracks)) == every  # the package's reader: the run's own numbering, from 0
    assert hypotheses == [found for _, found in handed]  # the file holds what the loop handed out
    result = tracking.score(sequence.truth, hypotheses)
    assert result["switches"] == 0 and result["idf1"] == 1.0 and result["tracks"] == 3
    assert session.summary["outputs"][-1]["kind"] == "tracks" or any(
        output.get("kind") == "tracks" for output in session.summary["outputs"]
    )


def test_robot_outputs_carry_the_track_ids(tmp_path):
    pytest.importorskip("mcap_ros2")
    from test_robot_objects import read_mcap_ros2_decoder

    from zsseg_rt.stream import Session

    sequence = tracking.sequences(frames=8)["fast"]
    folder, mcap = _folder(tmp_path, 8), tmp_path / "out.mcap"
    handed = []
    for item in Session([f"hall={folder}"], SequenceEngine(sequence.labels), outputs=[str(mcap)], track=True):
        handed.append([o.track_id for o in item.objects])
    messages = read_mcap_ros2_decoder(mcap)
    arrays = [m for topic, _, m in messages if topic == "/hall/objects"]
    notes = [m for topic, _, m in messages if topic == "/hall/annotations"]
    assert [[d.id for d in array.detections] for array in arrays] == [[str(i) for i in ids] for ids in handed]
    names = {i: n for ids in handed for i, n in zip(ids, ["floor", "person", "person"])}
    for note, ids in zip(notes, handed):
        assert [text.text.split(" #")[1] for text in note.texts] == [str(i) for i in ids]
        assert all(text.text.split(" #")[0] in names.values() for text in note.texts)
    # the person keeps its id from frame to frame (the fast one, 18 px a frame)
    assert len({ids[1] for ids in handed[:7]}) == 1


def test_tracks_out_without_tracked_objects_is_refused_by_the_sink(tmp_path):
    from zsseg_rt.outputs.sink_base import SinkError
    from zsseg_rt.outputs.tracks_sink import TracksSink
    from zsseg_rt.runtime.objects import find_objects

    sink = TracksSink(str(tmp_path / "t.txt"))
    result = types.SimpleNamespace(frame_objects=find_objects(np.ones((8, 8), np.uint8), ["a", "b"]))
    with pytest.raises(SinkError, match=r"--tracks-out writes tracked objects: give --track"):
        sink.write_result(types.SimpleNamespace(index=0), result)
    sink.abort()
    assert not (tmp_path / "t.txt").exists() and list(tmp_path.iterdir()) == []
