"""Frame sources: V4L2 cameras, Jetson CSI cameras (GStreamer), RTSP/HTTP streams, video files, image folders.

Every source yields BGR uint8 ``[H, W, 3]`` frames through ``read() -> Optional[np.ndarray]`` (None: no frame:
the source is lost or, for finite sources, ended; ``ended`` tells which) and is (re)opened with ``open()``.
Use ``open_source("csi://0")`` / ``parse_source(spec)`` to go from a user string to a source. The kinds are one
table (``SOURCE_KINDS`` in :mod:`.table`): each kind is one module of this package and one row there.
"""

from __future__ import annotations

from .base import (
    IMAGE_EXTENSIONS,
    MISSING_KEPT,
    VIDEO_EXTENSIONS,
    FrameSource,
    SourceError,
    SourceSpec,
    missing_note,
    quiet_opencv,
)
from .callable import CallableSource
from .csi import csi_pipeline
from .folder import ImageFolderSource
from .network import NETWORK_SCHEMES
from .opencv import OpenCVSource
from .pyav_file import MAX_DAMAGED_IN_A_ROW, PyAVFileSource, ffmpeg_logs_to_python, pyav_available
from .table import (
    SOURCE_KINDS,
    OpenOptions,
    SourceKind,
    open_source,
    parse_source,
    source_kind,
    source_label,
    split_source_name,
    unique_labels,
)
from .v4l2 import check_v4l2_device, v4l2_device_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_DAMAGED_IN_A_ROW",
    "MISSING_KEPT",
    "NETWORK_SCHEMES",
    "SOURCE_KINDS",
    "VIDEO_EXTENSIONS",
    "CallableSource",
    "FrameSource",
    "ImageFolderSource",
    "OpenCVSource",
    "OpenOptions",
    "PyAVFileSource",
    "SourceError",
    "SourceKind",
    "SourceSpec",
    "check_v4l2_device",
    "csi_pipeline",
    "ffmpeg_logs_to_python",
    "missing_note",
    "open_source",
    "parse_source",
    "pyav_available",
    "quiet_opencv",
    "source_kind",
    "source_label",
    "split_source_name",
    "unique_labels",
    "v4l2_device_path",
]
