"""How a Session's run ends (issue 87, H2 and M6): it ends well, its outputs put in place, only when its loop ran to
the end, or was stopped by the user's own signal or ``close()`` (a ``break`` inside ``with Session(...)`` closes it at
the block's end). An exception out of the app's loop (in a ``with`` block or not), or the loop dropped unfinished (a
``break`` outside a ``with`` block, an iterator still open when the interpreter exits), is a failed run: every earlier
output is kept (``overwrite=True`` replaces nothing), ``exit_code`` is 1, and a warning names the partial file kept.
At 7f842ed each of them put its outputs in place with exit code 0: a 60-frame video was replaced by the 6 frames
done; an iterator open at exit printed an ImportError traceback and left a partial that refused the next run."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

cv2 = pytest.importorskip("cv2")
av = pytest.importorskip("av")
from stream_fakes import write_band_clip  # noqa: E402

FRAMES = 30


def _frames(path) -> int:
    """The video's frame count as PyAV decodes it."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _visible(folder) -> list:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


class AppBug(Exception):
    pass


@pytest.fixture
def finished_video(tmp_path, tiny_bundle):
    """A clip and a complete video of it (``out.mp4``, every frame) written by a Session run."""
    from zsseg_rt.stream import Session

    clip = write_band_clip(tmp_path / "clip.avi", frames=FRAMES, fps=10.0, size=(64, 48))
    out = tmp_path / "out.mp4"
    assert Session(clip, tiny_bundle, "a,b", outputs=[str(out)]).run() == 0
    assert _frames(out) == FRAMES
    return clip, out


@pytest.mark.time_bound(300)
@pytest.mark.parametrize("within", [True, False], ids=["with-block", "plain-for"])
def test_an_exception_out_of_the_apps_loop_replaces_nothing(finished_video, tiny_bundle, caplog, within):
    """The app's loop raises at its 5th item, ``overwrite=True`` over the complete video: the video keeps its
    frames, ``exit_code`` is 1, the partial file is named in a warning (and holds what was written)."""
    from zsseg_rt.stream import Session

    clip, out = finished_video
    session = Session(clip, tiny_bundle, "a,b", outputs=[str(out)], overwrite=True)
    with caplog.at_level(logging.WARNING, logger="zsseg_rt.stream"), pytest.raises(AppBug):
        if within:
            with session:
                for index, _item in enumerate(session):
                    if index == 4:
                        raise AppBug("bug in my app")
        else:
            for index, _item in enumerate(session):
                if index == 4:
                    raise AppBug("bug in my app")
    assert session.exit_code == 1  # was 0
    assert _frames(out) == FRAMES  # was 6: the partial run put in place
    partial = out.parent / "out.partial.mp4"
    said = [r.getMessage() for r in caplog.records if "failed run" in r.getMessage()]
    assert len(said) == 1 and str(partial) in said[0] and "no output was put in place" in said[0], said
    assert 5 <= _frames(partial) < FRAMES  # what was written, kept and named
    if within:
        assert "AppBug: bug in my app" in said[0]


@pytest.mark.time_bound(300)
def test_a_break_inside_with_or_close_ends_well_and_a_bare_break_does_not(tmp_path, tiny_bundle, caplog):
    """A ``break`` inside ``with Session(...)`` and ``close()`` in the loop: a good end (the video of the frames
    done put in place, exit 0). A ``break`` outside a ``with`` block drops the iterator unfinished: a failed run."""
    from zsseg_rt.stream import Session

    clip = write_band_clip(tmp_path / "clip.avi", frames=FRAMES, fps=10.0, size=(64, 48))
    with Session(clip, tiny_bundle, "a,b", outputs=[str(tmp_path / "w.mp4")]) as within:
        for index, _item in enumerate(within):
            if index == 2:
                break
    assert within.exit_code == 0 and 3 <= _frames(tmp_path / "w.mp4") < FRAMES
    closed = Session(clip, tiny_bundle, "a,b", outputs=[str(tmp_path / "c.mp4")])
    for index, _item in enumerate(closed):
        if index == 2:
            closed.close()
    assert closed.exit_code == 0 and 3 <= _frames(tmp_path / "c.mp4") < FRAMES
    bare = Session(clip, tiny_bundle, "a,b", outputs=[str(tmp_path / "b.mp4")])
    with caplog.at_level(logging.WARNING, logger="zsseg_rt.stream"):
        for index, _item in enumerate(bare):
            if index == 2:
                break
    assert bare.exit_code == 1
    assert not (tmp_path / "b.mp4").exists() and (tmp_path / "b.partial.mp4").exists()
    assert any("left unfinished without close()" in r.getMessage() for r in caplog.records)
    assert _visible(tmp_path) == ["b.partial.mp4", "c.mp4", "clip.avi", "w.mp4"]


_LEFT_OPEN = textwrap.dedent(
    """
    import sys
    from zsseg_rt.stream import Session

    s = Session([sys.argv[1]], sys.argv[2], classes="a,b", outputs=["ab.mp4"], labels_out="ABL",
                engine_options={"backend": "onnxruntime"})
    it = iter(s)
    [next(it) for _ in range(3)]
    """
)


