#!/usr/bin/env bash
# Sets zsseg_rt up on a Jetson (JetPack 6; see README "Jetson"): a venv that sees the system site-packages, so
# JetPack's TensorRT Python bindings and its OpenCV (GStreamer, CSI cameras) stay visible; the runtime
# dependencies only (no torch); the native module built with the device's own nvcc for the device's GPU.
#   bash tools/setup_jetson.sh            print what was found, then set up
#   bash tools/setup_jetson.sh --check    print what was found (JetPack/L4T, CUDA, TensorRT, GPU, Python) and stop
# Environment: ZSSEG_VENV (default .venv-jetson), PYTHON (default python3), CMAKE_CUDA_ARCHITECTURES (default:
# 87 on Orin, 72 on Xavier), ZSSEG_SYSROOT (read /etc and /proc under this prefix: for tests), ZSSEG_JETSON_WHEEL (a
# zsseg_rt wheel built for this device elsewhere, e.g. on another Jetson or cross-compiled as
# tools/cross_python_aarch64.sh does: installed instead of building here; its CUDA kernels are what it was built with).
# twin (by shape): tools/runtime_only_tests.sh and the other tools/ scripts - the standalone preamble (repository
# root, venv and Python from the environment)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv-jetson}"
PY="${PYTHON:-python3}"
SYSROOT="${ZSSEG_SYSROOT:-}"
WHEEL="${ZSSEG_JETSON_WHEEL:-}"
NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
if [ ! -x "$NVCC" ] && [ -z "${CUDA_HOME:-}" ] && command -v nvcc >/dev/null 2>&1; then NVCC="$(command -v nvcc)"; fi
CHECK_ONLY=0
case "${1:-}" in
  --check) CHECK_ONLY=1 ;;
  "") ;;
  *) echo "usage: bash tools/setup_jetson.sh [--check]" >&2; exit 2 ;;
esac
say() { echo "[jetson] $*"; }
die() { echo "[jetson] ERROR: $*" >&2; exit 1; }

# ---- what is this device? -------------------------------------------------------------------------------------
# /etc/nv_tegra_release: "# R36 (release), REVISION: 3.0, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ..."
RELEASE_FILE="$SYSROOT/etc/nv_tegra_release"
[ -f "$RELEASE_FILE" ] || die "no $RELEASE_FILE: this is not a Jetson (L4T). On a desktop use tools/setup_env.sh, or pip install .[runtime]"
L4T_MAJOR="$(sed -n 's/^# R\([0-9]*\) (release).*/\1/p' "$RELEASE_FILE")"
L4T_REVISION="$(sed -n 's/.*REVISION: \([0-9.]*\).*/\1/p' "$RELEASE_FILE")"
[ -n "$L4T_MAJOR" ] || die "cannot read the L4T release from $RELEASE_FILE: $(head -1 "$RELEASE_FILE")"
L4T="R$L4T_MAJOR.${L4T_REVISION:-?}"
JETPACK="$(dpkg-query -W -f='${Version}' nvidia-jetpack 2>/dev/null || true)"
if [ -z "$JETPACK" ] || [ -n "$SYSROOT" ]; then
  case "$L4T_MAJOR" in
    36) case "$L4T_REVISION" in
          [0-3].*) JETPACK="6.0 or earlier, TensorRT 8.6 (from L4T $L4T)" ;;
          *) JETPACK="6.1 or newer (from L4T $L4T)" ;;
        esac ;;
    35) JETPACK="5.1.x (from L4T $L4T)" ;;
    34) JETPACK="5.0 developer preview (from L4T $L4T)" ;;
    *) JETPACK="unknown (L4T $L4T)" ;;
  esac
fi
MODEL="$(tr -d '\0' <"$SYSROOT/proc/device-tree/model" 2>/dev/null || echo unknown)"
case "$MODEL" in
  *Orin*) ARCH_DEFAULT=87 ;;
  *Xavier*) ARCH_DEFAULT=72 ;;
  *) ARCH_DEFAULT="" ;;
esac
ARCH="${CMAKE_CUDA_ARCHITECTURES:-$ARCH_DEFAULT}"
CUDA_VERSION="$("$NVCC" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p' || true)"
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)"
TRT_VERSION="$("$PY" -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || echo "not importable by $PY")"
CV2_INFO="$("$PY" -c 'import cv2, re; g = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation()); print(cv2.__version__, "GStreamer:", g.group(1) if g else "?")' 2>/dev/null || echo "not importable by $PY")"

say "L4T $L4T | JetPack $JETPACK"
say "GPU: $MODEL${ARCH:+ (building for sm_$ARCH)}"
say "CUDA: ${CUDA_VERSION:-no nvcc at $NVCC}"
say "Python: $PY $PY_VERSION | TensorRT: $TRT_VERSION | system OpenCV: $CV2_INFO"

