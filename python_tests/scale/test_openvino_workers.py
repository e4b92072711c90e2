"""``zsseg batch`` / ``zsseg eval --ray`` with ``--backend openvino --precision auto``: the Ray workers resolve
``auto`` on their CPU from the gate record beside the bundle and load the compiled models from the bundle's
``engines/`` cache instead of compiling once each (concurrent first compiles: runtime/test_openvino_precision.py).

The tiny model fails the bf16 gate (97 %), so where the CPU has bf16 the test accepts it explicitly
(``accept_below_gate``, the documented override) to make ``auto`` pick bf16: the workers' labels are then the bf16
Engine's, not fp32's. Without bf16 on the CPU, ``auto`` runs fp32 and the same checks hold."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from support import VOCAB10 as VOCAB
from support import require_backend

from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.cpu_features import cpu_features

require_backend("openvino")

from zsseg_rt.runtime.backends import openvino as ovb  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray actor pool (the session's cluster)
HAS_BF16 = cpu_features().x86 and cpu_features().bf16 in ("amx-bf16", "avx512-bf16")


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory):
    """A copy (the gate record and the compiled models go into its engines/), bf16 accepted where the CPU has it."""
    path = shutil.copytree(tiny_bundle, str(tmp_path_factory.mktemp("ovw") / "bundle"))
    if HAS_BF16:
        from zsseg_rt.prepare.openvino import prepare_openvino_precision

        prepare_openvino_precision(path, "bf16", accept_below_gate=True, threads=1)
    return path


def _blobs(bundle):
    """Every file under engines/ with its modification time (a recompile rewrites blobs)."""
    root = os.path.join(bundle, "engines")
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name != ovb.COMPILE_LOCK:
                path = os.path.join(folder, name)
                found[os.path.relpath(path, root)] = os.stat(path).st_mtime_ns
    return found


def test_batch_workers_share_the_compiled_cache(ray_cluster, bundle, image_folder, tmp_path):
    """An Engine compiles the bundle once (precision auto: bf16 where accepted, else fp32); two batch workers then
    segment the images with the same precision (labels equal to that Engine's) and leave the cache untouched: no
    blob added or rewritten, so each loaded the compiled models instead of compiling. Control: the same batch on a
    bundle copy without a cache writes new blobs (the last assertion), so the check can see a compile."""
    from zsseg_rt.cli import main
    from zsseg_rt.scale.batch import read_manifest

    local = Engine(bundle, classes=VOCAB, backend="openvino", precision="auto")  # the workers' settings
    assert local.backend.precision == ("bf16" if HAS_BF16 else "fp32")
    before = _blobs(bundle)
    out = tmp_path / "out"
    argv = ["batch", image_folder, str(out), "--bundle", bundle, "--classes", ",".join(VOCAB), "--no-progress"]
    argv += ["--workers", "2", "--cpus-per-worker", "0.5", "--batch-size", "6"]
    assert main([*argv, "--backend", "openvino", "--precision", "auto"]) == 0
    rows = read_manifest(str(out))
    assert len(rows) == 24 and {r["status"] for r in rows} == {"ok"} and {r["backend"] for r in rows} == {"openvino"}
    import cv2

    for row in rows[:6]:
        labels = cv2.imread(os.path.join(out, row["labels"]), cv2.IMREAD_UNCHANGED)
        photo = cv2.imread(os.path.join(image_folder, row["key"]), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(labels, local(photo).labels)
    assert _blobs(bundle) == before
    fresh = shutil.copytree(bundle, str(tmp_path / "fresh"), ignore=shutil.ignore_patterns("engines"))
    argv[argv.index(bundle)] = fresh
    assert main([*argv, "--backend", "openvino", "--precision", "fp32", "--no-resume"]) == 0
    assert any(name.endswith(".blob") for name in _blobs(fresh)), _blobs(fresh)


def test_eval_workers_run_openvino_auto(ray_cluster, bundle, tmp_path):
    """``zsseg eval --ray --backend openvino --precision auto``: the actor pool's metrics equal the serial evaluation's
    with the same backend and precision."""
    import json

    from zsseg_rt.cli import main
    from zsseg_rt.eval.evaluate import evaluate

    spec = {"type": "voc", "root": str(SAMPLES_DIR), "split": "val"}
    serial = evaluate(bundle, dict(spec), backend="openvino", precision="auto", progress=False)
    out = tmp_path / "metrics.json"
    argv = ["eval", bundle, "--dataset", "voc", "--data-root", str(SAMPLES_DIR), "--ray", "--workers", "2"]
    argv += ["--cpus-per-worker", "0.5", "--no-progress", "--save-json", str(out), "--no-per-class"]
    assert main([*argv, "--backend", "openvino", "--precision", "auto"]) == 0
    timed = serial.pop("speed")  # the serial run's ms per image: a measurement, not a metric
    written = json.loads(out.read_text())
    spread = written.pop("speed")  # the actors' (their own measurement), naming the path they ran
    assert timed["images"] == spread["images"] == 4
    ran = (timed["backend"], timed["precision"])
    assert (spread["backend"], spread["precision"]) == ran and ran[0] == "openvino", (spread, timed)
    assert serial["images"] == 4 and written == json.loads(json.dumps(serial))
