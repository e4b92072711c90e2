#!/usr/bin/env bash
# The whole test suite from scratch: environment + build, static checks (tools/lint.sh), C++ tests
# (GoogleTest/ctest; the CUDA kernels on the emulated runtime under ASan; also cross-compiled for aarch64 and run
# under qemu), the Python CUDA tests on the emulated CUDA runtime under ASan (tools/build_emulated.sh), _C with a
# static C++ runtime (tools/static_runtime_check.sh), Python tests (pytest, on every core with pytest-xdist; the
# training and model tests on a fake CUDA device, pytest --fake-cuda), and the runtime tests once more in a torch-free
# venv holding only the runtime install (tools/runtime_only_tests.sh).
# GPU- and TensorRT-only tests skip with a reason when those are absent. Exits non-zero on any failure; ends with a
# table of the stages and their times (wall clock, and the CPU time of their processes), printed after a failure too.
# Arguments are passed to the main pytest run.
#   ZSSEG_TEST_WORKERS  pytest-xdist workers of the pytest stages (default: the cores there are; 0 = no xdist)
#   CCACHE_DIR          compiler cache of the builds (default build/ccache: empty in a fresh clone, so it only shares
#                       objects between the builds of one run, e.g. the kernels of the pip build and of the C++ tests)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv}"
cd "$ROOT"

# ---- stages: each one timed; the table is printed on exit, whatever the exit ----
STAGE_ROWS=()
TIMES_FILE="$(mktemp)"
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
  STAGE_ROWS+=("$name|$((SECONDS - t0))|$((CPU_NOW - c0))|$rc")
  [ "$rc" = 0 ] || exit "$rc"
}
stage_table() {
  local rc=$? row name wall cpu status
  cpu_now
  rm -f "$TIMES_FILE"
  echo
  echo "== stages (wall s: what the run took; CPU s: user+sys of its processes, steadier on a shared machine) =="
  printf '%-48s %7s %7s  %s\n' stage "wall s" "CPU s" result
  for row in "${STAGE_ROWS[@]}"; do
    IFS='|' read -r name wall cpu status <<<"$row"
    printf '%-48s %7d %7d  %s\n' "$name" "$wall" "$cpu" "$([ "$status" = 0 ] && echo ok || echo "FAILED ($status)")"
  done
  printf '%-48s %7d %7d  %s\n' "total" "$SECONDS" "$CPU_NOW" "$([ "$rc" = 0 ] && echo ok || echo "FAILED ($rc)")"
  exit "$rc"
}
trap stage_table EXIT

# ---- the compiler cache (ccache, installed by setup_env.sh): it only speeds up (it checks the compiler, its
# flags and the preprocessed sources); CMake takes the launchers from the environment at configure time ----
export ZSSEG_CCACHE="${ZSSEG_CCACHE:-1}" ZSSEG_NEED_TEST_TOOLS=1
export CCACHE_DIR="${CCACHE_DIR:-$ROOT/build/ccache}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDACXX=/usr/local/cuda/bin/nvcc; fi
WORKERS="${ZSSEG_TEST_WORKERS:-$(nproc)}"
XDIST=(); [ "$WORKERS" -gt 1 ] && XDIST=(-n "$WORKERS" --dist loadgroup)

cmake_build() {  # cmake_build DIR CONFIGURE-ARGS...: configure + build, the log shown only on failure
  local dir="$1" log
  shift
  log="$(mktemp)"
  "$VENV/bin/cmake" -S . -B "$dir" -G Ninja -DCMAKE_MAKE_PROGRAM="$VENV/bin/ninja" "$@" >"$log" 2>&1 || { cat "$log"; exit 1; }
  "$VENV/bin/cmake" --build "$dir" -j"$(nproc)" >>"$log" 2>&1 || { tail -50 "$log"; exit 1; }
  rm -f "$log"
}

cpp_tests() {
  cmake_build build-tests -DZS_BUILD_TESTS=ON -DZS_BUILD_PYTHON=OFF \
    ${CMAKE_CUDA_ARCHITECTURES:+-DCMAKE_CUDA_ARCHITECTURES=$CMAKE_CUDA_ARCHITECTURES}
  "$VENV/bin/ctest" --test-dir build-tests --output-on-failure -j"$(nproc)"
}

