"""Camera / video stream segmentation: sources, a newest-frame capture thread, sinks and the stream loop, and the
``Session`` that assembles them as ``zsseg camera`` does (``Session(sources, bundle, classes, outputs=[...])``: iterate
it for each frame's result, or ``run()`` it; zsseg_rt/stream/loop/session.py).

Its rooms: ``sources/`` (one module and one table row per kind of source), ``video_filter/`` (stable labels across
frames), ``loop/`` (the Session, the loop, the capture threads). What OpenCV here can open and show is
:mod:`zsseg_rt.console.opencv_build` (``stream.capabilities`` is its deprecated alias). The outputs (every ``-o`` kind and its sink) are
:mod:`zsseg_rt.outputs`'; their names are exported here too.

No torch import here (the runtime applications' layer: above the runtime, below the family contract). Example::

    from zsseg_rt import Engine
    from zsseg_rt.stream import MjpegSink, StreamRunner, open_source

    engine = Engine("bundle", classes="person,floor,wall")
    runner = StreamRunner(engine, open_source("/dev/video0"), [MjpegSink(8080)])
    runner.run()          # Ctrl-C stops; runner.set_classes([...]) from another thread changes the vocabulary

Several sources, one model (their frames segmented together, one ``engine([...])`` call per step)::

    from zsseg_rt.stream import MultiStreamRunner, VideoFileSink

    sources = [open_source(s) for s in ("/dev/video0", "/dev/video1", "rtsp://dock/live")]
    preview = MjpegSink(8080, streams=["front", "back", "dock"])   # one page: a grid, one class box
    runner = MultiStreamRunner(engine, sources, [[VideoFileSink(f"{n}.mp4")] for n in ("front", "back", "dock")],
                               shared_sinks=[preview], names=["front", "back", "dock"])
    runner.run()

Labels for robots: ROS 2 messages in an MCAP file (``McapSink("out.mcap")``) or served live to Foxglove
(``FoxgloveSink(8765)``), from the loop or from a loop of your own (``sink.write_result(frame, result)``).

Frames one by one with stable labels, without the loop (an application that owns its capture)::

    from zsseg_rt.stream import VideoSegmenter

    video = VideoSegmenter(engine, stabilize=True, keyframe_every=4)
    result = video(frame)   # per frame: a Result with .keyframe (the encoder ran) and .reason
"""

from typing import TYPE_CHECKING, Any, List

from zsseg_rt.console.opencv_build import (
    StreamCapabilityError,
    display_available,
    opencv_has_gstreamer,
    opencv_has_gui,
    require_gstreamer,
    require_window,
)

from .loop.capture import Backoff, Frame, FrameGrabber
from .loop.live import LIVE, LIVE_TEST_SCALE, live_options
from .loop.runner import MultiStreamRunner, SourceStats, StreamRunner, StreamStats
from .loop.session import Session, SessionResult
from .loop.session_options import SessionOptions
from .loop.session_record import replay_arguments
from .loop.vocabulary import ClassFileWatcher, parse_class_text
from .sources import (
    CallableSource,
    FrameSource,
    ImageFolderSource,
    OpenCVSource,
    PyAVFileSource,
    SourceError,
    SourceSpec,
    csi_pipeline,
    open_source,
    parse_source,
)
from .video_filter.temporal import TemporalOptions
from .video_filter.video import VideoResult, VideoSegmenter
from .video_filter.video_metrics import VideoMetrics

# The outputs room's names, imported on first use (PEP 562): importing the stream package loads no sink (the outputs
# room sits below it and imports nothing of it: what both use, OpenCV's capabilities and the file extensions, is in
# zsseg_rt.console.opencv_build and zsseg_rt.input_files).
_FROM_OUTPUTS = {
    "zsseg_rt.outputs.foxglove_sink": "FoxgloveSink",
    "zsseg_rt.outputs.labels": "LabelFolderSink",
    "zsseg_rt.outputs.mcap_sink": "McapSink",
    "zsseg_rt.outputs.kinds": "OUTPUT_KINDS OutputKind open_sink output_kind",
    "zsseg_rt.outputs.robot_sinks": "RobotSink",
    "zsseg_rt.outputs.sinks": "FrameSink ImageFolderSink MjpegSink NullSink SinkError VideoFileSink WindowSink",
}
_LAZY = {name: module for module, names in _FROM_OUTPUTS.items() for name in names.split()}

if TYPE_CHECKING:
    from zsseg_rt.outputs.foxglove_sink import FoxgloveSink
    from zsseg_rt.outputs.kinds import OUTPUT_KINDS, OutputKind, open_sink, output_kind
    from zsseg_rt.outputs.labels import LabelFolderSink
    from zsseg_rt.outputs.mcap_sink import McapSink
    from zsseg_rt.outputs.robot_sinks import RobotSink
    from zsseg_rt.outputs.sinks import (
        FrameSink,
        ImageFolderSink,
        MjpegSink,
        NullSink,
        SinkError,
        VideoFileSink,
        WindowSink,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))


# the old paths of stream/'s modules (now in its rooms and in zsseg_rt/outputs/) are zsseg_rt.aliases.MOVED's

__all__ = [
    "LIVE",
    "LIVE_TEST_SCALE",
    "live_options",
    "Backoff",
    "CallableSource",
    "ClassFileWatcher",
    "Frame",
    "FrameGrabber",
    "FrameSink",
    "FoxgloveSink",
    "FrameSource",
    "ImageFolderSink",
    "ImageFolderSource",
    "LabelFolderSink",
    "McapSink",
    "MjpegSink",
    "MultiStreamRunner",
    "NullSink",
    "OUTPUT_KINDS",
    "OpenCVSource",
    "OutputKind",
    "PyAVFileSource",
    "RobotSink",
    "Session",
    "SessionOptions",
    "SessionResult",
    "SinkError",
    "SourceError",
    "SourceSpec",
    "SourceStats",
    "StreamCapabilityError",
    "StreamRunner",
    "StreamStats",
    "TemporalOptions",
    "VideoFileSink",
    "VideoMetrics",
    "VideoResult",
    "VideoSegmenter",
    "WindowSink",
    "csi_pipeline",
    "display_available",
    "open_sink",
    "open_source",
    "opencv_has_gstreamer",
    "opencv_has_gui",
    "output_kind",
    "parse_source",
    "parse_class_text",
    "replay_arguments",
    "require_gstreamer",
    "require_window",
]
