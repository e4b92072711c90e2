"""The video filter (``--stabilize``, keyframes, ``--stabilize-delay``): labels that hold still from frame to frame.

- :mod:`.temporal`: the causal filter (``TemporalOptions``, ``StreamFilter``: optical flow, blend, hysteresis).
- :mod:`.lookahead`: the look-ahead for recorded video (``--stabilize-delay N``).
- :mod:`.filter_arrays`: where the filter's state lives (host NumPy arrays or the device pipeline's buffers).
- :mod:`.video`: ``VideoSegmenter``, an Engine with the filter per stream (what the stream loop calls).
- :mod:`.video_metrics`: the video metrics (flicker, temporal consistency) of docs/video.md.

The old paths (``zsseg_rt.stream.temporal``, ...) are deprecated aliases of these modules (removed in 0.2.0).
"""
