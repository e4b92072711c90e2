"""argparse types shared by the ``zsseg`` commands: a value out of its range is a usage error naming the flag and
what was expected (argparse prints ``argument --max-frames: expected a whole number >= 1, got '-1'`` and exits 2),
before any model, camera, port or Ray cluster is touched; never a traceback later, never a silent clamp.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from zsseg_rt.options import ENGINE_OPTIONS, EngineOption
from zsseg_rt.runtime.backends.table import backend_names, precision_names

__all__ = [
    "whole_number",
    "real_number",
    "port_number",
    "add_engine_arguments",
    "engine_kwargs",
    "engine_rows",
    "BACKEND_CHOICES",
    "DEMO_METHOD",
    "ENGINE_COMMANDS",
    "PARTIAL_ENGINE_COMMANDS",
    "WORKER_COMMANDS",
]

T = TypeVar("T")

DEMO_METHOD = "scclip-vitb16"  # zsseg demo --method's default (SC-CLIP); its family's configs are the demo's methods

# The backend table's names (built-in rows, then installed entry points) and its precisions: the one list of each
# (zsseg_rt/runtime/backends/table.py; importing it costs no NumPy and no runtime library)
BACKEND_CHOICES = tuple(backend_names())
PRECISION_CHOICES = tuple(precision_names())

# The commands that open an Engine from their flags: each gets every flagged row of zsseg_rt.options.ENGINE_OPTIONS,
# with the same help everywhere (python_tests/cli/test_cli_engine_flags.py); batch and serve hand them to Ray workers,
# which take the rows whose ``workers`` is True.
ENGINE_COMMANDS = ("segment", "camera", "batch", "serve")
WORKER_COMMANDS = ("batch", "serve")
# Commands that open an Engine among other things and take some rows only (the same flags, the same help), and why
# not the others.
PARTIAL_ENGINE_COMMANDS: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "eval": (
        ("backend", "precision"),
        "it evaluates PyTorch checkpoints too: its --mode (slide or whole windows), --device (a torch device) and "
        "--max-pixels (the dataset's images, skipped with --skip-corrupt) are the evaluation's",
    ),
    "profile": (("mode",), "it profiles several backends side by side: --backends NAME[:device|:precision]"),
}


def engine_rows(command: str) -> List[EngineOption]:
    """The rows of ``zsseg_rt.options.ENGINE_OPTIONS`` whose flags ``zsseg command`` takes (ValueError for a command
    that opens no Engine from its flags)."""
    if command in PARTIAL_ENGINE_COMMANDS:
        return [ENGINE_OPTIONS[name] for name in PARTIAL_ENGINE_COMMANDS[command][0]]
    if command not in ENGINE_COMMANDS:
        raise ValueError(f"zsseg {command} opens no Engine from its flags (cli_types.ENGINE_COMMANDS)")
    return [row for row in ENGINE_OPTIONS.flagged() if row.workers or command not in WORKER_COMMANDS]


def add_engine_arguments(p: argparse.ArgumentParser, command: str) -> None:
    """The Engine's flags of ``zsseg command`` (:func:`engine_rows`), generated from their rows: the same flag,
    choices (a registry's read now), type and help on every command; a row's default (or its ``cli_defaults`` for
    this command). A value is checked by its row (:func:`flag_type`: the words of the Engine's refusal of
    that value in Python, never argparse's "invalid choice"). They are parsed into the option's name
    (``args.precision``, ``args.expected_digest``); :func:`engine_kwargs` makes the Engine's keywords of them."""
    group = p.add_argument_group("Engine options (the same on every command that opens an Engine)")
    for row in engine_rows(command):
        flag = str(row.flag)  # (engine_rows: rows with a flag)
        if row.is_switch:
            group.add_argument(flag, dest=row.name, action="store_true", help=row.flag_help())
            continue
        choices, metavar = row.flag_choices(), row.metavar
        if row.pattern is not None and choices is not None:  # another form too (--device cuda:N): shown, not listed
            choices, metavar = None, metavar or "{" + ",".join([*map(str, choices or ()), row.pattern[1]]) + "}"
        group.add_argument(
            flag,
            dest=row.name,
            default=row.flag_default(command),
            type=flag_type(row),
            choices=choices,
            metavar=metavar,
            help=row.flag_help(),
        )


def flag_type(row: EngineOption) -> Callable[[str], Any]:
    """A row's flag's argparse ``type``: the text parsed as the row's number (an int or float row), and checked by
    the row (``EngineOption.problem``: argparse prints ``argument --flag: expected ..., got ...``, the words of
    ``Engine(name=...)``'s refusal in Python); the text itself otherwise (``row.from_flag`` makes it the value)."""
    kinds = row.kinds_of_value() or ()
    convert: Callable[[str], Any] = int if "int" in kinds else float if "float" in kinds else str

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {row.expected(cli=True)}, got {text!r}") from None
        problem = row.problem(row.from_flag(value), cli=True)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem.replace(f"got {value!r}", f"got {text!r}"))
        return value

    parse.__name__ = row.name
    return parse


def engine_kwargs(args: argparse.Namespace, command: str) -> Dict[str, Any]:
    """The Engine's keywords that ``zsseg command``'s flags give (every row of :func:`engine_rows`, its flag's text
    turned into the value: ``--prepare none`` -> ``prepare=None``)."""
    return {row.name: row.from_flag(getattr(args, row.name)) for row in engine_rows(command)}


def _range_text(low, high, above, kind: str) -> str:
    parts = []
    if above is not None:
        parts.append(f"> {above:g}")
    if low is not None:
        parts.append(f">= {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    return f"{kind} {' and '.join(parts)}" if parts else kind


def _checked(
    convert: Callable[[str], T], in_range: Callable[[T], bool], expected: str, name: str
) -> Callable[[str], T]:
    """An argparse ``type``: ``convert(text)``, refused unless it converts and ``in_range`` holds; ``name`` is what
    argparse calls the type in its "invalid ... value" messages."""

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not in_range(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = name
    return parse


def whole_number(low: Optional[int] = 1, high: Optional[int] = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``[low, high]`` (either end None: open)."""
    expected = _range_text(low, high, None, "a whole number")

    def in_range(value: int) -> bool:
        return (low is None or value >= low) and (high is None or value <= high)

    return _checked(int, in_range, expected, "whole number")


def real_number(
    low: Optional[float] = None, *, above: Optional[float] = None, high: Optional[float] = None
) -> Callable[[str], float]:
    """An argparse ``type``: a finite number ``>= low`` / ``> above`` / ``<= high`` (None: no such bound)."""
    expected = _range_text(low, high, above, "a finite number")

    def in_range(value: float) -> bool:
        return (
            math.isfinite(value)
            and (low is None or value >= low)
            and (above is None or value > above)
            and (high is None or value <= high)
        )

    return _checked(float, in_range, expected, "number")


def port_number(free_port: bool = False) -> Callable[[str], int]:
    """An argparse ``type``: a TCP port to listen on, 1..65535; with ``free_port`` also 0 (the system picks a free
    port, and the command prints the address it got)."""
    low = 0 if free_port else 1
    expected = f"a TCP port number {low}..65535" + (" (0: any free port)" if free_port else "")
    return _checked(int, lambda value: low <= value <= 65535, expected, "port")
