"""Issue 16 item 6: every op checks ``stream``, lazy torch views, ``scale`` and masked arrays the same way."""

import numpy as np
import pytest

from zsseg_rt import ops


def _logits():
    return np.zeros((1, 2, 4, 4), np.float32)


# op name -> call(stream=..., **array overrides); every public op of zsseg_rt.ops
OPS = {
    "upsample": lambda stream=0: ops.upsample(_logits(), (4, 4), stream=stream),
    "segment": lambda stream=0: ops.segment(_logits(), (4, 4), stream=stream),
    "segment_windows": lambda stream=0: ops.segment_windows(
        _logits(), [(0, 4, 0, 4)], (4, 4), (4, 4), (4, 4), stream=stream
    ),
    "similarity": lambda stream=0: ops.similarity(
        np.zeros((1, 3, 4), np.float32), np.zeros((2, 4), np.float32), stream=stream
    ),
    "relation_descriptor": lambda stream=0: ops.relation_descriptor(
        np.zeros((2, 4), np.float32), np.zeros((1, 4), np.float32), stream=stream
    ),
    "pamr": lambda stream=0: ops.pamr(_logits(), np.zeros((1, 3, 4, 4), np.float32), 1, (1,), stream=stream),
    "preprocess": lambda stream=0: ops.preprocess(
        np.zeros((4, 4, 3), np.uint8), (4, 4), [(0, 4, 0, 4)], 4, (0, 0, 0), (1, 1, 1), stream=stream
    ),
    "warp": lambda stream=0: ops.warp(_logits(), np.zeros((1, 4, 4, 2), np.float32), stream=stream),
    "temporal_blend": lambda stream=0: ops.temporal_blend(
        *(np.zeros((2, 4, 4), np.float32),) * 2,
        *(np.zeros((4, 4), np.float32),) * 2,
        np.ones((4, 4), np.uint8),
        0.2,
        0.5,
        stream=stream,
    ),
    "temporal_hold": lambda stream=0: ops.temporal_hold(
        *_pair(),
        np.zeros((2, 2, 2), np.float32),
        np.zeros((2, 2), np.float32),
        np.zeros((4, 4), np.int32),
        np.zeros((4, 4, 2), np.float32),
        np.ones((4, 4), np.uint8),
        1.5,
        stream=stream,
    ),
    "temporal_propagate": lambda stream=0: ops.temporal_propagate(
        np.zeros((4, 4), np.int32), np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.float32), stream=stream
    ),
    "class_state": lambda stream=0: ops.class_state(_logits(), [(0, 4, 0, 4)], (4, 4), (4, 4), (2, 2), stream=stream),
    "SegmentWindowsPlan": lambda stream=0: ops.SegmentWindowsPlan(
        _logits(), [(0, 4, 0, 4)], (4, 4), (4, 4), (4, 4), out=_pair(), stream=stream
    ),
}


def _pair():
    return np.empty((4, 4), np.int32), np.empty((4, 4), np.float32)


def test_every_public_op_is_covered():
    not_ops = {"cuda_available", "cuda_unavailable_reason", "native_module", "reference", "segment_windows_kernels"}
    assert set(OPS) == set(ops.__all__) - not_ops


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stream", [0.5, 1.0, "0", True, np.float32(0)])
def test_stream_of_the_wrong_type_is_refused_by_every_op(name, stream):
    # before: 0.5 was truncated to 0 by similarity/relation_descriptor and refused by the others; True meant 1
    with pytest.raises(TypeError, match=f"{name}: stream must be an int"):
        OPS[name](stream=stream)


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stream", [-1, 2**63, 2**70])
def test_stream_out_of_range_is_a_value_error_from_every_op(name, stream):
    with pytest.raises(ValueError, match=f"{name}: stream must be a cudaStream_t as a non-negative int"):
        OPS[name](stream=stream)


@pytest.mark.parametrize("name", sorted(OPS))
def test_integer_streams_are_accepted(name):
    OPS[name](stream=0)
    OPS[name](stream=np.int64(0))
    OPS[name](stream=None)  # the default: the inputs' current stream (0 for CPU arrays)


@pytest.mark.parametrize("name", sorted(OPS))
def test_the_default_stream_is_none(name):
    import inspect

    assert inspect.signature(getattr(ops, name)).parameters["stream"].default is None


