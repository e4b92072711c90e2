"""The run options' flags (``zsseg camera``, ``zsseg segment``), generated from their rows
(:data:`zsseg_rt.options.run_rows.RUN_OPTIONS`), as :func:`zsseg_rt.console.arguments.add_engine_arguments` generates
the Engine's: the same flag, help and value check on each command, a value refused by argparse in the words of the
row (``argument --max-frames: expected a whole number >= 1, got '0'``: what ``SessionOptions(max_frames=0)`` says in
Python), then the parsed flags turned back into the options' values (:func:`run_values`). An app with a parser of its
own gets a Session's flags the same way (``add_run_arguments(parser, "camera")``, then
``SessionOptions(**run_values(args, "camera"))``)."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any, Callable, Dict, Iterator, Optional

from zsseg_rt.errors import FLAG_WORDS, flag_words
from zsseg_rt.options.run_rows import RUN_OPTIONS
from zsseg_rt.options.run_table import PORT, REAL, WHOLE, RunOption

__all__ = ["add_run_arguments", "flag_words", "in_flag_words", "run_flag_type", "run_values"]


def add_run_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The run options' flags ``zsseg command`` takes (the rows whose ``commands`` name it), in the table's order; a
    row's ``group`` is a section of the help. Each is parsed into the option's name (``args.max_frames``,
    ``args.legend`` for ``--no-legend``)."""
    groups: Dict[str, Any] = {}
    for row in RUN_OPTIONS.for_command(command):
        where: Any = parser
        if row.group:
            if row.group not in groups:
                groups[row.group] = parser.add_argument_group(row.group)
            where = groups[row.group]
        flag, text = str(row.flag), row.flag_help(command)
        if row.is_switch:
            action = "store_false" if row.negated else "store_true"
            where.add_argument(flag, dest=row.name, action=action, help=text)
            continue
        where.add_argument(
            flag, dest=row.name, default=row.default, type=run_flag_type(row), metavar=row.metavar, help=text
        )


def run_flag_type(row: RunOption) -> Callable[[str], Any]:
    """A row's flag's argparse ``type``: the text as the row's number (whole, real, port) or as itself, checked by
    the row (``RunOption.problem``: argparse prints ``argument --flag: expected ..., got '...'``)."""
    convert: Callable[[str], Any] = int if row.takes in (WHOLE, PORT) else float if row.takes == REAL else str

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {row.expected(cli=True)}, got {text!r}") from None
        problem: Optional[str] = row.problem(value, cli=True)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"expected {row.expected(cli=True)}, got {text!r}")
        return value

    parse.__name__ = row.name
    return parse


def run_values(args: argparse.Namespace, command: str) -> Dict[str, Any]:
    """The run options the parsed flags of ``zsseg command`` give, by name (every generated row; a row whose flag
    is another table's, ``allow_partial_images``, where the namespace has it)."""
    values = {row.name: getattr(args, row.name) for row in RUN_OPTIONS.for_command(command)}
    for row in RUN_OPTIONS:
        if row.flag is None and row.flag_from and row.name not in values and hasattr(args, row.name):
            values[row.name] = getattr(args, row.name)
    return values


@contextlib.contextmanager
def in_flag_words() -> Iterator[None]:
    """Inside the block, an error of the package that has the command line's words (``ZssegError.cli``: an option
    refused, said with its flag) is raised as a :class:`~zsseg_rt.console.errors.CliError` saying those: the command
    adds its words to a refusal a Python caller reads in its own (``--max-frames`` for ``max_frames``); what the
    library says meanwhile is in the flags' words too (:func:`flag_words`)."""
    from zsseg_rt.console.errors import CliError
    from zsseg_rt.errors import ZssegError

    token = FLAG_WORDS.set(True)
    try:
        yield
    except ZssegError as exc:
        if not exc.cli or isinstance(exc, CliError):
            raise
        raise CliError(exc.cli) from exc
    finally:
        FLAG_WORDS.reset(token)
