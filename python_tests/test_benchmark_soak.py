"""``python -m benchmarks soak`` (issue 64, item 3): its camera machinery on a few hundred frames of the tiny bundle
(a real ``zsseg camera`` process with ``--labels-out --stabilize --preview 0``, sampled from /proc), and its verdicts
on made-up samples. Structure, the D13 checks and counts only: no timing and no memory bound is asserted here (a few
hundred frames say nothing about a leak; the bounds live in BENCHMARKS.md). The serve machinery's test runs on the
scale tests' server (python_tests/scale/test_serve_soak.py)."""

from __future__ import annotations

import sys

import pytest
from support import import_from_checkout


def _soak():
    return import_from_checkout("benchmarks.soak")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the benchmark samples processes from /proc")
def test_the_camera_soak_runs_a_real_camera_process_and_samples_it(tiny_bundle, tmp_path, monkeypatch):
    soak = _soak()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = soak.camera_soak(tiny_bundle, 400, 100, tmp_path)
    assert (result["frames"], result["label_maps"]) == (400, 400), result
    assert result["checks"] == {"stats_shrank": [], "final_behind_stats": []}, result["checks"]
    samples = result["samples"]
    assert samples and all(set(s) == {"frames", "rss_mib", "fds", "threads"} for s in samples), samples
    assert [s["frames"] for s in samples] == sorted({s["frames"] for s in samples})  # one sample per mark, rising
    assert all(s["rss_mib"] > 20 and s["fds"] >= 3 and s["threads"] >= 2 for s in samples), samples
    rows = soak.judge(samples, result["warm"], soak.RSS_BOUND_MIB["camera"])
    assert [row["measure"] for row in rows] == ["rss_mib", "fds", "threads"]
    text = soak.render({"camera": result}, _Args())
    assert text.startswith(soak.SECTION) and "| zsseg camera | rss_mib |" in text
    assert "preview /stats counts only grew: True; final stats not behind the last /stats: True" in text


class _Args:
    quick, every = True, 100


def _samples(rss, fds, threads):
    return [
        {"frames": 100 * (i + 1), "rss_mib": r, "fds": f, "threads": t}
        for i, (r, f, t) in enumerate(zip(rss, fds, threads))
    ]


def test_the_verdicts_flag_growth_past_each_bound():
    """A leak of each kind after warm-up is a MISS and a failure of the run; growth within the bounds, or before the
    warm-up sample, is not."""
    soak = _soak()
    flat = _samples([300, 310, 311, 312, 310], [20, 21, 20, 22, 20], [9, 9, 10, 9, 9])
    assert all(row["ok"] for row in soak.judge(flat, 1, 16.0))
    grown = _samples([300, 310, 320, 330, 340], [20, 21, 30, 40, 50], [9, 9, 10, 20, 30])
    verdicts = {row["measure"]: row["ok"] for row in soak.judge(grown, 1, 16.0)}
    assert verdicts == {"rss_mib": False, "fds": False, "threads": False}
    camera = {"samples": grown, "warm": 1, "checks": {"stats_shrank": [], "final_behind_stats": []}}
    camera.update(frames=500, label_maps=499)
    assert soak.failures({"camera": camera}) == [
        "camera rss_mib",
        "camera fds",
        "camera threads",
        "499 label maps for 500 frames",
    ]
    row = {"tally": {"ok": 1}, "replica": flat[0], "proxy": None, "requests": 3, "counted": 2, "counters": {}}
    serve = {"rounds": [row], "mismatches": [{"round": 1}], "problems": ["a 503 without Retry-After"]}
    serve.update(sent=3, counted=2)
    assert soak.failures({"serve": serve}) == [
        "counters differ: {'round': 1}",
        "a 503 without Retry-After",
        "2 requests counted of 3 sent",
    ]
