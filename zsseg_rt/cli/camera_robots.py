"""The robot outputs of ``zsseg camera`` (``-o out.mcap``, ``-o foxglove://HOST:PORT``; docs/usage.md, "For
robots"): their options (``--frame-id``, ``--no-overlay-topic``), the one-line refusal of an output whose Python
packages are missing (the ``robots`` extra), and the ``SinkOptions`` an ``-o`` spec is opened with. The kinds
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
    """Refuse, in one line that says what to install, an ``-o`` whose kind needs Python packages this environment
    lacks (an MCAP file: mcap, mcap-ros2-support; Foxglove: foxglove-sdk), before anything runs.

    Raises:
        CliError: ``zsseg camera needs ..., which this environment lacks (...): pip install "zsseg_rt[robots]"``.
    """
    from zsseg_rt.cli import Needs
    from zsseg_rt.cli_errors import CliError
    from zsseg_rt.stream.output_kinds import output_kind

    for spec in specs:
        kind = output_kind(spec)
        if kind is None or not kind.modules:
            continue
        needs = Needs(f"{', '.join(kind.modules)} for -o {spec}", kind.extra, kind.modules)
        missing = needs.missing()
        if missing:
            raise CliError(needs.refusal("camera", missing))


def sink_options(args: Any, fps: float, names: Sequence[str], staged: Any = None, title: str = "zsseg") -> Any:
    """The ``SinkOptions`` of one ``-o`` sink: ``names``, the sources it shows (one, or every source of a shared
    robot output)."""
    from zsseg_rt.stream.output_kinds import SinkOptions

    return SinkOptions(
        fps=fps,
        staged=staged,
        sources=list(names),
        frame_id=getattr(args, "frame_id", "{source}"),
        overlay=not getattr(args, "no_overlay_topic", False),
        title=title,
    )
