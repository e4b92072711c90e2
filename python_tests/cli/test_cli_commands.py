"""One registration style for every ``zsseg`` command (issue 52 item 3): a row of ``zsseg_rt.cli.COMMANDS`` (name,
``module:add_command``, one-line help, what it needs) and a module of ``zsseg_rt/cli/`` whose ``add_command`` makes
the command's parser with ``command_parser`` (so the help ``zsseg -h`` lists and the command's own are the row's,
written once); a command whose extra is missing is refused in one line naming the pip line that installs it.

Before, ``cli.py`` registered commands four ways (inline, a helper, a lazy table whose help lines repeated each
module's, and ``convert``'s own branch), and no test tied the repeated help lines together."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import re
from pathlib import Path
from typing import List

import pytest

from zsseg_rt import cli
from zsseg_rt.cli import COMMANDS, Command, Needs

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "zsseg_rt"
TABLE = PACKAGE / "cli" / "__init__.py"  # the one place that calls add_parser (command_parser, the stand-ins)


def add_parser_calls(path: Path, source: str) -> List[str]:
    """``file:line`` of every ``<x>.add_parser(...)`` call in ``source``."""
    return [
        f"{path.name}:{node.lineno}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_parser"
    ]


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _helps(parser: argparse.ArgumentParser):
    """{command: the one-line help `zsseg -h` shows} of a parser built by ``cli.build_parser``."""
    return {choice.dest: choice.help for choice in _subparsers(parser)._choices_actions}


def row_problems(row: Command) -> List[str]:
    """What is wrong with ``row``: its ``add`` registers (on a parser of its own) no command, another command, more
    than one, or a parser whose help is not the row's."""
    module, _, function = row.add.partition(":")
    parser = argparse.ArgumentParser(prog="zsseg")
    sub = parser.add_subparsers(dest="command")
    returned = getattr(importlib.import_module(module), function)(sub)
    problems = []
    if list(sub.choices) != [row.name]:
        problems.append(f"{row.name}: {row.add} registers {list(sub.choices)}, not [{row.name!r}]")
    elif returned is not sub.choices[row.name]:
        problems.append(f"{row.name}: {row.add} does not return the parser it registered")
    helps = _helps(parser)
    if row.name in helps and helps[row.name] != row.one_line():
        problems.append(f"{row.name}: the parser's help {helps[row.name]!r} is not the row's {row.one_line()!r}")
    return problems


