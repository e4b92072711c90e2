"""fp16 / bf16 on the torch backend: which parts of a model run in the reduced precision, which stay fp32, and why.

``TorchPrecision("fp16")`` (or "bf16") converts the modules the image encoder and head graphs use: weights and
activations in the reduced dtype (matmuls and convolutions on tensor cores, fp32 accumulation inside cuBLAS/cuDNN),
and in fp32 only the parts measured to matter (``checks/torch_precision.py``, docs/precision.md):

* ``mask_logits``: the head's last-layer, head-averaged pre-softmax attention logits (ZegCLIP's mask logits, the
  graph output every label comes from) are computed in fp32 from the reduced-precision q/k projections
  (``CrossAttention.float_logits``).
* ``layernorm`` / ``softmax`` / ``l2norm`` (optional parts): each LayerNorm, softmax or L2 normalisation upcast to
  fp32 and its result cast back. torch's own fp16/bf16 kernels of these three already compute their statistics in
  fp32 internally (CUDA and CPU: the sum of squares of a LayerNorm or an L2 norm cannot overflow in them; measured on
  the CPU), so the explicit upcast changes only the rounding of the weights and results; the measurement decides.

The text encoder stays fp32 (it runs once per vocabulary; class embeddings are cached and compared across
vocabularies). Attention layers whose logits are not needed run ``F.scaled_dot_product_attention``
(``CrossAttention.fused_attention``; the image encoder's open_clip blocks already use it through
``nn.MultiheadAttention``). ``fp32`` changes nothing: the exact default.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from zsseg_rt.runtime.backends.table import check_precision

__all__ = [
    "DEFAULT_FP32_PARTS",
    "FP32_PARTS",
    "Fp32LayerNorm",
    "PrecisionGraph",
    "TorchPrecision",
    "convert_for_precision",
    "model_fingerprint",
]

NAME = "torch"  # this module's backend row: its precisions are the row's (fp32, fp16, bf16)
FP32_PARTS = ("mask_logits", "layernorm", "softmax", "l2norm")
# decided by the measurement in docs/precision.md ("Which parts stay fp32 on the torch backend")
DEFAULT_FP32_PARTS: Tuple[str, ...] = ("mask_logits",)
RECIPE_VERSION = 1
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class TorchPrecision:
    """A torch-backend precision: ``name`` ("fp32", "fp16", "bf16"), the parts kept in fp32, fused attention."""

    name: str = "fp32"
    fp32_parts: Tuple[str, ...] = DEFAULT_FP32_PARTS
    fused_attention: bool = True

    def __post_init__(self) -> None:
        check_precision(NAME, self.name)
        unknown = sorted(set(self.fp32_parts) - set(FP32_PARTS))
        if unknown:
            raise ValueError(f"fp32_parts must be among {FP32_PARTS}, got {unknown}")
        object.__setattr__(self, "fp32_parts", tuple(p for p in FP32_PARTS if p in self.fp32_parts))

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    @property
    def reduced(self) -> bool:
        return self.name != "fp32"

    def recipe(self) -> Dict[str, Any]:
        """What the accuracy gate's record is keyed on (with the model, device and torch version)."""
        return {
            "version": RECIPE_VERSION,
            "fp32_parts": list(self.fp32_parts),
            "fused_attention": self.fused_attention,
            "text_encoder": "fp32",
        }


