#!/usr/bin/env bash
# One command for whenever a CUDA GPU is at hand: build, every CUDA test (pytest + ctest), the CUDA tests again
# under compute-sanitizer (memcheck, racecheck, synccheck), every CUDA op benchmarked against torch on the same
# GPU, the Engine end to end (torch-on-CUDA vs CPU ONNX Runtime), and one report (Markdown + JSON).
#
# Made for a bare CUDA machine WITHOUT network: python3 with torch, nvcc, pybind11 and scikit-build-core present,
# no TensorRT; anything else (open_clip_torch, onnx, onnxruntime, opencv-python-headless, hypothesis, pytest, ...)
# from a folder of wheels given with --wheels (pip install --no-index --find-links).
#
#   bash tools/gpu_check.sh [--wheels DIR] [--out DIR] [--quick]
#     --wheels DIR   wheels for what the machine lacks (only used when an import fails)
#     --out DIR      report folder (default out/gpu_check): report.md, report.json, logs
#     --quick        skip the full-size ViT-B/16 Engine timing and the sanitizer runs of the Python tests
# Exit code: 0 when every check passed, 1 otherwise (the report says which). Nothing here needs network access.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/out/gpu_check"
WHEELS=""
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="$(cd "$2" && pwd)"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "gpu_check: unknown argument $1 (see the header of tools/gpu_check.sh)"; exit 2 ;;
  esac
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
cd "$ROOT"
export PYTHONUNBUFFERED=1
STEPS="$OUT/steps.tsv"
: >"$STEPS"

step() {  # step NAME LOGFILE COMMAND... : run, record "name<TAB>rc<TAB>seconds<TAB>log"
  local name="$1" log="$2"; shift 2
  local t0=$(date +%s)
  echo "== $name"
  "$@" >"$log" 2>&1
  local rc=$?
  echo -e "$name\t$rc\t$(( $(date +%s) - t0 ))\t$(basename "$log")" >>"$STEPS"
  tail -3 "$log"
  return $rc
}

# ---- environment -----------------------------------------------------------------------------------------
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || { echo "gpu_check: nvidia-smi failed: no NVIDIA driver/GPU here"; exit 1; }
CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$NVCC" ] || { echo "gpu_check: nvcc not found"; exit 1; }
export CUDACXX="$NVCC"
SITE="$OUT/site"  # extra packages from --wheels land here (never into the system Python)
missing=()
for mod in numpy torch pybind11 scikit_build_core onnx onnxruntime cv2 open_clip pytest hypothesis tokenizers ftfy safetensors; do
  "$PY" -c "import $mod" 2>/dev/null || missing+=("$mod")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ -z "$WHEELS" ]; then
    echo "gpu_check: missing Python modules: ${missing[*]}; pass --wheels DIR with their wheels"; exit 1
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl \
    || { echo "gpu_check: installing the wheels from $WHEELS failed"; exit 1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

# ---- build (this GPU's architecture only: fast, and exactly the code that runs) --------------------------------
BUILD="$OUT/build"
step build "$OUT/build.log" env CMAKE_BUILD_PARALLEL_LEVEL=8 "$PY" -m pip install -v --no-build-isolation --no-deps \
  --target "$BUILD/pkg" -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$CC" -C "build-dir=$BUILD/py" . \
  || { echo "gpu_check: build failed, see $OUT/build.log"; exit 1; }
export PYTHONPATH="$BUILD/pkg${PYTHONPATH:+:$PYTHONPATH}"
step cmake_tests "$OUT/ctest_build.log" bash -c "cmake -S . -B '$BUILD/cpp' -DZS_BUILD_TESTS=ON -DZS_BUILD_PYTHON=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CUDA_ARCHITECTURES=$CC -DCMAKE_CUDA_COMPILER='$NVCC' && \
  cmake --build '$BUILD/cpp' -j8"

# ---- tests ------------------------------------------------------------------------------------------------
step ctest "$OUT/ctest.log" ctest --test-dir "$BUILD/cpp" --output-on-failure
step pytest_cuda "$OUT/pytest_cuda.log" "$PY" -m pytest python_tests -q -p no:cacheprovider -rs \
  -k "cuda or Cuda or device or gpu" --junitxml="$OUT/pytest_cuda.xml"
SAN=$(command -v compute-sanitizer || echo "$(dirname "$NVCC")/compute-sanitizer")
if [ -x "$SAN" ]; then
  for tool in memcheck racecheck synccheck; do
    for bin in "$BUILD"/cpp/*_tests "$BUILD"/cpp/*/*_tests; do
      [ -x "$bin" ] || continue
      step "sanitizer_${tool}_$(basename "$bin")" "$OUT/sanitizer_${tool}_$(basename "$bin").log" \
        "$SAN" --tool "$tool" --error-exitcode 99 "$bin" --gtest_filter='*Cuda*'
    done
    if [ "$QUICK" = 0 ]; then
      step "sanitizer_${tool}_pytest" "$OUT/sanitizer_${tool}_pytest.log" "$SAN" --tool "$tool" --error-exitcode 99 \
        --target-processes all "$PY" -m pytest python_tests/ops -q -p no:cacheprovider -x -k "cuda" \
        -o addopts=""
    fi
  done
else
  echo -e "sanitizers\t127\t0\t(compute-sanitizer not found)" >>"$STEPS"
fi

# ---- benchmarks and the Engine ------------------------------------------------------------------------------
step bench_cuda "$OUT/bench_cuda.log" "$PY" -m benchmarks cuda --json "$OUT/bench_cuda.json" --compile
ENGINE_ARGS=(--out "$OUT")
[ "$QUICK" = 1 ] && ENGINE_ARGS+=(--skip-full)
step engine "$OUT/engine.log" "$PY" -m checks gpu_engine "${ENGINE_ARGS[@]}"

# ---- report -------------------------------------------------------------------------------------------------
"$PY" - "$OUT" <<'PYEOF'
import json, platform, subprocess, sys
from pathlib import Path
out = Path(sys.argv[1])
steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines() if line]
def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[-1]
    except Exception as exc:  # report what failed rather than stop the report
        return f"unavailable ({exc})"
