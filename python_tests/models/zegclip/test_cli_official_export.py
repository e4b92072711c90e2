"""`zsseg export --official` + `zsseg segment`: an official-layout checkpoint to an overlay, through the CLI."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from test_official_import import _save_mmcv, official_layout  # noqa: E402
from zeg_helpers import TINY, randomize_  # noqa: E402

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.models import create_model  # noqa: E402


def test_export_official_checkpoint_then_segment(tmp_path, capsys):
    torch.manual_seed(0)
    source = randomize_(create_model(TINY), seed=3).eval()
    ckpt = tmp_path / "iter_20000.pth"
    _save_mmcv(ckpt, official_layout(source))
    bundle = str(tmp_path / "bundle")
    assert (
        cli.main(["export", bundle, "--official", str(ckpt), "--config", TINY, "--max-classes", "8", "--verify-images"])
        == 0
    )
    meta = json.load(open(os.path.join(bundle, "meta.json")))
    assert meta["verification"]["passed"] and meta["source_checkpoint"] == str(ckpt)
    assert "unused" in capsys.readouterr().out  # the import report lists the official never-used tensors

    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    photo = str(tmp_path / "photo.png")
    cv2.imwrite(photo, image)
    overlay = str(tmp_path / "overlay.png")
    assert (
        cli.main(
            [
                "segment",
                photo,
                "--bundle",
                bundle,
                "--classes",
                "cat, dog ,sofa",
                "-o",
                overlay,
                "--json",
                "--save-labels",
                "--backend",
                "onnxruntime",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary[0]["overlay"] == overlay and set(summary[0]["areas"]) <= {"cat", "dog", "sofa"}
    assert cv2.imread(overlay).shape == (50, 70, 3)
    labels = cv2.imread(str(tmp_path / "overlay_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (50, 70) and labels.max() < 3
