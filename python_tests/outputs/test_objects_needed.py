"""Whether a run finds each result's objects is one function, ``zsseg_rt.outputs.kinds.objects_needed``, read from
``objects``/``track`` and the output kinds' rows (``needs_objects``). Table-driven over every row: the answer, and what
the commands' call sites make of it (``Session``'s runner objects, which ``zsseg segment`` runs too since it is a
Session over its files, the sinks' ``SinkOptions.objects``, ``zsseg camera``'s robot outputs), equal the rules the three call sites had before they asked
the one function (written out here); a toy kind that needs objects, added with the registry's ``adding``, is the
control: it turns objects on where the old rules did not."""

from __future__ import annotations

import dataclasses
import itertools
from types import SimpleNamespace

import pytest
from toy_output_kind import ROW

from zsseg_rt.cli import camera_robots
from zsseg_rt.outputs import kinds
from zsseg_rt.outputs.kinds import FOUND, NO_OBJECTS, OUTPUT_KINDS, TRACKED, objects_needed
from zsseg_rt.runtime.objects import FrameObjects
from zsseg_rt.runtime.tracking import SourceTrackers
from zsseg_rt.stream.loop.session_options import object_finder, sink_options


def _old_answer(objects: bool, track: bool, tracks_out) -> str:
    """The rule of segment's finder and Session's runner objects before (tracked with --track or --tracks-out, else
    found with --objects); the sinks' objects were any of the three."""
    if track or tracks_out:
        return TRACKED
    return FOUND if objects else NO_OBJECTS


def _run_with(kind, objects: bool, track: bool) -> SimpleNamespace:
    """A run's options with ``kind`` in use: its example spec for -o, else its own option (tracks_out)."""
    given = SimpleNamespace(objects=objects, track=track, outputs=[], tracks_out=None, output=None)
    if kind.option == "-o":
        given.outputs = [kind.spec]
    else:
        setattr(given, kind.option.lstrip("-").replace("-", "_"), kind.spec)
    return given


class _Result:
    """What the finders call: ``objects()``, an empty frame's."""

    def objects(self):
        return FrameObjects(())


def _session_answer(options) -> str:
    made = object_finder(options, SimpleNamespace(options=SimpleNamespace(track_max_missed=None)), [])
    if isinstance(getattr(made, "trackers", made), SourceTrackers):  # (SequenceTrackers: a tracker per sequence)
        return TRACKED
    assert made in (True, False)
    return FOUND if made else NO_OBJECTS


CASES = [
    pytest.param(kind, objects, track, id=f"{kind.name}-objects{int(objects)}-track{int(track)}")
    for kind, (objects, track) in itertools.product(list(OUTPUT_KINDS), itertools.product((False, True), repeat=2))
]


@pytest.mark.parametrize(("kind", "objects", "track"), CASES)
def test_every_row_gives_the_old_answer_at_every_call_site(kind, objects, track):
    options = _run_with(kind, objects, track)
    expected = _old_answer(objects, track, options.tracks_out)
    assert objects_needed(options) == expected
    assert _session_answer(options) == expected
    assert sink_options(options, 30.0, ["cam"]).objects is (expected != NO_OBJECTS)
    camera_args = SimpleNamespace(objects=objects, track=track, tracks_out=options.tracks_out, output=options.outputs)
    assert camera_robots.sink_options(camera_args, 30.0, ["cam"]).objects is (expected != NO_OBJECTS)


def test_only_the_tracks_row_needs_objects():
    assert {kind.name: kind.needs_objects for kind in OUTPUT_KINDS if kind.needs_objects} == {"tracks": TRACKED}


def test_given_names_replace_the_options_and_serve_asks_too():
    assert objects_needed(objects=True) == FOUND and objects_needed() == NO_OBJECTS
    assert objects_needed(SimpleNamespace(objects=True), objects=False) == NO_OBJECTS
    assert objects_needed(SimpleNamespace(objects=False, tracks_out="t.txt")) == TRACKED
    # segment's -o/--output is its folder (a string), not a list of specs: never read as an output kind
    with OUTPUT_KINDS.adding(dataclasses.replace(ROW, needs_objects=FOUND), first=True):
        assert objects_needed(SimpleNamespace(output="runs/a.count", outputs=None)) == NO_OBJECTS
        assert objects_needed(SimpleNamespace(output=["a.count"])) == FOUND  # zsseg camera's -o: a list


@pytest.mark.parametrize("option", ["-o", "--toy-objects"])
def test_control_a_toy_kind_that_needs_objects_turns_them_on(option):
    toy = dataclasses.replace(ROW, name="toy_objects", option=option, needs_objects=FOUND)
    options = SimpleNamespace(objects=False, track=False, tracks_out=None, outputs=[], toy_objects=None)
    if option == "-o":
        options.outputs = ["run.count"]
    else:
        options.toy_objects = "run.count"
    assert _old_answer(False, False, None) == NO_OBJECTS  # the old rules knew no kind's needs
    with OUTPUT_KINDS.adding(toy, first=True):
        assert objects_needed(options) == FOUND
        assert _session_answer(options) == FOUND
        assert sink_options(options, 30.0, ["cam"]).objects is True
        options.track = True  # tracked wins over found
        assert objects_needed(options) == TRACKED
    options.track = False
    assert objects_needed(options) == NO_OBJECTS  # the block over: the table as it was
    assert kinds.output_kind_named("toy_objects") is None


def test_a_row_with_an_unknown_need_is_refused():
    with OUTPUT_KINDS.adding(dataclasses.replace(ROW, name="toy_bad", needs_objects="yes"), first=True):
        with pytest.raises(ValueError, match="needs_objects must be one of"):
            objects_needed(SimpleNamespace(objects=False))
