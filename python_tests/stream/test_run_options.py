"""The run's options as rows (issue 88, item 1): ``SessionOptions``' fields are the rows of one table
(``zsseg_rt.options.run_rows.RUN_OPTIONS``), which generates ``zsseg camera``'s and ``zsseg segment``'s flags, checks
a value from Python and from the command line in the same words, and whose resolved values ``--stats-json`` records
so that a run can be replayed. A Python caller reads its own words (no flag); the command line its flags."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import count_frames, write_band_clip  # noqa: E402


def _parser(command):
    from zsseg_rt.cli import build_parser

    return build_parser(command)


def _actions(command):
    import argparse

    root = _parser(command)
    sub = next(action for action in root._actions if isinstance(action, argparse._SubParsersAction))
    return {flag: action for action in sub.choices[command]._actions for flag in action.option_strings}


def test_the_options_are_the_rows():
    """Every field of SessionOptions is a row of the same name and default, in the same order (a field without a
    row, or a default said twice differently, fails here)."""
    from zsseg_rt.options.run_rows import RUN_OPTIONS
    from zsseg_rt.stream import SessionOptions

    fields = dataclasses.fields(SessionOptions)
    assert [field.name for field in fields] == RUN_OPTIONS.names()
    built = SessionOptions()
    for row in RUN_OPTIONS:
        value = getattr(built, row.name)
        assert (list(value) if row.name == "outputs" else value) == (
            list(row.default) if row.name == "outputs" else row.default
        ), row.name


@pytest.mark.parametrize("command", ["camera", "segment"])
def test_the_commands_flags_are_generated_from_the_rows(command):
    """Each row naming the command is its flag, with the row's help on that command and its default; the camera's
    video options in their section; no flag is declared twice."""
    from zsseg_rt.options.run_rows import RUN_OPTIONS

    actions = _actions(command)
    rows = RUN_OPTIONS.for_command(command)
    assert rows, command
    for row in rows:
        action = actions[row.flag]
        assert action.dest == row.name and action.help == row.flag_help(command), row.name
        assert action.default == row.default, row.name
    shared = {row.name for row in RUN_OPTIONS.for_command("segment")}
    assert shared == {"save_json", "objects", "track", "tracks_out", "overwrite", "alpha", "legend"}
    # segment says its own words where they differ, camera its own
    assert actions["--no-legend"].help == RUN_OPTIONS["legend"].flag_help(command)
    assert _actions("camera")["--no-legend"].help != _actions("segment")["--no-legend"].help


@pytest.mark.parametrize("command", ["camera", "segment"])
def test_every_rows_example_is_taken_by_python_and_by_its_flag(command):
    """The row's example (its flag's words and the value they give, not the default): taken by SessionOptions (with
    the example of the option it requires), and on the command its flag's words parse to the same value."""
    from zsseg_rt.options.run_rows import RUN_OPTIONS
    from zsseg_rt.stream import SessionOptions

    base = ["x", "--bundle", "b", "--classes", "a"]
    for row in RUN_OPTIONS:
        needed = {row.requires[0]: RUN_OPTIONS[row.requires[0]].example[1]} if row.requires else {}
        built = SessionOptions(**{row.name: row.example[1], **needed})
        assert getattr(built, row.name) != row.default, row.name
    parser = _parser(command)
    for row in RUN_OPTIONS.for_command(command):
        words, value = row.example
        args = parser.parse_args([command, *base, row.flag, *words])
        assert getattr(args, row.name) == value and value != row.default, row.name


REFUSED = [  # (option, value, its flag's text): what the issue measured, and every kind of bound
    ("max_frames", 0, "0"),
    ("keyframe_every", 0, "0"),
    ("fps", -5, "-5"),
    ("fps", float("inf"), "inf"),
    ("preview", 70000, "70000"),
    ("alpha", 1.5, "1.5"),
    ("alpha", -0.1, "-0.1"),
    ("max_reconnects", -1, "-1"),
    ("width", 0, "0"),
]


