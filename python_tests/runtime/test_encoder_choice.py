"""The device pipeline's image encoder variant (``Engine(encoder_variant=...)``, issue 86 item 4;
``runtime/device/encoder_choice.py``), on the host: an executor over the tiny bundle's ONNX graphs offers variants
that behave as scripted (the same encoder, a wrong one, one that raises, one that cannot run here), and a scripted
timer stands for the device's clock (no test depends on timing). The fastest variant whose labels pass the accuracy
gate is kept; one that fails its gate, raises or is unavailable is never chosen, and the report says why; a pinned
variant times nothing; an executor without variants keeps its one encoder without running anything more. The torch
variants (``export/torch_encoders.py``): compiled and fp8 are skipped with their reason on the CPU, and the FP8
linear layer itself runs here (``torch._scaled_mm`` has a CPU kernel)."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from support import VOCAB10
from test_postprocess_choice import ScriptedTimer

from zsseg_rt.bundle import Names
from zsseg_rt.options import ENCODER_VARIANTS, ENGINE_OPTIONS
from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.device import encoder_choice
from zsseg_rt.runtime.device.device_pipeline import DevicePipeline, OnnxRuntimeExecutor
from zsseg_rt.runtime.device.encoder_choice import EncoderChoice, Unavailable, describe

TIMES = {"graph": 30.0, "compiled": 10.0, "fp8": 20.0}  # us per encoder run, as the scripted clock says


class VariantExecutor(OnnxRuntimeExecutor):
    """ONNX Runtime's graphs; each variant ``behaves``: "same" (the encoder as it is), "wrong" (the patches' order
    reversed: other labels), "raises" (at its first run), "unavailable" (cannot be switched to)."""

    encoder_variant = "graph"

    def __init__(self, backend, behaves):
        super().__init__(backend)
        self.behaves = dict(behaves)
        self.runs = collections.Counter()

    def encoder_variants(self):
        return tuple(self.behaves)

    def use_encoder(self, name):
        if self.behaves[name] == "unavailable":
            raise Unavailable(f"{name} needs a GPU this machine has not")
        self.encoder_variant = name

    def run(self, role, inputs):
        out = super().run(role, inputs)
        if role != "image":
            return out
        self.runs[self.encoder_variant] += 1
        behaviour = self.behaves[self.encoder_variant]
        if behaviour == "raises":
            raise RuntimeError("the kernel failed")
        if behaviour == "wrong":
            out = dict(out, **{Names.PATCHES: np.ascontiguousarray(out[Names.PATCHES][:, ::-1])})
        return out


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return Engine(tiny_bundle, classes=VOCAB10, backend="onnxruntime")


FRAME = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)


def _pipe(engine, behaves, setting="auto", times=TIMES, candidates=tuple(encoder_choice.CANDIDATES)):
    timer = ScriptedTimer(times)
    choice = (
        EncoderChoice(setting, timer=timer, repeats=2, rounds=3, candidates=candidates)
        if setting == "auto"
        else setting
    )
    pipe = DevicePipeline(engine.meta, VariantExecutor(engine.backend, behaves), max_windows=4,
                          encoder_variant=choice)  # fmt: skip
    pipe.set_vocabulary(engine._vocab[1], engine._vocab[2])
    return pipe, timer


def test_the_candidates_are_the_option_rows_values():
    assert ENGINE_OPTIONS["encoder_variant"].values() == ["auto", *ENCODER_VARIANTS]
    assert ENGINE_OPTIONS["encoder_variant"].default == "auto"
    assert encoder_choice.CANDIDATES == ("graph", "compiled", "fp8")  # the first is the reference


def test_auto_never_compiles_behind_the_users_back(engine):
    """auto times graph and fp8 only: compiled's first frame is a cold torch.compile (CPU minutes, a disk cache), the
    user's to pin; pinned, it runs (control)."""
    assert encoder_choice.AUTO_CANDIDATES == ("graph", "fp8") and EncoderChoice("auto").candidates == ("graph", "fp8")
    pipe, timer = _pipe(engine, {"graph": "same", "compiled": "same", "fp8": "same"}, candidates=None)
    pipe(FRAME)
    assert "compiled" not in timer.calls and pipe.executor.runs["compiled"] == 0
    assert pipe.encoders.report()["variant"] == "fp8"  # the faster of the two the script times
    pinned, _ = _pipe(engine, {"graph": "same", "compiled": "same", "fp8": "same"}, setting="compiled")
    pinned(FRAME)
    assert pinned.executor.encoder_variant == "compiled" and pinned.encoders.report()["how"] == "pinned"


