"""The robot outputs of ``zsseg camera`` (``-o out.mcap``, ``-o foxglove://HOST:PORT``; docs/usage.md, "For
robots"): their options (``--frame-id``, ``--no-overlay-topic``: the rows' own options), the one-line refusal of an output whose Python
packages are missing (the ``robots`` extra) and the ``SinkOptions`` an ``-o`` spec is opened with, which are the core's
(``zsseg_rt.stream.loop.session_options``; kept here by these names for one release). The kinds
themselves are rows of :mod:`zsseg_rt.outputs.kinds`. Light at import (the CLI's ``--help``)."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

__all__ = ["add_robot_arguments", "check_output_needs", "sink_options"]


def add_robot_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the output kinds' own options (the robot outputs' ``--frame-id``, ``--no-overlay-topic``: rows of
    ``zsseg_rt.outputs.kinds``) to the ``camera`` parser."""
    from zsseg_rt.outputs.kinds import add_output_arguments

    add_output_arguments(parser, "-o")


def check_output_needs(specs: Sequence[str]) -> None:
    """An ``-o`` whose packages are missing, refused in one line (``zsseg_rt.stream.loop.session_options``)."""
    from zsseg_rt.stream.loop.session_options import check_output_needs as check

    check(specs, "camera")


def sink_options(args: Any, fps: float, names: Sequence[str], staged: Any = None, title: str = "zsseg") -> Any:
    """The ``SinkOptions`` of one ``-o`` sink (``zsseg_rt.stream.loop.session_options.sink_options``)."""
    from types import SimpleNamespace

    from zsseg_rt.outputs.kinds import objects_needed, output_values
    from zsseg_rt.stream.loop.session_options import sink_options as options_of

    objects = bool(objects_needed(args))  # objects on the topics
    given = SimpleNamespace(output_options=output_values(args, "-o"), objects=objects)
    return options_of(given, fps, names, staged, title)
