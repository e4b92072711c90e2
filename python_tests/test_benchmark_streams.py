"""``python -m benchmarks streams`` (issue 39 item 5) runs end to end on the tiny bundle (short clips, one round):
every row of its section is there, the batched call's labels equal the loop's, and the processes' frames add up.
No timing is asserted: the speed and memory goals live in BENCHMARKS.md."""

from __future__ import annotations

import re
import sys

import pytest
from support import import_from_checkout, run_benchmark, subprocess_env


def _streams():
    return import_from_checkout("benchmarks.streams")


def test_quick_run_renders_every_row(tmp_path, tiny_bundle):
    if not sys.platform.startswith("linux"):
        pytest.skip("the benchmark reads RSS from /proc")
    proc = run_benchmark(tmp_path, "streams", "--bundle", tiny_bundle, "--frames", 2, "--rounds", 1, "--images", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for label, frames in (("4 sources, one process", 8), ("4 processes, 1 source each", 8), ("1 source", 2)):
        assert re.search(rf"\| {label} \(round 1\) \| \d \| {frames} \| [\d.]+ \|", out), (label, out)
    assert "4 sources, one process (round 1) | 1 | 8 |" in out and "1 source each (round 1) | 4 | 8 |" in out
    assert "labels equal: True" in out and "GPU (NOT measured" in out
    assert re.search(r"peak RSS: 4-source process / 1-source process \| [\d.]+x .* \| (met|\*\*missed\*\*) \|", out)


def test_aggregate_rate_spans_the_first_start_to_the_last_end():
    streams = _streams()
    stats = [
        {"started_at": 100.0, "elapsed_s": 10.0, "processed": 20},  # 100 .. 110
        {"started_at": 104.0, "elapsed_s": 16.0, "processed": 20},  # 104 .. 120
    ]
    assert streams.aggregate_fps(stats) == pytest.approx(40 / 20.0)


def test_a_failing_process_is_an_error():
    streams = _streams()
    with pytest.raises(RuntimeError, match="(?s)a zsseg camera process failed:.*boom"):
        streams.run_processes([[sys.executable, "-c", "import sys; sys.exit('boom')"]], env=subprocess_env())
