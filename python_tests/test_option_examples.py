"""Every option row carries an example (issue 88 item 5, torch2trt's converter + test pairing): a value other than its
default, as its flag's words and the Python value they give, which the generic tests run through every command
(``python_tests/cli/test_cli_engine_flags.py``, ``python_tests/stream/test_run_options.py``). Here, for every row of
the Engine's table and of the run's: the example is there, is not the default, passes the row's own check (the one
``Engine(...)`` and ``SessionOptions(...)`` run), and its words parse, on each command whose parser
(``zsseg_rt.cli.build_parser``) holds the flag, to that value. Control: toy rows whose example is the default, is
refused by their check, parses to another value or is missing are each reported."""

from __future__ import annotations

import contextlib
import io

import pytest

from zsseg_rt.cli import build_parser
from zsseg_rt.console.arguments import ENGINE_COMMANDS, PARTIAL_ENGINE_COMMANDS, engine_kwargs, engine_rows
from zsseg_rt.options import ENGINE_OPTIONS, EngineOption
from zsseg_rt.options.run_rows import RUN_OPTIONS
from zsseg_rt.options.run_table import WHOLE, RunOption
from zsseg_rt.options.table import Made, example_refusal, example_value

# a command line of each command that parses (its positional arguments and required flags)
HEADS = {
    "segment": ["segment", "p.png", "--bundle", "b", "--classes", "a"],
    "camera": ["camera", "0", "--bundle", "b", "--classes", "a"],
    "batch": ["batch", "in", "out", "--bundle", "b", "--classes", "a"],
    "serve": ["serve", "--bundle", "b", "--classes", "a"],
    "eval": ["eval", "checkpoint.pth"],
    "profile": ["profile", "--bundle", "b"],
}


def _engine_commands(row):
    return [command for command in ENGINE_COMMANDS + tuple(PARTIAL_ENGINE_COMMANDS) if row in engine_rows(command)]


def _engine_parsed(command, row, argv):
    return engine_kwargs(build_parser(command).parse_args(argv), command)[row.name]


def _run_commands(row):
    return list(row.commands) if row.flag is not None else []


def _run_parsed(command, row, argv):
    return getattr(build_parser(command).parse_args(argv), row.name)


def example_problems(table, commands_of, parsed):
    """What is wrong with the rows' examples of ``table``, one line each ([]: nothing)."""
    problems = []
    for row in table:
        if row.example is None:
            problems.append(f"{row.name}: no example")
            continue
        words, value = row.example[0], example_value(row.example)
        if value == row.default:
            problems.append(f"{row.name}: its example {value!r} is its default")
        try:
            row.check_value(value)
        except ValueError as error:
            problems.append(f"{row.name}: its row refuses its example: {error}")
        for command in commands_of(row):
            given = f"zsseg {command} {' '.join([row.flag, *words])}"
            try:
                with contextlib.redirect_stderr(io.StringIO()):
                    got = parsed(command, row, HEADS[command] + [row.flag, *words])
            except SystemExit:
                problems.append(f"{row.name}: {given} does not parse")
                continue
            if got != value or type(got) is not type(value):
                problems.append(f"{row.name}: {given} gives {got!r}, its example says {value!r}")
    return problems


def test_every_engine_rows_example_is_no_default_taken_by_its_row_and_parsed_by_every_command():
    assert example_problems(ENGINE_OPTIONS, _engine_commands, _engine_parsed) == []
    commands = {row.name: _engine_commands(row) for row in ENGINE_OPTIONS}
    assert commands["backend"] == ["segment", "camera", "batch", "serve", "eval"]  # the parse ran on each
    assert commands["mode"] == ["segment", "camera", "batch", "serve", "profile"] and commands["verify"] == []


def test_every_run_rows_example_is_no_default_taken_by_its_row_and_parsed_by_every_command():
    assert example_problems(RUN_OPTIONS, _run_commands, _run_parsed) == []
    assert _run_commands(RUN_OPTIONS["alpha"]) == ["camera", "segment"] and _run_commands(RUN_OPTIONS["outputs"]) == []


def test_a_python_only_rows_example_is_made_when_read():
    """The ``model`` row's example is an object a row cannot hold (a PyTorch model), made when read."""
    torch = pytest.importorskip("torch")
    row = ENGINE_OPTIONS["model"]
    assert isinstance(row.example[1], Made) and row.example[0] is None
    assert isinstance(example_value(row.example), torch.nn.Module)


def test_a_bad_example_is_reported():
    """Control: toy rows (``adding``) whose example is the default, is refused by the row's check, parses to another
    value or is missing: each reported by name; a malformed example is refused when the row is made."""
    toys = [
        EngineOption("toy_same", 0, "int", "a test's row", flag="--toy-same", minimum=0, example=(("0",), 0)),
        EngineOption("toy_refused", 0, "int", "a test's row", flag="--toy-refused", minimum=0, example=(("-1",), -1)),
        EngineOption("toy_other", 0, "int", "a test's row", flag="--toy-other", minimum=0, example=(("3",), 2)),
        EngineOption("toy_none", 0, "int", "a test's row", flag="--toy-none", minimum=0),
    ]
    with contextlib.ExitStack() as stack:
        for toy in toys:
            stack.enter_context(ENGINE_OPTIONS.adding(toy))
        problems = example_problems(ENGINE_OPTIONS, _engine_commands, _engine_parsed)
    assert problems[0] == "toy_same: its example 0 is its default"
    assert problems[1] == "toy_refused: its row refuses its example: toy_refused: expected a whole number >= 0, got -1"
    assert problems[2:6] == [f"toy_refused: zsseg {c} --toy-refused -1 does not parse" for c in ENGINE_COMMANDS]
    assert problems[6:10] == [
        f"toy_other: zsseg {c} --toy-other 3 gives 3, its example says 2" for c in ENGINE_COMMANDS
    ]
    assert problems[10:] == ["toy_none: no example"]
    toy = RunOption("toy_frames", None, WHOLE, "a test's row", low=1, flag="--toy-frames", example=(("0",), 0))
    with RUN_OPTIONS.adding(toy):
        problems = example_problems(RUN_OPTIONS, _run_commands, _run_parsed)
    assert problems == [
        "toy_frames: its row refuses its example: toy_frames: expected a whole number >= 1, or None, got 0",
        "toy_frames: zsseg camera --toy-frames 0 does not parse",
    ]
    assert example_problems(ENGINE_OPTIONS, _engine_commands, _engine_parsed) == []  # (the toys gone)
    assert example_refusal("toy", "--toy", ("3", 3)) == (
        "toy: its flag's example words are a tuple of strings (() for a switch), got '3'"
    )
    with pytest.raises(ValueError, match=r"^toy: a row without a flag gives its example as \(None, value\)"):
        EngineOption("toy", 0, "int", "a test's row", example=(("3",), 3))
    with pytest.raises(ValueError, match=r"^toy: an example is \(the flag's words, the value they give\), got 3$"):
        RunOption("toy", None, WHOLE, "a test's row", commands=(), example=3)
