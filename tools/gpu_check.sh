#!/usr/bin/env bash
# One command for whenever a CUDA GPU is at hand: build, every CUDA test (pytest + ctest), the CUDA tests again
# under compute-sanitizer (memcheck, racecheck, synccheck), every CUDA op benchmarked against torch on the same
# GPU, the Engine end to end (torch-on-CUDA vs CPU ONNX Runtime), and one report (Markdown + JSON).
#
# Made for a bare CUDA machine WITHOUT network: python3 with torch, nvcc, pybind11 and scikit-build-core present,
# no TensorRT; anything else (open_clip_torch, onnx, onnxruntime, opencv-python-headless, hypothesis, pytest, ...)
# from a folder of wheels given with --wheels (pip install --no-index --find-links).
#
#   bash tools/gpu_check.sh [--wheels DIR] [--out DIR] [--quick] [--only STEPS]
#     --wheels DIR   wheels for what the machine lacks (only used when an import fails)
#     --out DIR      report folder (default out/gpu_check): report.md, report.json, logs
#     --quick        skip the full-size ViT-B/16 Engine timing and the sanitizer runs of the Python tests
#     --only STEPS   comma-separated subset of: build,import,ctest,pytest,sanitizers,bench,engine (the report is
#                    always written); e.g. --only build,import to check an installation
#   ZSSEG_GPU_CHECK_CMAKE_DEFINES  extra "NAME=VALUE;NAME=VALUE" CMake definitions for the build (CI's plumbing
#                    test builds without CUDA this way: python_tests/test_gpu_check.py)
# Exit code: 0 when every check passed, 1 otherwise (the report says which). Nothing here needs network access.
#
# Every Python step imports the build made here, never the source tree: pytest and the scripts run from the
# report folder (not from the checkout, whose zsseg_rt/ has no _C), the benchmarks/checks programs through a
# launcher that appends the checkout to the END of sys.path (so nothing in it can shadow the build or a
# standard-library module), and
# the import step fails the check unless zsseg_rt and its _C come from the build folder. The whole pytest suite
# runs (a GPU changes which paths run, not only the CUDA tests'), with the Engine's per-stage timing from the
# device pipeline (encoder, head, post-processing, copies).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/out/gpu_check"
WHEELS=""
QUICK=0
ONLY="build,import,ctest,pytest,sanitizers,bench,engine"
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="$(cd "$2" && pwd)"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --only) ONLY="$2"; shift 2 ;;
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

wanted() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# Run a program of this checkout's benchmarks/ or checks/ package (python -m PACKAGE NAME ...) from the report
# folder, with the checkout APPENDED to the end of sys.path: the build (on PYTHONPATH) provides zsseg_rt, the
# checkout only the benchmarks/checks packages, and nothing of the checkout can shadow another module.
run_module() {
  (cd "$OUT" && "$PY" -c 'import runpy, sys; sys.path.append(sys.argv[1]); package = sys.argv[2]; \
sys.argv = [package] + sys.argv[3:]; runpy.run_module(package, run_name="__main__", alter_sys=True)' "$ROOT" "$@")
}

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
DEFINES=(-C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$CC")
IFS=';' read -r -a EXTRA_DEFINES <<<"${ZSSEG_GPU_CHECK_CMAKE_DEFINES:-}"
for d in "${EXTRA_DEFINES[@]}"; do [ -n "$d" ] && DEFINES+=(-C "cmake.define.$d"); done
if wanted build; then
  rm -rf "$BUILD/pkg"
  step build "$OUT/build.log" env CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-8}" "$PY" -m pip install -v \
    --no-build-isolation --no-deps --target "$BUILD/pkg" "${DEFINES[@]}" -C "build-dir=$BUILD/py" . \
    || { echo "gpu_check: build failed, see $OUT/build.log (nothing else runs)"; ONLY=""; }
fi
export PYTHONPATH="$BUILD/pkg${PYTHONPATH:+:$PYTHONPATH}"
# pytest and every script run from $OUT with PYTHONSAFEPATH (Python >= 3.11) too: the checkout is never on sys.path
export PYTHONSAFEPATH=1

# ---- the build is what gets imported -------------------------------------------------------------------------
if wanted import; then
  step import "$OUT/import.log" bash -c "cd '$OUT' && '$PY' - '$BUILD/pkg' <<'PYEOF'
