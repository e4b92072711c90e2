#!/usr/bin/env bash
# The whole test suite from scratch: environment + build, static checks (tools/lint.sh), C++ tests
# (GoogleTest/ctest; also cross-compiled for aarch64 and run under qemu), the CUDA kernels on the emulated runtime under
# ASan (ctest) alongside the Python CUDA tests on the emulated runtime under ASan (tools/build_emulated.sh), _C with a
# static C++ runtime (tools/static_runtime_check.sh), Python tests (pytest, on every core with pytest-xdist) alongside
# the training and model tests on a fake CUDA device (pytest --fake-cuda), and the runtime tests once more in a
# torch-free venv holding only the runtime install (tools/runtime_only_tests.sh).
# GPU- and TensorRT-only tests skip with a reason when those are absent. Exits non-zero on any failure; ends with a
# table of the stages and their times (wall clock, and the CPU time of their processes), printed after a failure too,
# and whether the compiler cache was cold. Each pytest session ends with its tests, files and folders that took the
# most CPU time (--cpu-durations: python_tests/cpu_times.py; docs/development.md "Where CI's time goes").
# Two suites that run "alongside" share a stage: both start together, the second's output follows the first's, and
# the stage fails if either fails (the cores one suite leaves idle at its end, the other uses).
# Arguments are passed to the main pytest run.
#   ZSSEG_TEST_WORKERS  pytest-xdist workers of the pytest stages (default: the cores there are; 0 = no xdist)
#   CCACHE_DIR          compiler cache of the builds (default ~/.cache/zsseg_rt/ccache, at most 2 GB: a fresh clone
#                       reuses the objects of earlier runs on this machine, and one run's builds share theirs, e.g. the
#                       kernels of the pip build and of the C++ tests; ZSSEG_CCACHE=0 compiles everything)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv}"
cd "$ROOT"

