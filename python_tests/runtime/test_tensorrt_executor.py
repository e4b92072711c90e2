"""TensorRTExecutor against a recording fake of the TensorRT 10 execution-context API (call order and arguments
only; the fake computes nothing). Checked signatures (TensorRT 10 Python API, IExecutionContext / ICudaEngine):
set_input_shape(name: str, shape: Dims) -> bool; set_tensor_address(name: str, memory: int) -> bool;
get_tensor_shape(name: str) -> Dims; execute_async_v3(stream_handle: int) -> bool; ICudaEngine.num_io_tensors,
get_tensor_name(index: int) -> str, get_tensor_mode(name: str) -> TensorIOMode, get_tensor_dtype(name: str) ->
DataType; tensorrt.nptype(DataType) -> numpy type."""

import sys
import types

import numpy as np
import pytest

from zsseg_rt.bundle import Names
from zsseg_rt.runtime.device.cuda_memory import CudaBuffer, CudaMemory, TensorRTExecutor


class FakeDriver:
    """CUDA driver stand-in: allocations are increasing integers, copies are recorded."""

    def __init__(self):
        self.next, self.calls = 0x1000, []

    def stream_create(self):
        return 77

    def device_attribute(self, attribute, index=0):
        return 0

    def mem_alloc(self, nbytes):
        self.next += (int(nbytes) + 255) // 256 * 256
        self.calls.append(("alloc", nbytes))
        return self.next

    def copy_to_device(self, pointer, array, stream):
        self.calls.append(("htod", pointer, array.nbytes, stream))

    def copy_to_host(self, array, pointer, stream):
        self.calls.append(("dtoh", pointer, array.nbytes, stream))


@pytest.fixture()
def fake_trt(monkeypatch):
    module = types.SimpleNamespace(
        TensorIOMode=types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"), nptype=lambda dtype: np.float32
    )
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


class FakeEngine:
    def __init__(self, inputs, outputs):
        self.io = [(n, "INPUT") for n in inputs] + [(n, "OUTPUT") for n in outputs]
        self.num_io_tensors = len(self.io)

    def get_tensor_name(self, index):
        return self.io[index][0]

    def get_tensor_mode(self, name):
        return dict(self.io)[name]

    def get_tensor_dtype(self, name):
        return "FLOAT"


class FakeContext:
    def __init__(self, engine, output_shapes, log):
        self.engine, self.output_shapes, self.log = engine, output_shapes, log

    def set_input_shape(self, name, shape):
        self.log.append(("set_input_shape", name, tuple(shape)))
        return True

    def set_tensor_address(self, name, memory):
        self.log.append(("set_tensor_address", name, memory))
        return True

    def get_tensor_shape(self, name):
        return self.output_shapes(name)

    def execute_async_v3(self, stream_handle):
        self.log.append(("execute_async_v3", stream_handle))
        return True


def test_image_outputs_are_bound_as_head_inputs_without_copies(fake_trt):
    log = []
    image = FakeContext(
        FakeEngine([Names.IMAGE], [Names.IMAGE_GLOBAL, Names.PATCHES]),
        {Names.IMAGE_GLOBAL: (2, 32), Names.PATCHES: (2, 16, 32)}.get,
        log,
    )
    head = FakeContext(
        FakeEngine([Names.TEXT_EMBEDDINGS, Names.IMAGE_GLOBAL, Names.PATCHES], [Names.MASK_LOGITS]),
        {Names.MASK_LOGITS: (2, 5, 4, 4)}.get,
        log,
    )
    driver = FakeDriver()
    memory = CudaMemory(driver, zero_copy=False)
    executor = TensorRTExecutor({"image": image, "head": head}, memory)
    batch = memory.empty((4, 3, 64, 64), np.float32)[:2]
    text = memory.empty((5, 32), np.float32)
    features = executor.run("image", {Names.IMAGE: batch})
    logits = executor.run("head", dict(features, **{Names.TEXT_EMBEDDINGS: text}))[Names.MASK_LOGITS]
    addresses = {}
    for entry in log:
        if entry[0] == "set_tensor_address":
            addresses.setdefault(entry[1], []).append(entry[2])
    # the image encoder's output buffers are the very addresses the head reads
    assert addresses[Names.IMAGE_GLOBAL][0] == addresses[Names.IMAGE_GLOBAL][1] == features[Names.IMAGE_GLOBAL].pointer
    assert addresses[Names.PATCHES][0] == addresses[Names.PATCHES][1] == features[Names.PATCHES].pointer
    assert addresses[Names.IMAGE] == [batch.pointer] and addresses[Names.TEXT_EMBEDDINGS] == [text.pointer]
    assert ("set_input_shape", Names.IMAGE, (2, 3, 64, 64)) in log
    assert [e for e in log if e[0] == "execute_async_v3"] == [("execute_async_v3", 77)] * 2
    assert not [c for c in driver.calls if c[0] in ("htod", "dtoh")]  # no host round trip between the graphs
    assert isinstance(logits, CudaBuffer) and logits.shape == (2, 5, 4, 4)


