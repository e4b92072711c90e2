"""``--precision auto`` (documented) or ``bf16`` with the default ``--backend auto`` (issue 79, F5): it printed Python's
``engine.py:111: RuntimeWarning: backend='auto': tensorrt cannot be used (... got 'auto' (int8 needs ...)) ... pass
backend='onnxruntime' to silence this``, on a machine with no TensorRT at all. Now: no TensorRT installed is the normal
state of a CPU machine, whatever the precision (nothing said, as for the default precision); a TensorRT that is
installed (a stand-in here) and does not run the precision is one line in the flags' words on the command line, and a
RuntimeWarning with that reason in Python."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings

import pytest

pytest.importorskip("cv2")

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.assets import SAMPLES_DIR  # noqa: E402

PHOTO = str(SAMPLES_DIR / "JPEGImages" / "2011_000006.jpg")  # not cwd-relative: the GPU stages run in a work folder


def _segment(capsys, tmp_path, tiny_bundle, precision):
    argv = [PHOTO, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / precision), "--overwrite"]
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # not once per session: each run shows what it warns
        code = cli.main(["segment", *argv, "--precision", precision, "--prepare", "none"])
    return code, capsys.readouterr().err


@pytest.fixture
def tensorrt_installed(monkeypatch):
    """A TensorRT 10 that imports (it has no engines for the bundle, and this machine no GPU)."""
    from zsseg_rt.runtime.backends.tensorrt import engines

    monkeypatch.setattr(engines, "import_tensorrt", lambda: types.SimpleNamespace(__version__="10.3.0"))


@pytest.mark.time_bound(180)
def test_no_tensorrt_installed_says_nothing_whatever_the_precision(tmp_path, tiny_bundle):
    """A process of its own: what a user sees on stderr (pytest records the warnings of its own process)."""
    from support import subprocess_env

    argv = [PHOTO, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / "out"), "--prepare", "none"]
    done = subprocess.run(
        [sys.executable, "-m", "zsseg_rt.cli", "segment", *argv, "--precision", "auto"],
        capture_output=True,
        text=True,
        timeout=150,
        env=subprocess_env(),
    )
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning" not in done.stderr and "tensorrt" not in done.stderr.lower(), done.stderr
    assert "warning" not in done.stderr.lower(), done.stderr
    from zsseg_rt import Engine

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Engine(tiny_bundle, classes="a,b", precision="auto", prepare=None).close()
    assert not [w for w in caught if "tensorrt" in str(w.message).lower()], [str(w.message) for w in caught]


@pytest.mark.time_bound(180)
def test_an_installed_tensorrt_that_does_not_run_the_precision_is_one_line_in_the_flags_words(
    tmp_path, tiny_bundle, capsys, tensorrt_installed
):
    code, err = _segment(capsys, tmp_path, tiny_bundle, "auto")
    assert code == 0, err
    warned = [line for line in err.splitlines() if "warning" in line.lower() or "tensorrt" in line]
    assert warned == [
        "zsseg segment: warning: --precision auto: tensorrt (installed here) does not run it (fp32, fp16, "
        "fp16-pinned, int8), so --backend auto runs ONNX Runtime or OpenVINO; --backend tensorrt --precision fp16 "
        "runs on the GPU"
    ], err
    assert "RuntimeWarning" not in err and "backend='onnxruntime'" not in err and ".py:" not in err

    from zsseg_rt import Engine
    from zsseg_rt.errors import CliWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Engine(tiny_bundle, classes="a,b", precision="auto", prepare=None).close()
    (warning,) = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert issubclass(warning.category, CliWarning)
    assert str(warning.message).startswith(
        "backend='auto': tensorrt does not run precision='auto' (it runs fp32, fp16, fp16-pinned, int8)"
    ), warning.message
    assert "got 'auto'" not in str(warning.message) and "int8 needs" not in str(warning.message)
