"""``python -m benchmarks soak``'s serve machinery (issue 64, items 3 and 4) on the scale tests' server: two small
rounds of mixed requests (good images, wrong types, misspelt queries, no images, uploads closed mid-body, a burst
of twice the replica's bound at once). After each round the replica's outcome counters equal what the clients saw,
and every request sent is counted once. No timing is asserted (how many of the burst get 503 depends on it: each
one that does has a Retry-After, or the run records a problem)."""

from __future__ import annotations

import pytest
from support import import_from_checkout

pytestmark = pytest.mark.slow  # the shared Ray cluster and server (test_serve.py's)


def test_mixed_rounds_are_counted_request_by_request(server, photos):
    soak_serve, soak = import_from_checkout("benchmarks._soak_serve"), import_from_checkout("benchmarks.soak")
    Mix, serve_soak, judge, sample_process = soak_serve.Mix, soak_serve.serve_soak, soak.judge, soak.sample_process
    mix = Mix(good=30, wrong_type=5, bad_query=3, garbage=3, aborted=3, burst=24, concurrency=4)
    result = serve_soak(server, photos[2][0], 2, mix, sample_process)
    assert result["mismatches"] == [] and result["problems"] == [], result
    rows = result["rounds"]
    tally = rows[-1]["tally"]
    assert tally["ok"] + tally["overloaded"] + tally["proxy_refused"] == 2 * (mix.good + mix.burst)
    assert tally["bad_requests"] == 2 * (mix.wrong_type + mix.bad_query + mix.garbage)
    assert (tally["aborted"], tally["errors"], tally["client_failed"]) == (2 * mix.aborted, 0, 0)
    assert result["counted"] == result["sent"] == 2 * mix.per_round() + tally["pages"]
    assert [row["requests"] for row in rows] == sorted(row["requests"] for row in rows) and result["limit"] == 12
    assert all(set(row["replica"]) == {"rss_mib", "fds", "threads"} for row in rows)
    assert [r["measure"] for r in judge([row["replica"] for row in rows], 0, 32.0)] == ["rss_mib", "fds", "threads"]
