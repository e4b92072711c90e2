"""The option table's machinery: a row (:class:`EngineOption`), the table (:class:`OptionTable`: names checked
with a did-you-mean, values by their rows, the docs' table), the values a pipeline reads (:class:`OptionValues`).
The rows themselves are :mod:`zsseg_rt.options.engine_rows`. Standard library and ``zsseg_rt.aliases`` only."""

from __future__ import annotations

import math
import numbers
import re
import textwrap
import typing
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from zsseg_rt.aliases import resolve_reference
from zsseg_rt.options.registry import Registry, did_you_mean


class _Named(typing.Protocol):
    """A row of a :class:`RowTable`: its name, and its flag (None: none)."""

    @property
    def name(self) -> str: ...

    @property
    def flag(self) -> Optional[str]: ...


Row = typing.TypeVar("Row", bound=_Named)


def _reference(reference: str) -> Any:
    """``"module:function"`` -> the function's result: a registry above this layer, read by name when asked."""
    return resolve_reference(reference)()


@dataclass(frozen=True)
class Made:
    """An example's value made when read (``"module:function"``, called): an object a row cannot hold (a PyTorch
    model), its module imported only by the reader of the example."""

    reference: str

    def make(self) -> Any:
        return _reference(self.reference)


# A row's example: (the flag's words, the value they give); a switch's words are (), a row without a flag gives None
Example = Tuple[Optional[Tuple[str, ...]], Any]


def example_refusal(name: str, flag: Optional[str], example: Optional[Example]) -> Optional[str]:
    """Why ``example`` is no example of the row ``name`` (its shape: a flag's words, or None without a flag), or
    None: well formed (the value is checked by the generic tests, against the row's check and the commands')."""
    if example is None:
        return None
    if not (isinstance(example, tuple) and len(example) == 2):
        return f"{name}: an example is (the flag's words, the value they give), got {example!r}"
    words = example[0]
    if flag is None and words is not None:
        return f"{name}: a row without a flag gives its example as (None, value), got words {words!r}"
    if flag is not None and not (isinstance(words, tuple) and all(isinstance(word, str) for word in words)):
        return f"{name}: its flag's example words are a tuple of strings (() for a switch), got {words!r}"
    return None


def example_value(example: Example) -> Any:
    """The Python value of ``example`` (a :class:`Made` value made now)."""
    value = example[1]
    return value.make() if isinstance(value, Made) else value


