"""The run's option machinery (a ``zsseg_rt.stream.Session``'s, what ``zsseg camera`` and ``zsseg segment`` take
beyond the Engine's options): a row (:class:`RunOption`: the value it takes, its range, default, flag and help) and
the table (:class:`RunOptionTable`: names checked with a did-you-mean, values by their rows, the rules between two
options, the docs' table). The rows are :mod:`zsseg_rt.options.run_rows`; the flags they generate are
``zsseg_rt.console.run_arguments``'s. The sibling of :mod:`zsseg_rt.options.table` (the Engine's rows), in the same
words where both say a thing. Standard library, ``zsseg_rt.aliases`` and ``zsseg_rt.errors`` only."""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from zsseg_rt.aliases import resolve_reference
from zsseg_rt.errors import OptionError
from zsseg_rt.options.table import Example, RowTable, did_you_mean, example_refusal

__all__ = ["RunOption", "RunOptionTable", "VALUE_KINDS", "standard_output_refusal"]

# what a run option's value is: a whole number, a finite real number, True/False, a string, a path, a TCP port
# (0..65535, 0: any free port), a mapping, a list of output specs
WHOLE, REAL, BOOL, TEXT, PATH, PORT, MAPPING, OUTPUTS = (
    "whole",
    "real",
    "bool",
    "text",
    "path",
    "port",
    "mapping",
    "outputs",
)
VALUE_KINDS = (WHOLE, REAL, BOOL, TEXT, PATH, PORT, MAPPING, OUTPUTS)
_WORDS = {
    WHOLE: "a whole number",
    REAL: "a finite number",
    BOOL: "True or False",
    TEXT: "a string",
    PATH: "a path (str or os.PathLike)",
    MAPPING: "a dict",
    OUTPUTS: "an output (a string: 'out.mp4') or a list of them",
}


STANDARD_OUTPUT = "-"  # standard output, by the usual convention: no output of a run may be it


def standard_output_refusal(given: str, instead: str = "") -> str:
    """The one refusal of ``-`` (standard output) as an output (``-o -`` made a folder named ``-``): ``given``
    says it (``--tracks-out -``, ``tracks_out='-'``), ``instead`` what prints on standard output instead (a
    command's)."""
    return (
        f"{given}: writing to standard output is not supported (outputs are files, put in place when the run ends): "
        f"give a file or folder name" + (f" ({instead})" if instead else "")
    )


