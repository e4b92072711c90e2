"""What the commands that hand their results over one by one (``zsseg batch``: each image's label map, where the
driver receives it; ``zsseg segment``) give the output kinds' sinks beside each result (:class:`ResultFrame`), and
the flags of the rows those commands take (:func:`add_result_outputs`, :func:`results_help`). Their outputs are
planned, staged and put in place by the one front end of every command, :class:`~.run_outputs.RunOutputs`
(``RunOutputs.opened``, ``add``, ``finish``): the rows' sinks (``write_result``: the COCO masks are the coco row's
``CocoSink`` on every command, the one COCO writer), the rows' own options as flags and their "wrote ..." lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any, Dict, Optional

from .kinds import kinds_for, output_kind

__all__ = ["ResultFrame", "add_result_outputs", "results_help"]


@dataclasses.dataclass(frozen=True)
class ResultFrame:
    """What a result sink is given beside a command's result (the stream loop gives a source's frame): ``index``, the
    image's place in the run (from 0) or the video frame's number; ``path``, the image file; ``video``, the video file
    of a frame (``path`` None); ``stream``: 0, one stream. ``file_name`` and ``details``: its name in a file of
    results (the image's path, or ``STEM/frame_000042.png``: ``zsseg_rt.runtime.coco.frame_file_name``) and what its
    entry says besides (a video frame's ``frame`` and ``video``)."""

    index: int
    path: Optional[str] = None
    video: Optional[str] = None
    stream: int = 0

    @property
    def file_name(self) -> str:
        from zsseg_rt.runtime.coco import frame_file_name

        if self.video is not None:
            return frame_file_name(os.path.splitext(self.video)[0], int(self.index))
        return str(self.path)

    @property
    def details(self) -> Dict[str, Any]:
        return {} if self.video is None else {"frame": int(self.index), "video": self.video}


def results_help(command: str, option: str = "-o") -> str:
    """What ``option`` of ``command`` takes besides its own outputs, from the rows: "" when no row has it."""
    kinds = kinds_for(option, command)
    return "" if not kinds else "; also (repeatable): " + ", ".join(kind.words or kind.example for kind in kinds)


def add_result_outputs(parser: Any, command: str, option: str = "-o") -> Any:
    """The rows' outputs on a command whose ``option`` is its own (``zsseg segment -o DIR``) or absent (``zsseg
    batch``): a spec of a kind the command takes is gathered in ``args.outputs``; anything else is the command's
    own value (``args.output``), or refused where the command has none. The kinds' own options become flags.
    Returns the argparse action of ``option`` that gathers them."""
    from .kinds import add_output_arguments

    parser.set_defaults(outputs=None)
    add_output_arguments(parser, option, command)

    class _Gather(argparse.Action):
        def __call__(self, parser, namespace, value, option_string=None):
            kind = output_kind(value, option)
            if kind is not None and command in kind.commands:
                namespace.outputs = [*(getattr(namespace, "outputs", None) or []), value]
            elif self.dest == "outputs":
                known = ", ".join(row.example for row in kinds_for(option, command))
                parser.error(f"argument {option}: expected one of {known}, got {value!r}")
            else:
                setattr(namespace, self.dest, value)

    return _Gather
