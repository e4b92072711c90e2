"""A measurement runs one path from its first frame to its last (issue 63, item 3; probe N4): ``evaluate()`` (and
``zsseg eval``, ``zsseg profile``, ``zsseg batch``) open their Engines with ``prepare=None``, so a preparation that
finishes mid-run (another process writing the faster path's record, or one the user asked every Engine to run:
``$ZSSEG_AUTO_PREPARE=background``) does not switch them; the result records the path. Control: an Engine that was
asked to prepare in the background (Engine(bundle)'s former default) switches at the next image. No timing: the
preparation is held on an Event and released between two images."""

from __future__ import annotations

import shutil
import threading

import pytest

from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.bundle import load_meta
from zsseg_rt.runtime import Engine, upgrade
from zsseg_rt.runtime.backends import table as backend_table
from zsseg_rt.runtime.backends.cpu_auto import cpu_candidates
from zsseg_rt.runtime.precision_records import PER_PHOTO_FIELD, SPEED_FIELD, VOCABULARIES_FIELD, write_record


@pytest.fixture
def toy(monkeypatch):
    """The toy gated row (``toybackend/``) as the only CPU row with gated choices (the exact reference stays)."""
    from toybackend import ROW

    from zsseg_rt.runtime.backends import cpu_auto

    monkeypatch.setattr(cpu_auto, "backend_rows", lambda: [ROW])  # the exact reference stays the table's
    with backend_table.BACKENDS.adding(ROW):
        yield ROW


def _finish_preparation(bundle: str) -> None:
    """What a preparation that ends writes: the toy's int8 record, gated, measured 2.0x (no artefact: its int8 runs
    the bundle's own image encoder then)."""
    meta = load_meta(bundle)
    (choice,) = [c for _, c in cpu_candidates(meta, ("image", "head", "text"))[0]]
    gate = {"passed": True, "accepted": True, "summary": "accuracy gate passed (test)", PER_PHOTO_FIELD: True}
    gate[VOCABULARIES_FIELD] = [{"name": "voc20", "classes": 20, "of": 20, "agreement": 1.0, "worst_photo": 1.0}]
    write_record(choice.root, choice.key, gate, extra={SPEED_FIELD: {"speedup": 2.0}})


def _evaluate(checkpoint, at_image, monkeypatch):
    """``evaluate()`` on the 4 sample photos; ``at_image(i)`` runs before image i is read. Returns (the metrics,
    the path each image ran on, read from the Engine when it segmented it)."""
    from zsseg_rt.data import build_dataset
    from zsseg_rt.eval import evaluate

    ran = []
    real = Engine.__call__

    def call(self, image, *args, **kwargs):
        result = real(self, image, *args, **kwargs)
        ran.append(self.plan.path)
        return result

    monkeypatch.setattr(Engine, "__call__", call)
    dataset = build_dataset({"type": "voc", "root": str(SAMPLES_DIR), "split": "val"})
    load = dataset.load_safe

    def load_safe(index):
        at_image(index)
        return load(index)

    monkeypatch.setattr(dataset, "load_safe", load_safe)
    out = evaluate(checkpoint, dataset, backend="auto", progress=False)
    return out, ran


def test_an_evaluation_started_cold_runs_one_path_while_a_preparation_finishes(toy, tiny_bundle, tmp_path, monkeypatch):
    bundle = shutil.copytree(tiny_bundle, str(tmp_path / "bundle"))
    monkeypatch.setenv(upgrade.PREPARE_ENV, "background")  # a user who asked every Engine to prepare

    def another_process_finishes(index):
        if index == 2:
            _finish_preparation(bundle)

    out, ran = _evaluate(bundle, another_process_finishes, monkeypatch)
    assert out["images"] == 4 and out["path"] == "onnxruntime fp32"
    assert ran == [("onnxruntime", "fp32")] * 4  # every image on the path recorded at the start


def test_control_an_engine_asked_to_prepare_in_the_background_switches_mid_run(toy, tiny_bundle, tmp_path, monkeypatch):
    bundle = shutil.copytree(tiny_bundle, str(tmp_path / "bundle"))
    release = threading.Event()

    def preparation(meta, stop):
        release.wait()
        _finish_preparation(bundle)
        return 0

    monkeypatch.setattr(upgrade, "run_preparation", preparation)
    engine = Engine(bundle, device="cpu", mode="exact", prepare="background")

    def finished_between_images(index):
        if index == 2:
            release.set()
            engine._upgrade.wait()

    out, ran = _evaluate(engine, finished_between_images, monkeypatch)
    assert ran == [("onnxruntime", "fp32")] * 2 + [("toy", "int8")] * 2  # the old behaviour: one mIoU, two paths
    assert out["path"] == "toy int8"  # (what it ran last: a measurement must not run this way)
    engine.close()
