"""What each :class:`~zsseg_rt.stream.loop.session_options.SessionOptions` field takes, as rows (issue 87, M4): a
Python app's ``Session(..., max_frames=0)`` is refused as ``zsseg camera --max-frames 0`` is, in one line and before
anything opens, in the words of a Python caller (the field's name, what it takes, what was given), never a flag's.
Issue 88 turns the Session's options into the rows of one table; these rows are what it absorbs (name, kind, range).

``outputs`` is normalised here too (M5): a string or path is one output, never iterated character by character.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from typing import Any, Iterable, List, Optional, Tuple

__all__ = ["SESSION_RULES", "OptionRule", "check_session_options", "one_or_many_outputs"]

_WHOLE, _REAL, _BOOL, _TEXT, _PATH, _PORT, _MAPPING = "whole", "real", "bool", "text", "path", "port", "mapping"


@dataclasses.dataclass(frozen=True)
class OptionRule:
    """One option's rule: ``kind`` (a whole number, a finite real number, True/False, a string, a path, a TCP port,
    a mapping), its bounds (``low``: >=, ``above``: >, ``high``: <=), and whether None (the command's default) is
    taken."""

    name: str
    kind: str
    low: Optional[float] = None
    above: Optional[float] = None
    high: Optional[float] = None
    none: bool = True

    def expected(self) -> str:
        """What it takes, in words: ``a whole number >= 1``, ``a finite number > 0``, ``True or False``, ..."""
        none = ", or None" if self.none else ""
        if self.kind == _PORT:
            return f"a TCP port number 0..65535 (0: any free port){none}"
        base = {
            _WHOLE: "a whole number",
            _REAL: "a finite number",
            _BOOL: "True or False",
            _TEXT: "a string",
            _PATH: "a path (str or os.PathLike)",
            _MAPPING: "a dict",
        }[self.kind]
        bounds = [f"> {self.above:g}"] if self.above is not None else []
        bounds += [f">= {self.low:g}"] if self.low is not None else []
        bounds += [f"<= {self.high:g}"] if self.high is not None else []
        return f"{base} {' and '.join(bounds)}".strip() + none

    def problem(self, value: Any) -> Optional[str]:
        """Why ``value`` is refused (``expected ..., got ...``), or None when it is taken."""
        if value is None and self.none:
            return None
        if not self._kind_ok(value) or not self._in_range(value):
            return f"expected {self.expected()}, got {value!r}"
        return None

    def _kind_ok(self, value: Any) -> bool:
        if self.kind == _BOOL:
            return isinstance(value, bool)
        if self.kind in (_WHOLE, _PORT):
            return isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if self.kind == _REAL:
            return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
        if self.kind == _TEXT:
            return isinstance(value, str)
        if self.kind == _PATH:
            return isinstance(value, (str, os.PathLike)) and bool(os.fspath(value))
        return isinstance(value, dict)

    def _in_range(self, value: Any) -> bool:
        if self.kind == _PORT:
            return 0 <= int(value) <= 65535
        if self.kind not in (_WHOLE, _REAL):
            return True
        number = float(value)
        return (
            (self.low is None or number >= self.low)
            and (self.above is None or number > self.above)
            and (self.high is None or number <= self.high)
        )


# every field of SessionOptions but ``outputs`` (one_or_many_outputs), in the order of the dataclass
SESSION_RULES: Tuple[OptionRule, ...] = (
    OptionRule("labels_out", _PATH),
    OptionRule("save_json", _PATH),
    OptionRule("objects", _BOOL, none=False),
    OptionRule("stats_json", _PATH),
    OptionRule("overwrite", _BOOL, none=False),
    OptionRule("preview", _PORT),
    OptionRule("preview_host", _TEXT, none=False),
    OptionRule("preview_readonly", _BOOL, none=False),
    OptionRule("class_file", _PATH),
    OptionRule("width", _WHOLE, low=1),
    OptionRule("height", _WHOLE, low=1),
    OptionRule("fps", _REAL, above=0),
    OptionRule("loop", _BOOL, none=False),
    OptionRule("every_frame", _BOOL, none=False),
    OptionRule("max_frames", _WHOLE, low=1),
    OptionRule("max_reconnects", _WHOLE, low=0),
    OptionRule("legend", _BOOL, none=False),
    OptionRule("allow_partial_images", _BOOL, none=False),
    OptionRule("live", _BOOL, none=False),
    OptionRule("stabilize", _BOOL, none=False),
    OptionRule("stabilize_delay", _WHOLE, low=1),
    OptionRule("keyframe_every", _WHOLE, low=1),
    OptionRule("adaptive_keyframes", _BOOL, none=False),
    OptionRule("temporal_consistency", _BOOL, none=False),
    OptionRule("in_flight", _WHOLE, low=1, none=False),
    OptionRule("frame_id", _TEXT, none=False),
    OptionRule("overlay_topic", _BOOL, none=False),
    OptionRule("output_options", _MAPPING, none=False),
)


def one_or_many_outputs(outputs: Any) -> List[str]:
    """``outputs`` as a list of specs: a string or path is one output (M5: ``outputs="o.mp4"`` wrote one output per
    character); a list (any iterable) of them, each one.

    Raises:
        ValueError: ``outputs: expected ...``, naming the item that is neither.
    """
    if isinstance(outputs, (str, os.PathLike)):
        outputs = [outputs]
    if isinstance(outputs, (bytes, dict)) or not isinstance(outputs, Iterable):
        raise ValueError(f"outputs: expected an output (a string: 'out.mp4') or a list of them, got {outputs!r}")
    specs = []
    for spec in outputs:
        if not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec):
            raise ValueError(f"outputs: expected each output as a string ('out.mp4', 'frames/'), got {spec!r}")
        specs.append(os.fspath(spec))
    return specs


def check_session_options(options: Any) -> None:
    """Refuse, in one line and before anything opens, a field ``options`` holds that its rule does not take.

    Raises:
        ValueError: ``max_frames: expected a whole number >= 1, or None, got 0``.
    """
    for rule in SESSION_RULES:
        problem = rule.problem(getattr(options, rule.name))
        if problem is not None:
            raise ValueError(f"{rule.name}: {problem}")