# ---- stages: each one timed; the table is printed on exit, whatever the exit ----
STAGE_ROWS=()
TIMES_FILE="$(mktemp)"
SUITES_FILE="$(mktemp)"  # the rows of the suites that ran alongside a stage's own (written in the stage's subshell)
cpu_now() {  # CPU_NOW: user+sys seconds of the finished children of this shell (the builtin times must run in this
  # shell: in a $(...) subshell it reports the subshell's own, empty, counters)
  times >"$TIMES_FILE"
  CPU_NOW=$(awk 'END { n = split($0, f, /[ ms]+/); s = 0; for (i = 1; i + 1 <= n; i += 2) s += f[i] * 60 + f[i + 1]
    printf "%.0f", s }' "$TIMES_FILE")
}
stage() {  # stage NAME COMMAND...: runs COMMAND (errexit on inside it) and records its times; a failure ends the run
  local name="$1" t0=$SECONDS c0 rc
  shift
  cpu_now
  c0=$CPU_NOW
  echo "== $name =="
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  cpu_now
  local twin_cpu=0  # the image twin (a background job of this shell, its own row) is counted by `times` once bash
  # reaps it, in whichever stage was running then: its CPU is taken out of that stage's (likely most of the
  # aarch64 stage's 1226 CPU-s in the CI run of 719e800, whose two scripts take 75 + 344 CPU-s here)
  if [ -z "${TWIN_COUNTED:-}" ] && [ -n "${TWIN_LOG:-}" ] && [ -f "$TWIN_LOG.end" ] && ! kill -0 "${TWIN_PID:-0}" 2>/dev/null; then
    read -r _ _ twin_cpu <"$TWIN_LOG.end"
    TWIN_COUNTED=$twin_cpu
    case "$name" in "the image twin"*) twin_cpu=$((-twin_cpu)) ;; esac  # (reaped by the wait before its own row)
  elif [ -n "${TWIN_COUNTED:-}" ]; then
    case "$name" in "the image twin"*) twin_cpu=$((-TWIN_COUNTED)) ;; esac  # its own row: what was taken out above
  fi
  STAGE_ROWS+=("$name|$((SECONDS - t0))|$((CPU_NOW - c0 - ${twin_cpu:-0}))|$rc")
  local suite wall cpu status
  while IFS='|' read -r suite wall cpu status; do  # its suites that ran alongside: their own wall and CPU time (a
    # part of the stage's CPU s above, which counts every process of the stage)
    STAGE_ROWS+=("  alongside: $suite|$wall|$cpu|$status")
  done <"$SUITES_FILE"
  : >"$SUITES_FILE"
  [ "$rc" = 0 ] || exit "$rc"
}
stage_table() {  # stage_table [STATUS]: the table, then exit with STATUS (default: the last command's)
  local rc=${1:-$?} row name wall cpu status
  cpu_now
  rm -f "$TIMES_FILE" "$SUITES_FILE"
  echo
  echo "== stages (wall s: what the run took; CPU s: user+sys of its processes, steadier on a shared machine) =="
  printf '%-48s %7s %7s  %s\n' stage "wall s" "CPU s" result
  for row in "${STAGE_ROWS[@]}"; do
    IFS='|' read -r name wall cpu status <<<"$row"
    printf '%-48s %7s %7s  %s\n' "$name" "$wall" "$cpu" "$([ "$status" = 0 ] && echo ok || echo "FAILED ($status)")"
  done
  printf '%-48s %7d %7d  %s\n' "total" "$SECONDS" "$CPU_NOW" "$([ "$rc" = 0 ] && echo ok || echo "FAILED ($rc)")"
  local hits=""
  if [ "${OWN_STATSLOG:-0}" = 1 ] && [ -s "$CCACHE_STATSLOG" ]; then  # the cache's own counters span every run
    hits="; hits $(ccache --show-log-stats 2>/dev/null | awk '/^ *Hits:/ { $1 = ""; print; exit }' | sed 's/^ *//' || true) of this run's compilations"
  fi
  echo "compiler cache ($CCACHE_DIR): ${CCACHE_AT_START:-not looked at}$hits"
  [ "${OWN_STATSLOG:-0}" = 1 ] && rm -f "$CCACHE_STATSLOG"
  exit "$rc"
}
trap stage_table EXIT

# ---- the compiler cache (ccache, installed by setup_env.sh): it only speeds up (an object is reused only when the
# compiler, its flags and the preprocessed sources with every header are the same); CMake takes the launchers from
# the environment at configure time. The cache is the user's, outside the clone, so a fresh clone reuses what an
# earlier run on this machine compiled: CCACHE_BASEDIR rewrites the clone's absolute paths to relative ones before
# hashing and CCACHE_NOHASHDIR leaves the build directory out of the hash (the one cost: the debug line tables of a
# reused object name the directory of the clone that compiled it). ----
export ZSSEG_CCACHE="${ZSSEG_CCACHE:-1}" ZSSEG_NEED_TEST_TOOLS=1
export CCACHE_DIR="${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/zsseg_rt/ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}" CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-2G}"
# cold or warm when the run started (the table's last line): the objects the cache held, before setup_env.sh even
# installs ccache (a fresh machine's cache is cold); a warm cache's hits can still be few (another commit's objects)
CCACHE_AT_START="$( (find "$CCACHE_DIR" -type f -name '*R' 2>/dev/null || true) | wc -l)"  # no cache folder yet:
# find fails, and under pipefail + errexit that ended the run in its first second (a cold machine's first CI run)
if [ "$ZSSEG_CCACHE" != 1 ]; then CCACHE_AT_START="off (ZSSEG_CCACHE=$ZSSEG_CCACHE): every build compiled in full"
elif [ "$CCACHE_AT_START" = 0 ]; then CCACHE_AT_START="COLD at the start (empty)"
else CCACHE_AT_START="warm at the start ($CCACHE_AT_START objects)"; fi
OWN_STATSLOG=0  # the hit rate of this run's compilations (the table's last line), unless the caller logs them
[ -n "${CCACHE_STATSLOG:-}" ] || { CCACHE_STATSLOG="$(mktemp)"; OWN_STATSLOG=1; }
export CCACHE_STATSLOG
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDACXX=/usr/local/cuda/bin/nvcc; fi
WORKERS="${ZSSEG_TEST_WORKERS:-$(nproc)}"
XDIST=(); [ "$WORKERS" -gt 1 ] && XDIST=(-n "$WORKERS" --dist loadgroup)
# One intra-op thread per pytest process when xdist gives each core a worker: two workers with two OpenMP threads
# each on two cores spin at every barrier against each other (python_tests/models/training_free: 184 s -> 123 s
# wall, 353 -> 236 s CPU, OMP_NUM_THREADS 2 -> 1 at -n 2 on 2 cores). The multi-threaded native paths keep their
# checks: ctest runs with OMP_NUM_THREADS above, and the tests that need threads set them (test_segment.py's 2).
TEST_THREADS=$(( WORKERS > 1 ? ($(nproc) / WORKERS > 0 ? $(nproc) / WORKERS : 1) : OMP_NUM_THREADS ))

