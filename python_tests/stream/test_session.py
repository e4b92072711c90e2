"""``zsseg_rt.stream.Session`` (issue 80, item 1): what ``zsseg camera`` runs, from Python. Its results in the app's
own loop (``for item in session``) are the frames' labels its outputs hold; ``run()`` writes the same files and
statistics as the command on the same input; SIGINT during the app's loop stops the stream as it stops the command
(the outputs finalised and put in place, exit 130), and so does a ``break`` inside ``with Session(...)`` (a bare
``break``, an exception: python_tests/stream/test_session_endings.py). The command's own behaviour:
python_tests/cli/test_cli_camera*.py (which run through the Session)."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import write_band_clip  # noqa: E402

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.outputs.labels import read_labels  # noqa: E402

FRAMES = 5
COUNTERS = ("processed", "captured", "dropped", "reconnects", "decode_errors", "frames_missing", "state", "name")


def _clip(tmp_path):
    return write_band_clip(tmp_path / "clip.avi", frames=FRAMES, fps=10.0, size=(64, 48))


def _visible(folder) -> list:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def test_a_session_hands_its_results_to_the_apps_loop(tmp_path, tiny_bundle):
    """Every frame's result, in order, with its source and number; each is the label map its --labels-out folder
    holds for that frame (the outputs are written as the app reads), and the summary counts them."""
    from zsseg_rt.stream import Session

    clip, labels = _clip(tmp_path), tmp_path / "labels"
    seen = []
    with Session([f"front={clip}"], tiny_bundle, "a,b", labels_out=str(labels)) as session:
        for item in session:
            seen.append((item.source, item.frame.index, item.result.labels.copy()))
    assert [(source, index) for source, index, _ in seen] == [("front", i) for i in range(FRAMES)]
    for _, index, maps in seen:
        assert np.array_equal(read_labels(str(labels), index), maps)
    assert session.exit_code == 0 and session.summary["processed"] == FRAMES
    assert _visible(labels) == [f"{i:06d}.png" for i in range(FRAMES)] + ["classes.json"]


def test_run_writes_what_the_command_writes(tmp_path, tiny_bundle, capsys):
    """``Session.run()`` and ``zsseg camera`` on the same clip: the same label maps and the same counters in the
    statistics file (timings aside), exit 0 both."""
    from zsseg_rt.stream import Session

    clip = _clip(tmp_path)
    code = cli.main(
        ["camera", clip, "--bundle", tiny_bundle, "--classes", "a,b", "--no-progress"]
        + ["--labels-out", str(tmp_path / "cli_labels"), "--stats-json", str(tmp_path / "cli.json")]
    )
    assert code == 0, capsys.readouterr().err
    session = Session(
        clip, tiny_bundle, "a,b", labels_out=str(tmp_path / "labels"), stats_json=str(tmp_path / "session.json")
    )
    assert session.run() == 0
    with open(tmp_path / "cli.json", encoding="utf-8") as a, open(tmp_path / "session.json", encoding="utf-8") as b:
        command, ours = json.load(a), json.load(b)
    assert ours["processed"] == command["processed"] == FRAMES
    assert ours["engine_calls"] == command["engine_calls"] and ours["backend"] == command["backend"]
    for mine, theirs in zip(ours["sources"], command["sources"], strict=True):
        assert {k: mine.get(k) for k in COUNTERS} == {k: theirs.get(k) for k in COUNTERS}
    assert session.summary["processed"] == FRAMES
    for index in range(FRAMES):
        assert np.array_equal(
            read_labels(str(tmp_path / "labels"), index), read_labels(str(tmp_path / "cli_labels"), index)
        )


@pytest.mark.parametrize("how", ["sigint", "break"])
def test_an_interrupt_in_the_apps_loop_finalises_the_outputs(tmp_path, tiny_bundle, how):
    """SIGINT while the app's loop runs (the Session's handler: a flag the stream stops at, as the command's) or a
    ``break`` inside ``with Session(...)``: the stream stops after the frames already on their way, every output is finalised and put in place
    (the label maps of the frames processed, the statistics file; nothing staged left), and the exit code is the
    command's (130 after SIGINT, 0 after a break). Control: without the Session's handler SIGINT raises
    KeyboardInterrupt in the app's loop and no output is put in place."""
    from zsseg_rt.stream import Session

    clip = write_band_clip(tmp_path / "clip.avi", frames=40, fps=10.0, size=(64, 48))
    labels, stats = tmp_path / "labels", tmp_path / "stats.json"
    taken = 0
    with Session(clip, tiny_bundle, "a,b", labels_out=str(labels), stats_json=str(stats)) as session:
        for _item in session:
            taken += 1
            if taken == 2:
                if how == "break":
                    break
                os.kill(os.getpid(), signal.SIGINT)
    assert session.exit_code == (130 if how == "sigint" else 0)
    processed = session.summary["processed"]
    assert taken <= processed < 40  # stopped early, every frame taken processed
    assert _visible(labels) == [f"{i:06d}.png" for i in range(processed)] + ["classes.json"]
    with open(stats, encoding="utf-8") as handle:
        assert json.load(handle)["processed"] == processed
    assert _visible(tmp_path) == ["clip.avi", "labels", "stats.json"]  # nothing staged left beside them
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the app's handler back


def test_options_are_checked_by_name():
    from zsseg_rt.stream import Session

    with pytest.raises(TypeError, match=r"unknown option 'output'; did you mean 'outputs'\?"):
        Session("clip.avi", "bundle", "a", output=["x.mp4"])
    from pathlib import Path

    assert Session(Path("clip.avi"), "bundle", "a").sources == ["clip.avi"]  # a path, or a list of paths and URIs
    assert Session([Path("a.avi"), "0"], "bundle", "a").sources == ["a.avi", "0"]


def test_a_session_runs_the_apps_own_engine_and_leaves_it_open(tmp_path, tiny_bundle):
    """An Engine the app opened: the session segments with it (its vocabulary set when classes are given, the app's
    own again when the run ends), the label maps are its results, and it is still usable afterwards (the session
    closes only an Engine it opened).
    ``live=True`` needs the Engine's preset, refused in one line otherwise."""
    from zsseg_rt import Engine
    from zsseg_rt.errors import OptionError
    from zsseg_rt.stream import Session
    from zsseg_rt.stream.sources import open_source

    clip, labels = _clip(tmp_path), tmp_path / "labels"
    engine = Engine(tiny_bundle, classes="x,y,z", backend="onnxruntime")
    assert Session(clip, engine, "a,b", labels_out=str(labels)).run() == 0
    assert engine.class_names == ["x", "y", "z"]  # the app's vocabulary again (issue 87, L9: it stayed on a, b)
    with open_source(clip) as source:
        first = source.read()
    engine.set_classes("a,b")
    assert np.array_equal(read_labels(str(labels), 0), engine(first).labels)  # still open, the same maps
    with pytest.raises(OptionError, match=r"live=True sets the Engine's preset"):
        Session(clip, engine, "a,b", labels_out=str(tmp_path / "l2"), live=True).run()
