"""Rule 6 of ``checks/sass.py``: no FMA that nvcc contracted in the kernels that must equal the CPU bit for bit.

The video filter on the device (csrc/cuda/temporal.cu: blend, hold, propagate and the measured flag) must give the
CPU kernels' values exactly (the must-run tests ``test_temporal_ops.py::test_cuda_matches_cpu`` and
``test_video_device_cuda.py``; the CPU side is compiled with ``-ffp-contract=off``). nvcc contracts ``a * b + c`` into
one FFMA by default (``-fmad=true``), rounding once where the CPU rounds twice, and the emulated CUDA runtime compiles
these kernels with the host compiler: it cannot see that. So the check reads the SASS nvcc makes for sm_90.

"No FFMA or DFMA" is not the criterion: nvcc's IEEE division and square root (``x / y``, ``sqrtf``: correctly
rounded, the same on the CPU) are sequences of FFMA (DFMA for doubles) whatever ``-fmad`` says. The criterion: each
kernel's FMA instructions (FFMA, DFMA, HFMA2) are no more than those of the same kernel compiled with ``-fmad=false``
(nvcc contracts nothing then). A kernel without division or square root (propagate, the measured flag) therefore
holds none at all. A kernel that holds more is reported with the count and the first instructions that have no
counterpart in the ``-fmad=false`` build (address and text), so a failure says where to look.

``class_state`` is compared within 1e-6 (its sigmoid is the device's ``expf``): its contractions are listed, not
failed. Standard library only; sass.py compiles and disassembles, this module compares.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "csrc" / "cuda" / "temporal.cu"
SELF_TEST_SOURCE = HERE / "sass_contraction_self_test.cu"
STRICT_FLAGS = ("-fmad=false",)  # nvcc then fuses no multiply and add (division and sqrt sequences stay)
FMA_OPCODES = ("FFMA", "DFMA", "HFMA2")
# The kernels whose results must equal the CPU's bit for bit (csrc/cuda/temporal.cu), and why
BIT_EXACT: Dict[str, str] = {
    "temporal_blend_kernel": "the filter's state blend (test_cuda_matches_cpu: assert_array_equal)",
    "temporal_hold_kernel": "the hysteresis (test_cuda_matches_cpu; the device filter's labels)",
    "temporal_propagate_kernel": "the warp and fill (test_cuda_matches_cpu; the device filter's labels)",
    "temporal_measured_kernel": "whether any jitter was measured (the hold runs on it)",
}
TOLERATED: Dict[str, str] = {
    "class_state_kernel": "compared within 1e-6 (the device's expf in its sigmoid): contractions listed, not failed",
}
EXAMPLES = 3  # instructions shown per kernel


def kernel_of(mangled: str, names: Iterable[str]) -> str:
    """The name of ``names`` the mangled kernel name is (its Itanium ``<length><name>`` component), or ""."""
    for name in names:
        if re.search(rf"(?<!\d){len(name)}{re.escape(name)}", mangled):
            return name
    return ""


def fmas(function) -> list:
    """The FMA instructions (FFMA, DFMA, HFMA2, any modifier) of a parsed SASS function (checks/sass.py)."""
    return [i for i in function.instructions if i.base in FMA_OPCODES]


def _shape(instruction) -> str:
    """An instruction without its register numbers and reuse flags: comparable across two compilations."""
    operands = re.sub(r"\bU?R\d+\b", "R", re.sub(r"\.reuse\b", "", instruction.operands))
    return f"{instruction.opcode} {operands}"


def compare(default: Dict[str, object], strict: Dict[str, object], names: Iterable[str]) -> List[dict]:
    """One row per kernel of ``names`` in ``default`` (mangled name -> function; ``strict``: the -fmad=false
    build's): its FMA count in both builds, how many more the default build has (``contracted``), and up to
    EXAMPLES of its FMA instructions with no counterpart in the strict build."""
    names = list(names)
    rows = []
    for mangled, function in sorted(default.items()):
        name = kernel_of(mangled, names)
        if not name:
            continue
        mine = fmas(function)
        theirs = fmas(strict[mangled]) if mangled in strict else []
        left = collections.Counter(_shape(i) for i in theirs)
        unmatched = []
        for instruction in mine:
            if left[_shape(instruction)] > 0:
                left[_shape(instruction)] -= 1
            else:
                unmatched.append(f"{instruction.address:#06x}: {instruction.opcode} {instruction.operands}")
        template = re.search(rf"{re.escape(name)}I(.+?)E", mangled)
        rows.append({
            "kernel": name,
            "label": name + (f"<{template.group(1).lstrip('0123456789')}>" if template else ""),
            "mangled": mangled,
            "fma": len(mine),
            "fma_without_contraction": len(theirs),
            "contracted": len(mine) - len(theirs),
            "in_strict_build": mangled in strict,
            "examples": unmatched[:EXAMPLES],
        })  # fmt: skip
    return rows


def problems(rows: Sequence[dict], required: Iterable[str] = tuple(BIT_EXACT)) -> List[str]:
    """What fails the rule: a required kernel contracted (or missing from either build)."""
    found = []
    seen = {row["kernel"] for row in rows}
    for name in required:
        if name not in seen:
            found.append(
                f"{name}: not in the SASS of {SOURCE.name} (renamed? update BIT_EXACT in {Path(__file__).name})"
            )
    for row in rows:
        if row["kernel"] not in required:
            continue
        if not row["in_strict_build"]:
            found.append(f"{row['kernel']}: not in the -fmad=false build, so its contractions cannot be told")
        elif row["contracted"] > 0:
            where = "; ".join(row["examples"]) or "no single instruction differs: count only"
            found.append(
                f"{row['kernel']}: {row['contracted']} FMA contracted by nvcc ({row['fma']} FFMA/DFMA/HFMA2, "
                f"{row['fma_without_contraction']} with -fmad=false; first without a counterpart: {where}): its "
                "results are no longer the CPU kernel's bit for bit (round each product and sum: __fmul_rn, __fadd_rn)"
            )
    return found


def render(rows: Sequence[dict], arch: str) -> List[str]:
    lines = [f"contraction (rule 6, {SOURCE.name} sm_{arch}): kernel | FFMA/DFMA/HFMA2 | with -fmad=false | verdict"]
    for row in rows:
        if row["kernel"] in BIT_EXACT:
            verdict = "FAIL: contracted" if row["contracted"] > 0 else "ok (nothing contracted)"
        else:
            verdict = f"{row['contracted']} contracted: {TOLERATED.get(row['kernel'], 'not checked')}"
        lines.append(f"  {row['label']} | {row['fma']} | {row['fma_without_contraction']} | {verdict}")
    return lines


def check(compile_functions: Callable[[Path, Sequence[str]], Dict[str, object]], arch: str) -> dict:
    """The rule on temporal.cu for ``arch``: ``compile_functions(source, extra_flags)`` compiles like the real build
    (checks/sass.py) and returns the parsed SASS functions. ``{"rows", "problems", "lines"}``."""
    rows = compare(compile_functions(SOURCE, ()), compile_functions(SOURCE, STRICT_FLAGS),
                   list(BIT_EXACT) + list(TOLERATED))  # fmt: skip
    return {"rows": rows, "problems": problems(rows), "lines": render(rows, arch)}


def self_test(compile_functions: Callable[[Path, Sequence[str]], Dict[str, object]]) -> List[str]:
    """The rule can fail: ``contracted`` (a * b + c, nvcc's default flags) and ``contracted_double`` must be
    reported; ``rounded`` (__fmul_rn / __fadd_rn) and ``divided`` (division and sqrt: FFMA in both builds) not."""
    names = ("contracted", "contracted_double", "rounded", "divided")
    rows = compare(compile_functions(SELF_TEST_SOURCE, ()), compile_functions(SELF_TEST_SOURCE, STRICT_FLAGS), names)
    by_name = {row["kernel"]: row for row in rows}
    reported = {line.split(":", 1)[0] for line in problems(rows, names)}
    failures = []
    for name in ("contracted", "contracted_double"):
        if name not in reported:
            failures.append(f"the contracting kernel {name!r} was not reported: {by_name.get(name)}")
        elif not by_name[name]["examples"]:
            failures.append(f"the contracting kernel {name!r} was reported without the instruction: {by_name[name]}")
    for name in ("rounded", "divided"):
        if name in reported:
            failures.append(f"the control {name!r} was reported: {by_name.get(name)}")
    if not by_name.get("divided", {}).get("fma"):
        failures.append(
            "the division control holds no FFMA: the rule's reason to compare with -fmad=false is not shown"
        )
    return failures
