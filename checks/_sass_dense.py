"""Rules 7 and 8 of checks/sass.py (issue 72 item 2: the dense ops against torch eager) and their cost models, read
from the compiled kernels. Its own module to keep sass.py short: sass.py loads it by path and calls ``check_kernel``
per kernel, ``self_test`` with its compiler, and ``render`` for ``--dense-model``. Standard library only; a SASS
function is sass.py's ``Function`` (instructions with opcode, predicate, operands; ``loops()``, ``body()``).

7. similarity on the tensor cores (csrc/cuda/similarity_mma.cuh), for sm_80 and later: each ``similarity_mma_kernel``
   has one K loop (the innermost loop holding its HMMA), whose products are tensor-core instructions of its dtype only
   (fp32: HMMA.1688.F32.TF32, 3 per tile and k-step of 3xTF32, 96 an iteration of two chunks; fp16: HMMA.16816.F32,
   32), with no FFMA dot product (fp32: FFMA only in the row statistics of normalize, behind their branch), no shared
   memory (the fragments come from global memory: the vector variant's 16 loads an iteration are LDG.E.128) and no
   barrier. Below sm_80 the kernel is empty (its launcher takes the CUDA-core kernel there).
8. upsample (csrc/cuda/upsample.cu), the packed variant (4 columns a thread): its row loop stores with one 16-byte
   (fp32) or 8-byte (fp16) STG and no other, computes its taps in 32 bits (no F2I/I2F of a 64-bit integer), and its
   plain path (no source-row reload, no sigmoid) costs at most 16 instructions an output.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

MMA_KERNEL = "similarity_mma_kernel"
UPSAMPLE_KERNEL = "upsample_kernel"
# HMMA an iteration of the K loop (two chunks, each 2 k-steps x 8 tiles; fp32: x 3 for 3xTF32)
MMA_OPCODE = {"f": ("HMMA.1688.F32.TF32", 96), "6__half": ("HMMA.16816.F32", 32)}
UPSAMPLE_STORE = {"f": "STG.E.128", "6__half": "STG.E.64"}
UPSAMPLE_MAX_PER_OUTPUT = 16
H100 = dict(name="H100 SXM", sms=132, smsp=4, clock_hz=1.755e9, dram_bytes_per_s=3.0e12,
            hmma_clocks={"f": 1.7, "6__half": 1.7})  # fmt: skip  # clocks per HMMA per SM: ~60 % of the dense peak
# The benchmark's cases (benchmarks/cuda.py): similarity N=1024 C=171 D=512, upsample C=171 32x32 -> 512x512 fp32
SIMILARITY_CASE = dict(patches=1024, classes=171, dim=512, batch=1)
UPSAMPLE_CASE = dict(planes=171, out=(512, 512))


def _dtype(mangled: str, kernel: str) -> Optional[str]:
    """'f' (float) or '6__half' from ``...kernelI<T>...``."""
    at = mangled.find(kernel + "I")
    if at < 0:
        return None
    rest = mangled[at + len(kernel) + 1 :]
    return "f" if rest.startswith("f") else "6__half" if rest.startswith("6__half") else None


def _vector(mangled: str) -> bool:
    return "Lb1E" in mangled


def _arch(label: str) -> int:
    return int(label.rsplit("sm_", 1)[-1]) if "sm_" in label else 90


def k_loop(fn) -> Optional[Tuple[int, int]]:
    """The innermost loop holding HMMA (None: none holds any)."""
    with_mma = [loop for loop in fn.loops() if any(i.base == "HMMA" for i in fn.body(loop))]
    inner = [a for a in with_mma if not any(b != a and a[0] <= b[0] and b[1] <= a[1] for b in with_mma)]
    return inner[0] if len(inner) == 1 else None


def walk(fn, loop: Tuple[int, int], take: Callable[[list], bool]) -> list:
    """One iteration of `loop` from its head to its back-edge: a conditional forward branch is taken where
    ``take(skipped instructions)`` says so, else falls through; unconditional branches are followed."""
    body = fn.body(loop)
    index = {i.address: k for k, i in enumerate(body)}
    path, k = [], 0
    while k < len(body):
        ins = body[k]
        path.append(ins)
        target = ins.branch_target()
        if target is not None:
            if target <= ins.address:
                break
            if not ins.predicate or take(body[k + 1 : index.get(target, len(body))]):
                k = index.get(target, len(body))
                continue
        k += 1
    return path


def _stats(block: list) -> bool:  # normalize's row statistics (FMNMX of magnitudes), not a chunk's products
    return any(i.base == "FMNMX" for i in block) and not any(i.base == "HMMA" for i in block)


def mma_costs(fn) -> Optional[dict]:
    """The K loop's iteration (two chunks) as executed without and with normalize's statistics."""
    loop = k_loop(fn)
    if loop is None:
        return None
    scale = walk(fn, loop, _stats)
    normalize = walk(fn, loop, lambda block: False)

    def count(path, op):
        return sum(1 for i in path if i.opcode.startswith(op))

    return {
        "loop": loop,
        "scale": {"instructions": len(scale), "hmma": count(scale, "HMMA"), "ldg": count(scale, "LDG")},
        "normalize": {"instructions": len(normalize), "hmma": count(normalize, "HMMA")},
    }


def check_mma(name: str, fn, arch: int) -> List[str]:
    dtype = _dtype(name, MMA_KERNEL)
    if dtype is None:
        return []
    label = f"{MMA_KERNEL}<{'float' if dtype == 'f' else 'half'}, {'vector' if _vector(name) else 'scalar'}>"
    hmma = [i for i in fn.instructions if i.base == "HMMA"]
    if arch < 80:
        return [f"{label}: {len(hmma)} HMMA below sm_80 (the kernel must be empty there)"] if hmma else []
    opcode, per_iteration = MMA_OPCODE[dtype]
    loop = k_loop(fn)
    if loop is None:
        return [f"{label}: no K loop with tensor-core products (HMMA) found"]
    body = fn.body(loop)
    problems = []
    other = sorted({i.opcode for i in body if i.base == "HMMA" and i.opcode != opcode})
    if other or sum(i.opcode == opcode for i in body) != per_iteration:
        problems.append(f"{label}: K loop {loop[0]:#06x}-{loop[1]:#06x} has {sum(i.opcode == opcode for i in body)} "
                        f"{opcode} (expected {per_iteration}) and {other or 'no other HMMA'}")  # fmt: skip
    bad = [i for i in body if i.base in ("LDS", "STS", "BAR", "LDL", "STL")]
    if bad:
        problems.append(
            f"{label}: K loop has {bad[0].opcode} at {bad[0].address:#06x} (fragments come from global memory)"
        )
    costs = mma_costs(fn)
    if costs and sum(i.base == "FFMA" for i in walk(fn, loop, _stats)) and dtype == "f":
        problems.append(f"{label}: FFMA outside normalize's statistics in the K loop (a CUDA-core dot product)")
    if _vector(name) and sum(i.opcode.startswith("LDG.E.128") for i in body) != 16:
        problems.append(f"{label}: the vector variant's K loop issues {sum(i.opcode.startswith('LDG.E.128') for i in body)} "
                        "LDG.E.128 (expected 16: 8 rows x 2 chunks)")  # fmt: skip
    return problems


def row_loop(fn) -> Optional[Tuple[int, int]]:
    """upsample's row loop: the innermost loop holding its store."""
    loops = [loop for loop in fn.loops() if any(i.base == "STG" for i in fn.body(loop))]
    inner = [a for a in loops if not any(b != a and a[0] <= b[0] and b[1] <= a[1] for b in loops)]
    return inner[0] if len(inner) == 1 else None