@pytest.mark.parametrize(("name", "value", "text"), REFUSED, ids=[f"{n}={t}" for n, _, t in REFUSED])
def test_python_and_the_flag_refuse_in_the_same_words(capsys, name, value, text):
    """``SessionOptions(name=value)`` says ``name: expected E, got V``; ``zsseg camera --flag TEXT`` exits 2 with
    ``argument --flag: expected E, got 'TEXT'``: the same E (a Python caller is also told None is taken)."""
    from zsseg_rt import cli
    from zsseg_rt.errors import OptionError, ZssegError
    from zsseg_rt.options.run_rows import RUN_OPTIONS
    from zsseg_rt.stream import SessionOptions

    row = RUN_OPTIONS[name]
    with pytest.raises(OptionError) as caught:
        SessionOptions(**{name: value})
    assert isinstance(caught.value, (ValueError, ZssegError)) and caught.value.option == name
    python = str(caught.value)
    assert python.startswith(f"{name}: expected ") and "--" not in python
    expected = python.split(": expected ", 1)[1].rsplit(", got ", 1)[0].replace(", or None", "")
    for command in row.commands:
        with pytest.raises(SystemExit) as stop:
            cli.main([command, "x", "--bundle", "b", "--classes", "a", f"{row.flag}={text}"])
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert stop.value.code == 2
        assert line == f"zsseg {command}: error: argument {row.flag}: expected {expected}, got {text!r}", line


def test_a_zero_where_a_range_starts_at_zero_is_taken():
    """Both ends of a range are taken (the row's low end and high end), one step past either is not."""
    from zsseg_rt.stream import SessionOptions

    assert SessionOptions(alpha=0, max_reconnects=0, preview=0).alpha == 0
    assert SessionOptions(alpha=1, preview=65535).preview == 65535


