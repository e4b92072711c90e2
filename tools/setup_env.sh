#!/usr/bin/env bash
# Creates/updates the project's virtual environment and builds zsseg_rt into it, from scratch if needed.
# Used by tools/run_tests.sh and tools/run_demo.sh (the README's two commands). Idempotent.
#   ZSSEG_VENV   venv location (default: .venv in the repo root)
#   CMAKE_CUDA_ARCHITECTURES  override the CUDA archs (default 75;80;86;87;89;90;120: CMakeLists.txt, as this nvcc allows)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

# Debian packages, installed in one apt-get call where missing:
# - GoogleTest (libgtest-dev, libgmock-dev) for the C++ tests; ZSSEG_NEED_GTEST=0 skips it;
# - Chromium and its chromedriver: the headless-browser test of zsseg serve's web page (selenium drives them; no
#   browser is ever downloaded). ZSSEG_NEED_BROWSER=0 skips them (that test then skips with a reason);
# - with ZSSEG_NEED_TEST_TOOLS=1 (tools/run_tests.sh): the aarch64 cross compiler and qemu-user-static
#   (tools/cross_test_aarch64.sh; qemu also runs the AVX2 numeric check), mmdebstrap (tools/cross_python_aarch64.sh)
#   and ccache (the builds' compiler cache).
DEBS=()
if [ "${ZSSEG_NEED_GTEST:-1}" = 1 ] && [ ! -f /usr/lib/x86_64-linux-gnu/cmake/GTest/GTestConfig.cmake ] \
   && [ ! -f /usr/lib/aarch64-linux-gnu/cmake/GTest/GTestConfig.cmake ]; then
  DEBS+=(libgtest-dev libgmock-dev)
fi
if [ "${ZSSEG_NEED_BROWSER:-1}" = 1 ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
  DEBS+=(chromium chromium-driver)
fi
if [ "${ZSSEG_NEED_TEST_TOOLS:-0}" = 1 ]; then
  command -v ccache >/dev/null 2>&1 || DEBS+=(ccache)
  if [ "$(uname -m)" = x86_64 ]; then
    command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || DEBS+=(g++-aarch64-linux-gnu)
    command -v qemu-aarch64-static >/dev/null 2>&1 || DEBS+=(qemu-user-static)
    command -v mmdebstrap >/dev/null 2>&1 || DEBS+=(mmdebstrap)  # the arm64 root of tools/cross_python_aarch64.sh
    [ -f /usr/src/googletest/CMakeLists.txt ] || DEBS+=(googletest)
  fi
fi
if [ ${#DEBS[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing ${DEBS[*]} (Debian)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${DEBS[@]}" >/dev/null
  else
    echo "[setup] no apt-get here: install the equivalents of ${DEBS[*]} (Debian names) yourself"
  fi
fi

# Debian's opencv-doc: OpenCV's example clips (/usr/share/doc/opencv-doc/examples/data/*.avi: vtest, tree, Megamind),
# the real videos of `python -m benchmarks video` (the unit tests do not need them). ZSSEG_NEED_VIDEO_CLIPS=0 skips it.
need_clips=${ZSSEG_NEED_VIDEO_CLIPS:-1}
if [ "$need_clips" = 1 ] && [ ! -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ] \
   && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing OpenCV's example clips (Debian opencv-doc) for python -m benchmarks video"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq opencv-doc >/dev/null
fi

# pip, minus one warning this machine's pip configuration repeats for every package (it buried the one line that
# mattered, a full disk's, under 200)
pip_q() { "$VENV/bin/pip" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
  pip_q install -q -U pip
fi
# The pinned set is installed by uv (pinned below; from PyPI like the rest): the same versions pip resolves (every
# requirement is pinned; uv's freeze of a fresh venv equals pip's), unpacked in parallel: 22 s against pip's ~2 min
# for torch and its CUDA libraries on 2 cores. The package itself is built by pip (below), as a user's install does.
UV_PIN="uv==0.13.9"
"$VENV/bin/uv" --version 2>/dev/null | grep -qx "uv ${UV_PIN#uv==}.*" || pip_q install -q "$UV_PIN"
echo "[setup] installing pinned dependencies (requirements.txt, with $UV_PIN)"
# --compile-bytecode: the modules' bytecode written at install, as pip does (uv's default leaves it out). Without it a
# process under PYTHONDONTWRITEBYTECODE=1 (set on the CI machine) compiles every module it imports, every time:
# `import torch, numpy, cv2, onnxruntime, zsseg_rt.cli` took 4.0 CPU-s against 1.7 with the bytecode there, in each
# of the test run's hundreds of Python processes (workers, commands, Ray workers); compiling once costs ~50 CPU-s.
"$VENV/bin/uv" pip install -q --compile-bytecode --python "$VENV/bin/python" -r "$ROOT/requirements.txt"

echo "[setup] building zsseg_rt (native ops; CUDA kernels too when nvcc is found)"
ARGS=()
if [ -n "${CMAKE_CUDA_ARCHITECTURES:-}" ]; then
  ARGS+=(-C "cmake.define.CMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES}")
fi
# nvcc is often outside PATH (/usr/local/cuda/bin): let CMake find it.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
# ZSSEG_CCACHE=1 (tools/run_tests.sh): through ccache, whose objects the later builds of the same sources reuse
if [ "${ZSSEG_CCACHE:-0}" = 1 ] && command -v ccache >/dev/null 2>&1; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_CUDA_COMPILER_LAUNCHER=ccache
fi
(cd "$ROOT" && pip_q install -q --no-build-isolation -e . "${ARGS[@]}")
"$VENV/bin/python" -c "import zsseg_rt, zsseg_rt.ops as o; print('[setup] zsseg_rt', zsseg_rt.__version__, '| CUDA compiled:', o.native_module().cuda_compiled(), '| CUDA available:', o.cuda_available())"