ALONGSIDE=()
alongside() {  # alongside NAME COMMAND...: COMMAND in the background, its output kept for joined, its own wall time,
  # CPU time and status written by it when it ends (the CPU time: `times` in the background subshell, whose only
  # children are the suite's processes)
  local name="$1" log
  shift
  log="$(mktemp)"
  (
    t0=$SECONDS
    set +e
    "$@" >"$log" 2>&1
    rc=$?
    times >"$log.times"
    cpu=$(awk 'END { n = split($0, f, /[ ms]+/); s = 0; for (i = 1; i + 1 <= n; i += 2) s += f[i] * 60 + f[i + 1]
      printf "%.0f", s }' "$log.times")
    echo "$((SECONDS - t0)) $rc $cpu" >"$log.end"
    exit "$rc"
  ) &
  ALONGSIDE+=("$!|$name|$log")
}
joined() {  # joined STATUS-OF-THE-FOREGROUND-SUITE: waits for the background suites, shows their output and records
  # their wall times; returns non-zero when any suite failed
  local fg="$1" failed=0 entry pid name log rc wall cpu
  for entry in "${ALONGSIDE[@]}"; do
    IFS='|' read -r pid name log <<<"$entry"
    rc=0
    wait "$pid" || rc=$?
    wall="?" cpu="?"
    [ -f "$log.end" ] && read -r wall _ cpu <"$log.end"
    echo "$name|$wall|${cpu:-?}|$rc" >>"$SUITES_FILE"
    echo "== $name (ran alongside; exit $rc) =="
    cat "$log"
    rm -f "$log" "$log.end" "$log.times"
    [ "$rc" = 0 ] || failed=1
  done
  ALONGSIDE=()
  [ "$fg" = 0 ] && [ "$failed" = 0 ]
}

cmake_build() {  # cmake_build DIR CONFIGURE-ARGS...: configure + build, the log shown only on failure
  local dir="$1" log
  shift
  log="$(mktemp)"
  "$VENV/bin/cmake" -S . -B "$dir" -G Ninja -DCMAKE_MAKE_PROGRAM="$VENV/bin/ninja" "$@" >"$log" 2>&1 || { cat "$log"; exit 1; }
  "$VENV/bin/cmake" --build "$dir" -j"$(nproc)" >>"$log" 2>&1 || { tail -50 "$log"; exit 1; }
  rm -f "$log"
}

cpp_tests() {  # build/tests: as deep as pip's build/<wheel tag>, so the relative paths ccache hashes (CCACHE_BASEDIR)
  # are the same and the kernels the pip build compiled are reused
  cmake_build build/tests -DZS_BUILD_TESTS=ON -DZS_BUILD_PYTHON=OFF \
    ${CMAKE_CUDA_ARCHITECTURES:+-DCMAKE_CUDA_ARCHITECTURES=$CMAKE_CUDA_ARCHITECTURES}
  bash "$ROOT/tools/quiet_ctest.sh" "$VENV/bin/ctest" --test-dir build/tests --output-on-failure -j"$(nproc)"
}