def test_add_parser_is_called_only_by_the_table():
    """Every command's parser is made by ``command_parser`` (the row's help): no ``add_parser`` call anywhere in the
    package but in zsseg_rt/cli/__init__.py."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != TABLE:
            found += add_parser_calls(path, path.read_text(encoding="utf-8"))
    assert not found, f"add_parser called outside zsseg_rt/cli/__init__.py (use command_parser and a row): {found}"
    assert add_parser_calls(TABLE, TABLE.read_text(encoding="utf-8")), "the finder no longer sees the table's calls"


def test_the_add_parser_finder_finds_a_command_registered_by_hand(tmp_path):
    """Control of the scan above: a module that makes its parser with ``add_parser`` (a help of its own) is
    reported; one that goes through ``command_parser`` is not."""
    own = "def add_command(subparsers):\n    p = subparsers.add_parser('inspect', help='inspect a bundle')\n"
    table = "def add_command(subparsers):\n    p = command_parser(subparsers, 'inspect')\n"
    assert add_parser_calls(tmp_path / "inspect.py", own) == ["inspect.py:2"]
    assert add_parser_calls(tmp_path / "inspect.py", table) == []


@pytest.mark.parametrize("row", COMMANDS, ids=[row.name for row in COMMANDS])
def test_every_row_registers_its_command_with_the_rows_help(row):
    assert row_problems(row) == []


def test_the_row_checker_finds_a_module_with_a_help_of_its_own(tmp_path, monkeypatch):
    """Control of row_problems: a module that registers its command with another help, one that registers another
    name, and one that registers nothing are each reported; a module built on command_parser is not."""
    (tmp_path / "zz_cli_commands_fake.py").write_text(
        "from zsseg_rt.cli import command_parser\n"
        "def own_help(subparsers):\n    return subparsers.add_parser('zz-fake', help='a second copy of the help')\n"
        "def other_name(subparsers):\n    return subparsers.add_parser('zz-other', help='the help of the row')\n"
        "def nothing(subparsers):\n    return None\n"
        "def table(subparsers):\n    return command_parser(subparsers, 'segment')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = "zz_cli_commands_fake:"
    assert row_problems(Command("zz-fake", fake + "own_help", "the help of the row")) == [
        "zz-fake: the parser's help 'a second copy of the help' is not the row's 'the help of the row'"
    ]
    assert row_problems(Command("zz-fake", fake + "other_name", "the help of the row")) == [
        f"zz-fake: {fake}other_name registers ['zz-other'], not ['zz-fake']"
    ]
    assert row_problems(Command("zz-fake", fake + "nothing", "the help of the row")) == [
        f"zz-fake: {fake}nothing registers [], not ['zz-fake']"
    ]
    segment = next(row for row in COMMANDS if row.name == "segment")
    assert row_problems(Command("segment", fake + "table", segment.help)) == []


def test_the_parser_lists_the_rows_in_order_with_their_help_built_in_full_or_not():
    """``zsseg -h`` (commands by name and help only) and the full tree (every module imported) list the same
    commands, the table's, in its order, each with its row's help."""
    rows = {row.name: row.one_line() for row in COMMANDS}
    summary = _helps(cli.build_parser(""))
    assert list(summary) == [row.name for row in COMMANDS] and summary == rows
    full = cli.build_parser()
    assert _helps(full) == rows
    assert all(len(_subparsers(full).choices[name]._actions) > 2 for name in rows)  # built in full: their options


def test_every_command_module_has_a_row():
    """A module of zsseg_rt/cli/ with an ``add_command`` is a command: the table has its row (no command registered
    some other way, or forgotten)."""
    named = {row.add.partition(":")[0] for row in COMMANDS}
    modules = {
        f"zsseg_rt.cli.{path.stem}"
        for path in (PACKAGE / "cli").glob("*.py")
        if any(
            isinstance(node, ast.FunctionDef) and node.name == "add_command"
            for node in ast.parse(path.read_text(encoding="utf-8")).body
        )
    }
    assert modules == named, (sorted(modules - named), sorted(named - modules))


# ---------------------------------------------------------------------------------------------------- what it needs
# A command line each command's parser accepts (the check runs before the command: nothing here is read)
_ARGV = {
    "export": ["export", "out_bundle"],
    "segment": ["segment", "photo.jpg", "--bundle", "b", "--classes", "a"],
    "build-engine": ["build-engine", "b"],
    "convert": ["convert", "in.pth", "out"],
    "camera": ["camera", "0", "--bundle", "b", "--classes", "a"],
    "train": ["train", "tiny_test"],
    "eval": ["eval", "b", "--dataset", "voc"],
    "batch": ["batch", "in", "out", "--bundle", "b", "--classes", "a"],
    "serve": ["serve", "--bundle", "b", "--classes", "a"],
    "profile": ["profile", "--bundle", "b"],
    "demo": ["demo"],
}
NEEDING = [(row, needs) for row in COMMANDS for needs in row.needs]


def test_every_command_has_a_command_line_here():
    assert sorted(_ARGV) == sorted(row.name for row in COMMANDS)


@pytest.mark.parametrize("row,needs", NEEDING, ids=[f"{row.name}-{needs.extras}" for row, needs in NEEDING])
def test_a_missing_extra_is_refused_in_one_line_naming_what_to_install(row, needs, tmp_path, capsys, monkeypatch):
    """Each module a row needs, absent (``find_spec`` finds nothing): the command says, in one line and before it
    does anything, what it needs and the pip line; exit code 1."""
    monkeypatch.chdir(tmp_path)  # a command that ran anyway would write here
    missing = needs.modules[-1]
    others = {module for each in row.needs for module in each.modules} - {missing}  # installed, here or not

    def find_spec(name, *args):
        return None if name == missing else object() if name in others else real(name, *args)

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    ran = []
    module, _, function = row.add.partition(":")
    add = getattr(importlib.import_module(module), function)

    def add_recording(subparsers):  # the command's own parser, its func replaced by a recorder
        parser = add(subparsers)
        parser.set_defaults(func=lambda args: ran.append(args) or 0)
        return parser

    monkeypatch.setattr(importlib.import_module(module), function, add_recording)
    assert cli.main(_ARGV[row.name]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"zsseg {row.name}: error: {needs.refusal(row.name, [missing])}"], lines
    assert needs.install in lines[0] and missing in lines[0] and not ran and not list(tmp_path.iterdir())


def test_the_check_passes_a_command_whose_needs_are_installed(tmp_path, capsys, monkeypatch):
    """Control: with nothing missing, the same command line reaches the command."""
    ran = []
    from zsseg_rt.cli import segment

    add = segment.add_command

    def add_recording(subparsers):
        parser = add(subparsers)
        parser.set_defaults(func=lambda args: ran.append(args) or 0)
        return parser

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "cv2" else real(name, *a))
    monkeypatch.setattr(segment, "add_command", add_recording)
    assert cli.main(_ARGV["segment"]) == 0 and len(ran) == 1


def test_the_extras_the_rows_name_exist_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    for row in COMMANDS:
        for needs in row.needs:
            named = needs.extras.split(",")
            assert all(extra in extras for extra in named), (row.name, named)
            requirements = " ".join(req for extra in named for req in extras[extra]).lower()
            for module in needs.modules:  # each module comes from one of the extras it names
                distribution = {"cv2": "opencv", "open_clip": "open_clip", "ray": "ray"}.get(module, module)
                assert distribution in requirements, (row.name, module, requirements)


def test_a_command_whose_module_cannot_be_imported_says_what_it_needs(capsys, monkeypatch):
    """A row whose module does not import: ``zsseg -h`` still lists it, its help and its refusal say what it needs
    (one line, exit 1)."""
    row = Command("zz-gone", "zsseg_rt.cli.zz_no_such_module:add_command", "a command", (Needs("X", "zz", ("os",)),))
    monkeypatch.setattr(cli, "COMMANDS", (*COMMANDS, row))
    parser = cli.build_parser()
    assert _helps(parser)["zz-gone"] == '(unavailable: needs X: pip install "zsseg_rt[zz]")'
    assert cli.main(["zz-gone"]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("zsseg zz-gone: error: this command needs X: ") and "zz_no_such_module" in line, line
    assert 'pip install "zsseg_rt[zz]"' in line and "\n" not in line


# What each command cannot run without, written out here (not read from the table under test): a row that loses a
# requirement (serve without Ray) would otherwise pass every test generated from the table itself.
EXPECTED_MODULES = {
    "export": {"torch", "open_clip", "onnx"},
    "segment": {"cv2"},
    "build-engine": set(),
    "convert": {"torch", "open_clip"},
    "camera": {"cv2"},
    "train": {"torch", "open_clip"},
    "eval": set(),
    "batch": {"ray"},
    "serve": {"ray"},
    "profile": {"cv2"},
    "demo": {"torch", "open_clip", "onnx", "cv2"},
}


def test_each_command_needs_what_it_imports():
    found = {row.name: {m for needs in row.needs for m in needs.modules} for row in COMMANDS}
    assert found == EXPECTED_MODULES


# The command tests mirror zsseg_rt/cli/ (issue 63, item 5): a module of zsseg_rt/cli/ has its tests in
# python_tests/cli/test_cli_<module>.py, except the commands whose end-to-end tests need what one folder's fixtures or
# one CI session give: those stay there, named here (every option of every command is also passed by
# cli/test_cli_options.py's coverage table, and every command's one-line errors by cli/test_cli_errors.py).
TESTED_ELSEWHERE = {
    "batch": ("scale/test_batch.py", "scale/test_scale_cli.py"),  # a Ray cluster: scale/'s session fixtures
    "serve": ("scale/test_scale_cli.py", "scale/test_ray_signal_phases.py"),
    "scale_options": ("scale/test_scale_cli.py",),  # batch's and serve's shared options (Ray's address, CPUs)
    "train": ("train/test_training.py",),  # torch training: CI runs train/ on its fake CUDA device
    "eval": ("eval/test_family_options.py", "train/test_training.py", "scale/test_parallel_eval.py"),
    "convert": ("models/zegclip/test_official_import.py", "models/cliprc/test_cliprc_official.py"),
    # each precision's preparation with its backend's tests
    # zsseg camera's progress bar (the Session's progress=): its lines with the camera's runs
    "camera_progress": ("cli/test_cli_camera.py", "cli/test_cli_camera_multi.py"),
    # zsseg segment's lines per image and --json (the Session's on_written=): with segment's runs
    "segment_lines": ("cli/test_cli_segment.py", "cli/test_cli_segment_memory.py"),
    "build_engine": (
        "runtime/test_cpu_auto.py",
        "runtime/test_openvino_precision.py",
        "prepare/test_tensorrt_two_stage.py",
    ),
}
# the command a module's tests run
COMMAND_OF = {
    "scale_options": "serve",
    "build_engine": "build-engine",
    "camera_progress": "camera",
    "segment_lines": "segment",
}


def test_the_command_tests_mirror_the_cli_package():
    """Every module of zsseg_rt/cli/ has python_tests/cli/test_cli_<module>.py or an entry in TESTED_ELSEWHERE whose
    files exist and run the command; no test file here names a module that is gone (control: a module without
    either is reported)."""
    tests = ROOT / "python_tests"
    modules = sorted(p.stem for p in (PACKAGE / "cli").glob("*.py") if not p.stem.startswith("__"))

    def problems(modules, elsewhere):
        found = []
        for module in modules:
            mirrored = (tests / "cli" / f"test_cli_{module}.py").is_file()
            if mirrored == (module in elsewhere):
                found.append(
                    f"{module}: {'both a test_cli_ file and' if mirrored else 'neither a test_cli_ file nor'}"
                    " an entry in TESTED_ELSEWHERE"
                )
            for path in elsewhere.get(module, ()) if not mirrored else ():
                command = COMMAND_OF.get(module, module)
                source = (tests / path).read_text(encoding="utf-8") if (tests / path).is_file() else ""
                if not re.search(rf"[\"']{re.escape(command)}[\"']", source):  # the command as an argv item
                    found.append(f"{module}: {path} is missing or never runs {command!r}")
        return found

    assert problems(modules, TESTED_ELSEWHERE) == []
    assert problems([*modules, "zz_new"], TESTED_ELSEWHERE) == [
        "zz_new: neither a test_cli_ file nor an entry in TESTED_ELSEWHERE"
    ]
    # the control of the file check: a file that only mentions the command in prose does not count
    assert problems(["eval"], {"eval": ("eval/test_metrics.py",)}) == [
        "eval: eval/test_metrics.py is missing or never runs 'eval'"
    ]
    stems = {p.stem for p in (tests / "cli").glob("test_cli_*.py")}
    shared = {"test_cli_commands", "test_cli_help", "test_cli_options", "test_cli_messages", "test_cli_errors"}
    shared.add("test_cli_engine_flags")  # the Engine's flags of every command that opens one (zsseg_rt.options)
    shared.add("test_cli_output_owner")  # one owner per output across the commands that write (camera, segment)
    shared.add("test_cli_auto_backend_warning")  # backend auto's word on --precision (segment, camera)
    shared.add("test_cli_objects")  # --objects across the commands that write them (segment, camera)
    shared.add("test_cli_tracks")  # --track and --tracks-out across the commands that write them (camera, segment)
    shared.add("test_cli_advice_words")  # refusals in the running command's flags, never another's (issue 87, L3)
    shared.add("test_cli_option_notes")  # a device-only option on the host path, said in one line (segment, camera)
    orphans = [
        s for s in stems - shared if not any(s == f"test_cli_{m}" or s.startswith(f"test_cli_{m}_") for m in modules)
    ]
    assert orphans == []
