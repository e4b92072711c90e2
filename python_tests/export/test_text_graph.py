"""The exported text encoder: a finite causal mask and one-hot end-token pooling (``zsseg_rt.export.text_graph``),
with the same embeddings as the open_clip form (``-inf`` mask, ``x[arange, argmax]`` pooling) it replaces."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from support import golden_tiny_model  # noqa: E402

from zsseg_rt.bundle import Files, Names  # noqa: E402
from zsseg_rt.bundle.tokenizer import ClipTokenizer  # noqa: E402
from zsseg_rt.export.graphs import TextEncoderGraph  # noqa: E402
from zsseg_rt.export.text_graph import CAUSAL_MASK_FILL, OneHotPool  # noqa: E402

PROMPTS = [f"a photo of a {w}." for w in "cat dog person sofa tv bottle chair aeroplane bicycle bird".split()]
PROMPTS += ["a " * 40 + "horse", "x", "a <|endoftext|> inside the text"]  # long, short, a second end token


class OpenClipForm(torch.nn.Module):
    """The text graph as it was exported before: ``encode_tokens`` with open_clip's mask and pooling."""

    def __init__(self, model):
        super().__init__()
        self.text = model.text_encoder

    def forward(self, tokens):
        return self.text.encode_tokens(tokens)


@pytest.fixture(scope="module")
def model():
    return golden_tiny_model("zegclip")


def _tokens(model, length=None):
    tokens = model.text_encoder.tokenize(PROMPTS).to(torch.int32)
    return tokens if length is None else tokens[:, :length]


def _export(module, path):
    """Through the exporter the bundles use (the dynamo exporter, dynamic prompt and token axes)."""
    from zsseg_rt.export.onnx_export import export_graph

    tokens = torch.zeros(2, 16, dtype=torch.int32)
    tokens[:, 0], tokens[:, 1] = 49406, 49407
    axes = {Names.TOKENS: {0: Names.NUM_PROMPTS, 1: Names.TOKEN_LENGTH}, Names.TEXT_EMBEDDINGS: {0: Names.NUM_PROMPTS}}
    export_graph(module, (tokens,), path, [Names.TOKENS], [Names.TEXT_EMBEDDINGS], axes, 18, dynamo=True)
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sessions(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("text_graphs")
    return _export(OpenClipForm(model), str(root / "old.onnx")), _export(
        TextEncoderGraph(model), str(root / "new.onnx")
    )


@pytest.mark.parametrize("length", [None, 16])
def test_same_embeddings_as_the_open_clip_form(model, sessions, length):
    tokens = _tokens(model, length)
    with torch.no_grad():
        before, after = OpenClipForm(model)(tokens), TextEncoderGraph(model)(tokens)
    assert torch.equal(before, after)  # PyTorch: -1e4 underflows exp exactly as -inf does; one-hot picks exactly
    old, new = (session.run(None, {Names.TOKENS: tokens.numpy()})[0] for session in sessions)
    # the same bits are expected (no term changes value); allow float32 rounding of unit-norm embeddings: a few ulps
    # of 1.0 (2^-23 each), in case a MatMul kernel sums the one-hot row's exact zeros in another order
    np.testing.assert_allclose(new, old, rtol=0, atol=4 * 2.0**-23)
    np.testing.assert_allclose(new, before.numpy(), rtol=0, atol=1e-6)  # vs PyTorch: ORT's own fp32 rounding


def test_the_exported_graph_has_no_int64_gather_pooling_nor_infinite_mask(tiny_bundle):
    graph = onnx.load(os.path.join(tiny_bundle, Files.TEXT_ENCODER)).graph
    ops = [node.op_type for node in graph.node]
    assert "GatherND" not in ops and "Range" not in ops and "Equal" in ops and "ArgMax" in ops
    for init in graph.initializer:
        values = onnx.numpy_helper.to_array(init)
        if values.dtype.kind == "f":
            assert np.isfinite(values).all(), init.name
            if values.shape == (77, 77):
                assert values.min() == CAUSAL_MASK_FILL and values.max() == 0.0
    producers = {out: node for node in graph.node for out in node.output}
    pooling = [n for n in graph.node if n.op_type == "MatMul" and producers.get(n.input[0]) is not None]
    assert any(_feeds_from(producers, n.input[0], "Equal") for n in pooling)  # the one-hot MatMul


def _feeds_from(producers, name, op, depth=4):
    node = producers.get(name)
    if node is None or depth == 0:
        return False
    return node.op_type == op or any(_feeds_from(producers, i, op, depth - 1) for i in node.input if i)


def test_the_bundle_still_verifies_against_pytorch(tiny_bundle):
    with open(os.path.join(tiny_bundle, Files.META), encoding="utf-8") as handle:
        report = json.load(handle)["verification"]
    assert report["passed"]
    text_cases = [case for case in report["cases"] if case["graph"] == "text_encoder"]
    assert text_cases and all(case["max_abs"] <= case["atol"] for case in text_cases)
    tokens = ClipTokenizer(os.path.join(tiny_bundle, Files.TOKENIZER), 77)(PROMPTS)
    session = ort.InferenceSession(os.path.join(tiny_bundle, Files.TEXT_ENCODER), providers=["CPUExecutionProvider"])
    embeddings = session.run(None, {Names.TOKENS: tokens})[0]
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)


def test_one_hot_pooling_takes_the_first_end_token_as_argmax_does():
    x = torch.randn(3, 6, 4)
    tokens = torch.tensor([[5, 1, 9, 2, 9, 0], [9, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 9]], dtype=torch.int32)
    pooled = OneHotPool(77)(x, tokens)
    expected = x[torch.arange(3), tokens.argmax(-1)]
    assert torch.equal(pooled, expected)
    eos = OneHotPool(77, "eos", eos_id=2)(x, tokens)
    assert torch.equal(eos[0], x[0, 3])
    with pytest.raises(ValueError, match="pool_type"):
        OneHotPool(77, "mean")
