#!/usr/bin/env bash
# _C built with a static C++ runtime, as some toolchains link it (a conda or manylinux toolchain, the first GPU
# machine's /opt/gcc: issue 25), then the tests that format error messages and the raw-binding fuzz run against
# that module in a process that has loaded the shared libstdc++ first (NumPy does). Checks that the build really
# is static, that the module exports nothing but PyInit__C, and that no message crashes. Run by tools/run_tests.sh.
# The crash of the first GPU run also needed two libstdc++ versions with different facet tables (GCC 13 static,
# GCC 14 shared); CI has one GCC, so the exported-symbol check is what proves the cause gone.
#   CXX  the compiler (default g++)   ZSSEG_VENV  the venv (default .venv)   build dir: build-static/
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv}"
BUILD="$ROOT/build-static"
LOG="$(mktemp)"
"$VENV/bin/cmake" -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_MAKE_PROGRAM="$VENV/bin/ninja" -DCMAKE_CXX_COMPILER="${CXX:-g++}" \
  -DZS_WITH_CUDA=OFF -DZS_QUICK_BUILD=ON -DZS_BUILD_TESTS=OFF -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
  -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O1 \
  -DCMAKE_MODULE_LINKER_FLAGS=-static-libstdc++ \
  -DPython_EXECUTABLE="$VENV/bin/python" -Dpybind11_DIR="$("$VENV/bin/python" -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  >"$LOG" 2>&1 || { cat "$LOG"; exit 1; }
"$VENV/bin/cmake" --build "$BUILD" --target _C -j"${ZSSEG_BUILD_JOBS:-2}" >>"$LOG" 2>&1 || { tail -60 "$LOG"; exit 1; }
rm -f "$LOG"
MODULE="$(ls "$BUILD"/_C*.so)"
if ldd "$MODULE" | grep -q "libstdc++"; then
  echo "static_runtime_check: $MODULE links libstdc++ dynamically; the check needs a static C++ runtime"; exit 1
fi
echo "[static_runtime_check] $MODULE (libstdc++ linked statically)"
cd "$ROOT"
ZSSEG_NATIVE_MODULE="$MODULE" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  python_tests/ops/test_native_module_symbols.py python_tests/ops/test_dense_bad_inputs.py \
  python_tests/ops/test_masks_bad_inputs.py python_tests/ops/test_preprocess_op.py \
  python_tests/ops/test_fuzz_bindings.py python_tests/ops/test_fuzz_raw_bindings.py python_tests/ops/test_op_arguments.py
