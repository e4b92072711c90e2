"""FFmpeg's decoder threads' messages are the source's too (issue 75, N16's remainder): an H.264 clip with 10 damaged
spots of 500 bytes gave 4 lines at ERROR without the source's name (FFmpeg's frame threads log outside the reading
thread's capture). Now every FFmpeg line of a source is a WARNING prefixed with its name, counted and capped."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from stream_fakes import write_h264


def _clip_with_damaged_spots(path, seed: int) -> str:
    """A 320x240 H.264 clip of 150 frames (a keyframe every 30) with 10 spots of 500 bytes inverted."""
    rng = np.random.default_rng(0)

    def image(index):
        pixels = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        pixels[:, : (2 * index) % 320] = (40, 200, 90)
        return pixels

    write_h264(path, (image(index) for index in range(150)), gop=30)
    data = bytearray(open(path, "rb").read())
    spots = np.random.default_rng(seed)
    for _ in range(10):
        at = int(spots.integers(5000, len(data) - 600))
        data[at : at + 500] = bytes(255 - byte for byte in data[at : at + 500])
    open(path, "wb").write(bytes(data))
    return str(path)


@pytest.mark.time_bound(300)
def test_ffmpegs_decoder_threads_lines_carry_the_sources_name_as_warnings(tmp_path, caplog, monkeypatch):
    """Every libav record while the source decodes is a WARNING that starts with the source's name (the first 10;
    the others counted), whichever thread FFmpeg logged it from. The control: some line came from a decoder thread,
    logged from it or caught from it (else this machine's FFmpeg decoded on the reading thread alone, and the test
    proves nothing: skipped)."""
    from zsseg_rt.stream.sources import PyAVFileSource, ffmpeg_log, ffmpeg_logs_to_python

    caught = []
    if hasattr(ffmpeg_log, "_close_strays"):  # the lines PyAV's global capture held: no reading thread's
        real = ffmpeg_log._close_strays

        def counted():
            lines = real()
            caught.extend(lines)
            return lines

        monkeypatch.setattr(ffmpeg_log, "_close_strays", counted)
    clip = _clip_with_damaged_spots(tmp_path / "clip.mp4", seed=3)
    ffmpeg_logs_to_python()
    source = PyAVFileSource(clip)
    with caplog.at_level(logging.INFO):
        source.open()
        while source.read() is not None:
            pass
        source.close()
    ffmpeg = [record for record in caplog.records if record.name.startswith("libav")]
    if not caught and not any(record.thread != threading.main_thread().ident for record in ffmpeg):
        pytest.skip("FFmpeg logged from the reading thread only on this machine: no decoder thread's line to check")
    wrong = [(r.levelname, r.threadName, r.getMessage()) for r in ffmpeg if r.levelno != logging.WARNING]
    wrong += [(r.levelname, r.threadName, r.getMessage()) for r in ffmpeg if not r.getMessage().startswith(source.name)]
    assert wrong == [], wrong
    assert len(ffmpeg) == min(source.ffmpeg_messages, 10) and source.ffmpeg_messages > 0