import torch
report = {
    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
    "compute_capability": ".".join(map(str, torch.cuda.get_device_capability())) if torch.cuda.is_available() else "",
    "driver": version(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
    "nvcc": version(["nvcc", "--version"]), "torch": torch.__version__, "python": platform.python_version(),
    "steps": [{"name": n, "rc": int(rc), "seconds": int(s), "log": log} for n, rc, s, log in steps],
}
for name in ("bench_cuda.json", "engine_check.json"):
    path = out / name
    if path.exists():
        report[name.split(".")[0]] = json.loads(path.read_text())
report["pass"] = all(s["rc"] == 0 for s in report["steps"])
(out / "report.json").write_text(json.dumps(report, indent=2))
md = [f"# zsseg_rt GPU check: {report['gpu']} (sm {report['compute_capability']})", "",
      f"driver {report['driver']}, {report['nvcc']}, torch {report['torch']}, Python {report['python']}", "",
      "| step | result | seconds | log |", "|---|---|---:|---|"]
md += [f"| {s['name']} | {'ok' if s['rc'] == 0 else 'FAILED (rc %d)' % s['rc']} | {s['seconds']} | {s['log']} |"
       for s in report["steps"]]
bench = report.get("bench_cuda")
if bench:
    md += ["", "## CUDA ops vs torch (same GPU)", "", "| case | zsseg_rt ms | best torch ms | ratio | target <= 2x |",
           "|---|---:|---:|---:|---|"]
    md += [f"| {r['description']} | {r['zsseg_rt_ms']:.3f} | {r['torch_ms'][r['torch_best']]:.3f} "
           f"({r['torch_best']}) | {r['ratio_vs_best_torch']:.2f} | {'PASS' if r['pass'] else 'MISS'} |"
           for r in bench["rows"]]
engine = report.get("engine_check")
if engine:
    md += ["", "## Engine: torch on CUDA vs ONNX Runtime CPU", "",
           f"worst share of equal labels over the sample photos: {engine['labels']['worst_labels_equal']:.5f} "
           f"(target >= 0.999: {'PASS' if engine['labels']['pass'] else 'FAIL'})"]
    for t in engine.get("timing", []):
        stages = ", ".join(f"{k} {v:.2f} ms" for k, v in t["ms_per_frame_by_stage"].items())
        md.append(f"- C={t['classes']}: {stages}; post/encoder {100 * t['post_over_encoder']:.2f} %")
(out / "report.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
sys.exit(0 if report["pass"] else 1)
PYEOF
