#!/usr/bin/env bash
# The Jetson CPU path without a Jetson: cross-compiles the native kernels (zsseg_kernels) and the GoogleTest suite
# (cpp_tests/) for aarch64 with Debian's g++-aarch64-linux-gnu and runs every test under qemu-user-static.
# CUDA is off in this build (no aarch64 nvcc here); the Python module is not built (no aarch64 Python headers).
# Called by tools/run_tests.sh; standalone:  bash tools/cross_test_aarch64.sh
#   ZSSEG_VENV         venv with cmake/ninja (default .venv; falls back to cmake/ninja on PATH)
#   ZSSEG_AARCH64_DIR  build directory (default build-aarch64; GoogleTest is built once into it and reused)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv}"
OUT="${ZSSEG_AARCH64_DIR:-$ROOT/build-aarch64}"
TOOLCHAIN="$ROOT/cmake/aarch64-linux-gnu.cmake"
CMAKE="$VENV/bin/cmake"; [ -x "$CMAKE" ] || CMAKE="$(command -v cmake)"
NINJA="$VENV/bin/ninja"; [ -x "$NINJA" ] || NINJA="$(command -v ninja)"
CTEST="$(dirname "$CMAKE")/ctest"; [ -x "$CTEST" ] || CTEST="$(command -v ctest)"

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
[ -f /usr/src/googletest/CMakeLists.txt ] || missing+=(googletest)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[aarch64] installing ${missing[*]} (Debian)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
fail() { echo "[aarch64] $1 failed; its log:"; tail -60 "$LOG"; exit 1; }

# GoogleTest for the target, from Debian's source (/usr/src/googletest), built with the same toolchain.
GTEST_PREFIX="$OUT/googletest-install"
if [ ! -f "$GTEST_PREFIX/lib/cmake/GTest/GTestConfig.cmake" ]; then
  echo "[aarch64] building GoogleTest for aarch64 from /usr/src/googletest"
  "$CMAKE" -S /usr/src/googletest -B "$OUT/googletest-build" -G Ninja -DCMAKE_MAKE_PROGRAM="$NINJA" \
    -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF \
    -DCMAKE_INSTALL_PREFIX="$GTEST_PREFIX" >"$LOG" 2>&1 || fail "GoogleTest configure"
  "$CMAKE" --build "$OUT/googletest-build" -j2 >>"$LOG" 2>&1 || fail "GoogleTest build"
  "$CMAKE" --install "$OUT/googletest-build" >>"$LOG" 2>&1 || fail "GoogleTest install"
fi

echo "[aarch64] cross-compiling the kernels and cpp_tests (CUDA off)"
"$CMAKE" -S "$ROOT" -B "$OUT/zsseg" -G Ninja -DCMAKE_MAKE_PROGRAM="$NINJA" -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" \
  -DZS_WITH_CUDA=OFF -DZS_BUILD_PYTHON=OFF -DZS_BUILD_TESTS=ON -DGTest_DIR="$GTEST_PREFIX/lib/cmake/GTest" \
  >"$LOG" 2>&1 || fail "configure"
"$CMAKE" --build "$OUT/zsseg" -j2 >>"$LOG" 2>&1 || fail "build"

BIN="$OUT/zsseg/zsseg_cpp_tests"
arch="$(file -b "$BIN" 2>/dev/null | cut -d, -f2 | sed 's/^ *//')"
[ -n "$arch" ] || arch="$(od -An -t x1 -j 18 -N 2 "$BIN" | tr -d ' ')"  # e_machine: b7 00 = aarch64
echo "[aarch64] test binary: $arch; running it under $(qemu-aarch64-static --version | head -1)"
case "$arch" in *aarch64* | b700) ;; *) echo "[aarch64] expected an aarch64 binary, got: $arch"; exit 1 ;; esac
OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" bash "$(dirname "${BASH_SOURCE[0]}")/quiet_ctest.sh" "$CTEST" --test-dir "$OUT/zsseg" --output-on-failure -j"$(nproc)"