# The CUDA kernels on the host (csrc/emu) and the binding layer (DeviceArray, DLPack/CAI parsing, out=, streams,
# events, exports, capture, the device pipeline) on emulated device memory, both under ASan + UBSan at -O1 with line
# tables (-g1: symbolised reports; RelWithDebInfo's -O2 -g took 190 s against 111 s to build here, and the tests ran
# no faster; the GoogleTest files and the binding layer, glue that runs little, at -O0: a third less compile time,
# every check the same). One build (tools/build_emulated.sh --tests): the kernels and the CPU code they are checked
# against are compiled once, into an object library that the module and the ctest suite both link, and the glue as
# unity sources of 7 files (two builds, one file per unit: 518 CPU-s with ccache off; one: 301; with unity: 155,
# 2-core EPYC), then the kernels' ctest runs alongside the Python tests. For the
# Python tests ASan's runtime (and libstdc++, for its __cxa_throw interceptor) must be loaded first; detect_leaks=0 there because
# CPython's own allocations at exit are not leaks of ours (every other check stays on).
emulation() {
  ZSSEG_EMU_BUILD="$ROOT/build-emu-asan" ZSSEG_BUILD_JOBS="$(nproc)" flock "$ZSSEG_BUILD_LOCK" \
    bash "$ROOT/tools/build_emulated.sh" --tests
  local rc=0
  alongside "CUDA kernels on the host (csrc/emu, ctest)" env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    bash "$ROOT/tools/quiet_ctest.sh" "$VENV/bin/ctest" --test-dir build-emu-asan --output-on-failure -j"$(nproc)"
  # only the files that hold CUDA tests are collected (every one says pytest.mark.cuda; the conftests add no such
  # mark; python_tests/test_gpu_check.py checks it): collecting the whole tree costs each process ~25 CPU-s, more
  # under ASan, for a tenth of its files
  local cuda_files
  mapfile -t cuda_files < <(grep -rlE 'mark\.cuda' python_tests --include='test_*.py' | sort)
  ZSSEG_CUDA_EMULATION=1 LD_PRELOAD="$(bash "$ROOT/tools/build_emulated.sh" --preload)" ASAN_OPTIONS=detect_leaks=0 \
    UBSAN_OPTIONS=print_stacktrace=1 OMP_NUM_THREADS="$TEST_THREADS" \
    "$VENV/bin/python" -m pytest "${cuda_files[@]}" -m cuda -q -p no:cacheprovider --cpu-durations=10 "${XDIST[@]}" || rc=$?
  joined "$rc"
}

# The training and model tests run once, on a fake CUDA device (python_tests/fake_cuda.py: torch.cuda.is_available()
# is True there, so "CUDA when available" picks it, and a CPU tensor mixed with one on "cuda" raises as on a GPU),
# alongside the rest of the suite: they are not run twice, the guard only moves them (its cost: the wrappers'
# dispatch). The runtime-only install's tests (its venv was made in the set-up stage) run alongside them too.
python_tests() {
  # qemu-user-static (installed for the aarch64 tests) also runs ONNX Runtime with AVX2 kernels: the numeric
  # checks' AVX2 test (python_tests/export/test_numeric_bounds.py) fails here instead of skipping when it is missing.
  if [ "$(uname -m)" = x86_64 ]; then export ZSSEG_REQUIRE_QEMU_X86=1; fi
  # the OpenVINO backend's tests fail instead of skipping: requirements.txt (setup_env.sh) installs OpenVINO
  export ZSSEG_REQUIRE_OPENVINO=1
  # the web page's headless-browser test fails instead of skipping where setup_env.sh installed Chromium (apt machines)
  if [ "${ZSSEG_NEED_BROWSER:-1}" = 1 ] && command -v apt-get >/dev/null 2>&1; then export ZSSEG_REQUIRE_BROWSER=1; fi
  export OMP_NUM_THREADS="$TEST_THREADS"
  local rc=0
  alongside "training, model and evaluation tests on a fake CUDA device" "$VENV/bin/python" -m pytest \
    python_tests/train python_tests/models python_tests/eval -q -p no:cacheprovider --cpu-durations=10 "${XDIST[@]}" \
    --fake-cuda
  alongside "runtime-only install: its tests" bash "$ROOT/tools/runtime_only_tests.sh" --prepared "${XDIST[@]}" \
    --cpu-durations=10
  "$VENV/bin/python" -m pytest python_tests -q -p no:cacheprovider --cpu-durations=30 "${XDIST[@]}" \
    --ignore=python_tests/train --ignore=python_tests/models --ignore=python_tests/eval "$@" || rc=$?
  joined "$rc"
}

