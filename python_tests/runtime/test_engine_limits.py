"""Issue 16 item 2: the Engine's memory is bounded for any input (configurable limits, clear errors), and the
documented formula (``pipeline.estimate_bytes``) matches the measured peak. Measurements run in a subprocess
(``python -m benchmarks engine_memory``: the rise of the process's own peak RSS, VmHWM, during one call)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import subprocess_env

from zsseg_rt.bundle import write_meta
from zsseg_rt.pipeline import InputLimitError, InputLimits

TOOL = Path(__file__).resolve().parents[2] / "benchmarks" / "engine_memory.py"


@pytest.fixture(scope="module")
def min_size_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle with the official short-side rule (``test_scale [None, 64]``, as every ViT-B/16 ZegCLIP
    config): a 1 x N image is rescaled to 64 x 64N, the elongated case of the issue."""
    path = tmp_path_factory.mktemp("min_size") / "bundle"
    shutil.copytree(tiny_bundle, path)
    meta = json.loads((path / "meta.json").read_text())
    meta["test_scale"] = [None, 64]
    write_meta(str(path / "meta.json"), meta)  # a deliberate edit: re-record meta.json's own hash
    return str(path)


def _measure(bundle, *args):
    code = (
        f"import runpy, sys; sys.argv = ['measure'] + sys.argv[1:]; runpy.run_path({str(TOOL)!r}, run_name='__main__')"
    )
    env = subprocess_env(OMP_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-c", code, bundle, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_hostile_elongated_image_is_refused_within_a_small_memory_rise(min_size_bundle):
    # 1x4096 with 32 classes: 64 x 262144 after the short-side rule, 5461 windows (before: 669 MiB peak rise)
    result = _measure(min_size_bundle, "--shape", "1x4096", "--classes", "32")
    assert result["outcome"].startswith("InputLimitError: image of 1x4096 needs 5461 sliding windows")
    assert "max_windows=4096" in result["outcome"] and "Engine(..., max_windows=N)" in result["outcome"]
    assert result["peak_rise_mib"] < 40, result


def test_elongated_image_runs_within_the_documented_estimate(min_size_bundle):
    # 1x1024 with 32 classes (the 1.35 GB case): 64 x 65536, 1365 windows
    result = _measure(min_size_bundle, "--shape", "1x1024", "--classes", "32")
    assert result["outcome"] == "ok" and result["windows"] == 1365
    assert result["estimate_mib"] < 100
    # the estimate leaves out ONNX Runtime's own working memory (a constant of the model, measured 15-35 MiB)
    assert result["peak_rise_mib"] <= result["estimate_mib"] + 64, result
    assert result["peak_rise_mib"] >= 0.5 * result["estimate_mib"], result  # the measurement itself works


@pytest.fixture(scope="module")
def engine_factory(min_size_bundle):
    from zsseg_rt import Engine

    def make(**limits):
        return Engine(min_size_bundle, classes=["cat", "dog"], backend="onnxruntime", device="cpu", **limits)

    return make


@pytest.mark.parametrize(
    "limits, shape, match",
    [
        (dict(max_pixels=1000), (40, 40), r"image of 40x40 has 1600 pixels: more than this Engine's max_pixels=1000"),
        (dict(max_rescaled_pixels=10000), (1, 4), r"rescaled to 64x256 = 16384 pixels.*max_rescaled_pixels=10000"),
        (dict(max_windows=3), (1, 4), r"needs 5 sliding windows.*max_windows=3"),
        (dict(max_memory_mb=1), (1, 1024), r"MiB of working memory.*max_memory_mb=1"),
    ],
)
def test_each_limit_names_itself_and_how_to_raise_it(engine_factory, limits, shape, match):
    engine = engine_factory(**limits)
    image = np.zeros(shape + (3,), np.uint8)
    with pytest.raises(InputLimitError, match=match) as info:
        engine(image)
    assert isinstance(info.value, ValueError) and "Engine(..., max_" in str(info.value)


def test_raising_a_limit_lets_the_image_through(engine_factory):
    image = np.random.default_rng(0).integers(0, 256, (1, 4, 3), dtype=np.uint8)
    result = engine_factory(max_windows=5)(image)
    assert result.labels.shape == (1, 4)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, None])
def test_limits_must_be_positive_ints(bad):
    with pytest.raises(ValueError, match="max_windows must be a positive int"):
        InputLimits(max_windows=bad)
