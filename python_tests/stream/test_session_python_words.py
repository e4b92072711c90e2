"""A Session speaks to a script in a script's words (issue 87, L9): its refusals name its keywords, never a flag (the
command line's words ride along in ``.cli``), an Engine option given as a Session keyword is said to be the Engine's
with where it goes, and an app's own Engine gets its vocabulary back when the run ends."""

from __future__ import annotations

import importlib.util
import json
import os
import re

import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import write_band_clip  # noqa: E402


def test_an_engine_option_given_to_the_session_says_where_it_goes(tmp_path):
    """G15: ``object_min_area=0.0`` got "Session got an unknown option 'object_min_area'" and no pointer."""
    from zsseg_rt.stream import Session

    with pytest.raises(TypeError) as caught:
        Session([str(tmp_path / "clip.avi")], "no-bundle", "a", object_min_area=0.0)
    assert str(caught.value) == (
        "Session got the Engine option 'object_min_area': give it in engine_options={'object_min_area': 0.0} (the "
        "keywords of the Engine the session opens; an Engine of your own takes it: Engine(bundle, "
        "object_min_area=0.0))"
    )
    with pytest.raises(TypeError, match="^Session got an unknown option 'max_frame'; did you mean 'max_frames'"):
        Session([str(tmp_path / "clip.avi")], "no-bundle", "a", max_frame=3)  # a run option misspelt: as before


def test_a_missing_package_is_said_with_the_sessions_keyword(tmp_path, monkeypatch):
    """G18's kind: the refusal of an output whose packages are missing raised a CliError naming `zsseg camera ...
    -o`; now an OptionError naming ``outputs=[...]`` and what to install, the command's words in ``cli``."""
    from zsseg_rt.errors import OptionError
    from zsseg_rt.stream import Session

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mcap_ros2" else real(name, *a))
    monkeypatch.chdir(tmp_path)
    clip = write_band_clip(tmp_path / "clip.avi", frames=2)
    with pytest.raises(OptionError) as caught:
        Session([clip], "no-bundle", "a", outputs=["out.mcap"]).run()
    message = str(caught.value)
    assert message.startswith("Session needs ") and "for outputs=['out.mcap'], which this environment lacks" in message
    # (mcap_ros2 hidden here; a runtime-only install lacks mcap too: "(mcap, mcap_ros2 not installed)")
    assert re.search(r'\((mcap, )?mcap_ros2 not installed\): pip install "zsseg_rt\[robots\]"$', message), message
    assert "-o" not in message
    assert caught.value.cli.startswith("zsseg camera needs ") and "for -o out.mcap," in caught.value.cli
    assert sorted(os.listdir(tmp_path)) == ["clip.avi"]


def test_an_existing_output_is_refused_with_overwrite_true(tmp_path, monkeypatch):
    """The output plan's refusals to a script name ``overwrite=True`` and the keyword (``outputs``, ``labels_out``),
    not ``--overwrite`` and ``-o``; the command line's in ``cli``."""
    from zsseg_rt.outputs.plan import OutputRefused
    from zsseg_rt.stream import Session

    monkeypatch.chdir(tmp_path)
    clip = write_band_clip(tmp_path / "clip.avi", frames=2)
    (tmp_path / "o.mp4").write_bytes(b"an earlier video")
    with pytest.raises(OutputRefused) as caught:
        Session([clip], "no-bundle", "a", outputs=["o.mp4"]).run()
    assert str(caught.value) == (
        "'o.mp4' exists already: pass overwrite=True to replace it (outputs are replaced only once the run has ended "
        "well), or choose another outputs"
    )
    assert caught.value.cli == (
        "'o.mp4' exists already: pass --overwrite to replace it (outputs are replaced only once the run has ended "
        "well), or choose another -o"
    )
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "000000.png").write_bytes(b"a map of the user's own")
    with pytest.raises(OutputRefused) as caught:
        Session([clip], "no-bundle", "a", labels_out="labels", overwrite=True).run()
    assert "overwrite=True replaces only the label maps" in str(caught.value), str(caught.value)
    assert str(caught.value).endswith("choose another labels_out") and "--" not in str(caught.value)
    assert caught.value.cli.endswith("choose another --labels-out")
    assert (tmp_path / "o.mp4").read_bytes() == b"an earlier video"


