"""``zsseg batch``'s worker on a device pipeline: a Ray Data batch's images go through the Engine in one call
(``engine([...])``, the batched CUDA graphs of ``runtime/device/frame_batches.py``), with every image's record and
files what the one-call-an-image worker gives; a failed batched call is redone image by image, so each failure is
its own image's row. No Ray here: the worker's ``__call__`` on a batch as Ray Data hands it (``{"bytes", "path"}``).
On the host the worker calls the Engine once an image (``together`` False). The batched call's speed is measured
on a GPU only (``checks/gpu_probe.py`` P7); here its records and files are."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from zsseg_rt.assets import sample_images
from zsseg_rt.scale.batch import SegmentWorker, labels_name, output_key

CLASSES = ["cat", "dog", "person"]


class _Counting:
    """The worker's Engine, its calls counted (a list call: its length)."""

    def __init__(self, engine, fail_lists=False):
        self.engine, self.calls, self.fail_lists = engine, [], fail_lists

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def __call__(self, image):
        together = isinstance(image, list)
        self.calls.append(len(image) if together else 1)
        if together and self.fail_lists:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.engine(image)


def _batch(paths, damaged=b""):
    data = [open(path, "rb").read() for path in paths]
    names = [str(path) for path in paths]
    if damaged:
        data.insert(1, damaged)
        names.insert(1, os.path.join(os.path.dirname(names[0]), "damaged.jpg"))
    return {"bytes": np.array(data, dtype=object), "path": np.array(names, dtype=object)}, names


def _records(worker, batch):
    return [json.loads(text) for text in worker(batch)["record"]]


@pytest.fixture(scope="module")
def opened(tiny_bundle):
    """One worker's Engine for the module (each test's worker takes it: a model load, not one a test)."""
    worker = SegmentWorker(tiny_bundle, CLASSES, "unused", "unused", set(), objects=True, backend="onnxruntime")
    assert worker.together is False  # the host: one call an image, unless a test says otherwise
    return worker.engine


def _worker(engine, out, root, together, done=(), **counting):
    worker = SegmentWorker.__new__(SegmentWorker)  # (the module's Engine: see `opened`)
    worker.objects, worker.engine, worker.max_pixels = True, _Counting(engine, **counting), None
    worker.together, worker.output_dir, worker.root, worker.done_keys = together, str(out), root, set(done)
    worker.host, worker.loaded_rss, worker.batch_failed = "here", None, 0
    return worker


_VARYING = ("timing", "timing_ms", "worker", "host", "worker_loaded_rss_bytes", "worker_peak_rss_bytes")


def _same(row):
    return {key: value for key, value in row.items() if key not in _VARYING}


def test_a_batch_in_one_call_gives_every_image_the_single_calls_record_and_files(opened, tmp_path):
    photos = [str(path) for path in sample_images()[:3]]
    root = os.path.dirname(photos[0])
    done = [output_key(photos[2], root)]  # a resumed run: done before, skipped
    batch, names = _batch(photos, damaged=b"\xff\xd8\xff not a jpeg")
    single = _worker(opened, tmp_path / "single", root, together=False, done=done)
    together = _worker(opened, tmp_path / "together", root, together=True, done=done)
    expected, got = _records(single, batch), _records(together, batch)
    assert [row["image"] for row in got] == names  # in the batch's order
    assert [row["status"] for row in got] == ["ok", "error", "ok", "skipped"]
    assert "damaged.jpg" in got[1]["error"] and got[1]["error"] == expected[1]["error"]
    assert [_same(row) for row in got] == [_same(row) for row in expected]
    assert together.engine.calls == [2] and single.engine.calls == [1, 1]  # the two decoded images: one call
    for row in (got[0], got[2]):  # the same label maps and objects, byte for byte
        for name in (row["labels"], row["objects"]):
            assert (tmp_path / "together" / name).read_bytes() == (tmp_path / "single" / name).read_bytes()
        assert set(row["timing_ms"]) == {"decode", "segment", "write", "total"}
    assert sorted(os.listdir(tmp_path / "together")) == sorted(os.listdir(tmp_path / "single"))


def test_a_failed_batched_call_is_redone_image_by_image_and_said(opened, tmp_path, caplog):
    """Not silently: each redone row says why (``batched_call_failed``), and the worker's log once."""
    photos = [str(path) for path in sample_images()[:2]]
    root = os.path.dirname(photos[0])
    batch, _ = _batch(photos)
    worker = _worker(opened, tmp_path / "out", root, together=True, fail_lists=True)
    with caplog.at_level(logging.WARNING, logger="zsseg_rt.scale"):
        rows = _records(worker, batch)
        again = _records(worker, batch)
    assert [row["status"] for row in rows + again] == ["ok"] * 4 and worker.engine.calls == [2, 1, 1] * 2
    said = "CUDA error: an illegal memory access was encountered"
    assert [row["batched_call_failed"] for row in rows] == [said, said] and worker.batch_failed == 2
    warnings = [record.getMessage() for record in caplog.records if record.name == "zsseg_rt.scale"]
    assert warnings == [f"a batched call of 2 images failed ({said}): its images redone one by one"]
    for photo, row in zip(photos, rows):
        assert row["labels"] == labels_name(output_key(photo, root))
        assert (tmp_path / "out" / row["labels"]).is_file()


@pytest.mark.parametrize("size", [0, 1])
def test_a_batch_of_one_or_none_needs_no_batched_call(opened, tmp_path, size):
    photos = [str(path) for path in sample_images()[:size]]
    worker = _worker(opened, tmp_path / "out", os.path.dirname(str(sample_images()[0])), together=True)
    batch, _ = _batch(photos) if photos else ({"bytes": np.array([], dtype=object), "path": np.array([])}, [])
    assert [row["status"] for row in _records(worker, batch)] == ["ok"] * size and worker.engine.calls == [1] * size