# The runtime-only venv (tools/runtime_only_tests.sh --prepare: a clean venv, the runtime install, the package built
# with CUDA off) needs nothing of the development venv: it is made alongside it, its tests run in the pytest stage.
# The tiny test bundle (python_tests/support.py export_tiny_bundle: the golden tiny ZegCLIP model, its native
# checkpoint beside it) is exported once, with the development venv, at the end of the set-up, and handed to every
# suite through $ZSSEG_TEST_TINY_BUNDLE: the pytest sessions' tiny_bundle fixture copies it (python_tests/conftest.py),
# tools/runtime_only_tests.sh, tools/image_twin.sh and tools/cross_python_aarch64.sh take it instead of exporting
# their own: one export instead of six (the main, fake-CUDA and emulation sessions', the three scripts'; a script's
# export is a process of 11-14 CPU-s; a pytest process that took one test of the bundle: 13.9 CPU-s exporting, 1.6
# copying, and on the emulated runtime under ASan 21.6 against 6.7; 2-core EPYC).
TEST_BUNDLE_DIR="$ROOT/build/ci-tiny-bundle"
export_test_bundle() {
  rm -rf "$TEST_BUNDLE_DIR"
  PYTHONPATH="$ROOT:$ROOT/python_tests" "$VENV/bin/python" -c \
    "import sys; from support import export_tiny_bundle; export_tiny_bundle(sys.argv[1])" "$TEST_BUNDLE_DIR" >/dev/null
}
set_up() {
  local rc=0
  alongside "runtime-only install (no torch, NumPy 1.26): venv + build" bash "$ROOT/tools/runtime_only_tests.sh" --prepare
  bash "$ROOT/tools/setup_env.sh" || rc=$?
  [ "$rc" != 0 ] || export_test_bundle || rc=$?  # beside the runtime-only build, which may still be running
  joined "$rc"
}

