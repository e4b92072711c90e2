#!/usr/bin/env bash
# The acceptance run on a CUDA GPU: prerequisites, build, the import check, ctest, the whole pytest suite (by
# directory), compute-sanitizer (memcheck, racecheck, synccheck), every CUDA op benchmarked against torch on the same
# GPU, and the Engine end to end; ONE report (report.md + report.json in the output folder) that separate
# invocations build up stage by stage, so that it fits a machine rented for 10 minutes per command.
#
# Made for a bare CUDA machine WITHOUT network: python3 with torch, nvcc, cmake, a C++ compiler; anything else
# (open_clip_torch, onnx, onnxruntime, opencv-python-headless, hypothesis, pytest, ...) from a folder of wheels
# given with --wheels.
#
#   bash tools/gpu_check.sh [--only STAGES] [--wheels DIR] [--out DIR] [--quick] [--stage-timeout S]
#                           [--pytest-args "ARGS"] [--list]
#     --only STAGES      comma-separated stages to run now (default: all of them, in order). Stages:
#                          prereqs           every prerequisite below, one line each on what is missing and how to
#                                            get it (each stage also checks its own and fails with them)
#                          build             pip-builds zsseg_rt for this GPU's architecture into OUT/build/pkg
#                          import            that build (not the checkout, not another install) is what Python
#                                            imports, and CUDA is usable by it
#                          ctest             the C++ tests (GoogleTest), built for this GPU
#                          pytest:DIR        python_tests/DIR (pytest:top = the files directly in python_tests/);
#                                            "pytest" = every piece. --list shows them
#                          sanitizers:TOOL   compute-sanitizer TOOL (memcheck, racecheck, synccheck) over the C++
#                                            CUDA tests (built by ctest) and the Python CUDA tests (-m cuda);
#                                            "sanitizers" = all three
#                          bench             python -m benchmarks cuda: pass/fail within 2x of torch eager,
#                                            torch.compile reported beside it; any MISS row fails the stage
#                          engine            python -m checks gpu_engine: labels vs the CPU path, per-stage times;
#                                            passes only when every target was checked and met (not with --quick)
#     --wheels DIR       install from DIR only the Python distributions this machine lacks (and what they require),
#                        never numpy/torch, into OUT/site (later invocations keep using it)
#     --out DIR          report folder (default out/gpu_check): report.md, report.json, logs, build, site
#     --quick            skip the full-size ViT-B/16 Engine timing and the sanitizer runs of the Python tests
#                        (the engine stage is then not passed: its post-processing target was not checked)
#     --stage-timeout S  time bound of each stage in seconds (default 480: 8 minutes); a step still running then
#                        is stopped and the stage reported as "timeout"
#     --pytest-args ARGS extra pytest arguments (split on spaces) for the pytest and sanitizer steps, e.g. "-x" or
#                        "-n 16" (pytest-xdist: then also taken from --wheels where the machine lacks it)
#     --list             print the stages and exit
#   ZSSEG_GPU_CHECK_CMAKE_DEFINES  extra "NAME=VALUE;NAME=VALUE" definitions for every CMake configure this runs
#                      (the build, the GTest probe, the C++ tests), e.g. CMAKE_PREFIX_PATH=/opt/googletest
#   ZSSEG_GPU_CHECK_CUDA_ARCH      the GPU architecture (e.g. 90) where nvidia-smi cannot report it
#
# On a machine rented for 10 minutes per command, run one or a few stages per command with the same --out (each
# stage is bounded by --stage-timeout; docs/gpu.md lists the sequence). A stage run again replaces its entry in the
# report; stages never run are listed as "not run". Exit code: 0 when every stage of THIS invocation passed, 1
# otherwise (the report says why), 2 for a bad argument. Nothing here needs network access.
#
# Every Python step imports the build made here, never the source tree: pytest and the scripts run from the report
# folder with PYTHONSAFEPATH=1, the benchmarks/checks programs through a launcher that appends the checkout to the
# END of sys.path (so nothing in it can shadow the build or a standard-library module).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/out/gpu_check"
WHEELS=""
QUICK=0
ONLY="all"
STAGE_TIMEOUT=480
PYTEST_ARGS=""
LIST=0
COMMAND="tools/gpu_check.sh $*"