@dataclass(frozen=True)
class RunOption:
    """One option of a run (a field of ``SessionOptions``).

    Attributes:
        name: the keyword (``Session(..., name=...)``, ``SessionOptions(name=...)``) and the parsed flag's name.
        default: what a run takes when it is not given (None: the command's default, said in ``help``).
        takes: what the value is (:data:`VALUE_KINDS`).
        help: the command line's help (and the docs' table's words).
        low, above, high: a number's bounds (>=, >, <=); None: no such bound.
        none: None is taken (the default's meaning).
        flag: the command-line flag (None: Python only, or ``flag_from`` says which table's flag sets it).
        negated: the flag turns a True default off (``--no-legend``: ``legend=False``).
        metavar: the flag's value's name in the help.
        commands: the commands whose flag the table generates (``zsseg camera``, ``zsseg segment``).
        helps: ``(command, help)`` where a command says it in its own words (segment's images, camera's stream).
        output_kind: the output kind (``zsseg_rt.outputs.kinds``) whose row writes this option's file: its row's
            help is the flag's, or stands for ``{kind}`` in a command's ``helps`` (read by name when a parser is
            built, never imported from here).
        help_from: ``"module:function"`` giving the flag's help (a preset's summary in it), read when a parser is
            built; "" ``help``.
        group: the help's section (camera's video labels); "" the command's own options.
        flag_from: where the flag that sets it is declared when not here (the Engine's row, an output kind's
            option, a command's own ``-o``): said in the docs' table.
        requires: ``(option, what)``: given (True, or not None), this option needs ``option`` given too (``what``:
            why, ``{}`` standing for that option's name or flag: "applies to the {} page").
        example: a value other than the default, as ``(the flag's words, the value they give)`` (``(("2",), 2)``;
            a switch ``((), True)``; a row without a flag ``(None, value)``): the generic tests pass it through
            the Session, the row's check and each command's flag (``zsseg_rt.options.table.Example``).
        engine_options: the Engine options only this option (or another row naming them too) puts to use
            (``track``: ``track_max_missed``): one given a value other than its default while none of those rows is
            given is refused (:meth:`RunOptionTable.check_engine_options`), as ``requires`` refuses a run option.
        writes: it names a file or folder the run writes: ``-`` (standard output) is refused
            (:func:`standard_output_refusal`; every output is staged and put in place when the run ends).
    """

    name: str
    default: Any
    takes: str
    help: str
    low: Optional[float] = None
    above: Optional[float] = None
    high: Optional[float] = None
    none: bool = True
    flag: Optional[str] = None
    negated: bool = False
    metavar: Optional[str] = None
    commands: Tuple[str, ...] = ("camera",)
    helps: Tuple[Tuple[str, str], ...] = ()
    output_kind: str = ""
    help_from: str = ""
    group: str = ""
    flag_from: str = ""
    requires: Optional[Tuple[str, str]] = None
    example: Optional[Example] = None
    engine_options: Tuple[str, ...] = ()
    writes: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"a run option's name is a Python keyword, got {self.name!r}")
        refusal = example_refusal(self.name, self.flag, self.example)
        if refusal is not None:
            raise ValueError(refusal)
        if self.takes not in VALUE_KINDS:
            raise ValueError(f"{self.name}: takes one of {', '.join(VALUE_KINDS)}, got {self.takes!r}")
        if self.flag is not None and not self.flag.startswith("-"):
            raise ValueError(f"{self.name}: a flag starts with '-', got {self.flag!r}")
        if self.negated and not (self.takes == BOOL and self.default is True):
            raise ValueError(f"{self.name}: a negated flag turns a True default off")
        if self.flag is None and self.commands and not self.flag_from:
            raise ValueError(f"{self.name}: no flag to generate on {', '.join(self.commands)}: give flag or flag_from")
        if self.default is not None and self.problem(self.default) is not None:
            raise ValueError(f"{self.name}: its default {self.default!r} is refused by its own row")

    # ---- what it takes ----------------------------------------------------------------------------------------
    def expected(self, cli: bool = False) -> str:
        """What it takes, in words (``"a whole number >= 1, or None"``; ``cli``: the flag's, without None)."""
        none = ", or None" if self.none and not cli else ""
        if self.takes == PORT:
            return f"a TCP port number 0..65535 (0: any free port){none}"
        base = _WORDS[self.takes]
        if self.low is not None and self.high is not None and self.above is None:
            return f"{base} in [{self.low:g}, {self.high:g}]{none}"
        bounds = [f"> {self.above:g}"] if self.above is not None else []
        bounds += [f">= {self.low:g}"] if self.low is not None else []
        bounds += [f"<= {self.high:g}"] if self.high is not None else []
        return f"{base} {' and '.join(bounds)}".strip() + none

    def problem(self, value: Any, cli: bool = False) -> Optional[str]:
        """Why ``value`` is refused (``"expected ..., got ..."``; ``cli``: in the flag's words), or None: taken."""
        if value is None and self.none:
            return None
        if not self._kind_ok(value) or not self._in_range(value):
            return f"expected {self.expected(cli)}, got {value!r}"
        return None

    def check_value(self, value: Any) -> None:
        """Refuse in one line (:class:`~zsseg_rt.errors.OptionError`, a ValueError: the option, what it takes, what
        was given) a value it does not take."""
        problem = self.problem(value)
        if problem is not None:
            flag = self.flag_words()
            cli = f"{flag}: {self.problem(value, cli=True)}" if flag else ""
            raise OptionError(f"{self.name}: {problem}", option=self.name, cli=cli)
        if self.writes and STANDARD_OUTPUT in (value if self.takes == OUTPUTS else [value]):
            flag = "-o" if self.takes == OUTPUTS else self.flag_words()
            python = f"outputs {STANDARD_OUTPUT!r}" if self.takes == OUTPUTS else f"{self.name}={STANDARD_OUTPUT!r}"
            cli = standard_output_refusal(f"{flag} {STANDARD_OUTPUT}") if flag else ""
            raise OptionError(standard_output_refusal(python), option=self.name, cli=cli)

    def _kind_ok(self, value: Any) -> bool:
        if self.takes == BOOL:
            return isinstance(value, bool)
        if self.takes in (WHOLE, PORT):
            return isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if self.takes == REAL:
            return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
        if self.takes == TEXT:
            return isinstance(value, str)
        if self.takes == PATH:
            return isinstance(value, (str, os.PathLike)) and bool(os.fspath(value))
        if self.takes == OUTPUTS:
            return isinstance(value, (list, tuple)) and all(isinstance(spec, str) and spec for spec in value)
        return isinstance(value, dict)

    def _in_range(self, value: Any) -> bool:
        if self.takes == PORT:
            return 0 <= int(value) <= 65535
        if self.takes not in (WHOLE, REAL):
            return True
        number = float(value)
        return (
            (self.low is None or number >= self.low)
            and (self.above is None or number > self.above)
            and (self.high is None or number <= self.high)
        )

    def given(self, value: Any) -> bool:
        """Whether ``value`` asks for something (not None, not False, not empty): what ``requires`` reads."""
        return value is not None and value is not False and value != [] and value != ()

    # ---- its flag -----------------------------------------------------------------------------------------------
    @property
    def is_switch(self) -> bool:
        """A flag without a value (``--loop``, ``--no-legend``)."""
        return self.takes == BOOL

    def flag_help(self, command: str = "camera") -> str:
        """The help of its flag on ``command``: the command's own words (``helps``), else the output kind's row's,
        else ``help_from``'s, else ``help``; ``{kind}`` stands for the output kind's row's help."""
        text = dict(self.helps).get(command)
        if text is None:
            text = "{kind}" if self.output_kind else self.help
            text = str(resolve_reference(self.help_from)()) if self.help_from else text
        if "{kind}" in text:
            text = text.replace("{kind}", str(resolve_reference("zsseg_rt.outputs.kinds:flag_help")(self.output_kind)))
        return text

    def flag_words(self) -> str:
        """The flag as a refusal names it on the command line (``--max-frames``), or "" (Python only)."""
        return self.flag or ""


