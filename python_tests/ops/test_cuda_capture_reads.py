"""Reading a DeviceArray while another thread captures a CUDA graph (review c783dbf #6), and arrays written by a
captured launch: their reads wait for the latest replay through an event each replay records, never for the whole
device.

c783dbf waited for a pending array's producer with ``cudaEventSynchronize`` (and for a graph-written array with
``cudaDeviceSynchronize``) outside the relaxed capture mode: a read from another thread invalidated that thread's
global-mode capture and raised. Each test here but the last fails there (an invalidated capture, a RuntimeError from
the read, or a race the emulated runtime reports); the last (reads right after each replay, no capture elsewhere)
passes there too: it guards the replay event that replaced the whole-device wait. The ones that hold a stream need
the emulation's controls; the last runs on a GPU too.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from cuda_support import Stream, cuda_testing, device, held, requires_cuda, requires_emulation, to_host

from zsseg_rt import ops
from zsseg_rt.ops import reference

pytestmark = [pytest.mark.cuda, requires_cuda]

F32 = np.float32


def _inputs(seed, n=40, c=7, d=16):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, n, d)).astype(F32), rng.standard_normal((c, d)).astype(F32)


@pytest.fixture
def streams():
    made = [Stream(), Stream()]
    yield made
    for s in made:
        s.close()


def _read_in_another_thread(array, how: str):
    """``how`` ("numpy", "cai", "dlpack") of ``array`` from a new thread; returns (value or None, error or None)."""
    result: dict = {}

    def read():
        try:
            if how == "numpy":
                result["value"] = array.numpy()
            elif how == "cai":
                result["value"] = array.__cuda_array_interface__
            else:
                result["value"] = array.__dlpack__(stream=1)
        except Exception as error:  # reported to the test thread
            result["error"] = f"{type(error).__name__}: {error}"

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    return result.get("value"), result.get("error")


def _capture_around(capture_stream, body):
    """Run ``body()`` while this thread captures ``capture_stream`` in the global mode; the capture must still be
    active afterwards and end with a graph (cudaStreamEndCapture raises when a call invalidated it)."""
    testing = cuda_testing()
    testing.begin_capture(int(capture_stream), "global")
    try:
        out = body()
        state = testing.is_capturing(int(capture_stream))
    finally:
        testing.end_capture(int(capture_stream))
    assert state == "active"
    return out


@requires_emulation
@pytest.mark.parametrize("how", ["numpy", "cai"])
def test_a_pending_device_array_read_from_another_thread_leaves_a_global_capture_valid(streams, how):
    producer, capture_stream = streams
    p, t = _inputs(31)
    inputs = device(p), device(t)
    with held(producer):
        out = ops.similarity(*inputs, stream=int(producer))  # pending: its stream is held
        value, error = _capture_around(capture_stream, lambda: _read_in_another_thread(out, how))
    assert error is None  # c783dbf: "operation not permitted when stream is capturing", the capture invalidated
    if how == "numpy":  # the complete value: the read waited for the producer
        np.testing.assert_allclose(value, reference.similarity(p, t), rtol=1e-5, atol=1e-5)
    else:
        assert value["stream"] is None  # content complete when handed out
        np.testing.assert_allclose(to_host(out), reference.similarity(p, t), rtol=1e-5, atol=1e-5)


def _graph_writing(array, patches, text, capture_stream):
    """A graph whose one launch writes ``array`` (out=): (graph, exec)."""
    testing = cuda_testing()
    testing.begin_capture(int(capture_stream))
    try:
        ops.similarity(patches, text, out=array, stream=int(capture_stream))
    finally:
        graph = testing.end_capture(int(capture_stream), keep=True)
    return graph, testing.graph_instantiate(graph)


@requires_emulation
@pytest.mark.parametrize("how", ["numpy", "cai", "dlpack"])
def test_a_graph_written_device_array_read_during_a_capture_waits_for_the_replay(how):
    replay, capture_stream, other = Stream(), Stream(), Stream()
    p1, t = _inputs(32)
    p2, _ = _inputs(33)
    patches, text = device(p2), device(t)
    array = ops.similarity(device(p1), text)  # a DeviceArray, complete
    to_host(array)
    graph, exec_ = _graph_writing(array, patches, text, other)
    testing = cuda_testing()
    try:
        with held(replay):
            testing.graph_launch(exec_, int(replay))  # pending: the replay writes p2's similarity into the array
            value, error = _capture_around(capture_stream, lambda: _read_in_another_thread(array, how))
        assert error is None  # c783dbf: cudaDeviceSynchronize during the capture, which it invalidated
        if how == "numpy":  # the replay's value, not the one before it
            np.testing.assert_allclose(value, reference.similarity(p2, t), rtol=1e-5, atol=1e-5)
        testing.stream_synchronize(int(replay))
    finally:
        testing.graph_exec_destroy(exec_)
        testing.graph_destroy(graph)
        for s in (replay, capture_stream, other):
            s.close()


@requires_emulation
def test_an_op_reading_a_graph_written_device_array_is_ordered_after_the_replay():
    replay, consumer, other = Stream(), Stream(), Stream()
    p1, t = _inputs(34)
    p2, _ = _inputs(35)
    patches, text = device(p2), device(t)
    array = ops.similarity(device(p1), text)  # [1, 7, 40]
    to_host(array)
    graph, exec_ = _graph_writing(array, patches, text, other)
    second = device(np.random.default_rng(36).standard_normal((3, 40)).astype(F32))
    testing = cuda_testing()
    try:
        with held(replay):
            testing.graph_launch(exec_, int(replay))
            # c783dbf ordered this read after the array's last eager write only: a race with the replay (reported
            # by the emulated runtime), and the kernel read the old values
            out = ops.similarity(array, second, stream=int(consumer))
        np.testing.assert_allclose(
            to_host(out), reference.similarity(reference.similarity(p2, t), to_host(second)), rtol=1e-4, atol=1e-4
        )
    finally:
        testing.stream_synchronize(int(replay))
        testing.graph_exec_destroy(exec_)
        testing.graph_destroy(graph)
        for s in (replay, consumer, other):
            s.close()


def test_a_graph_written_device_array_is_read_after_each_replay(streams):
    """Without the emulation's controls (a GPU too): each replay's value is what numpy() reads right after it, and
    ready() follows the replays."""
    replay, capture_stream = streams
    p1, t = _inputs(37)
    patches, text = device(p1), device(t)
    array = ops.similarity(patches, text)
    to_host(array)
    graph, exec_ = _graph_writing(array, patches, text, capture_stream)
    testing = cuda_testing()
    try:
        for seed in (38, 39):
            p, _ = _inputs(seed)
            testing.memcpy_async(patches.ptr, np.ascontiguousarray(p).ctypes.data, p.nbytes, int(replay))
            testing.graph_launch(exec_, int(replay))
            np.testing.assert_allclose(array.numpy(), reference.similarity(p, t), rtol=1e-5, atol=1e-5)
            assert array.ready()
    finally:
        testing.graph_exec_destroy(exec_)
        testing.graph_destroy(graph)