@dataclass(frozen=True)
class EngineOption:
    """One option of ``zsseg_rt.Engine``.

    Attributes:
        name: the keyword (``Engine(bundle, name=...)``).
        default: what the Engine runs with when it is not given.
        type: the value's type, as a reader says it ("str", "int or None", ...).
        help: one or two sentences: the command line's help, and the start of the Python description.
        doc: more for the Python docstring (empty: ``help`` says it all).
        flag: the command-line flag of every command that opens an Engine (None: Python only).
        metavar: the flag's value's name in the help.
        choices: the values it takes: a tuple, or ``"module:function"`` returning them (a registry of a layer above,
            read by name when a parser is built); None: any (the code that uses it checks).
        more_help: ``"module:function"`` returning text appended to the help (the registry's rows), or None.
        minimum: an integer flag's smallest value.
        maximum: an integer option's largest value (None: no bound).
        bounds: ``(low, high)`` of a real-number option (its flag parses a finite number in that range, and the
            Engine refuses another value in one line); None: not a real number.
        cli_values: ``(text, value)`` pairs where a flag's text is not the value (``--prepare none`` -> None).
        cli_defaults: ``(command, default)`` pairs: a command whose flag has another default (its help says so).
        kinds: the bundle kinds (runtime pipelines, meta.json ``pipeline``) that take it; () every kind.
        refusal: why a bundle of another kind refuses it (the Engine's one line adds the value given).
        workers: a Ray worker (``zsseg batch``, ``zsseg serve``) takes it; False: fixed there (``not_in_workers``
            says why).
        not_in_workers: why a worker does not take it.
        pattern: ``(regex, words)``: values of another form it takes besides its choices (``device``: ``cuda:N``).
        default_from: a None default's holders, ``"module:attr"`` of the values None stands for, shown where
            ``help`` or ``doc`` says ``{0}``, ``{1}``, ... (read when the help is written, never copied by hand).
        example: a value other than the default, as ``(the flag's words, the value they give)`` (``(("2",), 2)``;
            a switch ``((), True)``; a row without a flag ``(None, value)``, a :class:`Made` value for an object):
            the generic tests run it through every command that takes the flag, and through the row's check
            (``python_tests/test_option_examples.py``); a value a real run on the tests' tiny bundle takes on a CPU.

    A value is checked by its row (:meth:`problem`), for Python and the command line (``zsseg_rt.console.arguments``)
    in the same words: the kinds ``type`` names, then ``choices`` (and ``pattern``), ``minimum`` or ``bounds``.
    """

    name: str
    default: Any
    type: str
    help: str
    doc: str = ""
    flag: Optional[str] = None
    metavar: Optional[str] = None
    choices: Union[None, Tuple[Any, ...], str] = None
    more_help: Optional[str] = None
    minimum: Optional[int] = None
    maximum: Optional[int] = None
    bounds: Optional[Tuple[float, float]] = None
    cli_values: Tuple[Tuple[str, Any], ...] = ()
    cli_defaults: Tuple[Tuple[str, Any], ...] = ()
    kinds: Tuple[str, ...] = ()
    refusal: str = ""
    workers: bool = True
    not_in_workers: str = ""
    pattern: Optional[Tuple[str, str]] = None
    default_from: Tuple[str, ...] = ()
    example: Optional[Example] = None

    def __post_init__(self) -> None:
        refusal = example_refusal(self.name, self.flag, self.example)
        if refusal is not None:
            raise ValueError(refusal)
        if self.default_from and self.default is not None:
            raise ValueError(f"{self.name}: default_from names what a None default stands for, the default is not None")
        if self.default_from and "{0}" not in self.help + self.doc:
            raise ValueError(f"{self.name}: a row with default_from shows its values in help or doc ({{0}}, ...)")
        if not self.name.isidentifier():
            raise ValueError(f"an Engine option's name is a Python keyword, got {self.name!r}")
        if self.flag is not None and not self.flag.startswith("--"):
            raise ValueError(f"{self.name}: a flag starts with '--', got {self.flag!r}")
        if self.kinds and not self.refusal:
            raise ValueError(f"{self.name}: an option of some bundle kinds only needs the others' refusal")
        if not self.workers and not self.not_in_workers:
            raise ValueError(f"{self.name}: an option Ray workers do not take needs the reason (not_in_workers)")

    @property
    def is_switch(self) -> bool:
        """A flag without a value (``--allow-partial-images``): a bool option whose default is False."""
        return self.default is False

    def values(self) -> Optional[List[Any]]:
        """The values it takes (the registry's, read now), or None: any."""
        if self.choices is None:
            return None
        return list(_reference(self.choices) if isinstance(self.choices, str) else self.choices)

    def flag_choices(self) -> Optional[List[str]]:
        """The texts its flag takes (a value whose text differs written as that text; None itself is no text)."""
        values = self.values()
        if values is None:
            return None
        texts = {value: text for text, value in self.cli_values}
        return [texts.get(value, value) for value in values if value is not None or value in texts]

    def from_flag(self, text: Any) -> Any:
        """The option's value for its flag's ``text`` (``cli_values``), else the text as parsed."""
        return dict(self.cli_values).get(text, text) if isinstance(text, str) else text

    def flag_default(self, command: str = "") -> Any:
        """The flag's default on ``command`` (its text: ``--prepare``'s default is "auto")."""
        default = dict(self.cli_defaults).get(command, self.default)
        texts = {value: text for text, value in self.cli_values}
        return texts.get(default, default) if default is not None or default in texts else default

    def flag_help(self) -> str:
        """The command line's help: ``help`` (``default_from``'s values in it), then ``more_help``'s (the registry's)."""
        more = _reference(self.more_help) if self.more_help else ""
        return f"{self._filled(self.help)} {more}".strip()

    def default_values(self) -> List[Any]:
        return [resolve_reference(reference) for reference in self.default_from]  # (read from the holders now)

    def _filled(self, text: str) -> str:
        return text.format(*self.default_values()) if self.default_from else text

    def kinds_of_value(self) -> Optional[Tuple[str, ...]]:
        """The plain kinds of value ``type`` names (int, float, str, bool, None), or None where it names an object
        too (then only a string is checked here, against the choices; the object's user checks it)."""
        words = [word.strip() for word in re.split(r"\bor\b|,", self.type)]
        return tuple(words) if all(word in _KINDS for word in words) else None

    def expected(self, cli: bool = False) -> str:
        """What it takes, in words (``"a whole number >= 0 or None"``; ``cli``: its flag's texts, no None)."""
        kinds = self.kinds_of_value() or ("str",)
        values = self.flag_choices() if cli else self.values()
        if values is not None:
            shown = [repr(value) for value in values] + ([repr(self.pattern[1])] if self.pattern else [])
            what = "one of " + ", ".join(shown)
        elif "int" in kinds:
            what = "a whole number" + (f" >= {self.minimum}" if self.minimum is not None else "")
            what = f"a whole number in [{self.minimum}, {self.maximum}]" if self.maximum is not None else what
        elif "float" in kinds:
            what = f"a number in [{self.bounds[0]:g}, {self.bounds[1]:g}]" if self.bounds else "a finite number"
        else:
            what = "True or False" if kinds == ("bool",) else "a string"
        none = "None" in kinds and (values is None or None not in values) and not cli
        return what + (" or None" if none else "")

    def problem(self, value: Any, cli: bool = False) -> Optional[str]:
        """Why ``value`` is refused (``"expected ..., got ..."``; ``cli``: in the flag's texts), or None: taken."""
        kinds = self.kinds_of_value()
        wrong = f"expected {self.expected(cli)}, got {value!r}"
        kind = _kind_of(value)
        if kinds is not None and kind not in kinds and not ("float" in kinds and kind == "int"):
            return wrong
        if value is None:
            return None
        values = self.values()
        if values is not None and (kinds is not None or isinstance(value, str)):
            other = self.pattern is not None and isinstance(value, str) and re.fullmatch(self.pattern[0], value)
            return None if other or any(value == v and type(value) is type(v) for v in values) else wrong
        if self.minimum is not None and _kind_of(value) == "int" and value < self.minimum:
            return wrong
        if self.maximum is not None and _kind_of(value) == "int" and value > self.maximum:
            return wrong
        if _kind_of(value) in ("int", "float") and "float" in (kinds or ()):
            low, high = self.bounds if self.bounds is not None else (-math.inf, math.inf)
            if not (math.isfinite(float(value)) and low <= float(value) <= high):  # (NaN is not in any range)
                return wrong
        return None

    def check_value(self, value: Any) -> None:
        """Refuse in one line (ValueError: the option, what it takes, what was given) a value it does not take."""
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(f"{self.name}: {problem}")

    def accepts(self, kind: str) -> bool:
        """Whether bundles of the runtime pipeline ``kind`` take it."""
        return not self.kinds or kind in self.kinds

    def docstring(self, indent: str = "        ") -> str:
        """Its entry in the Engine's docstring (``name: help doc``, wrapped)."""
        where = f"CLI: ``{self.flag}``" if self.flag else "Python only"
        text = f"{self.name}: {self._filled(self.help)} {self._filled(self.doc)}".strip()
        text += f" ({where}; default ``{self.default!r}``.)"
        return textwrap.fill(text, 116, initial_indent=indent, subsequent_indent=indent + "    ")


