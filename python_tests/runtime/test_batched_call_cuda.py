"""``engine([...])`` on the device pipeline (CUDA memory; the emulated CUDA runtime in CI): the windows of all images
packed into the device pipeline's batches on the device (``DevicePipeline.segment_many``), with the results of
per-image device calls, at most one batch's frames on the device, and the list's errors named by index."""

import numpy as np
import pytest
from cuda_support import RuntimeDriver, requires_cuda
from support import VOCAB10
from test_device_pipeline_cuda import HostGraphExecutor

from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.device.cuda_memory import CudaMemory
from zsseg_rt.runtime.device.device_pipeline import DevicePipeline

pytestmark = [pytest.mark.cuda, requires_cuda]


def test_a_list_on_the_device_pipeline_equals_per_image_device_calls(tiny_bundle):
    engine = Engine(tiny_bundle, classes=VOCAB10, backend="onnxruntime", device_pipeline=False)
    memory = CudaMemory(RuntimeDriver())
    engine.pipeline.device = DevicePipeline(engine.meta, HostGraphExecutor(engine.backend, memory), max_windows=2)
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((50, 50, 3), (40, 150, 3), (20, 20, 3))]
    try:
        memory.transfers.clear()
        singles = [engine(image) for image in images]
        uploads = [name for kind, name, _ in memory.transfers.entries if kind == "up"]
        assert uploads.count("frame") == len(images), "the per-image calls ran on the device pipeline"
        sizes = []
        run = engine.pipeline.device.executor.run
        engine.pipeline.device.executor.run = lambda role, inputs: (
            (sizes.append(inputs["image"].shape[0]) if role == "image" else None) or run(role, inputs)
        )
        memory.transfers.clear()
        batched = engine(images)
        windows = [len(engine.pipeline.device.frame_plan(image)[1]) for image in images]
        total = sum(windows)
        assert windows[1] > 1 == windows[0] == windows[2] and sizes == [2] * (total // 2) + [total % 2] * (total % 2)
        assert [name for kind, name, _ in memory.transfers.entries if kind == "up"].count("frame") == len(images)
        for index, (one, many) in enumerate(zip(singles, batched)):
            np.testing.assert_array_equal(many.labels, one.labels, err_msg=f"image {index}")
            # the same windows per encoder call only where a frame's windows fill whole calls: the fp32 bound
            np.testing.assert_allclose(many.scores, one.scores, rtol=0, atol=1e-5, err_msg=f"image {index}")
            assert "device_pipeline" in many.timing
        with pytest.raises(TypeError) as single:
            engine(np.zeros((4, 4), np.float32))
        with pytest.raises(TypeError) as listed:
            engine([images[0], np.zeros((4, 4), np.float32)])
        assert str(listed.value) == f"image 2 of the list (index 1): {single.value}"
    finally:
        memory.close()