def test_missing_input_is_named(fake_trt):
    context = FakeContext(FakeEngine([Names.IMAGE], [Names.PATCHES]), {Names.PATCHES: (1, 4, 8)}.get, [])
    executor = TensorRTExecutor({"image": context}, CudaMemory(FakeDriver(), zero_copy=False))
    with pytest.raises(KeyError, match="image"):
        executor.run("image", {})


def test_cuda_buffer_interface_and_row_views():
    buffer = CudaBuffer(4096, (4, 3, 8, 8), np.float16, stream=5)
    view = buffer[:2]
    assert view.pointer == 4096 and view.shape == (2, 3, 8, 8)
    cai = view.__cuda_array_interface__
    assert cai["typestr"] == "<f2" and cai["data"] == (4096, False) and cai["stream"] == 5 and cai["version"] == 3
    rows = buffer[1:3]  # a row slice (the batched call's rows of one image): offset by whole rows
    assert rows.pointer == 4096 + 1 * 3 * 8 * 8 * 2 and rows.shape == (2, 3, 8, 8) and rows.stream == 5
    assert buffer[3:9].shape == (1, 3, 8, 8)  # clipped to the buffer, as NumPy slices are
    with pytest.raises(IndexError):
        buffer[::2]  # not contiguous
    with pytest.raises(IndexError):
        buffer[1]


class FakeIntegratedDriver(FakeDriver):
    """An integrated GPU (Jetson): host allocations are real memory, mapped at a fake device address."""

    def __init__(self):
        super().__init__()
        self.host = []

    def device_attribute(self, attribute, index=0):
        return 1  # integrated, can map host memory

    def host_alloc(self, nbytes, mapped=False):
        import ctypes

        block = ctypes.create_string_buffer(int(nbytes))
        self.host.append((block, mapped))
        return ctypes.addressof(block)

    def host_device_pointer(self, host_pointer):
        return host_pointer + (1 << 44)


def test_zero_copy_frame_on_integrated_gpus():
    from zsseg_rt.runtime.device.device_pipeline import DevicePipeline

    driver = FakeIntegratedDriver()
    memory = CudaMemory(driver)  # zero_copy="auto": on, since the fake device reports integrated memory
    assert memory.zero_copy
    pipe = DevicePipeline.__new__(DevicePipeline)
    pipe.memory, pipe._frame_host = memory, None
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    host, device = pipe._frame_buffers(frame)
    assert all(mapped for _, mapped in driver.host)
    assert device.pointer == host.__array_interface__["data"][0] + (1 << 44)
    np.copyto(host, frame)
    memory.upload("frame", host, device)
    assert memory.transfers.entries == [("mapped", "frame", frame.nbytes)]
    assert not [c for c in driver.calls if c[0] == "htod"]  # nothing crossed a bus


def test_shared_contexts_are_set_up_under_the_lock_on_the_profile_their_inputs_need(fake_trt):
    """A context shared with the host path (TensorRTBackend.device_executor): the executor holds the host path's lock
    while it sets the context up and enqueues, and first has it put on a profile that holds its inputs, on its own
    stream (the host path may have left it on another profile)."""
    log = []

    class Lock:
        def __enter__(self):
            log.append(("lock",))

        def __exit__(self, *exc):
            log.append(("unlock",))

    image = FakeContext(FakeEngine([Names.IMAGE], [Names.PATCHES]), {Names.PATCHES: (2, 16, 32)}.get, log)
    memory = CudaMemory(FakeDriver(), zero_copy=False)
    executor = TensorRTExecutor(
        {"image": image}, memory, lock=Lock(), select_profile=lambda *args: log.append(("select_profile",) + args)
    )
    batch = memory.empty((2, 3, 64, 64), np.float32)
    executor.run("image", {Names.IMAGE: batch})
    assert log[0] == ("lock",) and log[1] == ("select_profile", "image", {Names.IMAGE: (2, 3, 64, 64)}, 77)
    assert log[2] == ("set_input_shape", Names.IMAGE, (2, 3, 64, 64))
    assert log[-2:] == [("execute_async_v3", 77), ("unlock",)]
