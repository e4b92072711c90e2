"""fp16 / bf16 on the torch backend (export/torch_precision.py, export/torch_backend.py), on the CPU: what is
converted and what stays fp32, the fused attention, and the accuracy gate that decides whether a precision runs.

bf16 runs natively on the CPU; the tiny golden model FAILS the bf16 gate (about 95 % of labels agree: random
weights, many near-ties), which the refusal tests use. fp16 on a GPU HAS NOT RUN (no GPU here)."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from zsseg_rt.bundle import load_meta  # noqa: E402
from zsseg_rt.export import torch_backend as tb  # noqa: E402
from zsseg_rt.export.torch_precision import (  # noqa: E402
    Fp32LayerNorm,
    PrecisionGraph,
    TorchPrecision,
)
from zsseg_rt.models.zegclip.head import CrossAttention  # noqa: E402
from zsseg_rt.prepare.gate import EngineAccuracyError  # noqa: E402
from zsseg_rt.runtime.precision_records import record_dir  # noqa: E402

CLASSES = ["person", "bottle", "chair", "sofa", "tv", "cat"]


def test_fused_attention_computes_the_same_attention_in_fp32():
    torch.manual_seed(0)
    attn = CrossAttention(64, num_heads=8).eval()
    q, kv = torch.randn(2, 5, 64), torch.randn(2, 16, 64)
    with torch.no_grad():
        want, logits = attn(q, kv, kv)
        attn.fused_attention = True
        got, none = attn(q, kv, kv, need_logits=False)
        kept, kept_logits = attn(q, kv, kv)  # logits asked for: the explicit path even when fused is on
    assert none is None and torch.equal(kept, want) and torch.equal(kept_logits, logits)
    # same fp32 product, another summation order: |error| a few ulps of the O(1) outputs
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_mask_logits_in_fp32_from_reduced_projections():
    torch.manual_seed(0)
    attn = CrossAttention(64, num_heads=8).eval().to(torch.bfloat16)
    q, kv = torch.randn(1, 5, 64, dtype=torch.bfloat16), torch.randn(1, 16, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        plain = attn.mean_logits(q, kv)
        attn.float_logits = True
        out, logits = attn(q, kv, kv)
        float_logits = attn.mean_logits(q, kv)
    assert plain.dtype == torch.bfloat16 and float_logits.dtype == torch.float32 and logits.dtype == torch.float32
    assert out.dtype == torch.bfloat16


def test_fp32_softmax_and_l2norm_inside_a_precision_graph():
    class Graph(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.softmax(x, -1), torch.nn.functional.normalize(x, dim=-1)

    x = torch.randn(4, 300) * 30
    kept = PrecisionGraph(Graph(), TorchPrecision("fp16", ("softmax", "l2norm")))
    soft, norm = kept(x)
    assert soft.dtype == norm.dtype == torch.float16
    assert torch.equal(soft, x.half().float().softmax(-1).half())
    assert torch.equal(norm, torch.nn.functional.normalize(x.half().float(), dim=-1).half())


def test_precision_names_and_parts_are_checked():
    with pytest.raises(ValueError, match=r"one of \('fp32', 'fp16', 'bf16'\), got 'int8'"):
        TorchPrecision("int8")
    with pytest.raises(ValueError, match=r"fp32_parts must be among .*\['attention'\]"):
        TorchPrecision("fp16", ("attention",))
    assert TorchPrecision("bf16", ("l2norm", "mask_logits")).fp32_parts == ("mask_logits", "l2norm")


def _backend(bundle, precision, **kwargs):
    return tb.TorchBackend(load_meta(bundle), device="cpu", precision=precision, **kwargs)


def test_bf16_converts_image_encoder_and_head_and_keeps_the_text_encoder_fp32(tiny_bundle):
    fp32 = _backend(tiny_bundle, "fp32")
    bf16 = _backend(tiny_bundle, "bf16", gate=False, fp32_parts=("mask_logits", "layernorm"))
    assert fp32.precision_record is None and bf16.precision_record is None  # gate=False: measurements only
    dtypes = {p.dtype for p in bf16._image.parameters() if not any(p is t for t in bf16._text.parameters())}
    assert torch.bfloat16 in dtypes
    assert {p.dtype for p in bf16._text.parameters()} == {torch.float32}
    assert {p.dtype for p in fp32._image.parameters()} == {torch.float32}
    assert any(isinstance(m, Fp32LayerNorm) for m in bf16._image.modules())
    heads = [m for m in bf16._head.modules() if isinstance(m, CrossAttention)]
    assert heads and all(m.fused_attention and m.float_logits for m in heads)
    tokens = np.zeros((2, 77), np.int32)
    tokens[:, 0], tokens[:, 1:4], tokens[:, 4] = 49406, [[320, 321, 322], [400, 401, 402]], 49407
    np.testing.assert_array_equal(bf16.encode_text(tokens), fp32.encode_text(tokens))  # text stays exact fp32
    image = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    got, want = bf16.encode_image(image), fp32.encode_image(image)
    for name in want:
        a, b = np.asarray(got[name], np.float64), np.asarray(want[name], np.float64)
        assert not np.array_equal(a, b)
        # bf16 keeps 8 significant bits (relative rounding 2^-9 per op): feature directions agree to cos >= 0.99
        cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        assert cos.min() >= 0.99, (name, cos.min())


def test_a_failed_bf16_gate_is_refused_recorded_and_not_run_again(tiny_bundle, tmp_path, monkeypatch):
    root = str(tmp_path)
    with pytest.raises(EngineAccuracyError, match="accuracy gate FAILED.*precision='bf16' is refused"):
        _backend(tiny_bundle, "bf16", cache_dir=root)
    (folder,) = os.listdir(root)
    record = json.load(open(os.path.join(root, folder, "engine.json")))
    gate = record["accuracy_gate"]
    assert not gate["accepted"] and gate["label_agreement"] < 0.995 and gate["finite"]
    assert record["key"]["backend"] == "torch" and record["key"]["device"].startswith("cpu")
    assert record["torch_precision"]["fp32_parts"] == ["mask_logits"]

    def never(*args, **kwargs):
        raise AssertionError("the gate ran again although a refused record exists")

    monkeypatch.setattr(tb, "run_torch_gate", never)
    with pytest.raises(EngineAccuracyError, match="failed the accuracy gate"):
        _backend(tiny_bundle, "bf16", cache_dir=root)
    # other fp32 parts are another recipe: another record, gated on its own
    with pytest.raises(AssertionError, match="gate ran again"):
        _backend(tiny_bundle, "bf16", cache_dir=root, fp32_parts=("mask_logits", "layernorm"))


def test_an_accepted_bf16_record_runs_in_the_engine(tiny_bundle, tmp_path, monkeypatch):
    from zsseg_rt.runtime import Engine

    root = str(tmp_path)
    first = _backend(tiny_bundle, "bf16", cache_dir=root, accept_below_gate=True)
    gate = first.precision_record["accuracy_gate"]
    assert gate["accepted"] and not gate["passed"]
    monkeypatch.setattr(tb, "run_torch_gate", lambda *a, **k: pytest.fail("gate ran again"))
    again = _backend(tiny_bundle, "bf16", cache_dir=root)
    assert again.precision_record["digest"] == first.precision_record["digest"]
    assert os.listdir(root) == [os.path.basename(record_dir(root, tb.PrecisionKey(**again.precision_record["key"])))]
    engine = Engine(tiny_bundle, classes=CLASSES, backend=again)
    frame = np.random.default_rng(2).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    labels = engine(frame).labels
    assert labels.shape == (48, 80) and labels.max() < len(CLASSES)


def test_a_given_model_is_not_converted_in_place(tiny_bundle):
    model = tb.source_model(load_meta(tiny_bundle))
    _backend(tiny_bundle, "bf16", gate=False, model=model)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def _modes(model):
    return [m.training for m in model.modules()]


def test_a_given_model_keeps_its_mode(tiny_bundle):
    """fp32 too: a given model runs as it is only when it is ready (eval mode on the backend's device); one in
    training mode stays in training mode, the backend runs an eval copy (c783dbf switched it to eval in place)."""
    import copy

    meta = load_meta(tiny_bundle)
    model = tb.source_model(meta).train()
    modes = _modes(model)
    assert any(modes)
    backend = tb.TorchBackend(meta, device="cpu", model=model)
    assert _modes(model) == modes and backend._image.model is not model
    ready = copy.deepcopy(model).eval()
    as_is = tb.TorchBackend(meta, device="cpu", model=ready)
    assert as_is._image.model is ready  # nothing to change: no copy
    image = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    got, want = backend.encode_image(image), as_is.encode_image(image)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_a_given_model_is_not_moved_to_the_backend_s_device(tiny_bundle):
    """On a GPU the backend runs a copy on CUDA (here on the fake CUDA device, python_tests/fake_cuda.py, which
    computes on the CPU): the caller's model stays where it was (c783dbf moved it in place)."""
    from fake_cuda import fake_cuda

    meta = load_meta(tiny_bundle)
    model = tb.source_model(meta).eval()
    image = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    want = tb.TorchBackend(meta, device="cpu", model=model).encode_image(image)
    with fake_cuda():
        backend = tb.TorchBackend(meta, device="cuda", model=model)
        assert {p.device.type for p in model.parameters()} == {"cpu"}
        assert {p.device.type for p in backend._image.parameters()} == {"cuda"}
        got = backend.encode_image(image)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_the_cli_gates_a_torch_precision_ahead(tiny_bundle, tmp_path, capsys, monkeypatch):
    import shutil

    from zsseg_rt import cli

    bundle = shutil.copytree(tiny_bundle, str(tmp_path / "bundle"))
    argv = ["build-engine", bundle, "--backend", "torch", "--precision", "bf16"]
    assert cli.main(argv) == 2
    assert "accuracy gate FAILED" in capsys.readouterr().err
    runs = []

    def gate(*args, **kwargs):  # stands in for the second run of the gate: accepted below it, as asked
        runs.append(kwargs)
        return {"accepted": True, "passed": False, "summary": "accuracy gate FAILED (stand-in), accepted"}

    monkeypatch.setattr(tb, "run_torch_gate", lambda meta, backend, precision, accept, images: gate(accept=accept))
    assert cli.main([*argv, "--accept-below-gate"]) == 2  # the refused record stands until --force
    assert "--force --accept-below-gate" in capsys.readouterr().err and runs == []
    assert cli.main([*argv, "--force", "--accept-below-gate"]) == 0
    assert runs == [{"accept": True}] and "(stand-in), accepted" in capsys.readouterr().out


def test_the_precision_benchmark_runs_the_torch_rows_on_the_cpu(tiny_bundle, capsys):
    """Smoke run of `python -m benchmarks precision --backend torch` on the tiny model (its CUDA rows, the fp16
    autocast pipeline and the CUDA-graph floor, need a GPU: never run)."""
    from benchmarks.__main__ import main

    native = os.path.join(os.path.dirname(tiny_bundle), "native")  # where conftest's tiny_bundle saves it
    if not os.path.isdir(native):
        pytest.skip("the tiny bundle was handed over without its native checkpoint ($ZSSEG_TEST_TINY_BUNDLE)")
    argv = ["precision", "--bundle", tiny_bundle, "--native", native, "--backend", "torch", "--classes", "20"]
    assert main([*argv, "--text", "encoder", "--iters", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "| 20 | Engine torch fp32 |" in out and "| 20 | Engine torch bf16 |" in out
    fp32_row = next(line for line in out.splitlines() if line.startswith("| 20 | Engine torch fp32 |"))
    assert fp32_row.endswith("| 100.000 % |")
