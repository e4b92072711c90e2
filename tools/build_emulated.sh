#!/usr/bin/env bash
# Builds zsseg_rt._C_emulated: the binding layer and the CUDA kernels compiled by the host compiler against the
# emulated CUDA runtime (csrc/emu), so the Python CUDA tests run without a GPU (issue 25):
#   ZSSEG_CUDA_EMULATION=1 python -m pytest python_tests -m cuda
# Under AddressSanitizer + UBSan by default (ZSSEG_EMU_SANITIZE=0 for a plain build); a sanitized module needs the
# compiler's libasan first in the process, and its libstdc++ loaded at ASan's start (Python itself does not link
# it; without it ASan's __cxa_throw interceptor finds nothing and aborts on the first C++ exception): run Python
# with LD_PRELOAD="$(bash tools/build_emulated.sh --preload)" ASAN_OPTIONS=detect_leaks=0 (CPython's own
# allocations at exit are not leaks of ours; use-after-free, overflows and UB are all still reported).
# The module goes to zsseg_rt/ (next to _C), where `import zsseg_rt._C_emulated` finds it.
#   --tests   also the kernels' GoogleTest suite (cpp_tests/emulation: ctest --test-dir BUILD), in the same build:
#             the kernels and the CPU code are object libraries that both link (compiled once; tools/run_tests.sh);
#             without it an earlier build's test list is removed, so ctest runs no stale suite
#   ZSSEG_VENV  the venv with pybind11 and cmake (default .venv)   ZSSEG_EMU_BUILD  build dir (default build-emu-py)
#   ZSSEG_EMU_GLUE_FLAGS  flags of the glue: the binding files and, with --tests, the GoogleTest files (default
#               -O0: under ASan + UBSan they compile in two thirds of -O1's time; the emulated kernels stay at -O1 and the CPU code at -O3 with its clones, as
#               the real build compiles it; empty: the glue at -O1 too)
#   ZSSEG_EMU_COPY  1 (default): the module copied to zsseg_rt/; 0: left in the build folder only (the image twin
#               builds one for another Python and loads it through ZSSEG_NATIVE_MODULE: tools/image_twin.sh)
#   ZSSEG_EMU_UNITY_BATCH  the glue (the binding files, the emulation GoogleTest files) as unity sources of this many
#               files each (default 7: pybind11's and GoogleTest's headers and templates compiled once per batch, the
#               module's build 244 -> 135 CPU-s here; 0: one file per translation unit, for editing one binding file)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv}"
CXX_BIN="${CXX:-g++}"
if [ "${1:-}" = "--preload" ]; then
  echo "$("$CXX_BIN" -print-file-name=libasan.so) $("$CXX_BIN" -print-file-name=libstdc++.so)"
  exit 0
fi
TESTS=OFF TARGETS=(_C_emulated)
if [ "${1:-}" = "--tests" ]; then TESTS=ON TARGETS+=(zsseg_cuda_emulation_tests); fi
BUILD="${ZSSEG_EMU_BUILD:-$ROOT/build-emu-py}"
FLAGS="-O1 -g1"  # line tables: symbolised ASan reports at a fraction of -g's compile time
if [ "${ZSSEG_EMU_SANITIZE:-1}" = 1 ]; then
  FLAGS="$FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
fi
# A build folder configured otherwise (another compiler, or without this module: e.g. the ctest-only emulation build
# an older tools/run_tests.sh made in build-emu-asan) would make CMake drop the options below: start it afresh.
CACHED_CXX="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)"
if [ -f "$BUILD/CMakeCache.txt" ] && { ! grep -qx "ZS_BUILD_EMULATED_PYTHON:BOOL=ON" "$BUILD/CMakeCache.txt" \
  || { [ "$CACHED_CXX" != "$CXX_BIN" ] && [ "$CACHED_CXX" != "$(command -v "$CXX_BIN")" ]; }; }; then
  echo "[build_emulated] $BUILD was configured otherwise: configuring it afresh"
  rm -rf "$BUILD"
fi
LOG="$(mktemp)"
"$VENV/bin/cmake" -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_MAKE_PROGRAM="$VENV/bin/ninja" -DCMAKE_CXX_COMPILER="$CXX_BIN" \
  -DZS_WITH_CUDA=OFF -DZS_BUILD_PYTHON=OFF -DZS_BUILD_TESTS=OFF -DZS_BUILD_EMULATED_PYTHON=ON -DZS_BUILD_CUDA_EMULATION_TESTS=$TESTS -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
  -DCMAKE_BUILD_TYPE=None "-DCMAKE_CXX_FLAGS=$FLAGS" "-DZS_EMU_GLUE_FLAGS=${ZSSEG_EMU_GLUE_FLAGS--O0}" -DZS_EMU_UNITY_BATCH="${ZSSEG_EMU_UNITY_BATCH:-7}" \
  -DPython_EXECUTABLE="$VENV/bin/python" -Dpybind11_DIR="$("$VENV/bin/python" -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  >"$LOG" 2>&1 || { cat "$LOG"; exit 1; }
"$VENV/bin/cmake" --build "$BUILD" --target "${TARGETS[@]}" -j"${ZSSEG_BUILD_JOBS:-2}" >>"$LOG" 2>&1 || { tail -60 "$LOG"; exit 1; }
rm -f "$LOG"
[ "$TESTS" = ON ] || rm -f "$BUILD/CTestTestfile.cmake" "$BUILD/zsseg_cuda_emulation_tests"
if [ "${ZSSEG_EMU_COPY:-1}" = 0 ]; then
  echo "[build_emulated] $(ls "$BUILD"/_C_emulated*.so)"
  exit 0
fi
rm -f "$ROOT"/zsseg_rt/_C_emulated*.so
cp "$BUILD"/_C_emulated*.so "$ROOT/zsseg_rt/"
echo "[build_emulated] $(ls "$ROOT"/zsseg_rt/_C_emulated*.so)"
