"""The speed summary of ``zsseg eval`` (issue 75 item 4): the metrics hold the mean ms per image of each stage with the
backend and precision that ran ("speed"), and the report ends with the one "Speed: ..." line (on stderr with
``--json``, whose stdout is the metrics only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("cv2")

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.assets import SAMPLES_DIR  # noqa: E402
from zsseg_rt.eval.evaluate import segment_dataset  # noqa: E402

BASE = ["--dataset", "voc", "--data-root", str(SAMPLES_DIR), "--limit", "2", "--no-progress", "--no-per-class"]


def test_eval_of_a_bundle_ends_with_the_engines_stages_and_what_ran(tiny_bundle, capsys):
    assert cli.main(["eval", tiny_bundle, *BASE, "--backend", "onnxruntime"]) == 0
    out = capsys.readouterr().out.splitlines()
    speed = [line for line in out if line.startswith("Speed: ")]
    assert len(speed) == 1 and out[-1] == speed[0], out  # the last line of the report
    assert " ms encoder, " in speed[0] and " ms post-processing, " in speed[0]
    assert speed[0].endswith("per image (onnxruntime fp32, 500x338 and 1 other size)"), speed

    assert cli.main(["eval", tiny_bundle, *BASE, "--backend", "onnxruntime", "--json"]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)  # stdout: the metrics only
    assert metrics["speed"]["images"] == 2 and metrics["speed"]["backend"] == "onnxruntime"
    assert metrics["speed"]["precision"] == "fp32" and metrics["speed"]["ms_per_image"]["image_encoder"] > 0
    assert captured.err.strip().splitlines()[-1].startswith("Speed: ")


class ToyDataset:
    """Three black 6x4 images of class 0 (``segment_dataset``'s dataset protocol; test_eval_batched.py's too)."""

    name, skipped = "toy", {}

    def __len__(self):
        return 3

    def load_safe(self, index):
        return np.zeros((4, 6, 3), np.uint8), np.zeros((4, 6), np.int64)


def test_a_segmenter_without_stages_is_timed_as_one_predict_stage():
    """A PyTorch checkpoint's segmenter (its family's predict) gives no stages: the call is timed whole."""

    out = segment_dataset(lambda rgb: np.zeros(rgb.shape[:2], np.int64), ToyDataset(), ["a", "b"], progress=False)
    assert out["speed"]["images"] == 3 and list(out["speed"]["ms_per_image"]) == ["predict", "total"]
    assert out["speed"]["size"] == "6x4"
