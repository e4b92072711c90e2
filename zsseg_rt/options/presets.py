"""Presets: named sets of Engine options and ``VideoSegmenter`` keywords (:data:`LIVE`: ``zsseg camera --live``)."""

from __future__ import annotations

from zsseg_rt.options.engine_rows import ENGINE_OPTIONS
from zsseg_rt.options.table import PRESETS, Preset, preset_named

__all__ = ["LIVE", "PRESETS", "Preset", "preset_named"]

_LIVE_EVERY, _LIVE_FLOW = 4, ("fast", 4)  # the live preset's keyframe interval and flow (DIS preset, stride)
LIVE = Preset(
    "live",
    engine=(("test_scale", "window"),),
    video=(("keyframe_every", _LIVE_EVERY), ("flow_preset", _LIVE_FLOW[0]), ("flow_stride", _LIVE_FLOW[1])),
    summary='camera rate, NOT faithful to per-frame inference (docs/video.md, "Live video"): each frame fitted in '
    "one window of the encoder's size (a 768x576 frame runs at 512x384 in one encoder call instead of 683x512 in "
    f"two), the encoder on every {_LIVE_EVERY}th frame with the labels propagated along a cheaper optical flow (DIS "
    f"'{_LIVE_FLOW[0]}' at 1/{_LIVE_FLOW[1]} of the frame) in between",
    flag="--live",
)
ENGINE_OPTIONS.check_names(LIVE.engine_options(), f"Preset {LIVE.name!r}")
PRESETS[LIVE.name] = LIVE
