"""Hypothesis strategies the op tests share."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def resize_cases(draw):
    """``((b, c, h, w), (H, W), crop)`` of a resize op (``ops.upsample``, ``ops.segment``): a small logits shape, an
    output size, and half the time a crop ``(top, left, height, width)`` inside the logits."""
    b, c = draw(st.integers(1, 2)), draw(st.integers(1, 12))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    size = (draw(st.integers(1, 70)), draw(st.integers(1, 70)))
    crop = None
    if draw(st.booleans()):
        top, left = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        crop = (top, left, draw(st.integers(1, h - top)), draw(st.integers(1, w - left)))
    return (b, c, h, w), size, crop