# ---- can it run here? -------------------------------------------------------------------------------------------
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  die "zsseg_rt needs Python >= 3.10; $PY is $PY_VERSION. JetPack 5 ships Python 3.8 and TensorRT 8.5: upgrade to
  JetPack 6 (Python 3.10, TensorRT 10), or run the ONNX Runtime backend with a Python >= 3.10 you install
  (PYTHON=python3.10 bash tools/setup_jetson.sh; JetPack 5's TensorRT bindings are built for 3.8 and stay invisible)."
fi
case "$TRT_VERSION" in
  10.*) ;;
  *) say "WARNING: the TensorRT backend needs TensorRT 10 (JetPack 6.1+), found: $TRT_VERSION. The ONNX Runtime backend works without it." ;;
esac
if [ -n "$WHEEL" ]; then
  [ -f "$WHEEL" ] || die "ZSSEG_JETSON_WHEEL=$WHEEL: no such file (a zsseg_rt wheel built for this device, or unset it to build here)"
  case "$(basename "$WHEEL")" in
    zsseg_rt-*.whl) ;;
    *) die "ZSSEG_JETSON_WHEEL=$WHEEL is not a zsseg_rt wheel (zsseg_rt-VERSION-TAGS.whl)" ;;
  esac
  say "installing the wheel $WHEEL instead of building here (nvcc and the GPU architecture are not used)"
else
  [ -n "$CUDA_VERSION" ] || say "WARNING: no nvcc at $NVCC (set CUDA_HOME): the native module is built without CUDA kernels."
  [ -n "$ARCH" ] || say "WARNING: unknown GPU '$MODEL': set CMAKE_CUDA_ARCHITECTURES (87 Orin, 72 Xavier); building for nvcc's default list."
fi
if [ "$CHECK_ONLY" = 1 ]; then exit 0; fi

# ---- venv, runtime dependencies, native build ---------------------------------------------------------------
say "venv $VENV (--system-site-packages: JetPack's TensorRT and OpenCV stay visible)"
"$PY" -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install -q -U pip
mapfile -t TOOLS < <(grep -E '^(scikit-build-core|pybind11|cmake|ninja)==' "$ROOT/requirements.txt")
if [[ "$CV2_INFO" == "not importable"* ]]; then
  EXTRAS="runtime"      # ONNX Runtime + pip's OpenCV (no GStreamer: no CSI cameras)
  NUMPY="numpy>=1.24,<3"
else
  EXTRAS="onnxruntime,objects"  # keep JetPack's OpenCV: a pip OpenCV would shadow it and lose GStreamer
  NUMPY="numpy>=1.24,<2" # JetPack's OpenCV is built against NumPy 1.x
fi
say "installing the runtime dependencies (.[$EXTRAS], $NUMPY; no torch)$([ -n "$WHEEL" ] || echo " and the build tools")"
if [ -n "$WHEEL" ]; then
  "$VENV/bin/pip" install -q "$WHEEL[$EXTRAS]" "$NUMPY"  # pip refuses a wheel of another platform or Python
else
  "$VENV/bin/pip" install -q "$NUMPY" "${TOOLS[@]}"
  ARGS=()
  if [ -n "$CUDA_VERSION" ]; then
    export CUDACXX="$NVCC"
    if [ -n "$ARCH" ]; then ARGS+=(-C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$ARCH"); fi
  else
    ARGS+=(-C "cmake.define.ZS_WITH_CUDA=OFF")  # as announced above, even if CMake could find another nvcc
  fi
  if [ -n "$CUDA_VERSION" ]; then COMPILER="nvcc $CUDA_VERSION"; else COMPILER="no CUDA"; fi
  say "building zsseg_rt with $COMPILER (a few minutes on the device)"
  (cd "$ROOT" && "$VENV/bin/pip" install -q --no-build-isolation "${ARGS[@]}" ".[$EXTRAS]" "$NUMPY")
fi

(cd / && "$VENV/bin/python" - <<'PYCHECK'
import importlib
import numpy
import zsseg_rt
import zsseg_rt.ops as ops
from zsseg_rt.console.opencv_build import opencv_has_gstreamer
found = []
for name in ("tensorrt", "onnxruntime", "cv2"):
    try:
        found.append(f"{name} {importlib.import_module(name).__version__}")
    except ImportError:
        found.append(f"{name}: not importable")
print("[jetson] zsseg_rt", zsseg_rt.__version__, "| numpy", numpy.__version__, "|", " | ".join(found))
print("[jetson] CUDA kernels compiled:", ops.native_module().cuda_compiled(), "| GPU usable:", ops.cuda_available(),
      "| OpenCV GStreamer (CSI cameras):", opencv_has_gstreamer())
PYCHECK
)
say "done. Activate with: source $VENV/bin/activate   (then: zsseg build-engine BUNDLE, zsseg camera ...)"