@pytest.mark.parametrize(("times", "fastest"), [(TIMES, "compiled"), ({**TIMES, "graph": 5.0}, "graph")])
def test_the_fastest_that_passed_its_gate_is_kept(engine, times, fastest):
    """Control: another script keeps another variant (a choice that ignored the clock would pass only one)."""
    pipe, timer = _pipe(engine, {"graph": "same", "compiled": "same", "fp8": "same"}, times=times)
    labels, _ = pipe(FRAME)
    report = pipe.encoders.report()
    assert report["variant"] == fastest and report["how"] == "timed" and pipe.executor.encoder_variant == fastest
    assert timer.calls == ["graph", "compiled", "fp8"] * 3  # alternating within each round
    assert report["us"] == times and report["gate"] == {"compiled": 1.0, "fp8": 1.0}
    assert report["failed"] == report["skipped"] == {} and report["clock"] == "scripted"
    assert report["windows"] == len(pipe.frame_plan(FRAME)[1]) and report["labels_min"] == 0.995
    runs = dict(pipe.executor.runs)
    np.testing.assert_array_equal(pipe(FRAME)[0], labels)  # chosen once: the next frame times nothing
    assert len(timer.calls) == 9 and pipe.executor.runs - collections.Counter(runs) == {fastest: 1}


def test_a_variant_that_fails_its_gate_raises_or_cannot_run_is_never_chosen(engine):
    """The wrong encoder is the fastest by the clock, yet it is not kept: its gate figure is the share of its labels
    equal to the reference's, the same figure its pinned run gives."""
    times = {"graph": 30.0, "compiled": 20.0, "fp8": 1.0, "broken": 2.0, "absent": 3.0}
    behaves = {"graph": "same", "compiled": "same", "fp8": "wrong", "broken": "raises", "absent": "unavailable"}
    timer = ScriptedTimer(times)
    choice = EncoderChoice("auto", timer=timer, repeats=1, rounds=2, candidates=list(behaves))
    pipe = DevicePipeline(engine.meta, VariantExecutor(engine.backend, behaves), encoder_variant=choice)
    pipe.set_vocabulary(engine._vocab[1], engine._vocab[2])
    reference, _ = pipe(FRAME)
    report = pipe.encoders.report()
    assert report["variant"] == "compiled" and timer.calls == ["graph", "compiled"] * 2
    assert set(report["failed"]) == {"fp8", "broken"} and report["skipped"] == {"absent": "absent needs a GPU this "
                                                                               "machine has not"}  # fmt: skip
    assert report["failed"]["broken"] == "RuntimeError: the kernel failed"
    wrong = DevicePipeline(engine.meta, VariantExecutor(engine.backend, {"graph": "wrong"}))  # fp8's encoder, alone
    wrong.set_vocabulary(engine._vocab[1], engine._vocab[2])
    expected = float(np.mean(wrong(FRAME)[0] == reference))
    assert report["gate"]["fp8"] == round(expected, 6) < 0.995
    assert f"{100 * expected:.3f} % of the labels equal the graph encoder's" in report["failed"]["fp8"]
    line = describe(report)
    assert line.startswith("image encoder: compiled (timed: graph 30.0 us, compiled 20.0 us") and "fp8 failed" in line


