"""Preparation that states its memory and keeps its outputs where asked (issue 75 item 7, E4): each path's time, disk
and peak memory measured while it is prepared (``prepare/footprint.py``) and written into its record; ``zsseg
build-engine --dry-run`` prints them (measured here before, else estimated) beside the memory free now, preparing
nothing; a path whose peak would not fit the free memory is not prepared (one line); ``--cache-dir DIR`` keeps the
records outside the bundle (the bundle untouched) and the Engine runs from them with ``cache_dir``."""

from __future__ import annotations

import json
import mmap
import os
import shutil

import numpy as np
import pytest
from support import skip_unless_a_cpu_path_can_be_prepared

from zsseg_rt import cli
from zsseg_rt.bundle import graph_files, load_meta
from zsseg_rt.prepare import auto
from zsseg_rt.prepare import footprint as footprint_module
from zsseg_rt.prepare.footprint import Footprint, reset_peak
from zsseg_rt.runtime import preparation_cost, upgrade
from zsseg_rt.runtime.backends.cpu_auto import cpu_candidates
from zsseg_rt.runtime.precision_records import PREPARATION_FIELD, VOCABULARIES_FIELD, read_record, record_dir
from zsseg_rt.runtime.preparation_cost import PathCost, available_memory_mb, estimate, path_cost


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    """A copy of the tiny bundle with nothing prepared (the torch-free job's shared bundle may hold records that
    other tests' preparations left in its engines folder)."""
    copy = shutil.copytree(tiny_bundle, str(tmp_path / "bundle"))
    shutil.rmtree(os.path.join(copy, "engines"), ignore_errors=True)
    return copy


def _snapshot(folder):
    """Every file under ``folder`` with its size and modification time (what "untouched" compares)."""
    found = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            stat = os.stat(path)
            found[os.path.relpath(path, folder)] = (stat.st_size, stat.st_mtime_ns)
    return found


def test_a_paths_peak_is_its_own_and_counts_native_memory(tmp_path):
    """Inside a footprint, 300 MB allocated (NumPy's buffer: outside Python's heap) raise the peak by at least that
    much; the next footprint, reset, does not carry the first one's peak (control: without the reset it would)."""
    if not reset_peak():
        pytest.skip("this kernel cannot reset the resident high-water mark (/proc/self/clear_refs)")
    with Footprint(str(tmp_path)) as first:
        # what the process holds when the block is made (a mark taken before the footprint's own reset could stand
        # above it: a long test session's memory given back meanwhile, as in CI's single-process runs)
        baseline = footprint_module._status_kib("VmRSS") / 1024.0
        # fresh pages from the kernel (an anonymous map, filled): an allocation through malloc can reuse what a long
        # session's allocator freed but kept resident, and then raises no peak (CI: peak 2692.0 MB, baseline 2692.04)
        pages = mmap.mmap(-1, 300 * 1024 * 1024)
        np.frombuffer(pages, dtype=np.uint8).fill(1)
        pages.close()
    with Footprint(str(tmp_path)) as second:
        pass
    assert first.as_dict()["peak_mb"] >= baseline + 290
    assert second.as_dict()["peak_mb"] < first.as_dict()["peak_mb"] - 250
    assert first.as_dict()["free_mb_before"] > 0 and "VmHWM" in first.as_dict()["how"]


def test_held_is_never_above_the_peak_when_the_kernels_counters_lag(tmp_path, monkeypatch):
    """Issue 91: VmRSS and VmHWM are two counters the kernel does not update together; a CI run recorded held 1906.0
    MiB beside a peak of 1905.8. The counters fed in that order (VmRSS read at the start above the VmHWM read at the
    end): the record's peak is raised to what was held, and a record written before (held over peak) costs 0, not
    less, for the path itself."""
    readings = {"VmRSS": [1906.0 * 1024, 1905.9 * 1024], "VmHWM": [1905.8 * 1024]}

    def counters(field):
        values = readings.get(field)
        return values.pop(0) if values else None

    monkeypatch.setattr(footprint_module, "_status_kib", counters)
    monkeypatch.setattr(footprint_module, "reset_peak", lambda: True)
    with Footprint(str(tmp_path)) as taken:
        pass
    record = taken.as_dict()
    assert record["held_mb"] == 1906.0 and record["peak_mb"] == 1906.0, record
    assert 0 < record["held_mb"] <= record["peak_mb"]
    # the control: without the floor the record would say 1905.8 (what VmHWM read), below what was held
    readings.update(VmRSS=[1906.0 * 1024], VmHWM=[1905.8 * 1024])
    assert footprint_module.peak_resident_mb() == pytest.approx(1905.8, abs=1e-9)
    old = PathCost("openvino", "int8", 30.0, 4.0, 1905.8, True, 12.0, 1906.0)  # such a record, read back
    assert old.own_mb == 0.0 and old.fits(0.0)