_KINDS = ("int", "float", "str", "bool", "None")


def _kind_of(value: Any) -> str:
    """The plain kind of ``value`` (:data:`_KINDS`; a path is a "str": a folder's name), "object" for the rest."""
    if value is None or isinstance(value, bool):
        return "None" if value is None else "bool"
    if isinstance(value, numbers.Real):
        return "int" if isinstance(value, numbers.Integral) else "float"
    return "str" if isinstance(value, str) or hasattr(value, "__fspath__") else "object"


class OptionValues(Mapping[str, Any]):
    """Every Engine option's value (given, or its default), read by attribute (``options.precision``) or key."""

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            hint = did_you_mean(name, self._values)
            raise AttributeError(f"no Engine option {name!r}" + (f": {hint}" if hint else "")) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("OptionValues is read-only: OptionValues.replace(name=value) makes a changed copy")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def replace(self, **changes: Any) -> "OptionValues":
        """A copy with ``changes``."""
        return OptionValues({**self._values, **changes})

    def __repr__(self) -> str:
        return f"OptionValues({self._values!r})"


class RowTable(Registry[Row]):
    """Rows by name, in order, each with a ``name`` and a ``flag`` (None: none): a :class:`Registry` (``register`` /
    ``add``, ``names``, ``get`` / ``[name]`` with the closest name, ``adding`` for a plugin's or a test's row) whose
    rows' flags differ too. The Engine's options (:class:`OptionTable`) and the run's
    (``zsseg_rt.options.run_table.RunOptionTable``) are tables of this kind; ``owner`` and ``what`` are their words."""

    owner = "the table"
    what = "row"

    def __init__(self, rows: Sequence[Row]):
        super().__init__(self.what, rows)

    def register(self, row: Row, *, replace: bool = False, first: bool = False) -> Row:
        """Add a row (ValueError for a name or flag another row has)."""
        name, flag = row.name, row.flag
        if name in self._rows:
            raise ValueError(f"{self.owner} has an option {name!r} already")
        if flag is not None and flag in {other.flag for other in self._rows.values()}:
            raise ValueError(f"{name}: another {self.what} has the flag {flag}")
        return super().register(row, first=first)

    def add(self, row: Row) -> None:
        """Add a row (:meth:`register`)."""
        self.register(row)


