"""Static check of the CUDA kernels' machine code (SASS): what BENCHMARKS.md's cost models assume.

Usage (needs nvcc and cuobjdump; CI has both: nvcc from the CUDA toolkit, cuobjdump from the pinned PyPI wheel
nvidia-cuda-cuobjdump in requirements.txt):
    python -m checks sass                       # compile csrc/cuda/*.cu for sm_90, check, print a table
    python -m checks sass --arch 80 --arch 90   # other architectures (--arch all: CMakeLists.txt's default list)
    python -m checks sass --self-test           # prove the check fails: deliberately bad kernels must be flagged
    python -m checks sass --json out.json       # also write the per-kernel facts

Every kernel is compiled like the real build (nvcc -O3 -std=c++17 -arch=sm_XX -cubin, -Xptxas -v) and disassembled
with ``cuobjdump -sass``. Loops are found from backward branches (a ``BRA`` whose target is at or before it: the
loop is [target, branch]). The assertions:

1. No local memory in the hot kernels (every kernel but the ones listed in COLD_KERNELS): ptxas reports 0 bytes of
   spill stores and spill loads, and the SASS has no LDL/STL instruction (a spill, or a local array indexed at run
   time).
2. Tile loads are not serialized. In the tiled GEMM kernels (GEMM_KERNELS), a "K loop" is a loop that contains a
   barrier (BAR.SYNC) and at least 16 FFMA (a shared-memory tiled GEMM step) and no other such loop. For every K loop:
   a. no loop nested inside it issues a global load (LDG): a tile-load loop with a run-time trip count is compiled
      as a loop, and then its loads are issued one iteration (one load) at a time;
   b. its global loads form one batch: between the first and the last LDG of the K loop's body (in program order)
      there is no shared store (STS), no barrier, and no floating-point, conversion or store instruction that reads
      the destination register of an earlier LDG of the batch (it would wait for that load, so the next load would
      not be issued before the first returns: LDG -> STS -> LDG is the serialized pattern the review found in the
      32-tile GEMMs).
3. The fused post-processing's inner loops have no global memory and no 64-bit index math: in segment_windows'
   tiled kernels (the default variant; the column-form candidates read logits in their row walk by design),
   every innermost loop that contains MUFU.EX2 (stage 1: the sigmoid) or at least 16 LDS (stage 2:
   the output blends) has no LDG and no IMAD.WIDE / LEA.HI.X.
4. segment_windows' fast path is what its cost model (BENCHMARKS.md) counts: in each sigmoid tiled kernel of the
   default variant (segment_windows_testing::Variant::kTiled; not the column-form candidates) there is
   a stage-1 loop for footprint columns in two windows whose hot path (one iteration: one footprint position, a
   chunk of 8 classes) issues 16 MUFU.EX2 and 8 MUFU.RCP (3 MUFU per pair of sigmoids: one reciprocal for both),
   and one for columns in one window with 8 EX2 and 8 RCP; both inside the same chunk loop, with its stage-0 loop
   and a straight-line stage-2 block (32 LDS, 8 compares). A loop that takes two reciprocals per pair (the
   self-test compiles one) fails the check.
5. similarity's normalisation prologue is parallel: no innermost loop of similarity_kernel both loads from global
   memory and takes a reciprocal (MUFU.RCP: a division per element, the serial prologue c783dbf had; the
   self-test compiles it).
6. No FMA contracted by nvcc in the kernels that must equal the CPU bit for bit (temporal.cu: the video filter's
   blend, hold, propagate, measured flag): each one's FFMA/DFMA/HFMA2 are no more than with -fmad=false (division and
   sqrt are FFMA sequences either way). checks/_sass_contraction.py; its self-test compiles a * b + c, reported.
7. similarity on the tensor cores (sm_80+): each similarity_mma_kernel's K loop multiplies with HMMA of its dtype only
   (fp32 3xTF32: 96 HMMA.1688.F32.TF32 an iteration; fp16: 32 HMMA.16816.F32), from global loads (no shared memory,
   no barrier, no FFMA dot product); empty below sm_80. 8. upsample's packed variant: one 16-/8-byte STG a row
   iteration, 32-bit taps, <= 16 instructions an output on its plain path. checks/_sass_dense.py, with the model:

    python -m checks sass --dense-model         # similarity's and upsample's cost models (sm_90, an H100)

    python -m checks sass --contraction         # rule 6 alone: the check before a GPU lease (seconds)

    python -m checks sass --model               # also: segment_windows' cost model for the photo case on an H100,
                                                #   read from the compiled SASS (see segment_windows_model)

Exit code 0 when every assertion holds, 1 otherwise, 2 when nvcc or cuobjdump is missing (the message says where
they are looked for).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
CUDA_DIR = REPO / "csrc" / "cuda"
DEFAULT_ARCHS = ("90",)
# CMakeLists.txt's default CUDA architectures (restricted there to what nvcc supports; 72 is gone in CUDA 13)
ALL_ARCHS = ("75", "80", "86", "87", "89", "90")
# Kernels allowed to use local memory: the rare fallback of segment_windows (more windows per tile than it stages),
# and PAMR's kernels (per-thread arrays over the dilations in local memory; not reworked, no cost model yet).
COLD_KERNELS = ("segment_windows_direct_kernel", "pamr_step_kernel", "pamr_weights_kernel")
# The tiled GEMMs whose K loops rule 2 checks (and the self-test's).
GEMM_KERNELS = ("similarity_kernel", "relation_linear_kernel", "tile_gemm")
K_LOOP_MIN_FFMA = 16
# Instructions that consume a loaded value as data (arithmetic, conversion, store). Integer / address instructions
# are not counted: the scheduler reuses registers across predicated paths, and such reads are not the tile's data.
_VALUE_CONSUMERS = ("FMUL", "FFMA", "FADD", "FMNMX", "FSETP", "FSEL", "HADD2", "HMUL2", "HFMA2", "F2F", "STS", "STG")
SEGMENT_WINDOWS_TILED = ("segment_windows_kernel", "segment_windows_softmax_kernel")


class ToolMissing(RuntimeError):
    pass


def find_nvcc() -> str:
    for candidate in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ToolMissing("nvcc not found ($CUDACXX, PATH, /usr/local/cuda/bin/nvcc): install the CUDA toolkit")


def find_cuobjdump() -> str:
    """cuobjdump from PATH, from the PyPI wheel nvidia-cuda-cuobjdump (nvidia/cu13/bin), or next to nvcc."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    spec = importlib.util.find_spec("nvidia")
    for root in list(spec.submodule_search_locations or []) if spec else []:
        for sub in ("cu13", "cu12", "cuda_cuobjdump"):
            path = Path(root) / sub / "bin" / "cuobjdump"
            if path.is_file():
                return str(path)
    try:
        sibling = Path(find_nvcc()).parent / "cuobjdump"
        if sibling.is_file():
            return str(sibling)
    except ToolMissing:
        pass
    raise ToolMissing(
        "cuobjdump not found (PATH, the nvidia-cuda-cuobjdump wheel's nvidia/cu13/bin, next to nvcc): "
        "pip install -r requirements.txt"
    )