usage_error() {
  echo "gpu_check: $1 (see the header of tools/gpu_check.sh, or --list)" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels)
      [ $# -ge 2 ] && [ -d "$2" ] || usage_error "--wheels needs a folder of wheels"
      WHEELS="$(cd "$2" && pwd)"
      shift 2
      ;;
    --out)
      [ $# -ge 2 ] || usage_error "--out needs a folder"
      OUT="$2"
      shift 2
      ;;
    --only)
      [ $# -ge 2 ] || usage_error "--only needs stages"
      ONLY="$2"
      shift 2
      ;;
    --stage-timeout)
      [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || usage_error "--stage-timeout needs seconds"
      STAGE_TIMEOUT="$2"
      shift 2
      ;;
    --pytest-args)
      [ $# -ge 2 ] || usage_error "--pytest-args needs arguments"
      PYTEST_ARGS="$2"
      shift 2
      ;;
    --quick) QUICK=1; shift ;;
    --list) LIST=1; shift ;;
    *) usage_error "unknown argument $1" ;;
  esac
done

# ---- the stages --------------------------------------------------------------------------------------------------
PYTEST_PIECES=()
for dir in "$ROOT"/python_tests/*/; do
  dir="${dir%/}"
  if compgen -G "$dir/test_*.py" >/dev/null || compgen -G "$dir/*/test_*.py" >/dev/null; then
    PYTEST_PIECES+=("${dir##*/}")
  fi
done
PYTEST_PIECES+=(top)
SANITIZER_TOOLS=(memcheck racecheck synccheck)
ALL_STAGES=(prereqs build import ctest)
for piece in "${PYTEST_PIECES[@]}"; do ALL_STAGES+=("pytest:$piece"); done
for tool in "${SANITIZER_TOOLS[@]}"; do ALL_STAGES+=("sanitizers:$tool"); done
ALL_STAGES+=(bench engine)
STAGES_CSV="$(IFS=,; echo "${ALL_STAGES[*]}")"
if [ "$LIST" = 1 ]; then
  printf '%s\n' "${ALL_STAGES[@]}"
  exit 0
fi

declare -A WANTED=()
IFS=',' read -r -a REQUESTED <<<"$ONLY"
for name in ${REQUESTED[@]+"${REQUESTED[@]}"}; do
  case "$name" in
    all) for s in "${ALL_STAGES[@]}"; do WANTED[$s]=1; done ;;
    pytest) for p in "${PYTEST_PIECES[@]}"; do WANTED["pytest:$p"]=1; done ;;
    sanitizers) for t in "${SANITIZER_TOOLS[@]}"; do WANTED["sanitizers:$t"]=1; done ;;
    "") ;;
    *)
      case ",$STAGES_CSV," in
        *",$name,"*) WANTED[$name]=1 ;;
        *) usage_error "unknown stage '$name'; stages: $STAGES_CSV (and all, pytest, sanitizers)" ;;
      esac
      ;;
  esac
done
SELECTED=()
for s in "${ALL_STAGES[@]}"; do
  if [ -n "${WANTED[$s]+x}" ]; then SELECTED+=("$s"); fi