# Disk first: a run from a fresh clone peaked at 14 GB more in use (measured with df during a CI=true run: the two
# venvs ~7.5 GB, builds, test bundles, pytest's temporary files); one that ran out failed in pip after 100 s. With
# the venv already there it needs about half. ZSSEG_TEST_DISK_GB sets the bound (0: no check).
disk_check() {
  local need="${ZSSEG_TEST_DISK_GB:-$([ -x "$VENV/bin/python" ] && echo 8 || echo 15)}" dir free
  for dir in "$ROOT" "${TMPDIR:-/tmp}"; do
    free=$(df -Pk "$dir" | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
    if [ "$free" -lt "$need" ]; then
      echo "tools/run_tests.sh: error: the run needs about $need GB free on the disk of $dir, which has $free GB: free some space (or set ZSSEG_TEST_DISK_GB)" >&2
      return 1
    fi
  done
}
disk_check
stage "set-up (venv, requirements, build)" set_up
export ZSSEG_TEST_TINY_BUNDLE="$TEST_BUNDLE_DIR/bundle"  # (the stage ran in a subshell: exported here)
if [ "$ZSSEG_CCACHE" = 1 ] && command -v ccache >/dev/null 2>&1; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_CUDA_COMPILER_LAUNCHER=ccache
fi
# The image twin (tools/image_twin.sh: the acceptance run's pytest stages and the engine stage's programs in the GPU
# image's versions) runs beside every stage from here on, joined after the last: most of its time is its own set-up
# (a cp312 wheel, the artefacts: 630 s wall / 342 CPU-s in a fresh clone, cold), which beside the static checks alone
# (about 30 s) held the run up for ten minutes; beside all of them it costs only its CPU time. Its output, its own wall
# and CPU time and its status come last. A run that ends early stops it (no process outlives the run).
TWIN_LOG="$(mktemp)"
TWIN_PID=""
# The twin's builds and the emulation stage's take turns (image_twin.sh's ZSSEG_BUILD_LOCK): its emulated cp312 build
# compiles the same kernels and CPU code as build-emu-asan (same flags, same depth: one object each in the compiler
# cache), but with a cold cache the two ran at the same time and both compiled them (ccache reuses an object only once
# it is written: 136 CPU-s of the 224 of build-emu-asan, measured with the cache off); in turn, the second reuses them.
# The one that waits costs no CPU time: the one that holds the lock builds on every core meanwhile.
mkdir -p "$ROOT/build"
export ZSSEG_BUILD_LOCK="${ZSSEG_BUILD_LOCK:-$ROOT/build/ci-builds.lock}"
start_twin() {
  (
    t0=$SECONDS
    set +e
    bash "$ROOT/tools/image_twin.sh" >"$TWIN_LOG" 2>&1
    rc=$?
    times >"$TWIN_LOG.times"
    cpu=$(awk 'END { n = split($0, f, /[ ms]+/); s = 0; for (i = 1; i + 1 <= n; i += 2) s += f[i] * 60 + f[i + 1]
      printf "%.0f", s }' "$TWIN_LOG.times")
    echo "$((SECONDS - t0)) $rc $cpu" >"$TWIN_LOG.end"
  ) &
  TWIN_PID=$!
}
kill_tree() {  # kill_tree PID: the process and its descendants, children first
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
stop_twin() {  # on an early end: the twin is stopped, its files removed
  [ -n "$TWIN_PID" ] && kill -0 "$TWIN_PID" 2>/dev/null && kill_tree "$TWIN_PID"
  rm -f "$TWIN_LOG" "$TWIN_LOG.end" "$TWIN_LOG.times"
}
report_twin() {  # the twin's output; fails with its status
  local wall rc cpu
  read -r wall rc cpu <"$TWIN_LOG.end"
  cat "$TWIN_LOG"
  echo "  the image twin: its own wall ${wall} s, CPU ${cpu} s, exit $rc"
  return "$rc"
}
# the run's status handed on (a subshell such as (exit N) inside an EXIT trap runs the trap again), the trap cleared
trap 'status=$?; trap - EXIT; stop_twin || true; stage_table "$status"' EXIT
start_twin
stage "static checks (ruff, mypy, clang-format)" bash "$ROOT/tools/lint.sh"
stage "C++ tests (GoogleTest via ctest)" cpp_tests
stage "CUDA emulation, ASan: csrc/emu kernels + Python" emulation
stage "_C with a static C++ runtime" bash "$ROOT/tools/static_runtime_check.sh"
aarch64() {  # the C++ tests cross-compiled for aarch64, and beside them the Python package on aarch64 with JetPack's
  # layout (tools/cross_python_aarch64.sh --jetson: its wheel, venv and checks under qemu): each mostly one process
  local rc=0
  alongside "the Python package on aarch64, JetPack's layout (cross, qemu)" bash "$ROOT/tools/cross_python_aarch64.sh" --jetson
  bash "$ROOT/tools/cross_test_aarch64.sh" || rc=$?
  joined "$rc"
}
stage "C++ tests and the Python package on aarch64 (cross, qemu)" aarch64
stage "Python tests (pytest)" python_tests "$@"
wait "$TWIN_PID" || true  # here, in the shell that started it; its time is its own row's
stage "the image twin (tools/image_twin.sh, beside every stage)" report_twin
