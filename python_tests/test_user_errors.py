"""User errors are refused with a clear message, never reported as "unexpected" (with a traceback hint), and one
pixel limit holds for the Engine, the CLI readers, ``zsseg batch`` and ``zsseg serve``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from zsseg_rt import cli
from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.image_io import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, ImageTooLargeError, decode_image_bytes


def _error_line(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "Warning" not in line and "warn" not in line]
    assert code != 0, err
    assert "unexpected" not in err and "Traceback" not in err, err
    return lines[-1]


@pytest.mark.parametrize(
    "setting, expect",
    [
        ("lr=abc", "'lr' must be a finite number, got str 'abc'"),
        ("iterations=1.5", "'iterations' must be a whole number"),
        ("amp=yes", "'amp' must be true or false"),
        ('betas=[0.9, "x"]', "'betas' must be a list of a finite number"),
    ],
)
def test_train_set_with_a_wrong_type_is_refused_naming_the_field(capsys, tmp_path, setting, expect):
    pytest.importorskip("torch")
    line = _error_line(capsys, ["train", "voc_inductive", "--set", setting, "--data-root", str(tmp_path)])
    assert line.startswith("zsseg train: error: training config field") and expect in line, line


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: a pickle that executes code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_eval_refuses_a_pickle_as_text_embeddings_without_running_it(capsys, tmp_path, tiny_bundle):
    pytest.importorskip("torch")
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump(_Payload(str(marker)), handle)
    argv = ["eval", tiny_bundle, "--dataset", "voc", "--data-root", str(SAMPLES_DIR), "--backend", "onnxruntime"]
    line = _error_line(capsys, argv + ["--text-embeddings", str(evil), "--no-progress"])
    assert "is not a file of text embeddings this loader accepts" in line and "refused unexecuted" in line, line
    assert not marker.exists()
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    line = _error_line(capsys, argv + ["--text-embeddings", str(tmp_path / "objects.npy"), "--no-progress"])
    assert "not a plain numeric .npy array" in line, line


@pytest.mark.parametrize("limit", ["-1", "0", "two"])
def test_eval_limit_must_be_positive(capsys, limit):
    with pytest.raises(SystemExit) as stop:  # argparse's usage error, before anything is loaded
        cli.main(["eval", "no-such-bundle", "--dataset", "voc", "--limit", limit])
    assert stop.value.code == 2
    assert "--limit: expected a whole number >= 1" in capsys.readouterr().err


def test_evaluate_limit_is_checked_in_the_library_too(tiny_bundle):
    from zsseg_rt.eval.evaluate import evaluate

    with pytest.raises(ValueError, match="limit must be a whole number of images >= 1"):
        evaluate(tiny_bundle, {"type": "voc", "root": str(SAMPLES_DIR), "split": "val"}, limit=-1, progress=False)


def test_a_very_long_image_hits_a_documented_limit(tiny_bundle):
    from zsseg_rt.pipeline.limits import MAX_SIDE, InputLimitError
    from zsseg_rt.runtime import Engine

    engine = Engine(tiny_bundle, classes=["cat", "dog"], backend="onnxruntime")
    with pytest.raises(InputLimitError, match=f"1x10000000 has a side longer than {MAX_SIDE} pixels.*docs/usage.md"):
        engine(np.zeros((1, 10_000_000, 3), np.uint8))
    assert engine(np.zeros((1, 4096, 3), np.uint8)).labels.shape == (1, 4096)  # long but within the limit


def test_one_pixel_limit_for_the_engine_and_encoded_images(tiny_bundle, monkeypatch):
    """The Engine's default ``max_pixels`` is the CLI's (``$ZSSEG_MAX_PIXELS`` or 40 MP), so an array the CLI would
    refuse from its file is refused by the API too (formerly the Engine took up to 67 MP)."""
    import cv2

    from zsseg_rt.pipeline.limits import InputLimitError
    from zsseg_rt.runtime import Engine

    assert Engine(tiny_bundle, backend="onnxruntime").limits.max_pixels == DEFAULT_MAX_PIXELS
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    engine = Engine(tiny_bundle, classes=["cat", "dog"], backend="onnxruntime")
    image = np.zeros((40, 30, 3), np.uint8)  # 1200 pixels
    with pytest.raises(InputLimitError, match="max_pixels=1000"):
        engine(image)
    ok, data = cv2.imencode(".png", image)
    with pytest.raises(ImageTooLargeError, match="over the 0.001 MP limit"):
        decode_image_bytes(data.tobytes())
    assert Engine(tiny_bundle, backend="onnxruntime", max_pixels=0).limits.max_pixels > 10**15  # 0 = no limit
    assert decode_image_bytes(data.tobytes(), max_pixels=0).shape == (40, 30, 3)


# (command line, flag, what the message must say): each used to be accepted (a negative --max-frames processed one
# frame, --fps nan and --max-reconnects -1 went through, ...) or to fail late ("unexpected OverflowError" from
# --preview 99999 when the MJPEG server bound its port).
OUT_OF_RANGE = [
    (["camera", "x", "--bundle", "b", "--classes", "a", "--preview", "99999"], "--preview", "0..65535 (0: any free"),
    (["camera", "x", "--bundle", "b", "--classes", "a", "--preview", "-1"], "--preview", "got '-1'"),
    (["serve", "--bundle", "b", "--classes", "a", "--port", "0"], "--port", "1..65535, got '0'"),
    (["camera", "x", "--bundle", "b", "--classes", "a", "--max-frames", "0"], "--max-frames", "number >= 1"),
    (["camera", "x", "--bundle", "b", "--classes", "a", "--max-frames", "-1"], "--max-frames", "number >= 1"),
    (["camera", "x", "--bundle", "b", "--classes", "a", "--fps", "nan"], "--fps", "finite number > 0"),
    (["camera", "x", "--bundle", "b", "--classes", "a", "--fps", "-3"], "--fps", "finite number > 0"),
    (["camera", "x", "--bundle", "b", "--classes", "a", "--max-reconnects", "-1"], "--max-reconnects", ">= 0"),
    (["camera", "x", "--bundle", "b", "--classes", "a", "--width", "-5"], "--width", "number >= 1"),
    (["export", "zegclip_vitb16_voc_inductive", "--max-classes", "0"], "--max-classes", "number >= 1"),
    (["export", "zegclip_vitb16_voc_inductive", "--opset", "9"], "--opset", "number >= 17"),
    (["build-engine", "b", "--max-batch", "0"], "--max-batch", "number >= 1"),
    (["build-engine", "b", "--workspace", "-1"], "--workspace", "finite number > 0"),
    (["train", "voc_inductive", "--iterations", "0"], "--iterations", "number >= 1"),
    (["train", "voc_inductive", "--num-workers", "-2"], "--num-workers", "number >= 0"),
    (["eval", "b", "--dataset", "voc", "--workers", "0"], "--workers", "number >= 1"),
    (["eval", "b", "--dataset", "voc", "--cpus-per-worker", "inf"], "--cpus-per-worker", "finite number > 0"),
    (["eval", "b", "--dataset", "voc", "--background-threshold", "-0.5"], "--background-threshold", ">= 0"),
]


@pytest.mark.parametrize(
    "argv, flag, expect", OUT_OF_RANGE, ids=[f"{a[0]} {a[-2]} {a[-1]}" for a, _, _ in OUT_OF_RANGE]
)
def test_numbers_out_of_range_are_usage_errors_naming_the_flag(capsys, argv, flag, expect):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag}: expected" in line and expect in line, line


def test_preview_readonly_without_a_preview_is_refused(capsys):
    line = _error_line(capsys, ["camera", "x", "--bundle", "b", "--classes", "a", "--preview-readonly"])
    assert line == "zsseg camera: error: --preview-readonly applies to the --preview page: give --preview PORT too"