done
[ ${#SELECTED[@]} -gt 0 ] || usage_error "--only selects no stage"

# ---- the environment of every invocation ------------------------------------------------------------------------
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "gpu_check: $PY not found: every stage and the report need Python (set PYTHON=/path/to/python3)" >&2
  exit 1
fi
if [[ "$PY" == */* ]]; then PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"; fi  # steps run from $OUT
BUILD="$OUT/build"
SITE="$OUT/site"  # packages from --wheels land here (never into the system Python)
mkdir -p "$OUT/prereqs" "$OUT/stages"
export PYTHONUNBUFFERED=1
# The build, then what --wheels added (only what the system lacks), then the caller's PYTHONPATH; the system
# site-packages come after all of them, and SITE holds nothing they have.
export PYTHONPATH="$BUILD/pkg:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"  # executables of wheels the system lacked (a cmake wheel where no cmake >= 3.18)
# pytest and every script run from $OUT with PYTHONSAFEPATH (Python >= 3.11) too: the checkout is never on sys.path
export PYTHONSAFEPATH=1
unset ZSSEG_CUDA_EMULATION ZSSEG_NATIVE_MODULE  # this checks the real CUDA build, never the emulated one
NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
export CUDACXX="$NVCC"
JOBS="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 8)}"
CMAKE_ARGS=()
IFS=';' read -r -a EXTRA_DEFINES <<<"${ZSSEG_GPU_CHECK_CMAKE_DEFINES:-}"
for d in ${EXTRA_DEFINES[@]+"${EXTRA_DEFINES[@]}"}; do
  if [ -n "$d" ]; then CMAKE_ARGS+=("-D$d"); fi
done
PYTEST_EXTRA=()
read -r -a PYTEST_EXTRA <<<"$PYTEST_ARGS" || true
export PY ROOT OUT

# Run a program of this checkout's benchmarks/ or checks/ package (python -m PACKAGE NAME ...) from the report
# folder, with the checkout APPENDED to the end of sys.path: the build (on PYTHONPATH) provides zsseg_rt, the
# checkout only the benchmarks/checks packages, and nothing of the checkout can shadow another module.
run_module() {
  (cd "$OUT" && "$PY" -c 'import runpy, sys; sys.path.append(sys.argv[1]); package = sys.argv[2]; \
sys.argv = [package] + sys.argv[3:]; runpy.run_module(package, run_name="__main__", alter_sys=True)' "$ROOT" "$@")
}
export -f run_module

# A step's verdict from what it FOUND, not only from its exit code: the benchmark and the Engine check write a JSON
# report (rows with "pass", or "failed"/"not_checked" targets, and a top-level "pass"); targets_met JSON exits 0
# only when that report exists, is complete and says every target was checked and met; 1 when a row or target
# missed (or no/invalid/incomplete report); 4 when nothing missed but a target was not checked (--quick): a stage
# is never recorded as passed for a target it did not check, even when the program itself exited 0.
targets_met() {  # targets_met JSON
  "$PY" -c 'import json, sys
path = sys.argv[1]
try:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
except FileNotFoundError:
    sys.exit(f"NO REPORT: {path} was not written")
except ValueError:
    sys.exit(f"NO REPORT: {path} is not valid JSON (cut off?)")
missed = [str(r.get("case", r.get("description", "?"))) for r in data.get("rows", []) if r.get("pass") is not True]
missed += [str(what) for what in data.get("failed", [])]
unchecked = [str(what) for what in data.get("not_checked", [])]
for what in missed:
    print(f"MISS: {what}")
for what in unchecked:
    print(f"NOT CHECKED: {what}")
if data.get("complete") is False:
    sys.exit(f"INCOMPLETE: {path} covers only part of its cases")
if missed or (data.get("pass") is not True and not unchecked):
    sys.exit(f"targets missed ({path})")
if unchecked:
    print(f"targets not checked ({path}): not a pass")
    sys.exit(4)
print(f"every target checked and met ({path})")' "$1"
}
export -f targets_met

# ---- prerequisites: check_ITEM sets CHECKED[ITEM] to "" (present) or the lines saying what is missing -----------
declare -A CHECKED=()
CC=""
GENERATOR=""
SAN=""

check_gpu() {
  local miss=""
  CC=""
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    miss="GPU: nvidia-smi not found (no NVIDIA driver here): run this on the GPU machine (the driver ships nvidia-smi)"
  elif ! nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1; then
    miss="GPU: nvidia-smi failed ($(tail -n 1 "$OUT/nvidia-smi.txt")): no usable NVIDIA driver or GPU"
  else
    CC="${ZSSEG_GPU_CHECK_CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null \
      | head -n 1 | tr -d '. \r' || true)}"
    if ! [[ "$CC" =~ ^[0-9]+$ ]]; then
      miss="GPU: nvidia-smi reports no compute capability ('$CC'; a driver older than 510?): set ZSSEG_GPU_CHECK_CUDA_ARCH, e.g. 90 for an H100"
      CC=""
    fi
  fi
  CHECKED[gpu]="$miss"
}

check_nvcc() {
  local miss="" log="$OUT/prereqs/nvcc_probe.log" why host
  local flags=()
  [ -n "${CHECKED[gpu]+x}" ] || check_gpu
  if [ ! -x "$NVCC" ]; then
    miss="nvcc: not on PATH nor at /usr/local/cuda/bin/nvcc: install the CUDA toolkit's compiler (NVIDIA's apt repository: cuda-nvcc-12-x or cuda-toolkit-12-x) or put its bin/ on PATH"
  else
    printf '__global__ void zs_probe(int *p) { *p = 1; }\n' >"$OUT/prereqs/probe.cu"
    if [ -n "${CUDAHOSTCXX:-}" ]; then flags+=(-ccbin "$CUDAHOSTCXX"); fi
    if [ -n "$CC" ]; then flags+=("-arch=sm_$CC"); fi
    if ! "$NVCC" ${flags[@]+"${flags[@]}"} -c "$OUT/prereqs/probe.cu" -o "$OUT/prereqs/probe.o" >"$log" 2>&1; then
      why="$(grep -m 1 -iE 'error|fatal|unsupported' "$log" || tail -n 1 "$log" || true)"
      if grep -qi 'gpu architecture' "$log"; then
        miss="nvcc: $("$NVCC" --version 2>/dev/null | tail -n 1 || true) cannot compile for sm_$CC ($why): install a CUDA toolkit that knows this GPU"
      else
        host="${CUDAHOSTCXX:-its default host compiler, g++ $(g++ -dumpfullversion 2>/dev/null || echo '(none on PATH)')}"
        miss="host compiler: $NVCC rejects $host on a trivial .cu ($why): install a g++ this nvcc supports and set CUDAHOSTCXX=/usr/bin/g++-N (or NVCC_APPEND_FLAGS=-allow-unsupported-compiler, at your own risk); log $log"
      fi
    fi
  fi
  CHECKED[nvcc]="$miss"
}

check_cmake() {
  local miss="" version
  if ! command -v cmake >/dev/null 2>&1; then
    miss="cmake: not found (>= 3.18 needed; scikit-build-core cannot download it offline): apt-get install cmake, or a cmake wheel in --wheels (pip download cmake)"
  else
    version="$(cmake --version 2>/dev/null | head -n 1 | awk '{print $3}' || true)"
    if [ "$(printf '%s\n' 3.18 "${version:-0}" | sort -V | head -n 1)" != "3.18" ]; then
      miss="cmake: $(command -v cmake) is ${version:-of unknown version}, >= 3.18 needed (scikit-build-core cannot download one offline): a newer cmake (apt, Kitware's repository), or a cmake wheel in --wheels (pip download cmake)"
    fi
  fi
  CHECKED[cmake]="$miss"
}

check_generator() {
  if command -v ninja >/dev/null 2>&1; then
    GENERATOR="Ninja"
    CHECKED[generator]=""
  elif command -v make >/dev/null 2>&1; then
    GENERATOR="Unix Makefiles"
    CHECKED[generator]=""
  else
    GENERATOR=""
    CHECKED[generator]="build tool: neither ninja nor make found: apt-get install ninja-build (or make), or a ninja wheel in --wheels"
  fi
}

check_cxx() {
  if command -v "${CXX:-c++}" >/dev/null 2>&1 || { [ -z "${CXX:-}" ] && command -v g++ >/dev/null 2>&1; }; then
    CHECKED[cxx]=""
  else
    CHECKED[cxx]="C++ compiler: ${CXX:-c++/g++} not found: apt-get install g++ (or set CXX)"
  fi
}

check_pyheaders() {
  local include version
  include="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null || true)"
  version="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo 3)"
  if [ -n "$include" ] && [ -f "$include/Python.h" ]; then
    CHECKED[pyheaders]=""
  else
    CHECKED[pyheaders]="Python headers: no Python.h in ${include:-?} for $PY (Python $version; the build compiles against it): apt-get install python$version-dev (or python3-dev)"
  fi
}

check_pip() {
  if "$PY" -m pip --version >/dev/null 2>&1; then
    CHECKED[pip]=""
  else
    CHECKED[pip]="pip: $PY -m pip does not run (the build and --wheels use it): apt-get install python3-pip"
  fi
}

check_gtest() {
  local dir="$OUT/prereqs/gtest_probe" log="$OUT/prereqs/gtest_probe.log"
  [ -n "${CHECKED[cmake]+x}" ] || check_cmake
  [ -n "${CHECKED[generator]+x}" ] || check_generator
  [ -n "${CHECKED[cxx]+x}" ] || check_cxx
  if [ -n "${CHECKED[cmake]}${CHECKED[generator]}${CHECKED[cxx]}" ]; then
    CHECKED[gtest]="GTest: not probed (its probe needs cmake, a build tool and a C++ compiler: see their lines)"
    return 0
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  printf 'cmake_minimum_required(VERSION 3.18)\nproject(zsseg_gtest_probe CXX)\nfind_package(GTest CONFIG REQUIRED)\n' \
    >"$dir/CMakeLists.txt"
  if cmake -S "$dir" -B "$dir/build" -G "$GENERATOR" ${CMAKE_ARGS[@]+"${CMAKE_ARGS[@]}"} >"$log" 2>&1; then
    CHECKED[gtest]=""
  elif grep -q 'GTest' "$log"; then
    CHECKED[gtest]="GTest: GoogleTest's CMake package (GTestConfig.cmake) not found (the C++ tests use find_package(GTest CONFIG)): apt-get install libgtest-dev, or build GoogleTest and name its prefix with ZSSEG_GPU_CHECK_CMAKE_DEFINES=CMAKE_PREFIX_PATH=/its/prefix; log $log"
  else
    CHECKED[gtest]="GTest: the CMake probe failed before reaching GTest (a broken compiler?): see $log"
  fi
}

check_sanitizer() {
  SAN="$(command -v compute-sanitizer || echo "$(dirname "$NVCC")/compute-sanitizer")"
  if [ -x "$SAN" ]; then
    CHECKED[sanitizer]=""
  else
    CHECKED[sanitizer]="compute-sanitizer: not on PATH nor next to $NVCC: it ships with the CUDA toolkit (NVIDIA's apt repository: cuda-sanitizer-12-x)"
  fi
}

check_pydeps() {  # check_pydeps GROUP: the Python distributions of GROUP (build, runtime, all), transitively
  local log="$OUT/prereqs/python_$1.log" lines
  run_module checks gpu_check_support python-deps --group "$1" >"$log" 2>&1 || true
  lines="$(grep '^MISSING ' "$log" | sed 's/^MISSING //' || true)"
  if [ -z "$lines" ] && ! grep -q '^python (' "$log"; then
    lines="Python: the dependency check itself failed: see $log"
  fi
  CHECKED[pydeps_$1]="$lines"
}
check_pydeps_build() { check_pydeps build; }
check_pydeps_runtime() { check_pydeps runtime; }
check_pydeps_all() { check_pydeps all; }

check_build() {
  if [ -f "$BUILD/pkg/.gpu_check_build" ]; then
    CHECKED[build]=""
  else
    CHECKED[build]="the build: no successful build in $BUILD/pkg: run the build stage first (bash tools/gpu_check.sh --only build, same --out)"
  fi
}

check_imported() {
  local log="$OUT/prereqs/import_probe.log"
  [ -n "${CHECKED[build]+x}" ] || check_build
  if [ -n "${CHECKED[build]}" ]; then
    CHECKED[imported]=""  # the build line says it
  elif run_module checks gpu_check_support import-check --build "$BUILD/pkg" >"$log" 2>&1; then
    CHECKED[imported]=""
  else
    CHECKED[imported]="the import of the build: $(tail -n 1 "$log")"
  fi
}

need() {  # need ITEM...: each prerequisite checked once per invocation; the missing ones go into the stage's entry
  local item missing=0
  for item in "$@"; do
    [ -n "${CHECKED[$item]+x}" ] || "check_$item"
    if [ -n "${CHECKED[$item]}" ]; then
      printf '%s\n' "${CHECKED[$item]}" >>"$STAGE_MISSING"
      missing=1
    fi
  done
  return "$missing"
}

# ---- steps and stages ----------------------------------------------------------------------------------------------
step() {  # step NAME LOG COMMAND...: run COMMAND from $OUT within what is left of the stage's time bound
  local name="$1" log="$2" t0 left rc=0
  shift 2
  t0="$(date +%s)"
  left=$((STAGE_DEADLINE - t0))
  if [ "$left" -le 0 ]; then
    echo "not started: the stage's time bound (${STAGE_TIMEOUT}s) was used up" >"$log"
    printf '%s\t124\t0\t%s\n' "$name" "${log#"$OUT"/}" >>"$STAGE_STEPS"
    return 124
  fi
  echo "-- $name (at most ${left}s; log ${log#"$OUT"/})"
  if declare -F "$1" >/dev/null; then  # a function of this script (run_module): timeout runs programs only
    set -- bash -c '"$@"' bash "$@"
  fi
  (cd "$OUT" && exec timeout --kill-after=15 "$left" "$@") >"$log" 2>&1 || rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" "${log#"$OUT"/}" >>"$STAGE_STEPS"
  tail -n 3 "$log" | sed 's/^/   /' || true
  return "$rc"
}

PYTEST_COMMON=(-q -p no:cacheprovider --rootdir "$ROOT" -c "$ROOT/pyproject.toml")

stage_prereqs() {
  local item
  for item in gpu nvcc cmake generator cxx pyheaders pip gtest sanitizer pydeps_build pydeps_all; do
    if need "$item"; then  # one "step" per prerequisite: 0 present, 3 missing (its lines: the stage's entry)
      printf '%s\t0\t0\tprereqs.log\n' "$item" >>"$STAGE_STEPS"
      echo "ok: $item" >>"$OUT/prereqs.log"
    else
      printf '%s\t3\t0\tprereqs.log\n' "$item" >>"$STAGE_STEPS"
      printf 'MISSING: %s\n' "${CHECKED[$item]}" >>"$OUT/prereqs.log"
    fi
  done
  grep -h '^note: ' "$OUT/prereqs/python_all.log" >>"$STAGE_NOTES" 2>/dev/null || true
  if [ -n "$WHEELS" ]; then grep -h '^wheels: ' "$OUT/wheels.log" >>"$STAGE_NOTES" 2>/dev/null || true; fi
}

stage_build() {
  rm -rf "$BUILD/pkg"
  unset 'CHECKED[build]' 'CHECKED[imported]'
  need gpu nvcc cmake generator cxx pyheaders pip pydeps_build || return 0
  local defines=(-C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$CC")
  local d
  for d in ${EXTRA_DEFINES[@]+"${EXTRA_DEFINES[@]}"}; do
    if [ -n "$d" ]; then defines+=(-C "cmake.define.$d"); fi
  done
  step build "$OUT/build.log" env CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" "$PY" -m pip install -v --no-index \
    --no-build-isolation --no-deps --target "$BUILD/pkg" "${defines[@]}" -C "build-dir=$BUILD/py" "$ROOT" || return 0
  touch "$BUILD/pkg/.gpu_check_build"
  unset 'CHECKED[build]' 'CHECKED[imported]'
}

stage_import() {
  need build pydeps_runtime || return 0
  step import "$OUT/import.log" run_module checks gpu_check_support import-check --build "$BUILD/pkg" --require-cuda
}

stage_ctest() {
  need gpu nvcc cmake generator cxx gtest || return 0
  local cpp="$BUILD/cpp"
  if [ -f "$cpp/CMakeCache.txt" ] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=$GENERATOR\$" "$cpp/CMakeCache.txt"; then
    rm -rf "$cpp"  # configured by an earlier run with another build tool
  fi
  step cmake_tests "$OUT/ctest_build.log" bash -c 'dir="$1" jobs="$2"; shift 2; cmake -B "$dir" "$@" && \
    cmake --build "$dir" -j "$jobs"' _ "$cpp" "$JOBS" -S "$ROOT" -G "$GENERATOR" -DZS_BUILD_TESTS=ON -DZS_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CUDA_ARCHITECTURES=$CC" "-DCMAKE_CUDA_COMPILER=$NVCC" ${CMAKE_ARGS[@]+"${CMAKE_ARGS[@]}"} || return 0
  step ctest "$OUT/ctest.log" bash -c 'cd "$1" && ctest --output-on-failure' _ "$cpp"
}

stage_pytest() {  # stage_pytest PIECE
  local piece="$1" targets=()
  need build imported pydeps_all || return 0
  if [ "$piece" = top ]; then
    targets=("$ROOT"/python_tests/test_*.py)
  else
    targets=("$ROOT/python_tests/$piece")
  fi
  # Everything, not only the CUDA tests: a GPU changes which paths run
  step "pytest:$piece" "$OUT/pytest_$piece.log" "$PY" -m pytest "${targets[@]}" "${PYTEST_COMMON[@]}" -rs \
    "--junitxml=$OUT/pytest_$piece.xml" ${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"}
}

stage_sanitizers() {  # stage_sanitizers TOOL: the C++ CUDA tests, then the Python CUDA tests, within the bound
  local tool="$1" bin bins=()
  need sanitizer || return 0
  for bin in "$BUILD"/cpp/*_tests "$BUILD"/cpp/*/*_tests; do
    if [ -f "$bin" ] && [ -x "$bin" ]; then bins+=("$bin"); fi
  done
  if [ ${#bins[@]} -eq 0 ]; then
    echo "C++ CUDA tests: no test binaries in $BUILD/cpp: run the ctest stage first (bash tools/gpu_check.sh --only ctest, same --out)" >>"$STAGE_MISSING"
  fi
  for bin in ${bins[@]+"${bins[@]}"}; do
    step "${tool}_$(basename "$bin")" "$OUT/sanitizer_${tool}_$(basename "$bin").log" \
      "$SAN" --tool "$tool" --error-exitcode 99 "$bin" --gtest_filter='*Cuda*' || true
  done
  if [ "$QUICK" = 0 ] && need build imported pydeps_all; then
    step "${tool}_pytest" "$OUT/sanitizer_${tool}_pytest.log" "$SAN" --tool "$tool" --error-exitcode 99 \
      --target-processes all "$PY" -m pytest "$ROOT/python_tests" -m cuda "${PYTEST_COMMON[@]}" -o addopts='' \
      ${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"} || true
  fi
}

stage_bench() {
  need gpu build imported pydeps_all || return 0
  rm -f "$OUT/bench_cuda.json"
  # pass/fail against torch eager; torch.compile beside it while 60 % of the stage's time is left for it
  step bench_cuda "$OUT/bench_cuda.log" run_module benchmarks cuda --json "$OUT/bench_cuda.json" --check --compile \
    --compile-budget "$((STAGE_TIMEOUT * 6 / 10))" || true
  # pass/fail from the rows it wrote, not only its exit code (a MISS row fails the stage even after exit 0)
  step bench_targets "$OUT/bench_targets.log" targets_met "$OUT/bench_cuda.json"
}

stage_engine() {
  need gpu build imported pydeps_all || return 0
  rm -f "$OUT/engine_check.json"
  local args=(--out "$OUT")
  if [ "$QUICK" = 1 ]; then args+=(--skip-full); fi
  step engine "$OUT/engine.log" run_module checks gpu_engine "${args[@]}" || true
  # the targets it checked and met: --quick leaves the post-processing target unchecked (not passed: exit 4)
  step engine_targets "$OUT/engine_targets.log" targets_met "$OUT/engine_check.json"
}

FAILED=0
run_stage() {  # run_stage STAGE: run it, then add (or replace) its entry in report.json / report.md
  local stage="$1" t0 file="${1//:/_}"
  STAGE_STEPS="$OUT/stages/$file.steps"
  STAGE_MISSING="$OUT/stages/$file.missing"
  STAGE_NOTES="$OUT/stages/$file.notes"
  : >"$STAGE_STEPS"
  : >"$STAGE_MISSING"
  : >"$STAGE_NOTES"
  if [ "$stage" = prereqs ]; then : >"$OUT/prereqs.log"; fi
  t0="$(date +%s)"
  STAGE_DEADLINE=$((t0 + STAGE_TIMEOUT))
  echo "== $stage"
  case "$stage" in
    prereqs) stage_prereqs || true ;;
    build) stage_build || true ;;
    import) stage_import || true ;;
    ctest) stage_ctest || true ;;
    pytest:*) stage_pytest "${stage#pytest:}" || true ;;
    sanitizers:*) stage_sanitizers "${stage#sanitizers:}" || true ;;
    bench) stage_bench || true ;;
    engine) stage_engine || true ;;
  esac
  if ! run_module checks gpu_check_support record --out "$OUT" --stages "$STAGES_CSV" --stage "$stage" \
    --seconds "$(($(date +%s) - t0))" --steps "$STAGE_STEPS" --missing "$STAGE_MISSING" --notes "$STAGE_NOTES" \
    --command "$COMMAND"; then
    FAILED=1
  fi
}

