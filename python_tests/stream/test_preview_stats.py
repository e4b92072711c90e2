"""D13 (issue 64): the camera preview's ``/stats`` counts only grow, and the final stats (``--stats-json``) agree
with the last ``/stats``. The probe saw ``captured`` 43 on the preview and 42 in the final stats: a file is read
every frame, one frame ahead of the loop; that frame was counted as captured when it was read and taken back when
the stop discarded it. Deterministic: each ``/stats`` is read once the capture thread holds its frame read ahead."""

from __future__ import annotations

import http.client
import json

from stream_fakes import FakeEngine, numbered_frame

from zsseg_rt.stream import CallableSource, MjpegSink, NullSink, StreamRunner

COUNTS = ("processed", "captured", "dropped", "reconnects", "decode_errors", "engine_calls")


def _stats(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/stats")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def _read_ahead(grabber):
    """Wait until the capture thread has handed over its next frame (every-frame mode: it waits for it to be
    taken), as it has by the time a user reads /stats at the end of a run."""
    with grabber._cond:
        assert grabber._cond.wait_for(lambda: grabber._latest is not None, timeout=30), "no frame read ahead"


def test_preview_counts_only_grow_and_end_at_the_final_stats(thread_guard):
    frames, limit, box, seen = 12, 8, {}, []
    preview = MjpegSink(port=0, host="127.0.0.1", stats_provider=lambda: box["runner"].snapshot())

    def on_result(frame, result, stats):
        _read_ahead(box["runner"].grabber)
        seen.append(_stats(preview.port))

    source = CallableSource(lambda: (numbered_frame(i) for i in range(frames)), live=False, name="clip")
    runner = StreamRunner(
        FakeEngine(), source, [NullSink(), preview], drop_stale=False, max_frames=limit, on_result=on_result
    )
    box["runner"] = runner
    final = runner.run().as_dict()
    assert [entry["processed"] for entry in seen] == list(range(1, limit + 1))
    for earlier, later in zip(seen, seen[1:]):
        assert all(later[name] >= earlier[name] for name in COUNTS), (earlier, later)
    assert {name: final[name] for name in COUNTS} == {name: seen[-1][name] for name in COUNTS}, (seen[-1], final)
    assert (final["processed"], final["captured"], final["dropped"]) == (limit, limit, 0)
    assert final["sources"][0]["captured"] == seen[-1]["sources"][0]["captured"] == limit
