"""One owner per output (issue 75, item 2 and E1): every output of an ``OutputPlan`` (a video, a stats file, a
folder, whatever kind is declared through the plan) is held by its run with an owner lock from its check to its end;
a second run on it is refused at its start with the first run's process, ``--overwrite`` included, and a lock left by
a killed run is taken over and said.

The probe (B53/B54 at 0707000): two ``zsseg camera`` runs on one ``-o``: both rc 0, both "wrote N frames", the file
held the other run's frames; a second run's ``--overwrite`` removed the running run's ``out.partial.mp4`` as "left by
an interrupted run". No sleeps: a run is held at a phase of its start (the phase hook's socket) or by a handshake on
its stdout, and every wait is bounded with a message of its own."""

from __future__ import annotations

import os
import signal
import sys

import pytest
from processes import popen_text, reaped

from zsseg_rt.outputs.owner import FOLDER_LOCK, OwnerLock, owner_lock_path
from zsseg_rt.outputs.plan import FolderKind, OutputPlan, OutputRefused

KIND = FolderKind("labels", "label maps", __import__("re").compile(r"^\d{6}\.png$"))
HOLDER = r"""
import sys
from zsseg_rt.outputs.plan import OutputPlan
plan = OutputPlan(False)
plan.stream("-o", sys.argv[1])
plan.check()
print("claimed", flush=True)
sys.stdin.readline()  # held until the test says (or kills this process)
plan.abort()
"""


def _declare(plan, kind, path):
    if kind == "stream":
        return plan.stream("-o", str(path))
    if kind == "file":
        return plan.file("--stats-json", str(path))
    return plan.folder("--labels-out", str(path), KIND)


def _read_line(process, what: str, seconds: float = 120.0) -> str:
    """A line of ``process``'s stdout within ``seconds``, or a failure naming ``what`` was awaited."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(seconds):
            raise AssertionError(f"no {what} within {seconds:g} s")
    line = process.stdout.readline()
    assert line, f"{what}: the process ended first ({process.wait(timeout=60)}): {process.stderr.read()}"
    return line.strip()


@pytest.mark.time_bound(120)
@pytest.mark.parametrize("kind", ["stream", "file", "folder"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_second_run_on_an_output_is_refused_with_the_first_runs_process(tmp_path, kind, overwrite):
    """E1: the first plan holds its output from its check; a second one (another run: here another plan of this
    process, which flock tells apart as it does two processes) is refused at its check, --overwrite included, naming
    the first run's process; what the first run wrote (its partial video) is untouched. Control: once the first run
    has ended, the second one runs."""
    path = tmp_path / ("out.mp4" if kind == "stream" else "stats.json" if kind == "file" else "labels")
    first = OutputPlan(False)
    output = _declare(first, kind, path)
    first.check()
    if kind == "stream":
        with open(output.partial, "wb") as handle:
            handle.write(b"the first run's frames")
    second = OutputPlan(overwrite)
    _declare(second, kind, path)
    with pytest.raises(OutputRefused) as refused:
        second.check()
    assert f"is being written by another run now (process {os.getpid()})" in str(refused.value), refused.value
    assert "--overwrite never takes an output from a running run" in str(refused.value)
    second.prepare()  # nothing to remove: the check refused
    if kind == "stream":
        assert open(output.partial, "rb").read() == b"the first run's frames"  # was: removed as a leftover
        first.commit()
        assert path.read_bytes() == b"the first run's frames"
    else:
        first.abort()
    assert not os.path.lexists(owner_lock_path(str(path), kind == "folder"))  # the claim ended with the run
    third = OutputPlan(True)
    _declare(third, kind, path)
    third.check()  # the control: nobody holds it now
    third.abort()


@pytest.mark.time_bound(60)
def test_every_output_the_plan_declares_is_claimed_and_a_refused_check_claims_nothing(tmp_path):
    """Rule 5 for every kind the plan declares (a kind added later is declared through the plan too): one lock each,
    held from check() to commit(); a check that refuses (an existing file without --overwrite) gives them up."""
    plan = OutputPlan(False)
    plan.stream("-o", str(tmp_path / "v.mp4"))
    plan.file("--stats-json", str(tmp_path / "s.json"))
    plan.folder("--labels-out", str(tmp_path / "labels"), KIND)
    plan.check()
    expected = {owner_lock_path(e.path, e.is_folder) for e in plan.entries}
    assert {owner.lock_path for owner in plan.owners} == expected and len(expected) == 3
    assert all(os.path.exists(path) for path in expected)
    assert open(tmp_path / "labels" / FOLDER_LOCK).read().split()[0] == str(os.getpid())
    plan.commit()
    assert plan.owners == [] and not any(os.path.lexists(path) for path in expected)
    assert sorted(os.listdir(tmp_path)) == []  # the labels folder made for its lock went again (left empty)
    (tmp_path / "s.json").write_text("{}")
    refused = OutputPlan(False)
    refused.stream("-o", str(tmp_path / "v.mp4"))
    refused.file("--stats-json", str(tmp_path / "s.json"))
    with pytest.raises(OutputRefused, match="exists already"):
        refused.check()
    assert refused.owners == [] and sorted(os.listdir(tmp_path)) == ["s.json"]


@pytest.mark.time_bound(120)
def test_a_lock_left_by_a_killed_run_is_taken_over_and_said(tmp_path):
    """A run killed with SIGKILL leaves its lock file; the kernel released its lock: the next run takes the output
    over and says whose it was. Control: while that run lived, the same check was refused with its process."""
    out = tmp_path / "out.mp4"
    holder = popen_text([sys.executable, "-c", HOLDER, str(out)], stdin=True)
    with reaped(holder):
        assert _read_line(holder, "'claimed' from the holding run") == "claimed"
        alive = OutputPlan(True)
        alive.stream("-o", str(out))
        with pytest.raises(OutputRefused, match=f"another run now \\(process {holder.pid}\\)"):
            alive.check()
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=60) == -signal.SIGKILL
    for stream in (holder.stdin, holder.stdout, holder.stderr):
        stream.close()
    assert open(owner_lock_path(str(out))).read().split() == [str(holder.pid)]  # left behind by the killed run
    said = []
    plan = OutputPlan(False)
    plan.stream("-o", str(out))
    plan.check(say=said.append)
    assert said == [
        f"-o {out}: its owner lock ({owner_lock_path(str(out))}) was left by process {holder.pid}, which no longer "
        "runs (a killed run): taken over"
    ]
    assert open(owner_lock_path(str(out))).read().split() == [str(os.getpid())]
    plan.abort()


@pytest.mark.time_bound(60)
def test_one_output_under_two_names_has_one_owner(tmp_path):
    """``out.mp4``, ``./sub/../out.mp4`` and a symbolic link to it are one output: one lock."""
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "out.mp4", tmp_path / "link.mp4")
    names = [tmp_path / "out.mp4", tmp_path / "sub" / ".." / "out.mp4"]
    (tmp_path / "out.mp4").write_bytes(b"")
    names.append(tmp_path / "link.mp4")
    first = OwnerLock(str(names[0]), "-o")
    first.acquire()
    try:
        for name in names[1:]:
            with pytest.raises(OSError, match="being written by another run now"):
                OwnerLock(str(name), "-o").acquire()
    finally:
        first.release()
    again = OwnerLock(str(names[2]), "-o")
    again.acquire()  # the control: free again
    again.release()
