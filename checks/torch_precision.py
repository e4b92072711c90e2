"""Which parts of a model must stay fp32 on the torch backend at fp16 / bf16? Measured on the CPU.

Every configuration runs the accuracy gate's comparison (``run_accuracy_gate``: the sample photos end to end with
the VOC names, plus random inputs) against the same model in fp32 on the torch backend, and records the label
agreement, the largest mask-logit difference and whether anything was non-finite. Configurations, per precision:

* ``kernels``: torch's own reduced-precision kernels everywhere (their LayerNorm / softmax / L2-norm statistics are
  fp32 inside), nothing kept fp32;
* ``+<part>``: one part kept fp32 (``mask_logits``, ``layernorm``, ``softmax``, ``l2norm``); ``all-fp32-parts``;
* ``naive-<part>`` / ``naive-all``: that part's statistics computed in the reduced precision itself (every
  elementwise step rounded: ``x*x`` overflows fp16 once ``|x| > 255.9``), as a kernel without fp32 internals would.

bf16 runs natively on the CPU (oneDNN; AVX-512 BF16 where the CPU has it). fp16 is EMULATED: torch's CPU fp16 GEMM
runs at ~0.4 GFLOP/s here, so matmuls, convolutions and attention (``F.linear``, ``matmul``, ``bmm``, ``conv2d``,
``scaled_dot_product_attention``, ``multi_head_attention_forward``) take fp16 inputs, compute in fp32 and round their
result to fp16 (what tensor-core GEMMs and fused attention do: fp16 in and out, fp32 accumulation); every other op
runs in fp16 on the CPU. Also recorded, in fp32: the largest LayerNorm input, L2-norm input norm and softmax input.

    python -m checks torch_precision BUNDLE [--precisions fp16,bf16] [--configs kernels,+mask_logits] [--json F]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Dict, List, Optional, Sequence

from zsseg_rt.runtime.backends import Backend

FP16_MAX = 65504.0


def _modes():
    """The torch function modes of this check (defined lazily: torch is imported only when the check runs)."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    matmuls = {
        F.linear,
        torch.matmul,
        torch.Tensor.__matmul__,
        torch.bmm,
        F.conv2d,
        F.scaled_dot_product_attention,
        F.multi_head_attention_forward,
    }
    half = torch.float16

    def _naive_layer_norm(x, shape, weight=None, bias=None, eps=1e-5):
        mean = x.mean(-1, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(-1, keepdim=True)  # the square rounds to the dtype: fp16 overflows here
        y = centred * torch.rsqrt(var + eps)
        return y * weight + bias if weight is not None else y

    def _naive_softmax(x, dim=-1, **_):
        e = torch.exp(x - x.amax(dim, keepdim=True))
        return e / e.sum(dim, keepdim=True)

    def _naive_normalize(x, p=2.0, dim=1, eps=1e-12, **_):
        norm = torch.sqrt((x * x).sum(dim, keepdim=True))  # x*x in the dtype
        return x / norm.clamp_min(eps)

    class Emulate(TorchFunctionMode):
        """fp16 matmuls with fp32 accumulation (``fp16_matmuls``) and naive reduced-precision statistics."""

        def __init__(self, fp16_matmuls: bool, naive: Sequence[str]):
            super().__init__()
            self.fp16_matmuls, self.naive = fp16_matmuls, set(naive)

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            low = tensors and tensors[0].dtype in (torch.float16, torch.bfloat16)
            if low and "layernorm" in self.naive and func is F.layer_norm:
                return _naive_layer_norm(*args, **kwargs)
            if low and "softmax" in self.naive and func in (F.softmax, torch.softmax, torch.Tensor.softmax):
                return _naive_softmax(*args, **kwargs)
            if low and "l2norm" in self.naive and func is F.normalize:
                return _naive_normalize(*args, **kwargs)
            if self.fp16_matmuls and func in matmuls and any(t.dtype == half for t in tensors):
                up = [a.float() if isinstance(a, torch.Tensor) and a.dtype == half else a for a in args]
                upk = {
                    k: v.float() if isinstance(v, torch.Tensor) and v.dtype == half else v for k, v in kwargs.items()
                }
                out = func(*up, **upk)
                if isinstance(out, tuple):
                    return tuple(
                        o.to(half) if isinstance(o, torch.Tensor) and o.is_floating_point() else o for o in out
                    )
                return out.to(half)
            return func(*args, **kwargs)

    class Magnitudes(TorchFunctionMode):
        """Largest LayerNorm input (and deviation from its mean), L2-norm input norm and softmax input (fp32 run)."""

        def __init__(self):
            super().__init__()
            self.peak: Dict[str, float] = {}

        def _keep(self, name, value):
            self.peak[name] = max(self.peak.get(name, 0.0), float(value))

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if x is not None and x.is_floating_point():
                if func is F.layer_norm:
                    self._keep("layernorm_input_max_abs", x.abs().max())
                    self._keep("layernorm_deviation_max_abs", (x - x.mean(-1, keepdim=True)).abs().max())
                elif func is F.normalize:
                    self._keep("l2norm_input_max_norm", x.norm(dim=kwargs.get("dim", 1)).max())
                elif func in (F.softmax, torch.softmax, torch.Tensor.softmax):
                    self._keep("softmax_input_max_abs", x.abs().max())
            return func(*args, **kwargs)

    return Emulate, Magnitudes


def _configs(precision: str) -> List[Dict]:
    parts = ("mask_logits", "layernorm", "softmax", "l2norm")
    rows = [{"name": "kernels", "fp32_parts": (), "naive": ()}]
    rows += [{"name": f"+{part}", "fp32_parts": (part,), "naive": ()} for part in parts]
    rows.append({"name": "all-fp32-parts", "fp32_parts": parts, "naive": ()})
    rows += [{"name": f"naive-{part}", "fp32_parts": (), "naive": (part,)} for part in parts[1:]]
    rows.append({"name": "naive-all", "fp32_parts": (), "naive": parts[1:]})
    return rows


class _Wrapped(Backend):
    """A backend whose graph calls run inside a torch function mode (the emulation); the host path."""

    name = "emulated-torch"

    def __init__(self, inner, mode_factory):
        self.inner, self.mode_factory = inner, mode_factory

    def _run(self, method, *args):
        with self.mode_factory() if self.mode_factory else contextlib.nullcontext():
            return getattr(self.inner, method)(*args)

    def encode_image(self, images):
        return self._run("encode_image", images)

    def head(self, text, features):
        return self._run("head", text, features)

    def encode_text(self, tokens):
        return self._run("encode_text", tokens)


def measure(bundle: str, precisions: Sequence[str], configs: Optional[Sequence[str]] = None) -> Dict:
    """Run every configuration; returns the JSON-able report."""
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.export.torch_backend import TorchBackend
    from zsseg_rt.prepare import gate as accuracy_gate

    Emulate, Magnitudes = _modes()
    meta = load_meta(bundle)
    reference = TorchBackend(meta, "cpu", precision="fp32")
    recorder = Magnitudes()
    report: Dict = {"bundle": bundle, "reference": "torch fp32 (CPU)", "rows": []}
    with recorder:  # the fp32 magnitudes on the same inputs
        accuracy_gate.run_accuracy_gate(meta, reference, reference, "fp32")
    report["fp32_magnitudes"] = recorder.peak
    for precision in precisions:
        for config in _configs(precision):
            if configs and config["name"] not in configs:
                continue
            start = time.perf_counter()
            inner = TorchBackend(meta, "cpu", precision=precision, fp32_parts=config["fp32_parts"], gate=False)
            emulate = precision == "fp16" or config["naive"]
            factory = (lambda c=config, p=precision: Emulate(p == "fp16", c["naive"])) if emulate else None
            candidate = _Wrapped(inner, factory)
            gate = accuracy_gate.run_accuracy_gate(meta, candidate, reference, precision)  # type: ignore[arg-type]
            row = {
                "precision": precision,
                "config": config["name"],
                "emulated_fp16_matmuls": precision == "fp16",
                "label_agreement": gate.label_agreement,
                "max_abs_logit_error": gate.max_abs_logit_error,
                "random_max_abs_error": gate.random_max_abs_error,
                "finite": gate.finite,
                "seconds": round(time.perf_counter() - start, 1),
            }
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--precisions", default="bf16,fp16")
    parser.add_argument("--configs", default="", help="comma-separated configuration names (default: all)")
    parser.add_argument("--json", help="write the report here too")
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c] or None
    report = measure(args.bundle, args.precisions.split(","), configs)
    print(json.dumps(report["fp32_magnitudes"], indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
