"""A Session checks its options as ``zsseg camera`` checks its flags (issue 87, M4 and M5): a value the command refuses
is refused by ``Session(...)`` in one line, in a Python caller's words (the option's name, what it takes, what was
given; no flag), before anything opens; a string given as ``outputs`` is one output. At 7f842ed ``max_frames=0``
hung, ``fps=-1`` failed in PyAV after the model loaded (leaving a partial file), ``fps=inf`` in the source thread,
``max_frames="5"`` in the loop, ``preview=70000`` in socketserver, and ``keyframe_every=0``, ``width=-5``,
``max_reconnects=-1``, ``stabilize_delay=-1`` ran; ``outputs="ostr.mp4"`` wrote folders o, s, t, r, m, p, 4."""

from __future__ import annotations

import os

import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import count_frames, write_band_clip  # noqa: E402

REFUSED = [
    ("max_frames", 0, "a whole number >= 1"),
    ("max_frames", -3, "a whole number >= 1"),
    ("max_frames", "5", "a whole number >= 1"),
    ("fps", -1, "a finite number > 0"),
    ("fps", 0, "a finite number > 0"),
    ("fps", float("inf"), "a finite number > 0"),
    ("preview", 70000, "a TCP port number 0..65535 (0: any free port)"),
    ("keyframe_every", 0, "a whole number >= 1"),
    ("width", -5, "a whole number >= 1"),
    ("max_reconnects", -1, "a whole number >= 0"),
    ("stabilize_delay", -1, "a whole number >= 1"),
    ("loop", "yes", "True or False"),
    ("in_flight", 0, "a whole number >= 1"),
]


@pytest.mark.parametrize(("name", "value", "expected"), REFUSED, ids=[f"{n}={v!r}" for n, v, _ in REFUSED])
def test_a_value_the_command_refuses_is_refused_at_once(tmp_path, monkeypatch, name, value, expected):
    """Refused by the constructor (nothing opened: the bundle need not exist), one line naming the option by its
    Python name, what it takes and the value given; nothing written."""
    from zsseg_rt.stream import Session

    monkeypatch.chdir(tmp_path)
    clip = write_band_clip(tmp_path / "clip.avi", frames=3)
    with pytest.raises(ValueError) as caught:
        Session(clip, "no-bundle-here", "a,b", outputs=["x.mp4"], **{name: value})
    message = str(caught.value)
    assert message == f"{name}: expected {expected}, or None, got {value!r}" or message == (
        f"{name}: expected {expected}, got {value!r}"
    ), message
    assert "\n" not in message and "--" not in message  # one line, no flag
    assert sorted(os.listdir(tmp_path)) == ["clip.avi"]


def test_the_options_object_is_checked_too():
    from zsseg_rt.stream import SessionOptions

    with pytest.raises(ValueError, match=r"^max_frames: expected a whole number >= 1, or None, got 0$"):
        SessionOptions(max_frames=0)
    with pytest.raises(ValueError, match=r"^outputs: expected each output as a string"):
        SessionOptions(outputs=["a.mp4", 3])
    assert SessionOptions(outputs="o.mp4").outputs == ["o.mp4"]
    assert SessionOptions(max_frames=5, fps=12.5, preview=0, max_reconnects=0).max_frames == 5  # taken


@pytest.mark.time_bound(300)
def test_a_string_is_one_output(tmp_path, tiny_bundle, monkeypatch):
    """``Session(..., outputs="ostr.mp4", max_frames=2).run()``: ostr.mp4 with 2 frames, nothing else written (was a
    folder per character and frame images in the current folder)."""
    from zsseg_rt.stream import Session

    monkeypatch.chdir(tmp_path)
    clip = write_band_clip(tmp_path / "clip.avi", frames=5)
    assert Session(clip, tiny_bundle, "a,b", outputs="ostr.mp4", max_frames=2).run() == 0
    assert sorted(os.listdir(tmp_path)) == ["clip.avi", "ostr.mp4"]
    assert count_frames(tmp_path / "ostr.mp4") == 2


@pytest.mark.parametrize(
    ("keyword", "value", "said", "flag"),
    [
        ("outputs", ["-"], "outputs '-'", "-o -"),
        ("outputs", ["ok.mp4", "-"], "outputs '-'", "-o -"),
        ("labels_out", "-", "labels_out='-'", "--labels-out -"),
        ("save_json", "-", "save_json='-'", "--save-json -"),
        ("stats_json", "-", "stats_json='-'", "--stats-json -"),
        ("tracks_out", "-", "tracks_out='-'", "--tracks-out -"),
    ],
)
def test_a_dash_for_an_output_is_refused_in_python_too(tmp_path, monkeypatch, keyword, value, said, flag):
    """Review of this wave, item 3: ``Session(outputs=["-"])`` wrote a folder named ``-``, ``save_json="-"``,
    ``stats_json="-"`` and ``tracks_out="-"`` a file ``-`` (exit 0); the command refused ``-o -`` only. One rule for
    every output the run writes: refused by the constructor, the flag's words in ``cli``; nothing made."""
    from zsseg_rt.errors import OptionError
    from zsseg_rt.stream import Session

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionError) as caught:
        Session(["clip.avi"], "no-bundle", "a", **{keyword: value})
    rest = ": writing to standard output is not supported (outputs are files, put in place when the run ends): give "
    assert str(caught.value) == f"{said}{rest}a file or folder name"
    assert caught.value.cli == f"{flag}{rest}a file or folder name"
    assert os.listdir(tmp_path) == []