# ---- SASS parsing: checks/_sass_parse.py (Instruction, Function, parse_sass, parse_ptxas) --------------------------


def _sibling(name: str):
    """checks/NAME.py loaded by its path (this module too is loaded so, by its test, outside the checks package)."""
    spec = importlib.util.spec_from_file_location(f"zsseg_{name.strip('_')}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while a class is made
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_PARSE = _sibling("_sass_parse")
Instruction, Function = _PARSE.Instruction, _PARSE.Function
parse_sass, parse_ptxas = _PARSE.parse_sass, _PARSE.parse_ptxas


# ---- compiling ----------------------------------------------------------------------------------------------------


_COMPILED: Dict[Tuple[str, str, str, Tuple[str, ...]], Tuple[bytes, str]] = {}  # this process's compilations


def compile_cubin(source: Path, arch: str, out_dir: Path, extra: Sequence[str] = ()) -> Tuple[Path, str]:
    """``source`` compiled for ``sm_{arch}`` into ``out_dir`` (the cubin, and ptxas's verbose output). A process
    compiles a source once per arch and flags: the same source (its bytes), arch and flags again get the first
    compilation's cubin written anew (the rules, the cost model and the tests read the same kernels; the headers
    are not part of the key: a process does not see them change)."""
    cubin = out_dir / f"{source.stem}.sm_{arch}.cubin"
    key = (str(source), hashlib.sha256(source.read_bytes()).hexdigest(), arch, tuple(extra))
    if key in _COMPILED:
        data, text = _COMPILED[key]
        cubin.write_bytes(data)
        return cubin, text
    cmd = [
        find_nvcc(),
        "-std=c++17",
        "-O3",
        f"-arch=sm_{arch}",
        "-cubin",
        "-Xptxas",
        "-v",
        "-I",
        str(REPO / "csrc" / "include"),
        "-I",
        str(REPO / "csrc"),
        *extra,
        str(source),
        "-o",
        str(cubin),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"nvcc failed for {source.name} (sm_{arch}):\n{result.stderr[-4000:]}")
    _COMPILED[key] = (cubin.read_bytes(), result.stderr + result.stdout)
    return cubin, result.stderr + result.stdout


# this process's last four, by the cubin's sha256 (read-only Functions; segment_windows_tiled's parsed: ~17 MB)
_DISASSEMBLED: "OrderedDict[str, Dict[str, Function]]" = OrderedDict()
_DISASSEMBLED_MOST = 4


def disassemble(cubin: Path) -> Dict[str, Function]:
    """The SASS functions of ``cubin``; one of the last four cubins disassembled in this process (its bytes) is not
    again."""
    key = hashlib.sha256(cubin.read_bytes()).hexdigest()
    if key not in _DISASSEMBLED:
        result = subprocess.run([find_cuobjdump(), "-sass", str(cubin)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"cuobjdump failed for {cubin.name}:\n{result.stderr[-2000:]}")
        _DISASSEMBLED[key] = parse_sass(result.stdout)
        while len(_DISASSEMBLED) > _DISASSEMBLED_MOST:
            _DISASSEMBLED.popitem(last=False)
    _DISASSEMBLED.move_to_end(key)
    return dict(_DISASSEMBLED[key])


# ---- the assertions -----------------------------------------------------------------------------------------------


def short_name(mangled: str) -> str:
    """A readable kernel name: the mangled name's last identifier before its template arguments."""
    names = re.findall(r"\d+([A-Za-z_][A-Za-z0-9_]*)", mangled)
    kernel = next((n for n in reversed(names) if n.endswith("_kernel")), names[-1] if names else mangled)
    template = re.search(kernel + r"I(.*?)E(?:E|v)", mangled)
    return kernel + (f"<{template.group(1)}>" if template else "")


def is_cold(mangled: str) -> bool:
    return any(name in mangled for name in COLD_KERNELS)


def check_local_memory(name: str, fn: Function, ptxas: dict) -> List[str]:
    problems = []
    if ptxas.get("spill_stores", 0) or ptxas.get("spill_loads", 0):
        problems.append(
            f"{short_name(name)}: ptxas spills ({ptxas['spill_stores']} bytes stored, {ptxas['spill_loads']} loaded)"
        )
    local = [i for i in fn.instructions if i.base in ("LDL", "STL")]
    if local:
        problems.append(
            f"{short_name(name)}: {len(local)} local-memory instructions (LDL/STL), first at {local[0].address:#06x}"
        )
    return problems


def k_loops(fn: Function) -> List[Tuple[int, int]]:
    """Loops with a barrier and >= 16 FFMA that contain no other such loop (an outer loop over tiles is not one)."""
    found = []
    for loop in fn.loops():
        body = fn.body(loop)
        if any(i.base == "BAR" for i in body) and sum(i.base == "FFMA" for i in body) >= K_LOOP_MIN_FFMA:
            found.append(loop)
    return [a for a in found if not any(b != a and a[0] <= b[0] and b[1] <= a[1] for b in found)]


def check_tile_loads(name: str, fn: Function) -> List[str]:
    if not any(k in name for k in GEMM_KERNELS):
        return []
    problems = []
    loops = fn.loops()
    for k_loop in k_loops(fn):
        inner = [b for b in loops if b != k_loop and k_loop[0] <= b[0] and b[1] <= k_loop[1]]
        for loop in inner:
            if any(i.base == "LDG" for i in fn.body(loop)):
                problems.append(
                    f"{short_name(name)}: K loop {k_loop[0]:#06x}-{k_loop[1]:#06x} has an inner loop "
                    f"{loop[0]:#06x}-{loop[1]:#06x} issuing global loads (a tile-load loop with a run-time trip count)"
                )
        body = fn.body(k_loop)
        loads = [n for n, i in enumerate(body) if i.base == "LDG"]
        if not loads:
            continue
        pending: set = set()
        for ins in body[loads[0] : loads[-1] + 1]:
            if ins.base in ("STS", "BAR"):
                problems.append(
                    f"{short_name(name)}: K loop {k_loop[0]:#06x}-{k_loop[1]:#06x}: {ins.opcode} at {ins.address:#06x} "
                    "between the tile's global loads (loads not issued as one batch)"
                )
                break
            if ins.base in _VALUE_CONSUMERS and pending.intersection(ins.source_registers()):
                problems.append(
                    f"{short_name(name)}: K loop {k_loop[0]:#06x}-{k_loop[1]:#06x}: {ins.opcode} at {ins.address:#06x} "
                    "uses a global load's result before the tile's last load is issued"
                )
                break
            if ins.base == "LDG":
                pending.update(ins.destination_registers())
            elif not ins.predicate:  # an unconditional write ends a register's life as a load result
                pending.difference_update(ins.destination_registers())
    return problems


# The column-form candidates of segment_windows (Variant::kColumns, kColumnsChain: template arguments 1 and 2) read
# the logits in their row walk by design (from L1/L2: at each head-row interval on the fast path, at every row of the
# rare generic tiles), instead of staging them in shared memory; rules 3 and 4 describe the default variant.
COLUMN_FORM = ("Lb1ELi1E", "Lb1ELi2E")


def check_fused_postprocess(name: str, fn: Function) -> List[str]:
    if not any(k in name for k in SEGMENT_WINDOWS_TILED) or is_cold(name) or any(k in name for k in COLUMN_FORM):
        return []
    problems = []
    for loop in fn.innermost_loops():
        body = fn.body(loop)
        hot = any(i.opcode.startswith("MUFU.EX2") for i in body) or sum(i.base == "LDS" for i in body) >= 16
        if not hot:
            continue
        bad = [i for i in body if i.base == "LDG" or i.opcode.startswith("IMAD.WIDE") or i.opcode.startswith("LEA.HI.X")]
        if bad:
            problems.append(
                f"{short_name(name)}: inner loop {loop[0]:#06x}-{loop[1]:#06x} has {bad[0].opcode} at "
                f"{bad[0].address:#06x} (global memory or 64-bit index math)"
            )
    return problems


def check_similarity_prologue(name: str, fn: Function) -> List[str]:
    """Rule 5: similarity's normalisation prologue is spread over the block, not a loop per row with a division per
    element (review c783dbf #10: a MUFU.RCP in the loop that loads the row's elements)."""
    if "similarity_kernel" not in name:
        return []
    problems = []
    for loop in fn.innermost_loops():
        body = fn.body(loop)
        if any(i.opcode.startswith("MUFU.RCP") for i in body) and any(i.base == "LDG" for i in body):
            problems.append(
                f"{short_name(name)}: loop {loop[0]:#06x}-{loop[1]:#06x} loads and divides (MUFU.RCP): a division per "
                "element (the serial normalise prologue)"
            )
    return problems


# ---- segment_windows: the fast path's hot loops, and the cost model built from them --------------------------------

SEGMENT_WINDOWS_SIGMOID = "segment_windows_kernelI"  # + "...Lb1E": the sigmoid instantiations (f32 and f16)
SEGMENT_WINDOWS_SOURCE = CUDA_DIR / "segment_windows_tiled.cu"  # the file of the sigmoid tiled kernel
TILE_CODE_ESTIMATE = 800  # warp instructions per tile outside the chunk loop (see segment_windows_fast_costs)


def basic_blocks(fn: Function) -> List[List[Instruction]]:
    """Straight-line runs: split at branch targets, after branches, barriers and EXIT."""
    ins = fn.instructions
    starts = {ins[0].address} if ins else set()
    for k, i in enumerate(ins):
        target = i.branch_target()
        if target is not None:
            starts.add(target)
        if (target is not None or i.base in ("BAR", "EXIT")) and k + 1 < len(ins):
            starts.add(ins[k + 1].address)
    blocks: List[List[Instruction]] = []
    for i in ins:
        if i.address in starts or not blocks:
            blocks.append([])
        blocks[-1].append(i)
    return blocks


def hot_path(fn: Function, loop: Tuple[int, int]) -> Tuple[List[Instruction], List[int]]:
    """One iteration of `loop` on its common path: from the head to the back-edge; a conditional forward branch over a
    block of >= 8 LDS and no MUFU (a head-row interval reload, once every ~16 rows) is taken, any other conditional
    branch falls through, unconditional branches are followed. Returns the path and the sizes of the skipped reload
    blocks."""
    body = fn.body(loop)
    index = {i.address: k for k, i in enumerate(body)}
    path: List[Instruction] = []
    reloads: List[int] = []
    k = 0
    while k < len(body):
        i = body[k]
        path.append(i)
        target = i.branch_target()
        if target is not None:
            if target <= i.address:
                break
            if not i.predicate:
                k = index.get(target, len(body))
                continue
            skipped = body[k + 1 : index.get(target, len(body))]
            if sum(x.base == "LDS" for x in skipped) >= 8 and not any(x.base == "MUFU" for x in skipped):
                reloads.append(len(skipped))
                k = index[target]
                continue
        k += 1
    return path, reloads


def _count(path: Iterable[Instruction], opcode: str) -> int:
    return sum(1 for i in path if i.opcode.startswith(opcode))


class CostModelError(RuntimeError):
    pass


def segment_windows_fast_costs(fn: Function) -> dict:
    """Per-iteration instruction counts of segment_windows' fast path (a sigmoid tiled kernel), from its SASS:
    stage-1 loops (pair: a footprint position in two windows, 8 classes; one: in one window), their reload blocks,
    the stage-0 loop (one logit row at one footprint column, 8 classes), the stage-2 block (one output pixel, 8
    classes), and the chunk loop's other code (static count: an upper bound of what one warp runs per chunk)."""
    inner = fn.innermost_loops()
    walked = {loop: hot_path(fn, loop) for loop in inner}
    pairs = [l for l in inner if _count(walked[l][0], "MUFU.EX2") == 16 and _count(walked[l][0], "MUFU.RCP") >= 8]
    if not pairs:
        raise CostModelError("no stage-1 loop for two windows (16 MUFU.EX2 per iteration) found")
    pair = min(pairs, key=lambda l: len(walked[l][0]))  # the aligned variant (side-by-side windows: one row tap)
    chunks = [l for l in fn.loops() if l[0] <= pair[0] and pair[1] <= l[1] and l != pair
              and any(i.base == "BAR" for i in fn.body(l))]
    if not chunks:
        raise CostModelError("the two-window loop is in no chunk loop (a loop with a barrier)")
    chunk = min(chunks, key=lambda l: l[1] - l[0])
    within = [l for l in inner if chunk[0] <= l[0] and l[1] <= chunk[1]]
    ones = [l for l in within if _count(walked[l][0], "MUFU.EX2") == 8 and _count(walked[l][0], "MUFU.RCP") == 8]
    global_loads = lambda loop: sum(1 for i in fn.body(loop) if i.base in ("LDG", "LD"))  # fp16: LD.E.U16
    stage0 = [l for l in within if global_loads(l) >= 16 and _count(fn.body(l), "STS") == 8]
    if not ones or not stage0:
        raise CostModelError("the one-window stage-1 loop or the stage-0 loop of the fast path not found")
    one = min(ones, key=lambda l: len(walked[l][0]))
    blocks = [b for b in basic_blocks(fn) if chunk[0] <= b[0].address <= chunk[1]]
    stage2 = [b for b in blocks if _count(b, "LDS") >= 32 and _count(b, "FSETP") == 8]
    if not stage2:
        raise CostModelError("no straight-line stage-2 block (32 LDS, 8 FSETP) in the fast chunk loop")
    tops = [l for l in fn.loops() if chunk[0] <= l[0] and l[1] <= chunk[1] and l != chunk]
    tops = [l for l in tops if not any(o != l and o[0] <= l[0] and l[1] <= o[1] for o in tops)]
    glue = [i for i in fn.body(chunk) if not any(a <= i.address <= b for a, b in tops)]

    def cost(loop):
        path, reloads = walked[loop]
        return {
            "instructions": len(path),
            "mufu": _count(path, "MUFU"),
            "smem": _count(path, "LDS") + _count(path, "STS"),
            "reload": max(reloads, default=0),
        }

    return {
        "pair": cost(pair),
        "one": cost(one),
        "stage0": max((cost(l) for l in stage0), key=lambda c: c["instructions"]),
        "stage2": {"instructions": len(stage2[0]), "smem": _count(stage2[0], "LDS")},
        "glue": {"instructions": len(glue) - len(stage2[0]), "smem": _count(glue, "LDS") + _count(glue, "STS")
                 - _count(stage2[0], "LDS")},
        # per tile and warp: prepare_tile, the bound pass (per class: 2 windows x 12 logits, min/max, 2 sigmoids;
        # the reductions and the list), the fast path's setup. Not read from the SASS (branchy code whose executed
        # path a static walk cannot follow): estimated from its listing, +-50 %.
        "tile": {"instructions": TILE_CODE_ESTIMATE},
        "loops": {"pair": pair, "one": one, "chunk": chunk},
    }


def check_segment_windows_fast_path(name: str, fn: Function) -> List[str]:
    # the sigmoid instantiations of the default variant (Variant::kTiled, template argument 0): the column-form
    # candidates (1, 2; csrc/cuda/segment_windows_columns.cuh) have no chunk-of-8 stage-1 loops to count
    if SEGMENT_WINDOWS_SIGMOID not in name or "Lb1ELi0E" not in name:
        return []
    try:
        costs = segment_windows_fast_costs(fn)
    except CostModelError as missing:
        return [f"{short_name(name)}: the cost model's fast path: {missing}"]
    problems = []
    if costs["pair"]["mufu"] > 24:
        problems.append(
            f"{short_name(name)}: the two-window loop issues {costs['pair']['mufu']} MUFU per 8 pairs of sigmoids "
            "(the model assumes 24: one reciprocal per pair)"
        )
    if costs["one"]["mufu"] > 16:
        problems.append(f"{short_name(name)}: the one-window loop issues {costs['one']['mufu']} MUFU per 8 sigmoids (model: 16)")
    return problems


# segment_windows' cost model for the photo case (checks/_sass_model.py), from the counts read here
_MODEL = _sibling("_sass_model")
_DENSE = _sibling("_sass_dense")  # rules 7 and 8: the dense ops' tensor cores and packed stores (issue 72 item 2)
PHOTO, H100, TILE = _MODEL.PHOTO, _MODEL.H100, _MODEL.TILE
segment_windows_model, render_model = _MODEL.segment_windows_model, _MODEL.render_model


@dataclass
class Report:
    kernels: List[dict] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    contraction: List[str] = field(default_factory=list)  # rule 6's table


def contraction():
    """Rule 6's module (checks/_sass_contraction.py)."""
    return _sibling("_sass_contraction")


def _compiler(arch: str, tmp: Path):
    """(source, extra nvcc flags) -> its SASS functions for ``arch``, compiled in a folder of its own under tmp."""
    (tmp / "contraction").mkdir(exist_ok=True)
    return lambda source, extra: disassemble(compile_cubin(source, arch, tmp / "contraction", extra)[0])


def check_contraction(arch: str, tmp: Path) -> dict:
    return contraction().check(_compiler(arch, tmp), arch)


def check_cubin(cubin: Path, ptxas_text: str, report: Report, label: str) -> None:
    functions = disassemble(cubin)
    ptxas = parse_ptxas(ptxas_text)
    for name, fn in sorted(functions.items()):
        facts = ptxas.get(name, {})
        problems: List[str] = []
        if not is_cold(name):
            problems += check_local_memory(name, fn, facts)
        problems += check_tile_loads(name, fn)
        problems += check_fused_postprocess(name, fn)
        problems += check_segment_windows_fast_path(name, fn)
        problems += check_similarity_prologue(name, fn)
        problems += _DENSE.check_kernel(name, fn, label)
        report.kernels.append(
            {
                "source": label,
                "kernel": short_name(name),
                "mangled": name,
                "registers": facts.get("registers"),
                "spill_stores": facts.get("spill_stores", 0),
                "spill_loads": facts.get("spill_loads", 0),
                "instructions": len(fn.instructions),
                "k_loops": len(k_loops(fn)),
                "cold": is_cold(name),
                "problems": problems,
            }
        )
        report.problems += [f"[{label}] {p}" for p in problems]


def check_sources(sources: Iterable[Path], archs: Sequence[str], jobs: int = 2) -> Report:
    report = Report()
    with tempfile.TemporaryDirectory(prefix="zs_sass_") as tmp:
        tasks = [(src, arch) for arch in archs for src in sources]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            compiled = list(pool.map(lambda t: (t, compile_cubin(t[0], t[1], Path(tmp))), tasks))
        for (src, arch), (cubin, text) in compiled:
            check_cubin(cubin, text, report, f"{src.name} sm_{arch}")
        for arch in archs if any(src.name == "temporal.cu" for src in sources) else []:
            found = check_contraction(arch, Path(tmp))
            report.contraction += found["lines"]
            report.problems += [f"[temporal.cu sm_{arch}] {p}" for p in found["problems"]]
    return report


# ---- self-test: the check must be able to fail ----------------------------------------------------------------------

SELF_TEST_SOURCE = Path(__file__).resolve().parent / "sass_self_test.cu"  # the deliberately bad kernels (and good ones)


def self_test(arch: str = "90") -> List[str]:
    """Compile deliberately bad kernels and a good one; return what did not come out as expected (empty: ok)."""
    failures = []
    with tempfile.TemporaryDirectory(prefix="zs_sass_self_") as tmp:
        cubin, text = compile_cubin(SELF_TEST_SOURCE, arch, Path(tmp))
        functions = disassemble(cubin)
        ptxas = parse_ptxas(text)
        verdicts = {}
        for name, fn in functions.items():
            problems = check_local_memory(name, fn, ptxas.get(name, {})) + check_tile_loads(name, fn)
            verdicts[name] = problems + check_similarity_prologue(name, fn)
        runtime = [n for n in verdicts if "tile_gemm" in n and "ILb1E" in n]
        constant = [n for n in verdicts if "tile_gemm" in n and "ILb0E" in n]
        local = [n for n in verdicts if "local_array_kernel" in n]
        if not runtime or not any("tile-load loop" in p or "not issued as one batch" in p for p in verdicts[runtime[0]]):
            failures.append(f"the run-time trip count tile loop was not flagged: {verdicts.get(runtime[0] if runtime else '', 'missing')}")
        if not constant or verdicts[constant[0]]:
            failures.append(f"the unrolled tile loop was flagged: {verdicts.get(constant[0] if constant else '', 'missing')}")
        if not constant or not k_loops(functions[constant[0]]):
            failures.append("no K loop found in the unrolled tile GEMM (the K-loop criterion found nothing to check)")
        if not local or not any("local-memory" in p for p in verdicts[local[0]]):
            failures.append(f"the local-array kernel was not flagged: {verdicts.get(local[0] if local else '', 'missing')}")
        serial = [n for n in verdicts if "similarity_kernel_serial_prologue" in n]
        if not serial or not any("division per element" in p for p in verdicts[serial[0]]):
            failures.append(f"the serial normalise prologue was not flagged: {verdicts.get(serial[0] if serial else '', 'missing')}")
        # register-starved (-maxrregcount=24; the GEMM's launch bounds take precedence): ptxas reports spills
        cubin, text = compile_cubin(SELF_TEST_SOURCE, arch, Path(tmp), extra=["-maxrregcount=24"])
        spills = parse_ptxas(text)
        starved = [n for n in spills if "local_array_kernel" in n]
        if not starved or not spills[starved[0]].get("spill_stores"):
            failures.append(f"ptxas' spill report was not read: {spills}")
        elif not check_local_memory(starved[0], disassemble(cubin)[starved[0]], spills[starved[0]]):
            failures.append("the register-starved kernel's spills were not flagged")
        # segment_windows' fast path: the real kernel passes rule 4, its two-reciprocal mutation fails it
        source = SEGMENT_WINDOWS_SOURCE
        for mutated in (False, True):
            extra = ["-DZS_SEGMENT_WINDOWS_SASS_SELF_TEST=1"] if mutated else []
            cubin, _ = compile_cubin(source, arch, Path(tmp), extra=extra)
            kernels = {n: f for n, f in disassemble(cubin).items() if SEGMENT_WINDOWS_SIGMOID in n and "Lb1E" in n}
            flagged = [p for n, f in kernels.items() for p in check_segment_windows_fast_path(n, f)]
            if not kernels:
                failures.append("no sigmoid segment_windows kernel found")
            elif mutated and not any("MUFU per 8 pairs" in p for p in flagged):
                failures.append(f"two reciprocals per pair in segment_windows were not flagged: {flagged}")
            elif not mutated and flagged:
                failures.append(f"segment_windows' fast path was flagged: {flagged}")
        failures += contraction().self_test(_compiler(arch, Path(tmp)))  # rule 6: a * b + c must be reported
        failures += _DENSE.self_test(_compiler(arch, Path(tmp)), Path(__file__).with_name("sass_dense_self_test.cu"), arch)
    return failures


def render(report: Report) -> str:
    lines = ["| source | kernel | registers | spills (st/ld bytes) | K loops | verdict |", "|---|---|---:|---:|---:|---|"]
    for k in report.kernels:
        verdict = "cold (not checked for local memory)" if k["cold"] and not k["problems"] else (
            "FAIL: " + "; ".join(k["problems"]) if k["problems"] else "ok"
        )
        lines.append(
            f"| {k['source']} | {k['kernel']} | {k['registers']} | {k['spill_stores']}/{k['spill_loads']} "
            f"| {k['k_loops']} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", help="SM architecture (e.g. 90; 'all' for CMakeLists.txt's list)")
    parser.add_argument("--source", action="append", help="a .cu file (default: every csrc/cuda/*.cu)")
    parser.add_argument("--self-test", action="store_true", help="only prove that bad kernels are flagged")
    parser.add_argument("--json", help="write the per-kernel facts here")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--model", action="store_true", help="print segment_windows' photo-case cost model (sm_90)")
    parser.add_argument("--contraction", action="store_true", help="rule 6 alone: no FMA contracted in temporal.cu")
    parser.add_argument("--dense-model", action="store_true", help="similarity's and upsample's cost models (sm_90)")
    args = parser.parse_args(argv)
    try:
        find_nvcc()
        find_cuobjdump()
    except ToolMissing as missing:
        print(f"checks sass: {missing}", file=sys.stderr)
        return 2
    archs = list(ALL_ARCHS) if args.arch and "all" in args.arch else (args.arch or list(DEFAULT_ARCHS))
    if args.model:
        with tempfile.TemporaryDirectory(prefix="zs_sass_model_") as tmp:
            cubin, _ = compile_cubin(SEGMENT_WINDOWS_SOURCE, "90", Path(tmp))
            kernel = next(f for n, f in disassemble(cubin).items() if "segment_windows_kernelIfLb1ELi0E" in n)
        print(render_model(segment_windows_fast_costs(kernel), [None, 128, 64, 32, 16, 8]))
        return 0
    if args.dense_model:
        with tempfile.TemporaryDirectory(prefix="zs_sass_dense_") as tmp:
            compiled = [disassemble(compile_cubin(CUDA_DIR / f, "90", Path(tmp))[0]) for f in ("similarity.cu", "upsample.cu")]
        print(_DENSE.render({name: fn for functions in compiled for name, fn in functions.items()}))
        return 0
    if args.contraction:
        with tempfile.TemporaryDirectory(prefix="zs_sass_fma_") as tmp:
            found = [check_contraction(arch, Path(tmp)) for arch in archs]
        print("\n".join(line for f in found for line in f["lines"] + [f"FAIL {p}" for p in f["problems"]]))
        print(f"checks sass --contraction: {sum(len(f['problems']) for f in found)} problems")
        return 1 if any(f["problems"] for f in found) else 0
    if args.self_test:
        failures = self_test(archs[-1])
        for f in failures:
            print(f"self-test FAILED: {f}")
        print("self-test: " + ("the check flags every bad kernel and passes the good one" if not failures else "FAILED"))
        return 1 if failures else 0
    sources = [Path(s) for s in args.source] if args.source else sorted(CUDA_DIR.glob("*.cu"))
    report = check_sources(sources, archs, args.jobs)
    print(render(report) + "".join(f"\n{line}" for line in report.contraction))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"archs": archs, "kernels": report.kernels, "problems": report.problems}, indent=2))
    for p in report.problems:
        print(f"FAIL {p}")
    print(f"checks sass: {len(report.kernels)} kernels, {len(report.problems)} problems")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