class _FakeCudaTensor:
    def __init__(self, device):
        self.device = device


def test_stream_none_follows_torchs_current_stream(monkeypatch):
    # resolve_stream on a stand-in torch module (this machine's torch has no CUDA): a CUDA tensor input gets the
    # current stream of its device, a CPU one and non-torch arrays the legacy default stream (0)
    import types

    from zsseg_rt.ops._arrays import resolve_stream

    asked = []

    def current_stream(device):
        asked.append(device)
        return types.SimpleNamespace(cuda_stream=0xABC0 + device.index)

    fake = types.SimpleNamespace(Tensor=_FakeCudaTensor, cuda=types.SimpleNamespace(current_stream=current_stream))
    monkeypatch.setitem(__import__("sys").modules, "torch", fake)
    cuda1 = _FakeCudaTensor(types.SimpleNamespace(type="cuda", index=1))
    cpu = _FakeCudaTensor(types.SimpleNamespace(type="cpu", index=None))
    assert resolve_stream(None, "op", np.zeros(1), cuda1) == 0xABC1
    assert asked == [cuda1.device]
    assert resolve_stream(None, "op", cpu, np.zeros(1)) == 0
    assert resolve_stream(7, "op", cuda1) == 7  # an explicit handle wins
    with pytest.raises(TypeError, match="op: stream must be an int"):
        resolve_stream(0.5, "op", cuda1)


# every array argument of each op, as the wrapper is called below: the stream follows any torch CUDA one of them
ARRAY_ARGS = {
    "upsample": ("logits", "class_bias", "out"),
    "segment": ("logits", "class_bias", "out"),
    "segment_windows": ("logits", "class_bias", "out"),
    "similarity": ("patches", "text", "out"),
    "relation_descriptor": ("text", "image_global", "weight", "bias", "out"),
    "preprocess": ("image", "out"),
}


@pytest.mark.parametrize("name", sorted(ARRAY_ARGS))
def test_stream_none_follows_out_and_class_bias_too(name, monkeypatch):
    # issue 25: out= and class_bias were left out of the stream resolution, so a torch out= (or bias) with inputs
    # from elsewhere ran on the legacy default stream instead of torch's current one
    import inspect

    from zsseg_rt.ops import _arrays

    module = inspect.getmodule(getattr(ops, name))
    seen = []

    def recording(stream, op, *arrays):
        seen.append(arrays)
        raise RuntimeError("stop")  # the native call is not the point here

    class Native:  # the wrapper looks the native function up before evaluating its arguments
        def __getattr__(self, _name):
            return lambda *a, **k: pytest.fail("no native call expected")

    monkeypatch.setattr(module, "resolve_stream", recording)
    params = inspect.signature(getattr(ops, name)).parameters
    marked = {arg: object() for arg in ARRAY_ARGS[name] if arg != "out"}
    out = (object(), object()) if name == "segment_windows" or name == "segment" else object()
    kwargs = {k: v for k, v in marked.items() if k in params}
    plain = {"windows": [(0, 4, 0, 4)], "crop": 4, "mean": (0, 0, 0), "std": (1, 1, 1)}
    required = {
        k: plain.get(k, (4, 4)) for k, p in params.items() if p.default is inspect.Parameter.empty and k not in kwargs
    }
    monkeypatch.setattr(_arrays, "as_native_array", lambda value, *a, **k: value)
    monkeypatch.setattr(module, "native_module", Native)
    for attr in ("_as_native_input", "_as_native_array", "as_native_array"):
        if hasattr(module, attr):
            monkeypatch.setattr(module, attr, lambda value, *a, **k: value)
    with pytest.raises(RuntimeError, match="stop"):
        getattr(ops, name)(**required, **kwargs, out=out)
    flat = [v for a in seen[0] for v in (a if isinstance(a, tuple) else (a,))]
    for arg, value in marked.items():
        assert any(v is value for v in flat), f"{name}: {arg} is not given to resolve_stream"
    for value in out if isinstance(out, tuple) else (out,):
        assert any(v is value for v in flat), f"{name}: out is not given to resolve_stream"


