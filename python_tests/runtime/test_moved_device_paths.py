"""The device pipeline's old import paths (``zsseg_rt.runtime.<module>``, before its modules moved into
``zsseg_rt/runtime/device/``) still import, warn, and are the very module objects of the new paths (one
``CudaMemory`` class, one ``DevicePipeline``: a copy would fail ``isinstance`` and split a test's patches)."""

from __future__ import annotations

from moved_modules import assert_moved

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
    assert_moved({f"zsseg_rt.runtime.{name}": f"zsseg_rt.runtime.device.{name}" for name in MOVED})
