"""What this CPU offers for reduced-precision inference, read from ``/proc/cpuinfo`` (Linux; no dependency).

The CPU int8 and bf16 paths of zsseg_rt depend on it (``runtime/backends/onnxruntime/precision.py``):

* int8 (ONNX Runtime dynamic quantisation, uint8 activations x int8 weights, MLAS kernels): AVX-512 VNNI / AVX-VNNI
  (``vpdpbusd``) and AMX-INT8 add u8 x s8 products in int32 exactly; plain AVX2 / AVX-512 without VNNI use
  ``vpmaddubsw``, whose int16 pair sums can saturate, so graphs for those CPUs are quantised with 7-bit weights
  (``reduce_range``; ONNX Runtime's and OpenVINO's documented workaround). Arm: ``asimddp`` (SDOT/UDOT), ``i8mm``.
* bf16: ONNX Runtime 1.31's x86 CPU execution provider has no bf16 arithmetic at all (a bf16 MatMul is refused at
  load: measured here); on Arm with the ``bf16`` feature its fp32 GEMMs can run in bf16
  (``mlas.enable_gemm_fastmath_arm64_bfloat16``). torch's CPU kernels (oneDNN) use AVX-512 BF16 / AMX-BF16.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import FrozenSet, Optional

__all__ = ["CpuFeatures", "cpu_features"]


@dataclass(frozen=True)
class CpuFeatures:
    """The instruction-set facts that decide how int8 / bf16 run here."""

    machine: str  # platform.machine(): "x86_64", "aarch64", ...
    flags: FrozenSet[str] = field(default_factory=frozenset)

    @property
    def x86(self) -> bool:
        return self.machine.lower() in ("x86_64", "amd64", "i686", "i386")

    @property
    def arm64(self) -> bool:
        return self.machine.lower() in ("aarch64", "arm64")

    @property
    def int8_dot_product(self) -> str:
        """The int8 dot-product instructions ONNX Runtime's MLAS uses here: "amx-int8", "avx512-vnni", "avx-vnni",
        "avx512-core", "avx2", "arm-i8mm", "arm-sdot", "neon" or "none"."""
        f = self.flags
        if self.x86:
            for flag, name in (("amx_int8", "amx-int8"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni")):
                if flag in f:
                    return name
            if {"avx512bw", "avx512dq", "avx512vl"} <= f:
                return "avx512-core"
            return "avx2" if "avx2" in f else "none"
        if self.arm64:
            if "i8mm" in f:
                return "arm-i8mm"
            return "arm-sdot" if "asimddp" in f else "neon"
        return "none"

    @property
    def int8_saturates(self) -> bool:
        """True where u8 x s8 products are summed in int16 first (x86 without VNNI/AMX): quantise 7-bit weights."""
        return self.x86 and self.int8_dot_product in ("avx512-core", "avx2", "none")

    @property
    def bf16(self) -> str:
        """bf16 arithmetic the CPU has: "amx-bf16", "avx512-bf16", "arm-bf16" or "none" (whether a library uses it
        is another matter: see the module docstring)."""
        f = self.flags
        if self.x86:
            if "amx_bf16" in f:
                return "amx-bf16"
            return "avx512-bf16" if "avx512_bf16" in f else "none"
        if self.arm64 and "bf16" in f:
            return "arm-bf16"
        return "none"

    def summary(self) -> str:
        return f"{self.machine}: int8 {self.int8_dot_product}, bf16 {self.bf16}"


def _read_flags(path: str = "/proc/cpuinfo") -> FrozenSet[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):  # x86 / Arm
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_features(cpuinfo: Optional[str] = None, machine: Optional[str] = None) -> CpuFeatures:
    """This machine's features (``cpuinfo``/``machine``: another file and architecture, for tests)."""
    return CpuFeatures(machine or platform.machine(), _read_flags(cpuinfo) if cpuinfo else _read_flags())
