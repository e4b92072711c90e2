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


def test_runtime_runs_a_bundle_with_export_and_models_blocked(tiny_bundle):
    code = f"""
import numpy as np
import zsseg_rt.runtime
from zsseg_rt.runtime import Engine
import zsseg_rt.runtime.tensorrt, zsseg_rt.runtime.cuda_driver, zsseg_rt.runtime.engine_cache
engine = Engine({tiny_bundle!r}, classes=["cat", "sofa", "floor"], backend="auto")
result = engine(np.zeros((50, 70, 3), np.uint8))
assert result.labels.shape == (50, 70) and result.scores.shape == (50, 70)
from zsseg_rt.runtime.backends import TensorRTBackend
try:  # no GPU/TensorRT here: it must fail for that reason, not because it reached for the exporter
    TensorRTBackend(engine.meta)
except Exception as exc:
    assert "blocked in this test" not in str(exc), exc
assert not [m for m in sys.modules if m.startswith(("zsseg_rt.export", "zsseg_rt.models"))]
print("ok", engine.backend.name, "tried", sorted(set(Blocker.tried)))
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert "ok onnxruntime" in out.stdout
