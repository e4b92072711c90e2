"""The device pipeline's old import paths (``zsseg_rt.runtime.<module>``, before its modules moved into
``zsseg_rt/runtime/device/``) still import, warn, and are the very module objects of the new paths (one
``CudaMemory`` class, one ``DevicePipeline``: a copy would fail ``isinstance`` and split a test's patches)."""

from __future__ import annotations

import subprocess
import sys

from support import subprocess_env

MOVED = (
    "buffer_views",
    "cuda_driver",
    "cuda_graphs",
    "cuda_memory",
    "device_pipeline",
    "device_video",
    "in_flight",
    "postprocess_plans",
    "stage_timing",
)


def test_every_old_path_is_the_new_module_and_warns():
    code = (
        "import importlib, warnings\n"
        f"for name in {MOVED!r}:\n"
        "    old, new = f'zsseg_rt.runtime.{name}', f'zsseg_rt.runtime.device.{name}'\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        module = importlib.import_module(old)\n"
        "    assert module is importlib.import_module(new), (old, module)\n"
        "    assert module.__spec__.name == module.__name__ == new, module.__spec__\n"
        "    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message)\n"
        "               and 'removed in 0.2.0' in str(w.message) for w in caught), [str(w.message) for w in caught]\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