def test_an_option_needing_another_says_so_in_each_words(tmp_path, capsys, monkeypatch):
    """``preview_readonly=True`` without ``preview``: Python's words name the options, the command's its flags; the
    bundle is never read (it does not exist), nothing is written."""
    from zsseg_rt import cli
    from zsseg_rt.errors import OptionError
    from zsseg_rt.stream import Session

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionError) as caught:
        Session("clip.avi", "no-bundle", "a", preview_readonly=True)
    assert str(caught.value) == "preview_readonly=True applies to the preview page: give preview too"
    code = cli.main(["camera", "clip.avi", "--bundle", "no-bundle", "--classes", "a", "--preview-readonly"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert line == "zsseg camera: error: --preview-readonly applies to the --preview page: give --preview PORT too"
    assert os.listdir(tmp_path) == []


def test_the_sessions_refusals_are_in_a_python_callers_words(tmp_path, monkeypatch):
    """Refusals a Session finds beyond one option's value name its arguments, never a flag; the command line says
    the same with its flags (``cli``)."""
    from zsseg_rt.errors import OptionError
    from zsseg_rt.stream import Session

    monkeypatch.chdir(tmp_path)
    clip = write_band_clip(tmp_path / "clip.avi", frames=2)
    (tmp_path / "c.txt").write_text("a\n")
    cases = [
        (dict(classes="a,b", class_file="c.txt"), "give the vocabulary once: classes='a,b' or class_file='c.txt'"),
        (dict(classes="a", outputs=["o.mp4"], stabilize_delay=2, live=True), "stabilize_delay=2 waits for frames"),
        (dict(classes="a", outputs=["o.mp4"], adaptive_keyframes=True, keyframe_every=1), "adaptive_keyframes=True"),
    ]
    for keywords, start in cases:
        classes = keywords.pop("classes")
        with pytest.raises(OptionError) as caught:
            Session([clip], "no-bundle", classes, **keywords).run()
        message = str(caught.value)
        assert message.startswith(start) and "--" not in message, message
        assert caught.value.cli.startswith(("give the vocabulary once: --classes", "--")), caught.value.cli
    with pytest.raises(OptionError) as caught:
        Session([clip, clip], "no-bundle", "a", outputs=["one.mp4"]).run()
    assert str(caught.value).startswith("outputs 'one.mp4' names one output, but 2 sources are given")
    assert "--" not in str(caught.value) and caught.value.cli.startswith("-o one.mp4 names one output")
    assert sorted(os.listdir(tmp_path)) == ["c.txt", "clip.avi"]


@pytest.mark.time_bound(300)
def test_stats_json_records_the_resolved_options_and_a_replay_writes_the_same(tmp_path, tiny_bundle, monkeypatch):
    """``--stats-json``'s ``"options"``: the sources, bundle, vocabulary, every run option and every Engine option
    resolved; ``Session(**replay_arguments(...))`` runs the same again (the same frames written, the same options
    recorded but the output names)."""
    from zsseg_rt import cli
    from zsseg_rt.stream.loop.session import Session, replay_arguments

    monkeypatch.chdir(tmp_path)
    clip = write_band_clip(tmp_path / "clip.avi", frames=4)
    argv = ["camera", str(clip), "--bundle", str(tiny_bundle), "--classes", "a,b", "--backend", "onnxruntime"]
    argv += ["-o", "one.mp4", "--max-frames", "3", "--alpha", "0.25", "--stats-json", "one.json", "--no-progress"]
    assert cli.main(argv) == 0
    recorded = json.loads((tmp_path / "one.json").read_text())["options"]
    assert recorded["sources"] == [str(clip)] and recorded["model"] == str(tiny_bundle)
    assert recorded["classes"] == "a,b" and recorded["class_names"] == ["a", "b"]
    assert recorded["run"]["max_frames"] == 3 and recorded["run"]["alpha"] == 0.25
    # every path absolute (review of this wave, item 5: "one.mp4" as typed, and a replay elsewhere wrote there)
    assert recorded["run"]["outputs"] == [str(tmp_path / "one.mp4")]
    assert recorded["run"]["stats_json"] == str(tmp_path / "one.json")
    assert recorded["engine"]["backend"] == "onnxruntime" and recorded["engine"]["mode"] == "fast"
    two = {"outputs": [str(tmp_path / "two.mp4")], "stats_json": str(tmp_path / "two.json")}
    again = dict(recorded, run=dict(recorded["run"], **two))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # replayed from another folder: the same files read and written
    assert Session(**replay_arguments(again)).run() == 0
    assert count_frames(tmp_path / "one.mp4") == count_frames(tmp_path / "two.mp4") == 3
    replayed = json.loads((tmp_path / "two.json").read_text())["options"]
    assert replayed == again and os.listdir(elsewhere) == []


@pytest.mark.time_bound(300)
def test_a_run_of_the_apps_engine_is_replayed_only_with_an_engine(tmp_path, tiny_bundle, monkeypatch):
    """Review of this wave, item 5: a run given an Engine of the app's recorded ``"model": "the Engine"`` and no
    vocabulary, and its replay said "give the vocabulary: ..."; now it is refused for what it is (no Engine in a
    record), naming the Engine's bundle (recorded, absolute), and runs with the Engine passed as ``model``."""
    from zsseg_rt.errors import OptionError
    from zsseg_rt.runtime import Engine
    from zsseg_rt.stream import Session, replay_arguments

    monkeypatch.chdir(tmp_path)
    clip = write_band_clip(tmp_path / "clip.avi", frames=3)
    engine = Engine(tiny_bundle, classes=["a", "b"], backend="onnxruntime")
    session = Session([clip], engine, outputs=["e.mp4"], max_frames=2)
    assert session.run() == 0
    recorded = session.summary["options"]
    bundle = os.path.abspath(tiny_bundle)
    assert recorded["model"] == "the Engine" and recorded["bundle"] == bundle and recorded["classes"] is None
    with pytest.raises(OptionError) as caught:
        replay_arguments(recorded)
    assert str(caught.value) == (
        "this run was given an Engine of the app's (model 'the Engine'): a record holds no Engine, and its bundle "
        "opened again would lose the app's own settings: pass one, replay_arguments(stats['options'], "
        f"model=Engine(...)) (its bundle: {bundle})"
    )
    again = replay_arguments(recorded, model=engine)
    again["options"].outputs = [str(tmp_path / "f.mp4")]
    assert Session(**again).run() == 0 and count_frames(tmp_path / "f.mp4") == count_frames(tmp_path / "e.mp4") == 2


def test_a_per_source_output_is_refused_in_its_own_words(tmp_path, monkeypatch, capsys):
    """Review of this wave, item 2: ``--tracks-out two.txt`` with two sources was refused as "-o two.txt names one
    output ... e.g. -o two_{source}.txt", ``tracks_out='t.txt'`` as "outputs 't.txt' ..."; each output is named in
    its own words, its example too (``labels_out`` as well), nothing opened."""
    from zsseg_rt import cli
    from zsseg_rt.errors import OptionError
    from zsseg_rt.stream import Session

    monkeypatch.chdir(tmp_path)
    clip = write_band_clip(tmp_path / "clip.avi", frames=2)
    said = "names one output, but 2 sources are given (clip, front): put {source} (each source's name) or {index} "
    said += "(its position) in it, e.g."
    for keyword, value, example, flag in (
        ("tracks_out", "t.txt", "t_{source}.txt", "--tracks-out"),
        ("labels_out", "L", "L/{source}/", "--labels-out"),
    ):
        with pytest.raises(OptionError) as caught:
            Session([clip, f"front={clip}"], "no-bundle", "a", outputs=["null"], **{keyword: value}).run()
        assert str(caught.value) == f"{keyword}={value!r} {said} {keyword}={example!r}"
        assert caught.value.cli == f"{flag} {value} {said} {flag} {example}"
    argv = ["camera", clip, f"front={clip}", "--bundle", "no-bundle", "--classes", "a", "--track"]
    assert cli.main([*argv, "--tracks-out", "two.txt", "-o", "null"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[-1] == f"zsseg camera: error: --tracks-out two.txt {said} --tracks-out two_{{source}}.txt", err
    assert sorted(os.listdir(tmp_path)) == ["clip.avi"]


def test_the_packages_errors_are_one_hierarchy():
    """A Python caller catches every refusal of the package as ``zsseg_rt.errors.ZssegError``, each still the
    built-in error it was (a ValueError, an OSError, a RuntimeError); the command line prints its own words."""
    from zsseg_rt.console.errors import CliError, format_error
    from zsseg_rt.errors import BundleError, OptionError, ZssegError
    from zsseg_rt.io_safety import OutputWriteError
    from zsseg_rt.outputs.plan import OutputRefused
    from zsseg_rt.outputs.sink_base import SinkError
    from zsseg_rt.stream.sources.base import SourceError

    kinds = {
        OptionError: ValueError,
        BundleError: RuntimeError,
        OutputRefused: OSError,
        OutputWriteError: OSError,
        SinkError: RuntimeError,
        SourceError: RuntimeError,
        CliError: Exception,
    }
    for kind, builtin in kinds.items():
        assert issubclass(kind, ZssegError) and issubclass(kind, builtin), kind
    refused = OptionError("max_frames: expected a whole number >= 1, or None, got 0", "max_frames", cli="--max-frames")
    assert format_error(refused) == "--max-frames" and str(refused).startswith("max_frames:")


def test_a_frame_source_given_as_an_object_is_kept_and_recorded_by_its_name(tmp_path, tiny_bundle):
    """A ``FrameSource`` among a Session's sources (alone or in a list) is kept as it is, beside the paths; the
    resolved options (``--stats-json``'s ``"options"``) record it by its ``name``, a path made absolute."""
    from zsseg_rt.stream import CallableSource, Session

    source = CallableSource(lambda: iter(()), live=False, name="robot-arm")
    clip = write_band_clip(tmp_path / "clip.avi", frames=2)
    session = Session([source, clip], tiny_bundle, classes="a,b", outputs=["null"])
    assert session.sources[0] is source and session.sources[1] == clip
    recorded = json.loads(json.dumps(session.resolved_options()))
    assert recorded["sources"] == ["robot-arm", os.path.abspath(clip)]
    alone = Session(source, tiny_bundle, classes="a,b", outputs=["null"])
    assert alone.sources == [source] and alone.resolved_options()["sources"] == ["robot-arm"]
