"""Every option of ``zsseg_rt.Engine``, declared once: one row each (:class:`EngineOption`) in :data:`ENGINE_OPTIONS`.

A row holds the option's name, default, type, help (the command line's) and its longer Python description, the
command-line flag (None: Python only), its choices (a tuple, or ``"module:function"`` naming the registry that lists
them: the backend table's rows, read when a parser is built, never imported from here), the bundle kinds (runtime
pipelines) that take it and the refusal the others give, and whether a Ray worker (``zsseg batch``, ``zsseg serve``)
takes it. Everything else reads the table:

* ``Engine(bundle, **options)`` checks its keywords here (a misspelt one: "did you mean 'precision'?") and each value
  by its row before anything opens, fills in the defaults and hands the pipeline one :class:`OptionValues`, which
  the pipelines and backends read by name; its docstring's option list is generated from the rows; a row's ``kinds``
  refuse it on other bundles (:meth:`OptionTable.check_kind`);
* every command that opens an Engine gets the same flags with the same help and value checks
  (``zsseg_rt.console.arguments.add_engine_arguments``) and turns them back into keywords (``engine_kwargs``);
* a Ray worker's options are checked against the rows whose ``workers`` is True (``zsseg_rt.scale.engine``);
* the command line's error advice turns ``Engine(..., name=value)`` into the row's flag (``zsseg_rt.console.errors``).

Adding an option is one row here plus the code that uses it (docs/development.md, "Engine options").

A :class:`Preset` is a named set of Engine options and ``VideoSegmenter`` keywords: :data:`LIVE` (``zsseg camera
--live``) is one object that both take (``Engine(bundle, preset=LIVE)``; the ``VideoSegmenter`` takes it from its
Engine) and that says what it trades. The standard library and ``zsseg_rt.aliases`` only (the foundation layer).
"""

from __future__ import annotations

import contextlib
import difflib
import math
import numbers
import re
import textwrap
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from zsseg_rt.aliases import resolve_reference

__all__ = [
    "ENGINE_OPTIONS",
    "EngineOption",
    "LIVE",
    "OptionTable",
    "OptionValues",
    "POSTPROCESS_KERNELS",
    "PRESETS",
    "Preset",
    "did_you_mean",
    "preset_named",
]


