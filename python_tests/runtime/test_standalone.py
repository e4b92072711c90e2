"""The runtime stands alone: it runs an ONNX bundle with the exporter and the PyTorch models unimportable."""

import subprocess
import sys

BLOCKER = """
import sys

class Blocker:
    blocked = ("zsseg_rt.export", "zsseg_rt.models", "zsseg_rt.train", "torch", "open_clip")
    tried = []

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in self.blocked):
            Blocker.tried.append(name)
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocker())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=180)


def test_blocker_really_blocks():
    out = _run("import zsseg_rt.export.onnx_export\n")
    assert out.returncode != 0 and "blocked in this test" in out.stderr


# The bundle has no TensorRT engines (and this machine no TensorRT or GPU): TensorRTBackend must refuse it, for
# that reason, not because it reached for the exporter, and a TensorRTBackend that does not raise fails the test
# (the former try/except passed silently then: test_a_backend_that_does_not_refuse_fails_the_check is the control).
REFUSES = """
def assert_refused(backend, meta):
    try:
        backend(meta)
    except Exception as exc:
        assert "blocked in this test" not in str(exc), exc
        assert "tensorrt" in str(exc).lower() or "engine" in str(exc).lower(), exc  # why: TensorRT or its engines
        print("refused:", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    else:
        raise AssertionError(f"{backend.__name__}(meta) did not raise: a bundle without TensorRT engines was accepted")
"""


def test_a_backend_that_does_not_refuse_fails_the_check():
    code = REFUSES + "\nclass Accepts:\n    def __init__(self, meta):\n        pass\n\nassert_refused(Accepts, None)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Accepts(meta) did not raise" in out.stderr
    code = (
        REFUSES
        + "\ndef Blocked(meta):\n    raise ImportError('x is blocked in this test')\n\nassert_refused(Blocked, None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "blocked in this test" in out.stderr  # refused for the wrong reason


def test_runtime_runs_a_bundle_with_export_and_models_blocked(tiny_bundle):
    code = f"""
import numpy as np
import zsseg_rt.runtime
from zsseg_rt.runtime import Engine
import zsseg_rt.runtime.backends.tensorrt.engines, zsseg_rt.runtime.device.cuda_driver, zsseg_rt.runtime.engine_cache
engine = Engine({tiny_bundle!r}, classes=["cat", "sofa", "floor"], backend="auto")
result = engine(np.zeros((50, 70, 3), np.uint8))
assert result.labels.shape == (50, 70) and result.scores.shape == (50, 70)
from zsseg_rt.runtime.backends import TensorRTBackend
{REFUSES}
assert_refused(TensorRTBackend, engine.meta)
assert not [m for m in sys.modules if m.startswith(("zsseg_rt.export", "zsseg_rt.models"))]
print("ok", engine.backend.name, "tried", sorted(set(Blocker.tried)))
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert "ok onnxruntime" in out.stdout and "refused:" in out.stdout
