"""``zsseg eval --ray`` (Ray Data actor pool) gives exactly the serial evaluation's metrics."""

from __future__ import annotations

import json

import pytest

from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.eval.evaluate import evaluate
from zsseg_rt.eval.parallel import evaluate_parallel

# Ray start-up (~15-25 s on 2 cores) and actor pools: slow, but run by CI (tools/run_tests.sh runs all).
pytestmark = pytest.mark.slow


def test_parallel_eval_equals_serial(ray_cluster, tiny_bundle, tmp_path, capsys):
    from zsseg_rt.cli import main

    spec = {"type": "voc", "root": str(SAMPLES_DIR), "split": "val"}
    serial = evaluate(tiny_bundle, dict(spec), backend="onnxruntime", progress=False)
    parallel = evaluate_parallel(
        tiny_bundle, spec, backend="onnxruntime", workers=2, cpus_per_worker=0.5, batch_size=1, progress=False
    )
    assert serial["images"] == parallel["images"] == 4
    assert serial["valid_pixels"] > 0 and sum(c["gt_pixels"] > 0 for c in serial["per_class"].values()) >= 3
    timed = serial.pop("speed")  # the serial run's ms per image (zsseg_rt.console.speed): a measurement, not a metric
    spread = parallel.pop("speed")  # the actors' (issue 75: `eval --ray` had no speed line)
    for speed in (timed, spread):
        assert speed["images"] == 4 and speed["backend"] == "onnxruntime" and speed["precision"] == "fp32", speed
        assert speed["ms_per_image"]["image_encoder"] > 0 and speed["ms_per_image"]["total"] > 0, speed
    assert set(spread["ms_per_image"]) == set(timed["ms_per_image"]) and spread["size"] == timed["size"], spread
    assert parallel == serial  # integer confusion counts summed in any order: identical metrics

    out = tmp_path / "metrics.json"
    code = main(
        ["eval", tiny_bundle, "--dataset", "voc", "--data-root", str(SAMPLES_DIR), "--backend", "onnxruntime"]
        + ["--ray", "--workers", "2", "--cpus-per-worker", "0.5", "--no-progress", "--json", str(out)]
    )
    assert code == 0
    written = json.loads(out.read_text())
    assert written.pop("speed")["images"] == 4
    assert written == json.loads(json.dumps(serial))
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Speed: ")]
    assert " ms encoder, " in line and line.endswith("per image (onnxruntime fp32, 500x375 and 1 other size)"), line
