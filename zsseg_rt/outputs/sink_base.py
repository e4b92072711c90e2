"""The sink interface of the stream loop (``FrameSink``) and its error (``SinkError``); the sinks themselves are in
:mod:`zsseg_rt.outputs.sinks` (a window, the MJPEG preview) and :mod:`zsseg_rt.outputs.file_sinks` (files)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from zsseg_rt.errors import ZssegError

__all__ = ["FrameSink", "SinkError"]


class SinkError(ZssegError, RuntimeError):
    """A sink could not be created or written."""


class FrameSink:
    """Interface: ``write(frame)`` (BGR uint8 ``[H, W, 3]``), ``close()``; ``stop_requested`` when the sink asks
    the stream to stop (e.g. the window's q / Esc key)."""

    name = "sink"
    stop_requested = False
    takes_number = False  # a sink that names what it writes by the frame's number (frames/): write_numbered
    output_kind: Optional[str] = None  # the output kind's row that opened it (its "wrote ..." line), if any

    def write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def write_numbered(self, frame: np.ndarray, number: int) -> None:
        """``frame``, named by the source's frame ``number`` (its presentation time: a lost frame leaves a gap); a
        sink that names nothing writes it as any frame."""
        self.write(frame)

    def write_stream(self, index: int, frame: np.ndarray) -> None:
        """A frame of source ``index`` of several (a sink shared by the sources of a multi-source stream, such as
        the preview grid); a sink that shows one stream takes only source 0's."""
        if index == 0:
            self.write(frame)

    def finish(self) -> None:
        """Complete what was written (a video's last fragment) without putting it in place yet: the stream loop
        finishes every sink before it closes any, so that one sink's failure leaves every output as it was."""

    def close(self) -> None:
        """Finish (when not done yet) and put the output in place (a file sink's rename); release the sink."""

    def abort(self) -> None:
        """Release the sink after the run failed: nothing is put in place (a file sink keeps the old file)."""
        self.close()
