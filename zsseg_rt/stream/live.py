"""Live video at camera rate (``zsseg camera --live``; docs/video.md, "Live video"): what the option sets, for the
command and for Python. **Not faithful to per-frame inference**: each frame fitted in one window of the graph's size
(``Engine(test_scale=LIVE_TEST_SCALE)``), the encoder on every ``LIVE_KEYFRAME_EVERY``-th frame with the labels
propagated between, a cheaper optical flow (``LIVE_FLOW``: DIS preset, 1/stride of the frame) so that the flow stays
under 10 % of the frame time (BENCHMARKS.md, "Live video", measures the rate, the flow's share and the agreement
with full-size per-frame labels)::

    engine = Engine(bundle, classes="person,car", test_scale=LIVE_TEST_SCALE)
    video = VideoSegmenter(engine, **live_options())
"""

from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = ["LIVE_FLOW", "LIVE_KEYFRAME_EVERY", "LIVE_TEST_SCALE", "live_options"]

LIVE_TEST_SCALE = "window"  # Engine(test_scale=...): one window of the graph's size a frame
LIVE_KEYFRAME_EVERY = 4
LIVE_FLOW = ("fast", 4)  # (DIS preset, flow stride); the default filter's: ("medium", 2)


def live_options(keyframe_every: Optional[int] = None, adaptive: bool = False) -> Dict[str, Any]:
    """``VideoSegmenter``'s keywords of the live option: a keyframe every ``LIVE_KEYFRAME_EVERY`` frames unless an
    interval is given (with ``adaptive`` that is the longest gap: earlier when the flow's confidence drops), and the
    cheaper flow. ``adaptive`` itself is the caller's keyword (``VideoSegmenter(adaptive=True)``)."""
    every = keyframe_every if keyframe_every is not None else LIVE_KEYFRAME_EVERY
    return {"keyframe_every": every, "flow_preset": LIVE_FLOW[0], "flow_stride": LIVE_FLOW[1]}
