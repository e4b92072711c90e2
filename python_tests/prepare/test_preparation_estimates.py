"""Preparation estimates said one way (issue 79, F13): the Engine's note and ``build-engine --dry-run`` give the same
CPU time and disk (the note's own constants said 6 s and 14 MB for the tiny bundle where the dry-run said 1 s and
0 MB), and a peak measured in a process that held other things already (the demo prepares in its own process, torch
and the export resident: a 4.5 GiB record for a path that takes 2.0 GiB alone) is said as such and fitted by what
the path itself took."""

from __future__ import annotations

import shutil

from support import skip_unless_a_cpu_path_can_be_prepared

from zsseg_rt.bundle import graph_files, load_meta
from zsseg_rt.prepare.footprint import Footprint
from zsseg_rt.runtime import upgrade
from zsseg_rt.runtime.backends.cpu_auto import cpu_candidates
from zsseg_rt.runtime.precision_records import PREPARATION_FIELD
from zsseg_rt.runtime.preparation_cost import duration_words, estimate, path_cost


def test_the_engines_note_says_the_dry_runs_estimates(tiny_bundle, tmp_path):
    bundle = shutil.copytree(tiny_bundle, str(tmp_path / "bundle"))
    shutil.rmtree(str(tmp_path / "bundle" / "engines"), ignore_errors=True)
    skip_unless_a_cpu_path_can_be_prepared(bundle)
    meta = load_meta(bundle)
    found, _ = cpu_candidates(meta, tuple(graph_files(meta.pipeline)))
    missing = [c for _, c in found if c.status == "missing"]
    assert missing  # (this CPU prepares at least one path)
    costs = [estimate(meta, c.backend, c.precision) for c in missing]  # what the dry-run prints, path by path
    words = upgrade.preparation_cost(meta, missing)
    said_cpu = f"{duration_words(sum(cost.cpu_s for cost in costs))} of CPU time"
    said_disk = f"at most {max(cost.disk_mb for cost in costs):.0f} MB kept on disk"
    assert words.startswith(said_cpu + ", " + said_disk), (words, [cost.as_dict() for cost in costs])


def _record(held=None):
    measured = {"wall_s": 60.0, "cpu_s": 120.0, "disk_mb": 99.0, "peak_mb": 4640.0}
    if held is not None:
        measured["held_mb"] = held
    return {PREPARATION_FIELD: measured}


def test_a_peak_measured_beside_other_memory_is_said_and_fitted_as_the_paths_own(tiny_bundle):
    meta = load_meta(tiny_bundle)
    shared = path_cost(meta, "onnxruntime", "int8", _record(held=2600.0))  # the demo's process: torch resident
    line = shared.line(available=2500.0, resident=150.0)
    assert (
        "4.5 GiB peak memory (measured here, in a process that held 2.5 GiB as it began: 2.0 GiB for the path" in line
    )
    assert shared.fits(2500.0, 150.0) and "does not fit" not in line, line  # 2.0 GiB of its own fits 2.5 GiB free
    assert not shared.fits(1800.0, 150.0)  # ... and not 1.8 GiB
    assert shared.as_dict()["held_mb"] == 2600.0
    # the control: a record that does not say what its process held is the path's peak, as before
    alone = path_cost(meta, "onnxruntime", "int8", _record())
    assert "4.5 GiB peak memory (measured here)" in alone.line(2500.0, 150.0) and not alone.fits(2500.0, 150.0)


def test_a_footprint_records_what_its_process_held_as_the_path_began(tmp_path):
    with Footprint(str(tmp_path)) as footprint:
        pass
    measured = footprint.as_dict()
    assert measured["held_mb"] is not None and 0 < measured["held_mb"] <= measured["peak_mb"], measured
