"""``python -m checks postprocess_variants``, the GPU lease's timing of the post-processing candidates (issue 72 item
1): its choice (the fastest candidate that passed every check, judged on the slower of i.i.d. and the Engine's
logits at the largest vocabulary; a failed candidate never chosen), and the whole program at 1/8 of the Engine's
geometry on the emulated build (CI), so that a lease does not find it broken: every candidate checked against the
CPU op, the report written, the default restored."""

from __future__ import annotations

import json

import pytest
from cuda_support import cuda_testing, requires_cuda

from checks import postprocess_variants as pv


def _row(us, ok=True):
    return {"us": us, "pass": ok, "max_score_diff": 0.0 if ok else 1e-3, "labels_equal": 1.0 if ok else 0.9}


def _report(rows):
    return {"variants": ["tiled", "columns", "columns_chain"], "cases": rows}


def test_the_choice_is_the_fastest_that_passed_on_the_slower_of_iid_and_engine():
    rows = {
        "20": {"iid": {"tiled": _row(40), "columns": _row(10), "columns_chain": _row(9)}},
        "171": {
            "iid": {"tiled": _row(214), "columns": _row(70), "columns_chain": _row(50)},
            "engine": {"tiled": _row(170), "columns": _row(60), "columns_chain": _row(62)},
            "dominated": {"tiled": _row(30), "columns": _row(999), "columns_chain": _row(999)},  # not judged
        },
    }
    rec = pv.recommend(_report(rows))
    assert rec == {"variant": "columns_chain", "us": 62, "classes": 171, "judged_on": ["iid", "engine"],
                   "meets_target": False}  # fmt: skip
    rows["171"]["engine"]["columns_chain"] = _row(58)
    rows["171"]["iid"]["columns_chain"] = _row(57)
    assert pv.recommend(_report(rows))["meets_target"] is True  # 58 <= 59 us
    rows["20"]["iid"]["columns_chain"] = _row(None, ok=False)  # failed its check somewhere: never chosen
    assert pv.recommend(_report(rows))["variant"] == "columns"


def test_no_candidate_passed_means_no_choice():
    rows = {"171": {"iid": {n: _row(None, ok=False) for n in ("tiled", "columns", "columns_chain")}}}
    assert pv.recommend(_report(rows)) == {"variant": None, "us": None, "classes": 171, "judged_on": ["iid"],
                                           "meets_target": False}  # fmt: skip


@requires_cuda
@pytest.mark.cuda
def test_the_program_checks_and_times_every_candidate(tmp_path, capsys):
    testing = cuda_testing()
    before = testing.segment_windows_variant()
    rc = pv.main(["--out", str(tmp_path), "--scale", "8", "--calls", "2", "--rounds", "1", "--classes", "20,30"])
    report = json.loads((tmp_path / "postprocess_variants.json").read_text())
    assert rc == 0, capsys.readouterr().out
    assert testing.segment_windows_variant() == before  # the default restored
    assert report["variants"] == list(testing.segment_windows_variants())
    for classes in ("20", "30"):
        assert set(report["cases"][classes]) == {"iid", "dominated"}  # the Engine's logits need the full export
        for rows in report["cases"][classes].values():
            for name, row in rows.items():
                assert row["pass"] and row["us"] is not None and row["us"] > 0, (classes, name, row)
                assert row["labels_equal"] >= pv.LABELS_MIN and row["max_score_diff"] <= pv.SCORE_TOL
    assert report["recommendation"]["variant"] in report["variants"]
    out = capsys.readouterr().out
    assert "recommendation:" in out and ("not a measurement" in out) == (not report["measured"])
