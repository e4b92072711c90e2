"""A built-in backend with a gated reduced precision is one folder (its runner, its precisions, its records) plus one
preparer module (issue 63, item 2): the toy backend beside this file (``toybackend/``, ``toy_prepare.py``) joins the
table with one row and is then prepared, gated, recorded, chosen by ``backend="auto"`` and run by the Engine,
nothing else changed; its precision names are its row's."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from support import VOCAB10

from zsseg_rt.bundle import load_meta
from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.backends import backend_row
from zsseg_rt.runtime.backends import table as backend_table
from zsseg_rt.runtime.backends.cpu_auto import cpu_candidates, cpu_policy
from zsseg_rt.runtime.precision_records import find_record, precision_root, record_dir

IMAGE = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
ROLES = ("image", "head", "text")


@pytest.fixture
def toy():
    """The toy row registered (as a built-in row or an entry point would add it), removed afterwards."""
    pytest.importorskip("onnx", reason="the gate's reference opens the bundle's graphs with ONNX Runtime")
    from toybackend import ROW

    with backend_table.BACKENDS.adding(ROW):
        yield ROW


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, str(tmp_path / "bundle"))


def test_the_toy_is_prepared_gated_recorded_and_run(toy, bundle):
    """The row's preparer makes and gates its int8 (the one accuracy gate, recorded with the gate's result and the
    artefact's sha256); the Engine then runs it from the record without preparing again; its precisions are its
    row's (a name the row does not list is refused with the row's list). Control: fp32 needs no record."""
    meta = load_meta(bundle)
    record = backend_table.load_reference(str(backend_row("toy").prepare))(bundle, "int8")
    assert record["accuracy_gate"]["passed"] and record["accuracy_gate"]["every_photo"]
    _, artefact = find_record(
        precision_root(meta), __import__("toybackend.precision").precision.precision_key(meta, "int8")
    )
    assert artefact is not None and os.path.basename(artefact) == "image_encoder.toy.onnx"
    engine = Engine(bundle, classes=VOCAB10, backend="toy", precision="int8", device="cpu")
    assert (engine.backend.name, engine.backend.precision) == ("toy", "int8") and engine.backend.precision_record
    exact = Engine(bundle, classes=VOCAB10, backend="toy", device="cpu")
    assert exact.backend.precision_record is None
    assert (engine(IMAGE).labels == exact(IMAGE).labels).all()
    with pytest.raises(ValueError, match=r"the toy backend's precision must be one of \('fp32', 'int8'\), got 'fp16'"):
        Engine(bundle, classes=VOCAB10, backend="toy", precision="fp16", device="cpu")


def test_auto_prepares_the_toy_keeps_it_when_fastest_and_runs_it(toy, bundle, monkeypatch):
    """``zsseg build-engine --backend auto``'s preparation (the CPU rows with gated choices narrowed to the toy, to
    keep the test short) prepares the toy's int8 through its row, measures it (the measurement faked at 2.0x: no
    timing here) and keeps it as the fastest; ``Engine(bundle)`` (backend auto) then runs it. Control: measured at
    1.0x it is not kept: its artefact removed, its record marked pruned (not prepared again), auto runs fp32."""
    from zsseg_rt.prepare import auto
    from zsseg_rt.runtime.backends import cpu_auto

    monkeypatch.setattr(cpu_auto, "backend_rows", lambda: [toy])  # the exact reference stays the table's
    speed = {"speedup": 1.0}
    monkeypatch.setattr(auto, "measure_encoder_speed", lambda *a, **k: dict(speed))
    meta = load_meta(bundle)
    report = auto.prepare_and_keep(bundle)  # control first: 1.0x is below MIN_SPEEDUP
    assert report.chosen == ("onnxruntime", "fp32") and any(r.startswith("toy int8") for r in report.removed)
    (choice,) = [c for _, c in cpu_candidates(meta, ROLES)[0]]
    assert choice.status == "pruned" and os.listdir(record_dir(choice.root, choice.key)) == ["engine.json"]
    assert auto.prepare_and_keep(bundle).removed == []  # pruned: not prepared again
    speed["speedup"] = 2.0
    report = auto.prepare_and_keep(bundle, force=True)
    assert report.chosen == ("toy", "int8") and report.removed == []
    assert cpu_policy(meta, ROLES)[0][2].backend == "toy"
    engine = Engine(bundle, classes=VOCAB10, device="cpu", prepare=None)
    assert engine.plan.path == ("toy", "int8") and engine.auto_choice.speedup == 2.0