@pytest.mark.time_bound(300)
def test_an_iterator_left_open_at_exit_is_a_failed_run_said_in_one_line(tmp_path, tiny_bundle):
    """A script takes 3 items and ends with its iterator open: no traceback (was an ImportError from the source's
    close during shutdown), nothing put in place (was ab.mp4 and ABL as a good run, or a 0-byte ab.partial.mp4),
    one warning naming the partial file, which holds the frames written; the next run with overwrite=True runs."""
    clip = write_band_clip(tmp_path / "clip.avi", frames=FRAMES, fps=10.0, size=(64, 48))
    script = tmp_path / "left_open.py"
    script.write_text(_LEFT_OPEN)
    done = subprocess.run(
        [sys.executable, str(script), clip, tiny_bundle], capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if "failed run" in line]
    assert len(said) == 1 and "the interpreter exited with the loop still open" in said[0], done.stderr[-3000:]
    assert "ab.partial.mp4" in said[0]
    assert _visible(tmp_path) == ["ab.partial.mp4", "clip.avi", "left_open.py"]  # no ab.mp4, no ABL
    assert 3 <= _frames(tmp_path / "ab.partial.mp4") < FRAMES
    from zsseg_rt.stream import Session

    assert Session(clip, tiny_bundle, "a,b", outputs=[str(tmp_path / "ab.mp4")], overwrite=True).run() == 0
    assert _frames(tmp_path / "ab.mp4") == FRAMES and not (tmp_path / "ab.partial.mp4").exists()


_SECOND_LOOP = textwrap.dedent(
    """
    import os, sys
    from zsseg_rt.stream import Session

    s = Session([sys.argv[1]], sys.argv[2], classes="a,b", outputs=["sl.mp4"], labels_out="SLL",
                engine_options={"backend": "onnxruntime"})
    first = iter(s)
    [next(first) for _ in range(2)]
    try:
        next(iter(s))
    except RuntimeError as exc:
        print("refused:", exc)
    next(first)  # the first loop goes on
    if sys.argv[3] == "close":
        s.close()
        print("exit_code", s.exit_code, sorted(os.listdir(".")))
    """
)


@pytest.mark.time_bound(300)
@pytest.mark.parametrize("end", ["close", "exit"])
def test_a_second_loop_is_refused_and_leaves_the_first_as_it_was(tmp_path, tiny_bundle, end):
    """A second ``iter(session)`` while the first loop runs: refused in one line, and the first loop is left as it
    was. ``close()`` then ends it well (exit 0, sl.mp4 and SLL in place, no owner lock left); a script that ends with
    it open is the failed run of an open loop (said once, rc 0). Before the fix the refused call took the Session's
    loop: ``close()`` did nothing (exit_code None, nothing in place, the lock files left) and the process aborted at
    exit ("terminate called without an active exception", rc 134)."""
    clip = write_band_clip(tmp_path / "clip.avi", frames=FRAMES, fps=10.0, size=(64, 48))
    script = tmp_path / "second_loop.py"
    script.write_text(_SECOND_LOOP)
    done = subprocess.run(
        [sys.executable, str(script), clip, tiny_bundle, end],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: a Session runs once: make a new one to run again" in done.stdout.splitlines(), done.stdout
    assert "terminate called" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    if end == "close":
        assert "exit_code 0 ['SLL', 'clip.avi', 'second_loop.py', 'sl.mp4']" in done.stdout, done.stdout
        assert 3 <= _frames(tmp_path / "sl.mp4") < FRAMES
    else:
        said = [line for line in done.stderr.splitlines() if "failed run" in line]
        assert len(said) == 1 and "the interpreter exited with the loop still open" in said[0], done.stderr[-3000:]
        assert _visible(tmp_path) == ["clip.avi", "second_loop.py", "sl.partial.mp4"]
    locks = [os.path.join(root, name) for root, _, names in os.walk(tmp_path) for name in names]
    assert not [path for path in locks if path.endswith(".zsseg-owner")], locks


def test_a_closed_session_refuses_to_run(tmp_path, tiny_bundle):
    """``close()`` before any run, then ``run()`` or a loop: refused in one line, nothing opened or written (before
    the fix the whole stream ran and wrote out.mp4 with exit 0)."""
    from zsseg_rt.stream import Session

    clip = write_band_clip(tmp_path / "clip.avi", frames=4, fps=10.0, size=(64, 48))
    session = Session(clip, tiny_bundle, "a,b", outputs=[str(tmp_path / "out.mp4")])
    session.close()
    with pytest.raises(RuntimeError, match=r"^this Session was closed: make a new one$"):
        session.run()
    with pytest.raises(RuntimeError, match=r"^this Session was closed: make a new one$"):
        iter(session)
    assert session.exit_code is None and session.engine is None and _visible(tmp_path) == ["clip.avi"]
