#!/usr/bin/env bash
# Creates/updates the project's virtual environment and builds zsseg_rt into it, from scratch if needed.
# Used by tools/run_tests.sh and tools/run_demo.sh (the README's two commands). Idempotent.
#   ZSSEG_VENV   venv location (default: .venv in the repo root)
#   CMAKE_CUDA_ARCHITECTURES  override the CUDA archs (default 75;80;86;87;89;90;120: CMakeLists.txt, as this nvcc allows)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

need_gtest=${ZSSEG_NEED_GTEST:-1}
if [ "$need_gtest" = 1 ] && [ ! -f /usr/lib/x86_64-linux-gnu/cmake/GTest/GTestConfig.cmake ] \
   && [ ! -f /usr/lib/aarch64-linux-gnu/cmake/GTest/GTestConfig.cmake ]; then
  echo "[setup] installing GoogleTest (Debian libgtest-dev)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libgtest-dev libgmock-dev >/dev/null
fi

# Debian's Chromium and its chromedriver: the headless-browser test of zsseg serve's web page (selenium drives them;
# no browser is ever downloaded). ZSSEG_NEED_BROWSER=0 skips them (that test then skips with a reason).
need_browser=${ZSSEG_NEED_BROWSER:-1}
if [ "$need_browser" = 1 ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } \
   && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing Chromium + chromedriver (Debian chromium, chromium-driver) for the web page test"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
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

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip
fi
echo "[setup] installing pinned dependencies (requirements.txt; torch 2.14.1 takes ~2 min the first time)"
"$VENV/bin/pip" install -q -r "$ROOT/requirements.txt"

echo "[setup] building zsseg_rt (native ops; CUDA kernels too when nvcc is found)"
ARGS=()
if [ -n "${CMAKE_CUDA_ARCHITECTURES:-}" ]; then
  ARGS+=(-C "cmake.define.CMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES}")
fi
# nvcc is often outside PATH (/usr/local/cuda/bin): let CMake find it.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
(cd "$ROOT" && "$VENV/bin/pip" install -q --no-build-isolation -e . "${ARGS[@]}")
"$VENV/bin/python" -c "import zsseg_rt, zsseg_rt.ops as o; print('[setup] zsseg_rt', zsseg_rt.__version__, '| CUDA compiled:', o.native_module().cuda_compiled(), '| CUDA available:', o.cuda_available())"
