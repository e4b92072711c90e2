"""argparse types shared by the ``zsseg`` commands: a value out of its range is a usage error naming the flag and
what was expected (argparse prints ``argument --max-frames: expected a whole number >= 1, got '-1'`` and exits 2),
before any model, camera, port or Ray cluster is touched; never a traceback later, never a silent clamp.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional, Sequence, TypeVar

from zsseg_rt.runtime.backends.table import backend_names, precision_names

__all__ = ["whole_number", "real_number", "port_number", "add_engine_arguments", "BACKEND_CHOICES", "DEMO_METHOD"]

T = TypeVar("T")

DEMO_METHOD = "scclip-vitb16"  # zsseg demo --method's default (SC-CLIP); its family's configs are the demo's methods

# The backend table's names (built-in rows, then installed entry points) and its precisions: the one list of each
# (zsseg_rt/runtime/backends/table.py; importing it costs no NumPy and no runtime library)
BACKEND_CHOICES = tuple(backend_names())
PRECISION_CHOICES = tuple(precision_names())


def add_engine_arguments(
    p: argparse.ArgumentParser,
    *,
    backend_help: str,
    device_help: str,
    mode_help: str,
    precision_help: Optional[str] = None,
    backends: Sequence[str] = BACKEND_CHOICES,
    mode: str = "exact",
) -> None:
    """``--backend``, ``--device``, ``--mode`` (and with ``precision_help``, ``--precision``) of a command that runs
    an Engine: the same choices and defaults everywhere (but ``backends`` and the default ``mode`` given), each
    command's own help."""
    p.add_argument("--backend", default="auto", choices=list(backends), help=backend_help)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help=device_help)
    p.add_argument("--mode", default=mode, choices=["exact", "fast"], help=mode_help)
    if precision_help is not None:
        p.add_argument("--precision", default=None, choices=list(PRECISION_CHOICES), help=precision_help)


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