def did_you_mean(given: str, known: Iterable[str]) -> str:
    """``"did you mean 'precision'?"`` for the closest of ``known`` to ``given`` (difflib), or ``""`` when none is
    close."""
    close = difflib.get_close_matches(given, list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def _reference(reference: str) -> Any:
    """``"module:function"`` -> the function's result: a registry above this layer, read by name when asked."""
    return resolve_reference(reference)()


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
    bounds: Optional[Tuple[float, float]] = None
    cli_values: Tuple[Tuple[str, Any], ...] = ()
    cli_defaults: Tuple[Tuple[str, Any], ...] = ()
    kinds: Tuple[str, ...] = ()
    refusal: str = ""
    workers: bool = True
    not_in_workers: str = ""
    pattern: Optional[Tuple[str, str]] = None
    default_from: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
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


class OptionTable:
    """The rows, in order; ``add`` / ``adding`` put another one in (a plugin's option; the tests' toy row)."""

    def __init__(self, rows: Sequence[EngineOption]):
        self._rows: Dict[str, EngineOption] = {}
        for row in rows:
            self.add(row)

    def add(self, row: EngineOption) -> None:
        """Add a row (ValueError for a name or flag another row has)."""
        if row.name in self._rows:
            raise ValueError(f"the Engine has an option {row.name!r} already")
        if row.flag is not None and row.flag in {other.flag for other in self._rows.values()}:
            raise ValueError(f"{row.name}: another Engine option has the flag {row.flag}")
        self._rows[row.name] = row

    @contextlib.contextmanager
    def adding(self, row: EngineOption) -> Iterator[EngineOption]:
        """The table with ``row`` while in the block."""
        self.add(row)
        try:
            yield row
        finally:
            del self._rows[row.name]

    def __iter__(self) -> Iterator[EngineOption]:
        return iter(list(self._rows.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __getitem__(self, name: str) -> EngineOption:
        try:
            return self._rows[name]
        except KeyError:
            raise KeyError(self._unknown(name, "Engine option", self.names())) from None

    def names(self) -> List[str]:
        return list(self._rows)

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

    @staticmethod
    def _unknown(name: str, what: str, known: Sequence[str]) -> str:
        hint = did_you_mean(name, known)
        return f"unknown {what} {name!r}: " + (hint if hint else f"expected one of {', '.join(known)}")

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
        keywords) is refused naming the preset, ``zsseg camera --live`` for :data:`LIVE` (issue 79, F14: the
        refusal named test_scale, which a user of ``--live`` never gave)."""
        from_preset = preset_named(preset).engine_options() if preset is not None else {}
        for row in self:
            value = values.get(row.name, row.default)
            if not row.accepts(kind) and value != row.default:
                what = f"an option of {' and '.join(row.kinds)} bundles, and this bundle's pipeline is {kind}"
                if row.name in from_preset and row.name not in set(given):
                    name = preset_named(preset).name  # type: ignore[arg-type]
                    flag, drop = (" (zsseg camera --live)", "--live") if name == LIVE.name else ("", "the preset")
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


# the CUDA post-processing's kernels (ops.segment_windows_kernels(), the native list, read here without the native
# module; python_tests/runtime/test_postprocess_choice.py checks they are the same): the first is the reference
POSTPROCESS_KERNELS = ("tiled", "columns", "columns_chain", "warps")
_BACKENDS = "zsseg_rt.runtime.backends.table:backend_names"
_PRECISIONS = "zsseg_rt.runtime.backends.table:precision_names"
_WINDOWED_ONLY = (
    "bundles of the two-stage pipeline run the whole image through the mask branch and CLIP on the proposals' crops, "
    "resized as the official code does"
)

ENGINE_OPTIONS = OptionTable(
    [
        EngineOption(
            "backend",
            "auto",
            "str or a Backend",
            "auto (default): TensorRT when engines were built (`zsseg build-engine`) and TensorRT imports; on a CPU "
            "the fastest "
            "path that passed the accuracy gate here (prepared by `zsseg build-engine BUNDLE --backend auto`), else "
            'ONNX Runtime fp32; or a backend of the table (docs/development.md, "Backends"; openvino: pip install '
            "openvino; torch: the checkpoint the bundle was exported from).",
            doc='One INFO line on the "zsseg_rt" logger says which path auto runs and why. Python also takes a '
            "ready ``Backend`` object (e.g. the accuracy gate's).",
            flag="--backend",
            choices=_BACKENDS,
        ),
        EngineOption(
            "device",
            "auto",
            "str",
            "auto (default: a GPU when the backend can use one, else the CPU, said in one INFO line), cpu, or cuda "
            "(cuda:N: the torch backend's GPU N): a GPU, refused in one line with the reason where none is usable "
            "(never a silent CPU run). The ONNX Runtime and torch backends take cuda.",
            flag="--device",
            choices=("auto", "cpu", "cuda"),
            pattern=(r"cuda:\d+", "cuda:N"),
        ),
        EngineOption(
            "mode",
            "exact",
            "str",
            "post-processing order: exact (the papers' order: calibrate every window at crop resolution, average the "
            "windows, resize, argmax) or fast (single-window images: one fused upsample+calibration+argmax straight "
            "to the output size, less memory and latency; multi-window images as exact). The default: exact; `zsseg "
            "camera`: fast where the bundle's pipeline has it. Not `zsseg eval --mode slide|whole`, which chooses the "
            "windows of PyTorch checkpoints.",
            doc="exact is in fp32, so labels can differ from another fp32 implementation only where two classes tie "
            "within ~1e-7. Bundles of the two-stage pipeline have the official order only (exact).",
            flag="--mode",
            choices=("exact", "fast"),
            cli_defaults=(("camera", "fast"),),
        ),
        EngineOption(
            "unknown_below",
            None,
            "float or None",
            "label a pixel unknown when its best class's probability is below P (0 <= P <= 1): the reserved id 255 "
            "(65535 with more than 255 classes), named 'unknown' in classes.json, the COCO file, the robot outputs' "
            "LabelInfo and the legend, black in the views. Default: off, every pixel gets its best class (the "
            'official outputs). The probability of each model family: docs/usage.md, "Unknown pixels".',
            doc="The probability read is ``Result.probability`` where the bundle's pipeline gives one (the "
            "two-stage pipeline: the semantic score over the proposals' mask mass), else ``Result.scores`` (the "
            "post-processing's winning score: a calibrated sigmoid score, a softmax probability, a segment's class "
            "probability); docs/usage.md has each model family's. ``Result.unknown_id`` is the id, "
            "``Result.class_map()`` names it.",
            flag="--unknown-below",
            metavar="P",
            bounds=(0.0, 1.0),
        ),
        EngineOption(
            "max_batch",
            None,
            "int or None",
            "windows run through the image encoder together (two-stage pipeline: crops per CLIP encoder call); None: "
            "the pipeline's ({0} windows; {1} crops).",
            doc="A list of images packs the windows (crops) of all its images into calls of at most this many, "
            "holding at most one call's images at a time (docs/usage.md). In whole-image inference a call holds "
            "consecutive images whose rescaled sizes give the same graph input (one image per call otherwise).",
            minimum=1,
            default_from=(
                "zsseg_rt.runtime.pipelines.windowed:WindowedPipeline.default_max_batch",
                "zsseg_rt.runtime.pipelines.two_stage:TwoStagePipeline.default_max_batch",
            ),
        ),
        EngineOption(
            "verify",
            True,
            "bool",
            "check the sha256 of the bundle files the chosen backend opens (the tokenizer, and the ONNX graphs for "
            "ONNX Runtime; TensorRT engines are checked against their engine.json).",
            doc="Verified files are remembered by (size, mtime, ctime, inode, sha256), so a restart does not hash "
            "them again (``runtime/file_verification.py``).",
        ),
        EngineOption(
            "model",
            None,
            "a PyTorch model or None",
            "(torch backend) the PyTorch model to run instead of loading the source checkpoint.",
            workers=False,
            not_in_workers="a PyTorch model object stays in the process that made it",
        ),
        EngineOption(
            "precision",
            None,
            "str or None",
            "default: the backend's own (TensorRT fp16, else fp32); a reduced precision runs only after its accuracy "
            "gate passed on this machine, prepared and gated on first use or ahead by `zsseg build-engine` "
            "(docs/precision.md); auto: the fastest precision that passed the gate on this CPU, else fp32. Each "
            "backend's:",
            doc='backend="auto" on a CPU: None runs the fastest path that passed the accuracy gate on this CPU (a '
            'gate record\'s measured speed ranks it), else the exact fp32 graphs; "fp32" always runs the exact '
            "graphs. ``engine.backend.precision`` says what runs.",
            flag="--precision",
            choices=_PRECISIONS,
            more_help="zsseg_rt.runtime.backends.table:precision_help",
        ),
        EngineOption(
            "threads",
            0,
            "int",
            "intra-op threads of the ONNX Runtime backend, INFERENCE_NUM_THREADS of the OpenVINO backend; 0 lets the "
            "runtime choose.",
            minimum=0,
        ),
        EngineOption(
            "device_pipeline",
            "auto",
            "str or bool",
            "auto keeps a frame's data on the GPU where it can (TensorRT, torch on CUDA): one upload of the frame, "
            "pre-processing, encoder, head and the exact post-processing on one stream, one download of labels and "
            "scores (``runtime/device/device_pipeline.py``); True requires it, False uses the host path.",
            choices=("auto", True, False),
        ),
        EngineOption(
            "postprocess_kernel",
            "auto",
            "str",
            "the device pipeline's CUDA post-processing kernel: auto (default) times each exact candidate on the "
            "first frame of each frame size and class count, before its CUDA graph is captured, and keeps the "
            "fastest whose labels and scores match the reference kernel's (tiled); a name pins that kernel. Only a "
            "device pipeline on a GPU (exact mode) launches it: elsewhere one INFO line says it changes nothing.",
            doc="``Engine.device_stats['postprocess_kernel']`` says which kernel runs for each geometry and, where "
            "it was timed, each candidate's device time and why any failed its check "
            "(``runtime/device/postprocess_choice.py``).",
            flag="--postprocess-kernel",
            choices=("auto",) + POSTPROCESS_KERNELS,
            kinds=("windowed",),
            refusal="bundles of the two-stage pipeline post-process on the host (no device pipeline)",
        ),
        EngineOption(
            "inference",
            "auto",
            "str",
            "whole: one pass over the whole rescaled image at its own size; windows: sliding windows of the bundle's "
            "input size; auto (default): the bundle's choice, its model's official test mode for the vocabulary; "
            "windows for bundles whose image graph has a fixed size.",
            doc="``Result.inference`` says which ran.",
            flag="--inference",
            choices=("auto", "whole", "windows"),
            kinds=("windowed",),
            refusal=_WINDOWED_ONLY,
        ),
        EngineOption(
            "whole_fallback",
            None,
            "str or None",
            "whole-image inference of an image larger than the bundle's image graph was exported for "
            "(meta.json whole_image.max_side / max_short_side): windows runs it in windows instead of refusing it "
            "(default: refuse, InputLimitError).",
            doc='Its ``Result.inference`` is then "windows".',
            flag="--whole-fallback",
            choices=(None, "windows"),
            kinds=("windowed",),
            refusal=_WINDOWED_ONLY,
        ),
        EngineOption(
            "max_pixels",
            None,
            "int or None",
            "pixel limit of an image, read from a file's header before decoding: larger images are refused "
            "(default: $ZSSEG_MAX_PIXELS or {0}, the package's one limit; 0 = no limit).",
            doc="An image over a limit is refused with ``InputLimitError`` (a ValueError) naming the limit, before "
            'any work (docs/usage.md, "Input limits and memory"). Sides longer than ``pipeline.limits.MAX_SIDE`` (262144) '
            "are always refused.",
            flag="--max-pixels",
            metavar="N",
            minimum=0,
            default_from=("zsseg_rt.image_io:DEFAULT_MAX_PIXELS",),
        ),
        EngineOption(
            "max_rescaled_pixels",
            None,
            "int or None",
            "input limit: pixels after the keep-ratio test rescale (an elongated image grows); None: "
            "``pipeline.InputLimits``' ({0}).",
            minimum=1,
            default_from=("zsseg_rt.pipeline.limits:InputLimits.max_rescaled_pixels",),
        ),
        EngineOption(
            "max_windows",
            None,
            "int or None",
            "input limit: sliding windows per image; None: ``pipeline.InputLimits``' ({0}).",
            minimum=1,
            default_from=("zsseg_rt.pipeline.limits:InputLimits.max_windows",),
        ),
        EngineOption(
            "max_memory_mb",
            None,
            "int or None",
            "input limit: the estimated working memory of one image, in MiB; None: ``pipeline.InputLimits``' ({0}).",
            minimum=1,
            default_from=("zsseg_rt.pipeline.limits:InputLimits.max_memory_mb",),
        ),
        EngineOption(
            "expected_digest",
            None,
            "str or None",
            "refuse the bundle unless its digest is this one (sha256:HEX of its meta.json, which records every "
            "other file's hash; `zsseg export` prints it): the bundle's hashes show integrity, a pinned digest "
            "shows it is the bundle you exported.",
            doc="A bundle whose digest differs is refused with ``BundleError``. Needs ``verify=True``.",
            flag="--bundle-digest",
            metavar="sha256:HEX",
        ),
        EngineOption(
            "allow_partial_images",
            False,
            "bool",
            "decode what a truncated or damaged image file holds (the missing part filled) instead of refusing it "
            "(the default: refused in one line, or skipped with a warning where a command goes on with the next "
            "image).",
            doc="``zsseg_rt.image_io``: by default such a file is refused with ``CorruptImageError``, one line naming "
            "what is wrong. A header that declares more pixels than the data can hold is always refused.",
            flag="--allow-partial-images",
        ),
        EngineOption(
            "prepare",
            "auto",
            "str or None",
            "backend auto on a CPU, faster paths not prepared yet: auto (default: $ZSSEG_AUTO_PREPARE when set, "
            "else nothing is started and one line names them and the step that prepares them, `zsseg build-engine "
            "BUNDLE --backend auto`), none (run what is recorded, say nothing), now (prepare them first, the "
            "progress shown) or background (announced with its cost, prepared on idle CPU while the current path "
            "runs, switched to between frames; stopped with the Engine, what finished is kept).",
            doc="``runtime/upgrade.py``, docs/precision.md. Records go to ``<bundle>/engines``; ``close()`` or "
            "leaving ``with Engine(...)`` stops a background preparation.",
            flag="--prepare",
            choices=("auto", None, "now", "background"),
            cli_values=(("none", None),),
            workers=False,
            not_in_workers="a worker runs one path from its first image to its last, nothing prepared behind its "
            "back: prepare ahead with `zsseg build-engine BUNDLE --backend auto`",
        ),
        EngineOption(
            "cache_dir",
            None,
            "str or None",
            "the folder of the prepared CPU paths' records (default: the bundle's engines/ folder): where `zsseg "
            "build-engine BUNDLE --backend auto --cache-dir DIR` prepared them, the bundle left untouched (a "
            "read-only bundle; one bundle, a folder per machine). backend auto, onnxruntime and openvino read it.",
            doc="Nothing is prepared into it at run time (``prepare='now'`` / ``'background'`` are refused with it); "
            "the one line of ``prepare='auto'`` names the step with ``--cache-dir DIR``.",
            flag="--cache-dir",
            metavar="DIR",
        ),
        EngineOption(
            "test_scale",
            None,
            "(long_max or None, short), 'window' or None",
            "(windowed pipeline) the keep-ratio test resize (long_max or None, short) instead of the bundle's "
            "(meta.json test_scale, e.g. (None, 512): the short side 512). Not the official resize: an option for speed.",
            doc='``"window"`` (or ``(S, S)`` with S the graph size) fits an image in one window of S x S (a 768x576 '
            "frame: 512x384 in one window, zero-padded, instead of 683x512 in two): about half the encoder's work, at "
            "a lower resolution (the :data:`LIVE` preset, ``zsseg camera --live``). The input limits follow it.",
            kinds=("windowed",),
            refusal=_WINDOWED_ONLY,
        ),
        EngineOption(
            "object_min_area",
            0.001,
            "float",
            "objects (`Result.objects()`, --objects): the smallest connected region of a class that becomes an "
            "object, as a fraction of the frame's pixels (0 <= F <= 1, rounded up to whole pixels; 0 keeps every "
            "region). The default, 0.001 (443 pixels of a 768x576 frame, 308 of 640x480), is a little more than one "
            "patch of the encoder at the bundle's resize (16x16 at a 512-pixel short side: 18x18 = 324 pixels of a "
            "576-row frame): smaller regions are below what the model resolves, mostly the argmax's speckle at "
            "class borders.",
            doc="``zsseg_rt.runtime.objects`` (``find_objects``); ``Result.objects(min_area=...)`` overrides it.",
            flag="--object-min-area",
            metavar="F",
            bounds=(0.0, 1.0),
        ),
        EngineOption(
            "max_objects",
            100,
            "int",
            "objects (`Result.objects()`, --objects): at most this many a frame, the first in their order (class, "
            "then area, largest first); the regions over it are counted (`dropped`). The default, 100, is COCO's "
            "detections per image (maxDets).",
            doc="``Result.objects(max_objects=...)`` overrides it.",
            flag="--max-objects",
            metavar="N",
            minimum=1,
        ),
    ]
)


# ---- presets ---------------------------------------------------------------------------------------------------
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

    def __post_init__(self) -> None:
        ENGINE_OPTIONS.check_names(dict(self.engine), f"Preset {self.name!r}")

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


_LIVE_EVERY, _LIVE_FLOW = 4, ("fast", 4)  # the live preset's keyframe interval and flow (DIS preset, stride)
LIVE = Preset(
    "live",
    engine=(("test_scale", "window"),),
    video=(("keyframe_every", _LIVE_EVERY), ("flow_preset", _LIVE_FLOW[0]), ("flow_stride", _LIVE_FLOW[1])),
    summary='camera rate, NOT faithful to per-frame inference (docs/video.md, "Live video"): each frame fitted in '
    "one window of the encoder's size (a 768x576 frame runs at 512x384 in one encoder call instead of 683x512 in "
    f"two), the encoder on every {_LIVE_EVERY}th frame with the labels propagated along a cheaper optical flow (DIS "
    f"'{_LIVE_FLOW[0]}' at 1/{_LIVE_FLOW[1]} of the frame) in between",
)
PRESETS: Dict[str, Preset] = {LIVE.name: LIVE}


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