import os, sys
build = os.path.realpath(sys.argv[1])
import zsseg_rt
from zsseg_rt import ops
module = ops.native_module()
print('zsseg_rt from', zsseg_rt.__file__)
print('native module', module.__file__)
print('cuda_compiled', module.cuda_compiled(), 'cuda_available', ops.cuda_available(), 'status', module.cuda_status())
inside = [os.path.realpath(p).startswith(build + os.sep) for p in (zsseg_rt.__file__, module.__file__)]
if not all(inside):
    sys.exit('gpu_check: the tests would not import the build in ' + build + ' (a source tree or another install '
             'shadows it)')
if not ops.cuda_available():
    sys.exit('gpu_check: CUDA is not usable by this build: ' + ops.cuda_unavailable_reason())
PYEOF" || { echo "gpu_check: the import check failed, see $OUT/import.log (nothing else runs)"; ONLY=""; }
fi

# ---- tests ------------------------------------------------------------------------------------------------
if wanted ctest; then
  step cmake_tests "$OUT/ctest_build.log" bash -c "cmake -S . -B '$BUILD/cpp' -DZS_BUILD_TESTS=ON -DZS_BUILD_PYTHON=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CUDA_ARCHITECTURES=$CC -DCMAKE_CUDA_COMPILER='$NVCC' && \
    cmake --build '$BUILD/cpp' -j8"
  step ctest "$OUT/ctest.log" ctest --test-dir "$BUILD/cpp" --output-on-failure
fi
if wanted pytest; then
  # The whole suite (not a -k selection): the CUDA tests, and everything whose path changes with a GPU present.
  step pytest "$OUT/pytest.log" bash -c "cd '$OUT' && '$PY' -m pytest '$ROOT/python_tests' -q -p no:cacheprovider -rs \
    --rootdir '$ROOT' -c '$ROOT/pyproject.toml' --junitxml='$OUT/pytest.xml'"
fi
SAN=$(command -v compute-sanitizer || echo "$(dirname "$NVCC")/compute-sanitizer")
if wanted sanitizers && [ -x "$SAN" ]; then
  for tool in memcheck racecheck synccheck; do
    for bin in "$BUILD"/cpp/*_tests "$BUILD"/cpp/*/*_tests; do
      [ -x "$bin" ] || continue
      step "sanitizer_${tool}_$(basename "$bin")" "$OUT/sanitizer_${tool}_$(basename "$bin").log" \
        "$SAN" --tool "$tool" --error-exitcode 99 "$bin" --gtest_filter='*Cuda*'
    done
    if [ "$QUICK" = 0 ]; then
      step "sanitizer_${tool}_pytest" "$OUT/sanitizer_${tool}_pytest.log" bash -c "cd '$OUT' && '$SAN' --tool $tool \
        --error-exitcode 99 --target-processes all '$PY' -m pytest '$ROOT/python_tests' -m cuda -q -p no:cacheprovider \
        --rootdir '$ROOT' -c '$ROOT/pyproject.toml' -o addopts=''"
    fi
  done
elif wanted sanitizers; then
  echo -e "sanitizers\t127\t0\t(compute-sanitizer not found)" >>"$STEPS"
fi

# ---- benchmarks and the Engine ------------------------------------------------------------------------------
if wanted bench; then
  step bench_cuda "$OUT/bench_cuda.log" run_module benchmarks cuda --json "$OUT/bench_cuda.json" --compile
fi
if wanted engine; then
  ENGINE_ARGS=(--out "$OUT")
  [ "$QUICK" = 1 ] && ENGINE_ARGS+=(--skip-full)
  step engine "$OUT/engine.log" run_module checks gpu_engine "${ENGINE_ARGS[@]}"
fi

# ---- report -------------------------------------------------------------------------------------------------
(cd "$OUT" && "$PY" - "$OUT") <<'PYEOF'
import json, platform, subprocess, sys
from pathlib import Path
out = Path(sys.argv[1])
steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines() if line]
def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[-1]
    except Exception as exc:  # report what failed rather than stop the report
        return f"unavailable ({exc})"
try:
    import torch
    gpu = torch.cuda.is_available()
    torch_info = (torch.__version__, torch.cuda.get_device_name() if gpu else "none",
                  ".".join(map(str, torch.cuda.get_device_capability())) if gpu else "")
except ImportError:
    torch_info = ("absent", "none (torch absent)", "")
report = {
    "gpu": torch_info[1], "compute_capability": torch_info[2],
    "driver": version(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
    "nvcc": version(["nvcc", "--version"]), "torch": torch_info[0], "python": platform.python_version(),
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
        md.append(f"- C={t['classes']}: {stages}; copies {t.get('copies_ms_per_frame', float('nan')):.2f} ms; "
                  f"post/encoder {100 * t['post_over_encoder']:.2f} % (target <= 3 % at C=171)")
(out / "report.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
sys.exit(0 if report["pass"] else 1)
PYEOF