class RunOptionTable(RowTable[RunOption]):
    """The run options' rows, in order (``RowTable``: ``adding`` puts another one in for a block, a plugin's; the
    tests' toy)."""

    owner = "a run"
    what = "run option"

    def defaults(self) -> Dict[str, Any]:
        """Every option at its row's default."""
        return {row.name: row.default for row in self}

    def for_command(self, command: str) -> List[RunOption]:
        """The rows whose flag ``zsseg command`` generates from the table."""
        return [row for row in self if command in row.commands and row.flag is not None]

    def check_names(self, given: Any, caller: str) -> None:
        """Refuse a keyword that is not a run option, in one line (TypeError with the closest name)."""
        for name in given:
            if name not in self._rows:
                hint = did_you_mean(name, self._rows)
                raise TypeError(f"{caller} got an unknown option {name!r}" + (f"; {hint}" if hint else ""))

    def check(self, values: Mapping[str, Any]) -> None:
        """Refuse, in one line and before anything opens, a value its row does not take (:meth:`RunOption.
        check_value`), then an option given without the one it needs (``requires``).

        Raises:
            OptionError: ``max_frames: expected a whole number >= 1, or None, got 0``; the flag's words in ``cli``.
        """
        for row in self:
            if row.name in values:
                row.check_value(values[row.name])
        for row in self:
            if row.requires is None or not row.given(values.get(row.name)):
                continue
            other, what = row.requires
            if not self[other].given(values.get(other)):
                needed = self[other]
                cli = ""
                if row.flag and needed.flag:
                    given = f"{needed.flag} {needed.metavar}" if needed.metavar else needed.flag
                    cli = f"{row.flag} {what.format(needed.flag)}: give {given} too"
                python = f"{row.name}={values[row.name]!r} {what.format(other)}: give {other} too"
                raise OptionError(python, option=row.name, cli=cli)

    def check_engine_options(self, values: Mapping[str, Any], engine: Mapping[str, Any]) -> None:
        """Refuse, in one line and before anything opens, an Engine option (``engine``: the keywords given) that only
        run options not given put to use (the rows' ``engine_options``: ``--track-max-missed 3`` without
        ``--track`` or ``--tracks-out``); a value equal to its default changes nothing either way.

        Raises:
            OptionError: ``track_max_missed=3 applies only with track=True or tracks_out: give one of them too (or
                leave track_max_missed out)``; the flags' words in ``cli``.
        """
        from zsseg_rt.options.engine_rows import ENGINE_OPTIONS

        for name, value in engine.items():
            users = [row for row in self if name in row.engine_options]
            if (
                not users
                or value == ENGINE_OPTIONS[name].default
                or any(row.given(values.get(row.name)) for row in users)
            ):
                continue
            python = " or ".join(f"{row.name}=True" if row.is_switch else row.name for row in users)
            flags = " or ".join(f"{row.flag} {row.metavar}" if row.metavar else str(row.flag) for row in users)
            more = "one of them" if len(users) > 1 else "it"
            flag = ENGINE_OPTIONS[name].flag
            raise OptionError(
                f"{name}={value!r} applies only with {python}: give {more} too (or leave {name} out)",
                option=name,
                cli=f"{flag} {value} applies only with {flags}: give {more} too (or leave {flag} out)" if flag else "",
            )

    def markdown_table(self) -> str:
        """The rows as docs/usage.md's table ("The run's options"): option, flag, default, values."""
        lines = ["| `Session(...)` option | flag | default | values |", "|---|---|---|---|"]
        for row in self:
            if row.flag is not None:
                flag = f"`{row.flag}` ({', '.join(row.commands)})"
            else:
                flag = row.flag_from or "(Python only)"
            lines.append(f"| `{row.name}` | {flag} | `{row.default!r}` | {row.expected()} |")
        return "\n".join(lines)
