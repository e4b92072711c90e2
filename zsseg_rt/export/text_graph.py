"""The text encoder as it is exported: the same computation as ``TextEncoder.encode_tokens``, written with the two
constructs TensorRT handles best (the well-trodden path for CLIP text towers) and the same numbers:

* the causal mask is finite (``CAUSAL_MASK_FILL`` = -1e4) instead of ``-inf``: an attention score plus -1e4 still
  underflows ``exp`` to exactly 0 after the row-max subtraction in float32 (and float16), because the scores here
  are far below 1e4 - 104 in magnitude, so softmax gives the same bits; ``-inf`` in fp16 arithmetic can turn into
  NaN (inf - inf) inside fused kernels (NVIDIA/TensorRT#2466);
* end-token pooling is a one-hot MatMul: ``onehot(argmax(tokens)) [P, 1, L] @ x [P, L, W]`` instead of the int64
  ``Range`` + ``Concat`` + ``GatherND`` that ``x[arange(P), argmax]`` exports to; the one-hot row has a single 1, the
  other terms are exact zeros, so the product is the end token's features bit for bit. The positions are a constant
  int32 table sliced to ``L`` (no ``Range``), compared with the int32-cast argmax.

``python_tests/export/test_text_graph.py`` holds the exported embeddings to today's within float32 rounding.
"""

from __future__ import annotations

import torch
from torch import nn

CAUSAL_MASK_FILL = -1.0e4


def finite_causal_mask(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` with every ``-inf`` (and anything below ``CAUSAL_MASK_FILL``) replaced by ``CAUSAL_MASK_FILL``."""
    return torch.clamp(mask, min=CAUSAL_MASK_FILL)


class OneHotPool(nn.Module):
    """End-token pooling as a one-hot MatMul (see the module docstring). ``pool_type`` is open_clip's: "argmax" (the
    end token has the largest id; the first maximum wins, as ``argmax``), "eos" (the first ``eos_id``), "first",
    "last"."""

    def __init__(self, context_length: int, pool_type: str = "argmax", eos_id=None):
        super().__init__()
        if pool_type not in ("argmax", "eos", "first", "last"):
            raise ValueError(f"unsupported text pool_type {pool_type!r}")
        if pool_type == "eos" and eos_id is None:
            raise ValueError("pool_type 'eos' needs the tokenizer's eos_id")
        self.pool_type, self.eos_id = pool_type, eos_id
        self.register_buffer("positions", torch.arange(int(context_length), dtype=torch.int32), persistent=False)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``x [P, L, W]``, ``tokens [P, L]`` -> ``[P, W]``."""
        if self.pool_type == "first":
            return x[:, 0]
        if self.pool_type == "last":
            return x[:, -1]
        if self.pool_type == "argmax":
            index = tokens.argmax(dim=-1)
        else:
            index = (tokens == self.eos_id).int().argmax(dim=-1)
        positions = self.positions[: tokens.shape[1]]  # [L] int32: a Slice of a constant, no Range
        onehot = (positions.unsqueeze(0) == index.to(torch.int32).unsqueeze(1)).to(x.dtype)  # [P, L]
        return torch.matmul(onehot.unsqueeze(1), x).squeeze(1)


class ExportTextEncoder(nn.Module):
    """``tokens [P, L] int32 -> [P, D]`` through a ``TextEncoder`` with the finite mask and one-hot pooling."""

    def __init__(self, text_encoder):
        super().__init__()
        self.text = text_encoder
        mask = text_encoder.attn_mask
        self.register_buffer("mask", None if mask is None else finite_causal_mask(mask), persistent=False)
        self.pool = OneHotPool(text_encoder.context_length, text_encoder.pool_type, text_encoder.eos_id)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text.encode_tokens(tokens, attn_mask=self.mask, pool=self.pool)