class Fp32LayerNorm(nn.Module):
    """A LayerNorm computed in fp32 (weights, statistics and result), the result cast back to the input's dtype."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        self.normalized_shape = tuple(norm.normalized_shape)
        self.eps = float(norm.eps)
        self.weight = None if norm.weight is None else nn.Parameter(norm.weight.detach().float(), False)
        self.bias = None if norm.bias is None else nn.Parameter(norm.bias.detach().float(), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


class _Fp32Functions(TorchFunctionMode):
    """Runs softmax and/or L2 normalisation in fp32 (result cast back) while active."""

    def __init__(self, softmax: bool, l2norm: bool):
        super().__init__()
        self.functions = set()
        if softmax:
            self.functions |= {F.softmax, torch.softmax, torch.Tensor.softmax}
        if l2norm:
            self.functions.add(F.normalize)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.functions and args and isinstance(args[0], torch.Tensor):
            dtype = args[0].dtype
            if dtype in (torch.float16, torch.bfloat16):
                return func(args[0].float(), *args[1:], **kwargs).to(dtype)
        return func(*args, **kwargs)


def _modules_outside(
    roots: Sequence[nn.Module], keep: Optional[nn.Module]
) -> Iterable[Tuple[nn.Module, str, nn.Module]]:
    """``(parent, name, child)`` for every submodule of ``roots`` not inside ``keep`` (each once)."""
    kept = {id(m) for m in keep.modules()} if keep is not None else set()
    seen = set()
    for root in roots:
        for parent in root.modules():
            if id(parent) in kept or id(parent) in seen:
                continue
            seen.add(id(parent))
            for name, child in parent.named_children():
                if id(child) not in kept:
                    yield parent, name, child


def convert_for_precision(
    roots: Sequence[nn.Module], precision: TorchPrecision, keep_fp32: Optional[nn.Module] = None
) -> None:
    """Convert, in place, the parameters and buffers of ``roots`` (the image encoder and head graphs) to the reduced
    dtype, except those of ``keep_fp32`` (the text encoder graph); LayerNorms become :class:`Fp32LayerNorm` when
    "layernorm" is kept; attention modules get ``fused_attention`` / ``float_logits``. fp32: nothing changes."""
    if not precision.reduced:
        return
    kept = {id(t) for t in (list(keep_fp32.parameters()) + list(keep_fp32.buffers()))} if keep_fp32 else set()
    for root in roots:
        for tensor in list(root.parameters()) + list(root.buffers()):
            if id(tensor) not in kept and tensor.is_floating_point():
                tensor.data = tensor.data.to(precision.dtype)
    for parent, name, child in list(_modules_outside(roots, keep_fp32)):
        if "layernorm" in precision.fp32_parts and isinstance(child, nn.LayerNorm):
            setattr(parent, name, Fp32LayerNorm(child))
        if hasattr(child, "fused_attention"):
            child.fused_attention = precision.fused_attention
        if hasattr(child, "float_logits"):
            child.float_logits = "mask_logits" in precision.fp32_parts


class PrecisionGraph(nn.Module):
    """A bundle graph at a reduced precision: floating inputs cast to the dtype, the graph run (softmax / L2 norms
    in fp32 where kept), floating outputs cast to ``output_dtype`` (fp32 for graph results that leave the device
    pipeline; the image features stay in the reduced dtype, the head's input)."""

    def __init__(self, graph: nn.Module, precision: TorchPrecision, output_dtype: Optional[torch.dtype] = None):
        super().__init__()
        self.graph = graph
        self.precision = precision
        self.output_dtype = output_dtype
        parts = precision.fp32_parts
        self._mode = ("softmax" in parts, "l2norm" in parts) if precision.reduced else (False, False)

    def _context(self):
        return _Fp32Functions(*self._mode) if any(self._mode) else contextlib.nullcontext()

    def _cast_in(self, x):
        return x.to(self.precision.dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    def _cast_out(self, x):
        if self.output_dtype is not None and isinstance(x, torch.Tensor) and x.is_floating_point():
            return x.to(self.output_dtype)
        return x

    def forward(self, *inputs):
        with self._context():
            outs = self.graph(*(self._cast_in(x) for x in inputs))
        if isinstance(outs, tuple):
            return tuple(self._cast_out(x) for x in outs)
        return self._cast_out(outs)


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a model's parameters and buffers (what the accuracy gate's
    record of a torch precision is keyed on: the same weights give the same record)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(list(model.state_dict().items()), key=lambda item: item[0]):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()