class OptionTable(RowTable[EngineOption]):
    """The Engine's rows, in order (:class:`RowTable`: ``add`` / ``adding`` put another one in)."""

    owner = "the Engine"
    what = "Engine option"

    def flagged(self) -> List[EngineOption]:
        """The rows with a command-line flag."""
        return [row for row in self if row.flag]

    def worker_names(self) -> List[str]:
        """The options a Ray worker takes."""
        return [row.name for row in self if row.workers]

    def flag_of(self, name: str) -> Optional[str]:
        """The flag of option ``name`` (None: no flag sets it, or no such option)."""
        row = self._rows.get(name)
        return row.flag if row is not None else None

    def check_names(self, given: Iterable[str], caller: str, known: Optional[Sequence[str]] = None) -> None:
        """Refuse a keyword that is not an option (``known``: these only) in one line: TypeError
        ``"Engine() got an unexpected keyword argument 'precison': did you mean 'precision'?"``."""
        known = self.names() if known is None else list(known)
        for name in given:
            if name not in known:
                hint = did_you_mean(name, known) or f"its options: {', '.join(known)}"
                raise TypeError(f"{caller} got an unexpected keyword argument {name!r}: {hint}")

    def defaults(self) -> OptionValues:
        """Every option at its row's default (what a backend opened outside an Engine reads: ``open_backend``)."""
        return OptionValues({row.name: row.default for row in self})

    def resolve(
        self, given: Mapping[str, Any], caller: str = "Engine()", preset: Union[None, str, "Preset"] = None
    ) -> OptionValues:
        """Every option's value: ``given``, else the preset's, else the row's default; the keywords checked, then
        each value by its row (:meth:`EngineOption.check_value`), before anything is opened."""
        self.check_names(given, caller)
        values = {row.name: row.default for row in self}
        if preset is not None:
            values.update(preset_named(preset).engine_options())
        values.update(given)
        for row in self:
            row.check_value(values[row.name])
        return OptionValues(values)

    def check_kind(
        self,
        kind: str,
        values: Mapping[str, Any],
        preset: Union[None, str, "Preset"] = None,
        given: Iterable[str] = (),
    ) -> None:
        """Refuse, in one line, an option given (not its default) that bundles of the runtime pipeline ``kind`` do
        not take (its row's ``kinds`` and ``refusal``). An option the ``preset`` set (not among the ``given``
        keywords) is refused naming the preset, ``zsseg camera --live`` for :data:`LIVE` (the
        refusal named test_scale, which a user of ``--live`` never gave)."""
        from_preset = preset_named(preset).engine_options() if preset is not None else {}
        for row in self:
            value = values.get(row.name, row.default)
            if not row.accepts(kind) and value != row.default:
                what = f"an option of {' and '.join(row.kinds)} bundles, and this bundle's pipeline is {kind}"
                if row.name in from_preset and row.name not in set(given):
                    named = preset_named(preset)  # type: ignore[arg-type]
                    name = named.name
                    flag, drop = (f" (zsseg camera {named.flag})", named.flag) if named.flag else ("", "the preset")
                    raise ValueError(
                        f"preset {name!r}{flag} sets {row.name}={value!r}, {what}: {row.refusal}; this bundle runs "
                        f"without it: drop {drop}"
                    )
                raise ValueError(f"{row.name}={value!r}: {what}: {row.refusal} (leave it unset)")

    def docstring(self, indent: str = "        ") -> str:
        """The Engine's option list (one entry per row, in order)."""
        return "\n".join(row.docstring(indent) for row in self)

    def markdown_table(self) -> str:
        """The rows as the Markdown table docs/usage.md shows ("The Engine's options", checked by
        ``python_tests/cli/test_cli_engine_flags.py``): option, flag, default, values, bundle kinds, Ray workers."""
        lines = [
            "| `Engine(...)` option | flag of every command that opens an Engine | default | values | bundles | Ray "
            "workers |",
            "|---|---|---|---|---|---|",
        ]
        for row in self:
            values = row.flag_choices() if row.flag else row.values()
            values = values + [row.pattern[1]] if values and row.pattern else values
            shown = ", ".join(str(value) for value in values) if values else row.type
            flag = f"`{row.flag}`" if row.flag else "(Python only)"
            kinds = ", ".join(row.kinds) if row.kinds else "all"
            workers = "yes" if row.workers else "no (fixed)"
            lines.append(f"| `{row.name}` | {flag} | `{row.default!r}` | {shown} | {kinds} | {workers} |")
        return "\n".join(lines)


