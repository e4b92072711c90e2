"""Live video at camera rate (``zsseg camera --live``; docs/video.md, "Live video"): the :data:`LIVE` preset, one
object (``zsseg_rt.options.LIVE``) that the Engine and the ``VideoSegmenter`` take, for the command and for Python.
**Not faithful to per-frame inference**: each frame fitted in one window of the graph's size (the Engine's
``test_scale="window"``), the encoder on every 4th frame with the labels propagated between, a cheaper optical flow
(DIS preset "fast", 1/4 of the frame) so that the flow stays under 10 % of the frame time (BENCHMARKS.md, "Live
video", measures the rate, the flow's share and the agreement with full-size per-frame labels)::

    video = VideoSegmenter(Engine(bundle, classes="person,car", preset=LIVE))   # the segmenter takes the Engine's
    video.trades()["line"]                                                      # what it trades, in one sentence

The names below are the preset's values, kept for the code written before it.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from zsseg_rt.options import LIVE

__all__ = ["LIVE", "LIVE_FLOW", "LIVE_KEYFRAME_EVERY", "LIVE_TEST_SCALE", "live_options"]

LIVE_TEST_SCALE = LIVE.engine_options()["test_scale"]  # Engine(test_scale=...): one window of the graph's size
LIVE_KEYFRAME_EVERY = LIVE.video_options()["keyframe_every"]
LIVE_FLOW = (LIVE.video_options()["flow_preset"], LIVE.video_options()["flow_stride"])  # the default: ("medium", 2)


def live_options(keyframe_every: Optional[int] = None, adaptive: bool = False) -> Dict[str, Any]:
    """``VideoSegmenter``'s keywords of the live preset: a keyframe every ``LIVE_KEYFRAME_EVERY`` frames unless an
    interval is given (with ``adaptive`` that is the longest gap: earlier when the flow's confidence drops), and the
    cheaper flow. ``adaptive`` itself is the caller's keyword (``VideoSegmenter(adaptive=True)``). A ``VideoSegmenter``
    of an Engine opened with ``preset=LIVE`` takes these itself."""
    options = LIVE.video_options()
    if keyframe_every is not None:
        options["keyframe_every"] = keyframe_every
    return options