def upsample_costs(fn) -> Optional[dict]:
    """The row loop's plain iteration: the reload (LDG) and sigmoid (MUFU) blocks skipped."""
    loop = row_loop(fn)
    if loop is None:
        return None
    plain = walk(fn, loop, lambda block: any(i.base in ("LDG", "MUFU") for i in block))
    return {"loop": loop, "instructions": len(plain), "outputs": 4}


def check_upsample(name: str, fn) -> List[str]:
    dtype = _dtype(name, UPSAMPLE_KERNEL)
    if dtype is None or "Li4E" not in name:
        return []
    label = f"{UPSAMPLE_KERNEL}<{'float' if dtype == 'f' else 'half'}, 4>"
    loop = row_loop(fn)
    if loop is None:
        return [f"{label}: no row loop (an innermost loop with the store) found"]
    body = fn.body(loop)
    problems = []
    stores = [i.opcode for i in body if i.base == "STG"]
    if stores != [UPSAMPLE_STORE[dtype]]:
        problems.append(f"{label}: the row loop stores with {stores} (expected one {UPSAMPLE_STORE[dtype]})")
    wide = [i for i in body if i.base in ("F2I", "I2F") and "64" in i.opcode]
    if wide:
        problems.append(f"{label}: 64-bit tap arithmetic in the row loop ({wide[0].opcode} at {wide[0].address:#06x})")
    costs = upsample_costs(fn)
    if costs and costs["instructions"] > UPSAMPLE_MAX_PER_OUTPUT * costs["outputs"]:
        problems.append(f"{label}: the row loop's plain path is {costs['instructions']} instructions for 4 outputs "
                        f"(at most {UPSAMPLE_MAX_PER_OUTPUT * 4})")  # fmt: skip
    return problems


def check_kernel(name: str, fn, label: str) -> List[str]:
    """Rules 7 and 8 for one kernel of a compiled source (`label`: "file.cu sm_XX")."""
    return check_mma(name, fn, _arch(label)) + check_upsample(name, fn)