def test_the_apps_engine_gets_its_vocabulary_back(tmp_path, tiny_bundle):
    """G19: ``Session([clip], engine, classes="p,q")`` with the app's Engine (``x,y,z``) left it answering
    ``['p', 'q']`` after the run. The run labels with p, q; the Engine is the app's again when it ends, by run()
    and by a loop left early in a with block."""
    from zsseg_rt import Engine
    from zsseg_rt.stream import Session

    clip = write_band_clip(tmp_path / "clip.avi", frames=3)
    engine = Engine(tiny_bundle, classes="x,y,z", backend="onnxruntime")
    before = engine.vocabulary_snapshot()
    labels = tmp_path / "labels"
    assert Session([clip], engine, "p,q", labels_out=str(labels)).run() == 0
    assert json.loads((labels / "classes.json").read_text())["classes"] == ["p", "q"]  # the run's vocabulary
    assert engine.class_names == ["x", "y", "z"] and engine.vocabulary_snapshot() is before  # the app's, as it was
    with Session([clip], engine, "p,q", labels_out=str(tmp_path / "l2")) as session:
        for item in session:
            assert item.result.class_names == ["p", "q"] and engine.class_names == ["p", "q"]
            break
    assert engine.class_names == ["x", "y", "z"]
    assert engine(_frame(clip)).class_names == ["x", "y", "z"]  # and segments with it


def _frame(clip):
    capture = cv2.VideoCapture(str(clip))
    ok, frame = capture.read()
    capture.release()
    assert ok
    return frame


def test_a_taken_preview_port_is_said_with_the_keyword():
    """The preview's refusal named ``--preview`` to a script; now ``preview=PORT``, the flag in ``cli``."""
    import socket

    from zsseg_rt.outputs.sink_base import SinkError
    from zsseg_rt.outputs.sinks import MjpegSink

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SinkError) as refused:
            MjpegSink(port, "127.0.0.1")
    assert str(refused.value).startswith(f"cannot serve the MJPEG preview on 127.0.0.1:{port} (")
    assert str(refused.value).endswith("; pick another port: preview=PORT") and "--" not in str(refused.value)
    assert refused.value.cli.endswith("; pick another --preview port")


def test_no_output_names_null_for_a_loop_that_reads_the_results_only(tmp_path, tiny_bundle, monkeypatch):
    """Review of this wave, item 8: ``Session(track=True)`` on a headless machine, iterated for ``item.objects`` only,
    was refused naming a video, a folder and the preview, not ``outputs=['null']``; the advice it gives now runs: each
    item's objects with their track ids, nothing written."""
    from zsseg_rt.console import opencv_build
    from zsseg_rt.errors import OptionError
    from zsseg_rt.stream import Session

    monkeypatch.setattr(opencv_build, "opencv_has_gui", lambda info=None: False)
    monkeypatch.chdir(tmp_path)
    clip = write_band_clip(tmp_path / "clip.avi", frames=3)
    with pytest.raises(OptionError) as caught:
        list(Session([clip], tiny_bundle, "a,b", track=True))
    assert str(caught.value).endswith(", or outputs=['null'] (nothing written: the results in your own loop only)")
    assert caught.value.cli.endswith(", or -o null (nothing written: the run's statistics only)")
    items = list(Session([clip], tiny_bundle, "a,b", track=True, outputs=["null"]))
    assert len(items) == 3 and all(item.objects is not None for item in items)
    ids = [obj.track_id for item in items for obj in item.objects]
    assert ids and min(ids) >= 1  # every object tracked (ids from 1)
    assert sorted(os.listdir(tmp_path)) == ["clip.avi"]
