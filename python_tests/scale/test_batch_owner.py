"""``zsseg batch``'s OUTPUT has one owner while a run writes into it (issue 80, item 2: one owner lock for every
command's outputs, the ``zsseg_rt.outputs.owner`` lock ``zsseg segment`` and ``zsseg camera`` take): a second run is
refused before its first row, naming the run that holds it; the lock goes with the run. Control: before, ``run_batch``
took no lock and started a second job into the same folder (the first ``next`` went on to Ray)."""

from __future__ import annotations

import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from zsseg_rt.outputs.owner import FOLDER_LOCK, OutputBusy, OwnerLock  # noqa: E402
from zsseg_rt.scale.batch import MANIFEST, prepare_batch, run_batch  # noqa: E402


def test_a_second_run_into_one_output_is_refused(tmp_path, tiny_bundle):
    images, out = tmp_path / "in", tmp_path / "out"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((24, 32, 3), 90, np.uint8))
    job = prepare_batch(str(images), str(out), tiny_bundle, "a,b")
    running = OwnerLock(str(out), "OUTPUT", folder=True)  # another run, writing there now
    running.acquire()
    try:
        with pytest.raises(OutputBusy, match=r"OUTPUT '.*out' is being written by another run now \(process \d+\)"):
            next(run_batch(job))
        assert not os.path.exists(out / MANIFEST)  # nothing written
    finally:
        running.release()
    assert not os.path.exists(out / FOLDER_LOCK)