def test_a_pinned_variant_times_nothing_and_one_that_cannot_run_is_refused(engine):
    pipe, _ = _pipe(engine, {"graph": "same", "compiled": "same", "fp8": "same"}, setting="fp8")
    pipe(FRAME)
    assert pipe.executor.encoder_variant == "fp8" and dict(pipe.executor.runs) == {"fp8": 1}
    assert pipe.encoders.report() == {"setting": "fp8", "candidates": list(ENCODER_VARIANTS), "reference": "graph",
                                      "variant": "fp8", "how": "pinned"}  # fmt: skip
    with pytest.raises(ValueError, match=r"^encoder_variant='fp8' cannot run here: fp8 needs a GPU this machine"):
        _pipe(engine, {"graph": "same", "compiled": "same", "fp8": "unavailable"}, setting="fp8")
    with pytest.raises(ValueError, match=r"encoder_variant='compiled': the OnnxRuntimeExecutor runs one encoder"):
        DevicePipeline(engine.meta, OnnxRuntimeExecutor(engine.backend), encoder_variant="compiled")
    with pytest.raises(ValueError, match=r"encoder_variant must be 'auto' or one of graph, compiled, fp8, got 'x'"):
        EncoderChoice("x")


def test_an_executor_without_variants_keeps_its_encoder_and_runs_nothing_more(engine):
    pipe = DevicePipeline(engine.meta, OnnxRuntimeExecutor(engine.backend), encoder_variant="auto")
    pipe.set_vocabulary(engine._vocab[1], engine._vocab[2])
    pipe.memory.transfers.clear()
    pipe(FRAME)
    assert pipe.memory.transfers.count("up") == 1  # the frame: no extra frame ran for a choice
    report = pipe.encoders.report()
    assert report["variant"] == "graph" and report["how"] == "only candidate"


def test_the_engine_reports_its_choice(tiny_bundle):
    engine = Engine(tiny_bundle, classes=VOCAB10, backend="onnxruntime", device_pipeline=True)
    engine(FRAME)
    assert engine.device_stats["encoder_variant"]["variant"] == "graph"
    assert engine.device_stats["encoder_variant"]["setting"] == "auto"


# ---- the torch variants ---------------------------------------------------------------------------------------------
def test_the_torch_variants_are_skipped_on_the_cpu_with_their_reason():
    pytest.importorskip("torch")
    from zsseg_rt.export import torch_encoders

    assert "this device is cpu" in torch_encoders.fp8_unavailable("cpu")
    assert "CUDA device only" in torch_encoders.compile_unavailable("cpu")


def test_fp8_linear_layers_replace_the_encoders_linears_and_share_the_rest():
    torch = pytest.importorskip("torch")
    from torch import nn

    from zsseg_rt.export.torch_encoders import Fp8Linear, fp8_encoder

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(32, 2, batch_first=True)
            self.fc = nn.Linear(32, 64)
            self.proj = nn.Linear(64, 32)
            self.unused = nn.Linear(32, 32)

        def forward(self, x):
            x = x + self.attn(x, x, x, need_weights=False)[0]
            return x + self.proj(torch.relu(self.fc(x)))

    torch.manual_seed(0)
    block = Block().eval()
    x = torch.randn(2, 16, 32)
    variant = fp8_encoder(block, x)
    assert isinstance(variant.fc, Fp8Linear) and isinstance(variant.proj, Fp8Linear)
    assert type(variant.unused) is nn.Linear and type(variant.attn.out_proj) is type(block.attn.out_proj)
    assert variant.attn.in_proj_weight is block.attn.in_proj_weight  # shared, not copied
    assert type(block.fc) is nn.Linear  # the reference graph is unchanged
    with torch.inference_mode():
        want, got = block(x), variant(x)
    error = float((got - want).abs().max() / want.abs().max())
    assert 0 < error < 0.05  # e4m3's rounding (3 mantissa bits), not another function
    with pytest.raises(ValueError, match=r"multiples of 16, got \[8, 32\]"):
        Fp8Linear(nn.Linear(32, 8))
