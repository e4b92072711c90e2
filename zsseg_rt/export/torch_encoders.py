"""The torch backend's image encoder variants, among which the device pipeline chooses (``Engine(encoder_variant=...)``,
``runtime/device/encoder_choice.py``):

* ``graph``: the backend's image graph as it is (at the Engine's precision: fp16 on a GPU), the reference;
* ``compiled``: that graph through ``torch.compile`` (Inductor's fused kernels; compiled on the first eager frame,
  before the frame's CUDA graph captures them, for that window count, and once more with the batch axis dynamic on
  the first other count: at most two compilations, whatever the frames and batched calls); on a CUDA device with
  Triton;
* ``fp8``: the same graph whose encoder linear layers run in FP8 (:class:`Fp8Linear`: e4m3 weights with a per-tensor
  scale made once, the input scaled per call on the device by its absolute maximum, ``torch._scaled_mm`` with fp32
  accumulation, the result in the input's dtype); on a GPU of compute capability 8.9 or more (Ada, Hopper,
  Blackwell). The linear layers are those a forward pass of the encoder calls (found with hooks), except the
  projections inside ``nn.MultiheadAttention``, which reads its weights itself; the other weights are shared with the
  reference graph (no copy), so the variant costs the FP8 weights only (one byte per encoder linear weight).

A variant that cannot run on this device raises ``encoder_choice.Unavailable`` with the reason (skipped by ``auto``,
refused when pinned).
"""

from __future__ import annotations

import copy
from typing import Any, List, Optional

import torch
from torch import nn

from zsseg_rt.runtime.device.encoder_choice import Unavailable

__all__ = [
    "E4M3_MAX",
    "Fp8Linear",
    "build_variant",
    "compile_unavailable",
    "fp8_encoder",
    "fp8_unavailable",
    "unavailable",
]

E4M3_MAX = 448.0  # the largest finite float8_e4m3fn


def fp8_unavailable(device: Any) -> Optional[str]:
    """Why FP8 linear layers cannot run on ``device`` (None: they can)."""
    device = torch.device(device)
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return f"torch {torch.__version__} has no torch._scaled_mm / float8_e4m3fn"
    if device.type != "cuda":
        return f"FP8 linear layers run on a CUDA GPU of compute capability 8.9+ (sm_89); this device is {device.type}"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        return f"FP8 linear layers need compute capability 8.9+ (sm_89: Ada, Hopper); this GPU is sm_{major}{minor}"
    return None


def compile_unavailable(device: Any) -> Optional[str]:
    """Why ``torch.compile`` is not a candidate on ``device`` (None: it is)."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"torch.compile is a candidate on a CUDA device only (the device pipeline's GPU); this is {device.type}"
    try:
        import torch._dynamo as dynamo
        from torch.utils._triton import has_triton
    except ImportError as exc:  # a torch without the compiler stack
        return f"torch {torch.__version__} cannot compile here ({exc})"
    if not dynamo.is_dynamo_supported():
        return f"torch.compile does not support this Python with torch {torch.__version__}"
    if not has_triton():
        return "torch.compile on CUDA needs Triton, which is not installed"
    return None


class Fp8Linear(nn.Module):
    """An ``nn.Linear`` in FP8 (see the module docstring): ``y = x W^T + b`` with ``x`` and ``W`` in e4m3."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach()
        self.in_features, self.out_features = int(linear.in_features), int(linear.out_features)
        if self.in_features % 16 or self.out_features % 16:
            raise ValueError(f"FP8 linear layers need sizes that are multiples of 16, got {list(weight.shape)}")
        scale = weight.abs().amax().float().clamp(min=1e-12) / E4M3_MAX
        self.register_buffer("weight_fp8", (weight.float() / scale).to(torch.float8_e4m3fn).contiguous())
        self.register_buffer("weight_scale", scale.reshape(()))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        scale = rows.abs().amax().float().clamp(min=1e-12) / E4M3_MAX  # on the device: capturable, no sync
        quantized = (rows.float() / scale).to(torch.float8_e4m3fn)
        out = torch._scaled_mm(quantized, self.weight_fp8.t(), scale_a=scale, scale_b=self.weight_scale,
                               out_dtype=x.dtype)  # fmt: skip
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)


def _called_linears(graph: nn.Module, image: torch.Tensor) -> List[str]:
    """The qualified names of the ``nn.Linear`` modules a forward of ``graph`` on ``image`` calls, outside any
    ``nn.MultiheadAttention`` (which reads its projections' weights itself)."""
    inside_attention = {
        f"{name}.{child}" if name else child
        for name, module in graph.named_modules()
        if isinstance(module, nn.MultiheadAttention)
        for child, _ in module.named_modules()
        if child
    }
    called: List[str] = []
    hooks = [
        module.register_forward_hook(lambda *_, name=name: called.append(name))
        for name, module in graph.named_modules()
        if isinstance(module, nn.Linear) and name not in inside_attention
    ]
    try:
        with torch.inference_mode():
            graph(image)
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(called))


def fp8_encoder(graph: nn.Module, image: torch.Tensor) -> nn.Module:
    """A copy of ``graph`` (an image graph) sharing its weights, whose linear layers called on ``image`` (``[1, 3, S,
    S]`` on the graph's device) are :class:`Fp8Linear`."""
    names = _called_linears(graph, image)
    if not names:
        raise Unavailable("the image graph calls no linear layer outside its attention modules")
    shared = {id(t): t for t in list(graph.parameters()) + list(graph.buffers())}
    variant = copy.deepcopy(graph, memo=shared)  # the module tree copied, every tensor shared
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = variant.get_submodule(parent_name) if parent_name else variant
        setattr(parent, child, Fp8Linear(getattr(parent, child)))
    return variant.eval()


def unavailable(device: Any, name: str) -> Optional[str]:
    """Why variant ``name`` cannot run on ``device`` (None: it can)."""
    checks = {"graph": None, "compiled": compile_unavailable, "fp8": fp8_unavailable}
    if name not in checks:
        raise ValueError(f"unknown image encoder variant {name!r} (expected graph, compiled or fp8)")
    check = checks[name]
    return None if check is None else check(device)


def build_variant(backend: Any, name: str) -> nn.Module:
    """The image encoder variant ``name`` of a ``TorchBackend`` (its image graph; see the module docstring)."""
    why = unavailable(backend.device, name)
    if why is not None:
        raise Unavailable(why)
    graph = backend.image_graph
    if name == "compiled":
        return torch.compile(graph)  # dynamic=None: static first, the batch axis made dynamic on its first change
    if name == "fp8":
        size = int(backend.image_size)
        return fp8_encoder(graph, torch.zeros(1, 3, size, size, device=backend.device))
    return graph