def test_a_cost_is_the_records_measurement_else_the_estimate_and_a_peak_over_the_free_memory_does_not_fit(bundle):
    meta = load_meta(bundle)
    guess = estimate(meta, "openvino", "int8")
    assert not guess.measured and guess.peak_mb > 0 and guess.cpu_s > 0
    record = {PREPARATION_FIELD: {"wall_s": 12.0, "cpu_s": 30.0, "disk_mb": 4.0, "peak_mb": 2048.0}}
    measured = path_cost(meta, "openvino", "int8", record)
    assert measured.measured and (measured.peak_mb, measured.cpu_s, measured.disk_mb) == (2048.0, 30.0, 4.0)
    assert measured.fits(3000.0) and measured.fits(1000.0, resident=1100.0) and not measured.fits(1000.0)
    assert measured.fits(None)  # unknown free memory: not refused
    line = measured.refusal(1000.0)
    assert line.startswith("openvino int8 is not prepared: it needs about 2.0 GiB of memory at its peak (measured")
    assert "1000 MiB is free here" in line and "\n" not in line
    assert "does not fit the 1000 MiB free here, not prepared" in measured.line(1000.0)
    free = available_memory_mb()
    assert free is None or free > 0


def test_dry_run_prints_each_paths_time_disk_and_peak_memory_and_prepares_nothing(bundle, capsys):
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    before = _snapshot(bundle)
    assert cli.main(["build-engine", bundle, "--backend", "auto", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    paths = [line for line in out if line.endswith("[to prepare]")]
    assert paths and all(
        " of CPU, " in line and " on disk, " in line and " peak memory (estimated)" in line for line in paths
    )
    assert any(line.startswith("records: ") and "free memory here" in line for line in out)
    assert out[-1].startswith("to prepare: ") and "a peak of " in out[-1] and "free here" in out[-1]
    assert _snapshot(bundle) == before and not os.path.exists(os.path.join(bundle, "engines"))


def test_cache_dir_keeps_the_records_outside_the_bundle_with_their_measurement_and_vocabularies(
    bundle, tmp_path, capsys
):
    """`build-engine --backend auto --cache-dir DIR --classes ...`: the bundle is untouched; each path prepared has its
    record in DIR with what preparing it took (peak memory, time, disk) and the vocabularies its gate judged (VOC,
    COCO-Stuff, the given names); the Engine with cache_dir reads them (no path missing), without it they are missing
    (control); the dry run then says "measured here"."""
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    cache = str(tmp_path / "records")
    before = _snapshot(bundle)
    argv = ["build-engine", bundle, "--backend", "auto", "--cache-dir", cache, "--classes", "cat,dog,grass"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert _snapshot(bundle) == before and not os.path.exists(os.path.join(bundle, "engines"))
    assert f"the cache folder {os.path.abspath(cache)} holds" in out and "prepared in " in out
    meta = load_meta(bundle)
    roles = tuple(graph_files(meta.pipeline))
    found, _ = cpu_candidates(meta, roles, cache)
    prepared = [c for _, c in found if c.key is not None]
    assert prepared and all(c.status != "missing" for c in prepared)
    for choice in prepared:
        record = read_record(record_dir(choice.root, choice.key))
        took = record[PREPARATION_FIELD]
        assert took["peak_mb"] > 50 and took["wall_s"] > 0 and took["cpu_s"] > 0 and took["free_mb_before"] > 0
        assert 0 < took["held_mb"] <= took["peak_mb"], took
        judged = {v["name"]: (v["classes"], v["of"]) for v in record["accuracy_gate"][VOCABULARIES_FIELD]}
        assert judged == {"voc20": (20, 20), "coco_stuff": (32, 171), "given": (3, 3)}  # capped at max_classes
    assert all(c.status == "missing" for _, c in cpu_candidates(meta, roles)[0] if c.key is not None)  # control
    from zsseg_rt.runtime import Engine

    with_cache = Engine(bundle, "cat,dog", backend="auto", device="cpu", prepare=None, cache_dir=cache)
    without = Engine(bundle, "cat,dog", backend="auto", device="cpu", prepare=None)
    assert not with_cache.pipeline.backend_plan.missing and without.pipeline.backend_plan.missing
    assert cli.main(["build-engine", bundle, "--backend", "auto", "--dry-run", "--cache-dir", cache, "--force"]) == 0
    # what the preparing process held as each path began is said beside its peak (issue 79, F13)
    assert "(measured here, in a process that held " in capsys.readouterr().out
    assert _snapshot(bundle) == before


def test_a_path_that_would_not_fit_the_memory_is_not_prepared_and_said_in_one_line(bundle, monkeypatch, capsys):
    """With 10 MiB free (a stand-in for an 8 GB Jetson preparing ViT-B/16): build-engine --backend auto skips every
    path, each with one line naming its peak and the free memory, and writes no record; a named precision is refused
    with exit status 2; the Engine's announcement says which paths would not fit (control: with the memory free
    here each is prepared or gated)."""
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    monkeypatch.setattr(auto, "available_memory_mb", lambda: 10.0)
    monkeypatch.setattr(auto, "resident_mb", lambda: 0.0)
    monkeypatch.setattr(preparation_cost, "available_memory_mb", lambda: 10.0)
    monkeypatch.setattr(preparation_cost, "resident_mb", lambda: 0.0)
    assert cli.main(["build-engine", bundle, "--backend", "auto"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if ": skipped (" in line]
    assert lines and all("is not prepared: it needs about " in line and "10 MiB is free here" in line for line in lines)
    meta = load_meta(bundle)
    found, _ = cpu_candidates(meta, tuple(graph_files(meta.pipeline)))
    assert all(c.status == "missing" for _, c in found if c.key is not None)
    assert cli.main(["build-engine", bundle, "--backend", "onnxruntime", "--precision", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zsseg build-engine: error: onnxruntime int8 is not prepared: it needs")
    missing = [c for _, c in found if c.status == "missing"]
    words = upgrade.preparation_cost(meta, missing)
    each = ", ".join(f"{c.backend} {c.precision} " for c in missing)  # the announcement names each path's peak
    assert "a peak of memory per path (" in words and "0.0 GiB free here" in words, words
    assert all(f"{c.backend} {c.precision} " in words for c in missing), each
    assert "would not fit and would not be prepared" in words
    monkeypatch.setattr(preparation_cost, "available_memory_mb", lambda: 1e6)
    assert "would not fit" not in upgrade.preparation_cost(meta, missing)  # control


def test_cache_dir_is_refused_where_it_cannot_apply(bundle, tmp_path, capsys):
    from zsseg_rt.runtime import Engine

    with pytest.raises(ValueError, match="prepare='now' with cache_dir=.*prepare ahead"):
        Engine(bundle, "a,b", backend="auto", prepare="now", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="cache_dir=.*backend 'torch' keeps what it builds elsewhere"):
        Engine(bundle, "a,b", backend="torch", cache_dir=str(tmp_path))
    assert cli.main(["build-engine", bundle, "--backend", "tensorrt", "--cache-dir", str(tmp_path)]) == 2
    assert "--cache-dir applies to the CPU paths" in capsys.readouterr().err


def test_a_record_gated_on_the_voc_names_only_is_gated_again(bundle):
    """A passed record written before several vocabularies were judged is "missing" for the auto policy (it is
    prepared and gated again), as a record gated on the photos' sum only was."""
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    from zsseg_rt.runtime.precision_records import PER_PHOTO_FIELD, gated_choice, write_record

    meta = load_meta(bundle)
    found, _ = cpu_candidates(meta, tuple(graph_files(meta.pipeline)))
    choice = next(c for _, c in found if c.key is not None)
    gate = {"passed": True, "accepted": True, "summary": "accuracy gate passed (old)", PER_PHOTO_FIELD: True}
    write_record(choice.root, choice.key, gate)
    old = gated_choice(choice.root, choice.key)
    assert old.status == "missing" and "VOC names only" in old.reason
    write_record(choice.root, choice.key, dict(gate, **{VOCABULARIES_FIELD: [{"name": "voc20"}]}))
    assert gated_choice(choice.root, choice.key).status == "passed"  # control


def test_every_gated_cpu_path_has_its_measured_cost_ratios():
    """Every precision a CPU row with gated records prepares has its row's measured ratios (a row without them gets
    the costliest measured)."""
    from zsseg_rt.runtime.backends.table import backend_rows

    for row in backend_rows():
        if row.gated_choices:
            assert set(row.prepare_precisions) <= set(dict(row.prepare_costs)), row.name
    assert preparation_cost.cost_ratios("no such backend", "int8") == preparation_cost.DEFAULT_COST
    cost = PathCost("x", "y", 90.0, 1.0, 1.0)
    assert json.loads(json.dumps(cost.as_dict()))["measured"] is False


def test_a_workers_peak_is_never_below_the_resident_set_it_was_loaded_with(monkeypatch):
    """The same lag in zsseg batch's rows (issue 91 item 2, the sweep): worker_loaded_rss_bytes from statm,
    worker_peak_rss_bytes from VmHWM. system_info.peak_rss_bytes never reads below the resident set now or the
    reading it is given; the control: the raw high-water mark read lower."""
    from zsseg_rt import system_info

    monkeypatch.setattr(system_info, "_proc_status_bytes", lambda key: 1000 if key == "VmHWM" else None)
    monkeypatch.setattr(system_info, "current_rss_bytes", lambda: 990)
    assert system_info.peak_rss_bytes() == 1000
    assert system_info.peak_rss_bytes(at_least=1004) == 1004  # loaded at 1004 (statm), VmHWM still 1000
    monkeypatch.setattr(system_info, "current_rss_bytes", lambda: 1010)
    assert system_info.peak_rss_bytes(at_least=1004) == 1010
    monkeypatch.setattr(system_info, "_proc_status_bytes", lambda key: None)
    monkeypatch.setattr(system_info, "process_max_rss_bytes", lambda: None)
    assert system_info.peak_rss_bytes() is None and system_info.peak_rss_bytes(at_least=1020) == 1020  # no counter