# ---- presets (their rows: zsseg_rt.options.presets, which registers each in PRESETS) ---------------------------
@dataclass(frozen=True)
class Preset:
    """A named set of Engine options and ``VideoSegmenter`` keywords, taken whole by both (``Engine(bundle,
    preset=...)``; the ``VideoSegmenter`` of that Engine takes the rest), and what it trades.

    Attributes:
        name: its name (``Engine(preset="live")`` takes it too; ``zsseg camera --live``).
        engine: ``(option, value)`` pairs of the Engine (rows of :data:`ENGINE_OPTIONS`).
        video: ``(keyword, value)`` pairs of ``zsseg_rt.stream.VideoSegmenter``.
        summary: what it is for, one line.
    """

    name: str
    engine: Tuple[Tuple[str, Any], ...]
    video: Tuple[Tuple[str, Any], ...]
    summary: str
    flag: str = ""  # the command-line flag that gives it (zsseg camera --live), named in its refusals

    def engine_options(self) -> Dict[str, Any]:
        return dict(self.engine)

    def video_options(self) -> Dict[str, Any]:
        return dict(self.video)

    def trades(
        self, window: Optional[Sequence[int]], keyframe_every: int, flow_preset: str, flow_stride: int, adaptive: bool
    ) -> Dict[str, Any]:
        """What a run with this preset trades, as it runs: ``window`` (W, H) of the one window a frame is fitted in
        (None: the bundle's resize), the keyframe interval (with ``adaptive``: the longest gap) and the flow's DIS
        preset and stride. A dict for ``--stats-json``, its ``"line"`` the sentence printed at the start."""
        parts = []
        if window is not None:
            parts.append(f"one window of {window[0]}x{window[1]} a frame instead of the bundle's resize")
        if keyframe_every == 1 and not adaptive:
            parts.append("the encoder on every frame (nothing propagated)")
        else:
            gap = "at most every" if adaptive else "every"
            parts.append(f"a keyframe {gap} {keyframe_every} frames, the labels propagated along the flow in between")
            parts.append(f"the flow's DIS preset '{flow_preset}' at 1/{flow_stride} of the frame")
        line = f"preset {self.name!r} trades accuracy for rate (not faithful to per-frame inference): " + "; ".join(
            parts
        )
        return {
            "name": self.name,
            "window": list(window) if window is not None else None,
            "keyframe_every": int(keyframe_every),
            "adaptive": bool(adaptive),
            "flow_preset": flow_preset,
            "flow_stride": int(flow_stride),
            "line": line,
        }


PRESETS: Dict[str, Preset] = {}  # name -> preset, filled by zsseg_rt.options.presets


def preset_named(preset: Union[str, Preset]) -> Preset:
    """``preset`` itself, or the preset of that name (ValueError with the closest name)."""
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, str) and preset in PRESETS:
        return PRESETS[preset]
    hint = did_you_mean(str(preset), PRESETS) if isinstance(preset, str) else ""
    raise ValueError(
        f"preset: expected a Preset or one of {', '.join(map(repr, PRESETS))}, got {preset!r}"
        + (f": {hint}" if hint else "")
    )