emulated_kernels() {
  cmake_build build-emu-asan -DZS_WITH_CUDA=OFF -DZS_BUILD_PYTHON=OFF -DZS_BUILD_TESTS=OFF \
    -DZS_BUILD_CUDA_EMULATION_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$VENV/bin/ctest" --test-dir build-emu-asan --output-on-failure -j"$(nproc)"
}

# The binding layer (DeviceArray, DLPack/CAI parsing, out=, streams, events, exports, capture, the device pipeline)
# on emulated device memory. ASan's runtime (and libstdc++, for its __cxa_throw interceptor) must be loaded first;
# detect_leaks=0 because CPython's own allocations at exit are not leaks of ours (every other check stays on).
emulated_python() {
  bash "$ROOT/tools/build_emulated.sh"
  ZSSEG_CUDA_EMULATION=1 LD_PRELOAD="$(bash "$ROOT/tools/build_emulated.sh" --preload)" ASAN_OPTIONS=detect_leaks=0 \
    UBSAN_OPTIONS=print_stacktrace=1 "$VENV/bin/python" -m pytest python_tests -m cuda -q -p no:cacheprovider "${XDIST[@]}"
}

python_tests() {
  # qemu-user-static (installed for the aarch64 tests) also runs ONNX Runtime with AVX2 kernels: the numeric
  # checks' AVX2 test (python_tests/export/test_numeric_bounds.py) fails here instead of skipping when it is missing.
  if [ "$(uname -m)" = x86_64 ]; then export ZSSEG_REQUIRE_QEMU_X86=1; fi
  # the OpenVINO backend's tests fail instead of skipping: requirements.txt (setup_env.sh) installs OpenVINO
  export ZSSEG_REQUIRE_OPENVINO=1
  # the web page's headless-browser test fails instead of skipping where setup_env.sh installed Chromium (apt machines)
  if [ "${ZSSEG_NEED_BROWSER:-1}" = 1 ] && command -v apt-get >/dev/null 2>&1; then export ZSSEG_REQUIRE_BROWSER=1; fi
  # the training and model tests run in the next stage only, on the fake CUDA device
  "$VENV/bin/python" -m pytest python_tests -q -p no:cacheprovider --durations=30 "${XDIST[@]}" \
    --ignore=python_tests/train --ignore=python_tests/models "$@"
}

# The training and model tests run once, on a fake CUDA device (python_tests/fake_cuda.py: torch.cuda.is_available()
# is True there, so "CUDA when available" picks it, and a CPU tensor mixed with one on "cuda" raises as on a GPU):
# they are not run twice, the guard only moves them (its cost: the wrappers' dispatch).
fake_cuda_tests() {
  "$VENV/bin/python" -m pytest python_tests/train python_tests/models -q -p no:cacheprovider --durations=10 \
    "${XDIST[@]}" --fake-cuda
}

stage "set-up (venv, requirements, build)" bash "$ROOT/tools/setup_env.sh"
if [ "$ZSSEG_CCACHE" = 1 ] && command -v ccache >/dev/null 2>&1; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_CUDA_COMPILER_LAUNCHER=ccache
fi
stage "static checks (ruff, mypy, clang-format)" bash "$ROOT/tools/lint.sh"
stage "C++ tests (GoogleTest via ctest)" cpp_tests
stage "CUDA kernels on the host (csrc/emu), ASan+UBSan" emulated_kernels
stage "Python CUDA tests, emulated runtime, ASan" emulated_python
stage "_C with a static C++ runtime" bash "$ROOT/tools/static_runtime_check.sh"
stage "C++ tests on aarch64 (cross, qemu)" bash "$ROOT/tools/cross_test_aarch64.sh"
stage "Python tests (pytest)" python_tests "$@"
stage "training and model tests on a fake CUDA device" fake_cuda_tests
stage "runtime-only install (no torch, NumPy 1.26)" bash "$ROOT/tools/runtime_only_tests.sh" "${XDIST[@]}"