def test_resolve_stream_looks_into_out_tuples(monkeypatch):
    import types

    from zsseg_rt.ops._arrays import resolve_stream

    fake = types.SimpleNamespace(
        Tensor=_FakeCudaTensor,
        cuda=types.SimpleNamespace(current_stream=lambda device: types.SimpleNamespace(cuda_stream=0x5150)),
    )
    monkeypatch.setitem(__import__("sys").modules, "torch", fake)
    labels = _FakeCudaTensor(types.SimpleNamespace(type="cuda", index=0))
    assert resolve_stream(None, "segment", np.zeros(1), None, (labels, None)) == 0x5150


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -float("inf"), 1e40, -1e39])
def test_similarity_scale_out_of_range(scale):
    with pytest.raises(ValueError, match="similarity: scale must be finite"):
        ops.similarity(np.ones((1, 3, 4), np.float32), np.ones((2, 4), np.float32), scale=scale)


@pytest.mark.parametrize("scale", ["2", None, True])
def test_similarity_scale_not_a_number(scale):
    with pytest.raises(TypeError, match="similarity: scale must be a real number"):
        ops.similarity(np.ones((1, 3, 4), np.float32), np.ones((2, 4), np.float32), scale=scale)


def test_similarity_valid_scale_still_scales():
    out = ops.similarity(np.ones((1, 3, 4), np.float32), np.ones((2, 4), np.float32), scale=np.float32(2.5))
    np.testing.assert_allclose(out, np.full((1, 2, 3), 10.0, np.float32))


MASKED_CALLS = {
    "upsample": lambda m: ops.upsample(m, (4, 4)),
    "segment": lambda m: ops.segment(m, (4, 4)),
    "segment_windows": lambda m: ops.segment_windows(m, [(0, 4, 0, 4)], (4, 4), (4, 4), (4, 4)),
    "similarity": lambda m: ops.similarity(m[0, :, :3, :], np.zeros((2, 4), np.float32)),
    "relation_descriptor": lambda m: ops.relation_descriptor(np.zeros((2, 4), np.float32), m[0, :1, 0, :]),
    "preprocess": lambda m: ops.preprocess(
        np.ma.masked_array(np.zeros((4, 4, 3), np.uint8)), (4, 4), [(0, 4, 0, 4)], 4, (0, 0, 0), (1, 1, 1)
    ),
}


@pytest.mark.parametrize("name", sorted(MASKED_CALLS))
def test_masked_arrays_are_refused(name):
    masked = np.ma.masked_array(_logits(), mask=np.zeros((1, 2, 4, 4), bool))
    with pytest.raises(TypeError, match=f"{name}: argument '.*' is a numpy masked array"):
        MASKED_CALLS[name](masked)


@pytest.mark.parametrize("bit", ["neg", "conj"])
def test_torch_lazy_views_raise_the_native_type_error(bit):
    torch = pytest.importorskip("torch")
    base = torch.ones(1, 2, 4, 4)
    if bit == "neg":
        lazy = torch._neg_view(base)
    else:
        lazy = torch.ones(1, 2, 4, 4, dtype=torch.complex64).conj()
    assert getattr(lazy, f"is_{bit}")()
    # before: RuntimeError from tensor.numpy(); now the same TypeError (and text) as the native check
    with pytest.raises(TypeError, match=f"upsample: argument 'logits' is a torch tensor with the lazy {bit} bit set"):
        ops.upsample(lazy, (4, 4))
    with pytest.raises(TypeError, match=f"similarity: argument 'patches' is a torch tensor with the lazy {bit} bit"):
        ops.similarity(lazy[0], torch.ones(2, 4))
    resolved = getattr(lazy, f"resolve_{bit}")()
    if bit == "neg":
        np.testing.assert_array_equal(ops.upsample(resolved, (4, 4)), -np.ones((1, 2, 4, 4), np.float32))


def test_preprocess_returns_the_callers_own_out_object():
    torch = pytest.importorskip("torch")
    out = torch.zeros(1, 3, 4, 4)
    image = np.full((4, 4, 3), 7, np.uint8)
    assert ops.preprocess(image, (4, 4), [(0, 4, 0, 4)], 4, (0, 0, 0), (1, 1, 1), out=out) is out
    assert float(out.min()) == 7.0
