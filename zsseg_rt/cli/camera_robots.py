"""The robot outputs of ``zsseg camera`` (``-o out.mcap``, ``-o foxglove://HOST:PORT``; docs/usage.md, "For
robots"): their options (``--frame-id``, ``--no-overlay-topic``), the one-line refusal of an output whose Python
packages are missing (the ``robots`` extra) and the ``SinkOptions`` an ``-o`` spec is opened with, which are the core's
(``zsseg_rt.stream.session_options``; kept here by these names for one release). The kinds
themselves are rows of :mod:`zsseg_rt.stream.output_kinds`. Light at import (the CLI's ``--help``)."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

__all__ = ["add_robot_arguments", "check_output_needs", "sink_options"]


def add_robot_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the robot outputs' options to the ``camera`` parser."""
    group = parser.add_argument_group("robot outputs: -o out.mcap, -o foxglove://HOST:PORT (docs/usage.md)")
    group.add_argument(
        "--frame-id",
        default="{source}",
        metavar="ID",
        help="header.frame_id of the ROS 2 messages of -o out.mcap / foxglove://; {source} is the source's name "
        "(default: the source's name)",
    )
    group.add_argument(
        "--no-overlay-topic",
        action="store_true",
        help="leave out /SOURCE/overlay (the overlay as JPEG) of -o out.mcap / foxglove://: labels and label_info only",
    )


def check_output_needs(specs: Sequence[str]) -> None:
    """An ``-o`` whose packages are missing, refused in one line (``zsseg_rt.stream.session_options``)."""
    from zsseg_rt.stream.session_options import check_output_needs as check

    check(specs, "camera")


def sink_options(args: Any, fps: float, names: Sequence[str], staged: Any = None, title: str = "zsseg") -> Any:
    """The ``SinkOptions`` of one ``-o`` sink (``zsseg_rt.stream.session_options.sink_options``)."""
    from types import SimpleNamespace

    from zsseg_rt.stream.session_options import sink_options as options_of

    given = SimpleNamespace(
        frame_id=getattr(args, "frame_id", "{source}"), overlay_topic=not getattr(args, "no_overlay_topic", False)
    )
    return options_of(given, fps, names, staged, title)