# ---- --wheels: only what this machine lacks -------------------------------------------------------------------------
if [ -n "$WHEELS" ]; then
  echo "== wheels: what this machine lacks, from $WHEELS into ${SITE#"$OUT"/}/"
  ALSO=()  # build tools the system lacks, where DIR has their wheels
  check_cmake
  if [ -n "${CHECKED[cmake]}" ]; then ALSO+=(--also "cmake>=3.18"); fi
  check_generator
  if [ -n "${CHECKED[generator]}" ]; then ALSO+=(--also ninja); fi
  case " $PYTEST_ARGS " in *" -n "* | *" -n"[0-9]* | *" --numprocesses"*) ALSO+=(--also pytest-xdist) ;; esac
  unset 'CHECKED[cmake]' 'CHECKED[generator]'
  if run_module checks gpu_check_support python-deps --group all --wheels "$WHEELS" --site "$SITE" \
    ${ALSO[@]+"${ALSO[@]}"} >"$OUT/wheels.log" 2>&1; then
    grep '^wheels: ' "$OUT/wheels.log" | sed 's/^/   /' || true
  else
    grep -E '^(wheels|MISSING): ' "$OUT/wheels.log" | sed 's/^/   /' || true
    echo "   still missing after --wheels (see wheels.log); the stages that need it say so"
  fi
fi

for stage in "${SELECTED[@]}"; do
  run_stage "$stage"
done
echo
if [ -f "$OUT/report.md" ]; then cat "$OUT/report.md"; else echo "gpu_check: no report was written (see above)"; fi
exit "$FAILED"
