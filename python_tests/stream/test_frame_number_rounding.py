"""A file source's frame numbers (``FrameSource._place``: round((pts - start) x fps), issue 79 F3) never repeat: a
variable frame rate's rounding that gives a frame the number of the one before makes it the next number, so no two
frames of a run share an output name (issue 79 item 2, mutant frames-share-a-number: ``<=`` read ``<``; the clip
tests' frames are evenly spaced, so no two rounded alike)."""

from __future__ import annotations

import pytest

from zsseg_rt.stream.sources import FrameSource


@pytest.mark.time_bound(60)
def test_two_frames_that_round_to_one_number_get_two_numbers():
    source = FrameSource()
    source.fps = 10.0
    numbers = []
    for pts in (0.0, 0.1, 0.12, 0.16, 0.4):  # 0, 1, round(1.2) = 1, round(1.6) = 2, 4
        source._place(pts)
        numbers.append(source.last_number)
    assert numbers == [0, 1, 2, 3, 4], numbers  # 0.12 is the next (2); 0.16 rounds to 2, taken: 3; 0.4 is 4
    assert (source.missing, source.missing_count) == ([], 0)  # nothing skipped: 4 follows 3
    source._place(0.7)
    assert (source.last_number, source.missing, source.missing_count) == (7, [5, 6], 2)  # the control: a real gap