# ---- cost models ---------------------------------------------------------------------------------------------------


def similarity_model(costs: dict, dtype: str, normalize: bool, case: dict = SIMILARITY_CASE, hw: dict = H100) -> dict:
    """One block a SM (its ~200 registers): 8 warps, each (dim / chunk) / 4 / 2 iterations of the K loop. Time = the
    larger of issue (a warp instruction a clock a SMSP) and the tensor pipe (hmma_clocks a HMMA a SM), over the
    busiest SM (blocks <= SMs: one wave)."""
    chunk = 16 if dtype == "f" else 32
    iterations = -(-(-(-case["dim"] // chunk) // 4) // 2)
    blocks = case["batch"] * -(-case["patches"] // 64) * -(-case["classes"] // 32)
    path = costs["normalize" if normalize else "scale"]
    issue = 8 * iterations * path["instructions"] / hw["smsp"]
    tensor = 8 * iterations * path["hmma"] * hw["hmma_clocks"][dtype]
    waves = -(-blocks // hw["sms"])

    def us(cycles):
        return cycles * waves / hw["clock_hz"] * 1e6

    return {"blocks": blocks, "iterations": iterations, "issue_us": us(issue), "tensor_us": us(tensor),
            "predicted_us": us(max(issue, tensor))}  # fmt: skip


def upsample_model(costs: dict, dtype: str, case: dict = UPSAMPLE_CASE, hw: dict = H100) -> dict:
    """Issue of the plain row path against the output's DRAM write (the 0.7 MB input stays in L2)."""
    outputs = case["planes"] * case["out"][0] * case["out"][1]
    issue = outputs / costs["outputs"] * costs["instructions"] / 32 / (hw["sms"] * hw["smsp"])
    write = outputs * (4 if dtype == "f" else 2) / hw["dram_bytes_per_s"] * 1e6
    us = issue / hw["clock_hz"] * 1e6
    return {"issue_us": us, "write_us": write, "predicted_us": max(us, write)}


def render(functions: Dict[str, object]) -> str:
    """The models of every sm_90 similarity_mma_kernel (vector variant) and packed upsample kernel in `functions`."""
    lines = ["| kernel | per iteration (SASS, sm_90) | model on an H100 (benchmark case) |", "|---|---|---|"]
    for name, fn in sorted(functions.items()):
        dtype = _dtype(name, MMA_KERNEL)
        if dtype and _vector(name):
            c = mma_costs(fn)
            for normalize in (False, True):
                m = similarity_model(c, dtype, normalize)
                path = c["normalize" if normalize else "scale"]
                lines.append(
                    f"| similarity {'fp32 3xTF32' if dtype == 'f' else 'fp16'} {'normalize' if normalize else 'scale'} "
                    f"| {path['instructions']} instructions, {path['hmma']} HMMA (2 chunks) | {m['blocks']} blocks x "
                    f"8 warps x {m['iterations']} iterations: issue {m['issue_us']:.1f} us, tensor pipe "
                    f"{m['tensor_us']:.1f} us (assumed {H100['hmma_clocks'][dtype]} clocks a HMMA a SM) |"
                )
        dtype = _dtype(name, UPSAMPLE_KERNEL)
        if dtype and "Li4E" in name:
            c = upsample_costs(fn)
            m = upsample_model(c, dtype)
            lines.append(
                f"| upsample {'fp32' if dtype == 'f' else 'fp16'} 4 columns | {c['instructions']} instructions for 4 "
                f"outputs (plain path) | issue {m['issue_us']:.1f} us, output write {m['write_us']:.1f} us at "
                f"{H100['dram_bytes_per_s'] / 1e12:.1f} TB/s: bound by the write |"
            )
    return "\n".join(lines)


# ---- self-test ---------------------------------------------------------------------------------------------------


def self_test(compile_source: Callable, source, arch: str = "90") -> List[str]:
    """`source` (checks/sass_dense_self_test.cu) holds a similarity_mma_kernel that multiplies on the CUDA cores and a
    packed upsample_kernel that stores one float at a time: each must be flagged (the control, the real kernels
    passing, is the full check's run: python_tests/test_sass_check.py, python_tests/test_sass_dense.py)."""
    failures = []
    functions = compile_source(source, [])
    verdicts = {name: check_kernel(name, fn, f"self-test sm_{arch}") for name, fn in functions.items()}
    mma = [v for n, v in verdicts.items() if MMA_KERNEL in n]
    ups = [v for n, v in verdicts.items() if UPSAMPLE_KERNEL in n]
    if not mma or not any("no K loop with tensor-core products" in p for p in mma[0]):
        failures.append(f"a CUDA-core similarity_mma_kernel was not flagged: {mma}")
    if not ups or not any("stores with" in p for p in ups[0]):
        failures.append(f"an upsample_kernel storing single floats was not flagged: {ups}")
    return failures
