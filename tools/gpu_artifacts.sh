#!/usr/bin/env bash
# Builds HERE (a machine with nvcc, no GPU needed) everything the acceptance run needs on a lent GPU machine, which
# builds nothing: a git-ignored folder the device tool carries with a command (carry: ["gpu_artifacts"]).
#
#   gpu_artifacts/wheels/zsseg_rt-*-cp312-*.whl   the package for CPython 3.12 (the GPU image's Python), its CUDA
#                                                 kernels for the default architectures (CMakeLists.txt: sm_75 ...
#                                                 sm_90, sm_120) or --archs
#   gpu_artifacts/cpp/zsseg_cpp_tests             the C++ tests (GoogleTest linked statically: the image has none),
#                                                 CUDA code for --test-archs (default 90: the H100/H200), device line
#                                                 info for compute-sanitizer's reports
#   gpu_artifacts/pywheels/*.whl                  the Python distributions the image lacks (checks/gpu_stages.py:
#                                                 CARRIED_PYTHON), for CPython 3.12 on manylinux x86_64, and the
#                                                 project's test tools at requirements.txt's pins (pytest, pluggy,
#                                                 iniconfig, pytest-xdist, execnet; packaging and pygments where the
#                                                 image lacks them: checks/_harness.py), which every stage installs
#                                                 ahead of the image's own
#   gpu_artifacts/clips/live.avi, live.json      the clip the probe runs `zsseg camera --live --device cuda` on (the
#                                                 image has no video): the first 48 frames of OpenCV's vtest.avi where
#                                                 it is installed (3.5 MiB as MJPG), else a synthetic one
#   gpu_artifacts/manifest.json                   SHA-256 and size of each file, the commit and the build inputs'
#                                                 hashes, nvcc, the architectures (as cuobjdump lists them), each
#                                                 binary's shared libraries and newest glibc/libstdc++ versions
#
#   bash tools/gpu_artifacts.sh [--out DIR] [--python PY] [--archs LIST] [--test-archs LIST] [--define NAME=VALUE]...
#                               [--pywheels DIR] [--wheel FILE] [--cpp-tests FILE] [--build-dir DIR] [--limit-mib N]
#                               [--allow-dirty]
#     --out DIR          the artefacts folder (default gpu_artifacts; it must be git-ignored: it is carried, never sent
#                        as part of the working tree)
#     --python PY        the CPython to build the wheel for (default: $ZSSEG_GPU_PYTHON, python3.12 on PATH, or
#                        pyenv's 3.12); it needs its headers (Python.h)
#     --archs LIST       CMAKE_CUDA_ARCHITECTURES of the wheel (default: CMakeLists.txt's list, as this nvcc allows)
#     --test-archs LIST  CMAKE_CUDA_ARCHITECTURES of the C++ tests (default 90)
#     --define N=V       one more CMake definition for both builds (CI's rehearsal: ZS_WITH_CUDA=OFF, ZS_QUICK_BUILD=ON)
#     --pywheels DIR     take the Python wheels from DIR instead of downloading them (offline); it must hold the
#                        test tools' wheels at their pins (`python -m checks gpu_check_support harness-pins`)
#     --wheel FILE       carry this zsseg_rt wheel instead of building one (CI's rehearsal packs the test
#                        environment's build; the manifest says "prebuilt")
#     --cpp-tests FILE   carry this GoogleTest binary instead of building the C++ tests (the same)
#     --build-dir DIR    where the builds are kept between runs (default build/gpu_artifacts: later runs are
#                        incremental)
#     --limit-mib N      refuse when the artefacts and the working tree that travels exceed N MiB (default 64: the
#                        device tool's limit per command)
#     --allow-dirty      build although the build inputs differ from the commit (a trial: the records it gives are
#                        marked so, and checks/gpu_record.py refuses to commit them)
# The folder is replaced only when everything was built and checked (a refused or failed build leaves the previous
# artefacts as they were); the build's own folders stay in --build-dir. Exit 0 built, 1 refused or failed, 2 bad
# argument. Where it runs it needs: git, nvcc (unless --define ZS_WITH_CUDA=OFF), cmake >= 3.18, ninja or make, a
# C++ compiler, Debian's libgtest-dev, binutils (readelf), network or --pywheels for the Python wheels, and the
# project's venv ($ZSSEG_VENV, default .venv) for the manifest (cuobjdump from its nvidia-cuda-cuobjdump wheel).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/gpu_artifacts"
BUILD_DIR="$ROOT/build/gpu_artifacts"
PY="${ZSSEG_GPU_PYTHON:-}"
ARCHS=""
TEST_ARCHS="90"
DEFINES=()
PYWHEELS=""
PREBUILT_WHEEL=""
PREBUILT_CPP=""
LIMIT_MIB=64
ALLOW_DIRTY=0
TOOLS_PY="${ZSSEG_VENV:-$ROOT/.venv}/bin/python"

usage_error() {
  echo "gpu_artifacts: $1 (see the header of tools/gpu_artifacts.sh)" >&2
  exit 2
}
fail() {
  echo "gpu_artifacts: $1" >&2
  exit 1
}
while [ $# -gt 0 ]; do
  case "$1" in
    --out | --python | --archs | --test-archs | --define | --pywheels | --wheel | --cpp-tests | --build-dir | --limit-mib)
      [ $# -ge 2 ] && [ -n "$2" ] || usage_error "$1 needs a value"
      case "$1" in
        --out) OUT="$2" ;;
        --python) PY="$2" ;;
        --archs) ARCHS="$2" ;;
        --test-archs) TEST_ARCHS="$2" ;;
        --define) [[ "$2" == *=* ]] || usage_error "--define needs NAME=VALUE"; DEFINES+=("$2") ;;
        --pywheels) [ -d "$2" ] || usage_error "--pywheels needs a folder of wheels"; PYWHEELS="$(cd "$2" && pwd)" ;;
        --wheel) [ -f "$2" ] || usage_error "--wheel needs a wheel file"; PREBUILT_WHEEL="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")" ;;
        --cpp-tests) [ -f "$2" ] || usage_error "--cpp-tests needs a binary"; PREBUILT_CPP="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")" ;;
        --build-dir) BUILD_DIR="$2" ;;
        --limit-mib) [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "--limit-mib needs a number"; LIMIT_MIB="$2" ;;
      esac
      shift 2
      ;;
    --allow-dirty) ALLOW_DIRTY=1; shift ;;
    *) usage_error "unknown argument $1" ;;
  esac
done
mkdir -p "$BUILD_DIR"
BUILD_DIR="$(cd "$BUILD_DIR" && pwd)"
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
T_START=$(date +%s)

# ---- prerequisites, each with what to do ---------------------------------------------------------------------------
[ -x "$TOOLS_PY" ] || TOOLS_PY="$(command -v python3)"
git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1 || fail "$ROOT is not a git checkout (the manifest names the commit)"
case "$OUT" in
  "$ROOT"/*) git -C "$ROOT" check-ignore -q --no-index "${OUT#"$ROOT"/}/manifest.json" \
    || fail "$OUT is not git-ignored: it would travel twice (as the working tree and carried) and could be committed; add it to .gitignore" ;;
  *) echo "gpu_artifacts: note: $OUT is outside the checkout; the device tool carries only folders inside it" ;;
esac
if [ -z "$PY" ]; then
  for candidate in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
    if [ -z "$PY" ] && "$candidate" -c '' >/dev/null 2>&1; then PY="$(command -v "$candidate")"; fi
  done
  [ -n "$PY" ] || fail "no CPython 3.12 found (the GPU image's Python is 3.12): name one with --python or ZSSEG_GPU_PYTHON"
fi
command -v "$PY" >/dev/null 2>&1 || fail "--python $PY: not found"
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
PY_TAG="cp${PY_VERSION/./}"
"$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || fail "$PY has no Python.h (the wheel compiles against it): install python$PY_VERSION-dev, or use pyenv's build"
CUDA=1
for d in ${DEFINES[@]+"${DEFINES[@]}"}; do
  case "$d" in ZS_WITH_CUDA=OFF | ZS_WITH_CUDA=0 | ZS_WITH_CUDA=FALSE) CUDA=0 ;; esac
done
NVCC="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
NVCC_VERSION="none (ZS_WITH_CUDA=OFF)"
if [ "$CUDA" = 1 ] && [ -x "$NVCC" ]; then
  export CUDACXX="$NVCC"
  NVCC_VERSION="$("$NVCC" --version | grep -m 1 release || true)"
fi
if [ -z "$PREBUILT_WHEEL" ] || [ -z "$PREBUILT_CPP" ]; then  # something to build
  if [ "$CUDA" = 1 ] && [ ! -x "$NVCC" ]; then
    fail "nvcc not found (PATH, CUDACXX, /usr/local/cuda/bin): the CUDA kernels need it (or --define ZS_WITH_CUDA=OFF for a CPU-only trial)"
  fi
  command -v cmake >/dev/null 2>&1 || fail "cmake not found (>= 3.18): apt-get install cmake"
fi
if [ -z "$PREBUILT_WHEEL" ]; then
  "$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || fail "$PY has no Python.h (the wheel compiles against it): install python$PY_VERSION-dev, or use pyenv's build"
else
  case "$(basename "$PREBUILT_WHEEL")" in
    zsseg_rt-*-"$PY_TAG"-*.whl) ;;
    *) fail "--wheel $PREBUILT_WHEEL is no zsseg_rt wheel for $PY_TAG (--python $PY)" ;;
  esac
fi
if [ -z "$PREBUILT_CPP" ]; then
  [ -f /usr/lib/x86_64-linux-gnu/cmake/GTest/GTestConfig.cmake ] || [ -n "${CMAKE_PREFIX_PATH:-}" ] \
    || fail "GoogleTest's CMake package not found: apt-get install libgtest-dev (it is linked statically into the C++ tests)"
fi
GENERATOR="Unix Makefiles"
if command -v ninja >/dev/null 2>&1; then GENERATOR="Ninja"; fi
command -v readelf >/dev/null 2>&1 || fail "readelf not found: apt-get install binutils (the manifest checks each binary's libraries)"
# the folder is replaced at the end: only an empty one or earlier artefacts (never a folder of something else)
if [ -e "$OUT" ] && [ ! -f "$OUT/manifest.json" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
  fail "$OUT exists and holds no manifest.json: not replacing a folder that is not earlier artefacts"
fi
JOBS="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"

# A build folder per configuration (CMake keeps CMAKE_CUDA_ARCHITECTURES in its cache: another list needs its own)
spec_key() { printf '%s\n' "$@" | sha256sum | cut -c1-8; }
if [ -z "$ARCHS" ] && [ ${#DEFINES[@]} -eq 0 ]; then
  WHEEL_BUILD="$BUILD_DIR/wheel-$PY_TAG"
else
  WHEEL_BUILD="$BUILD_DIR/wheel-$PY_TAG-$(spec_key "$ARCHS" ${DEFINES[@]+"${DEFINES[@]}"})"
fi
CPP_BUILD="$BUILD_DIR/cpp-$(spec_key "$TEST_ARCHS" ${DEFINES[@]+"${DEFINES[@]}"})"
STAGING="$BUILD_DIR/staging"
rm -rf "$STAGING"
mkdir -p "$STAGING/wheels" "$STAGING/cpp" "$STAGING/pywheels" "$STAGING/clips"
LOGS="$BUILD_DIR/logs"
mkdir -p "$LOGS"
run_logged() {  # run_logged NAME COMMAND...: the output into LOGS/NAME.log, its tail on failure
  local name="$1"
  shift
  if ! "$@" >"$LOGS/$name.log" 2>&1; then
    tail -n 30 "$LOGS/$name.log" >&2
    fail "$name failed (log: $LOGS/$name.log)"
  fi
}

# ---- 1. the Python wheels the GPU image lacks, and an early size check ----------------------------------------------
t0=$(date +%s)
HARNESS="$(cd "$ROOT" && "$TOOLS_PY" -m checks gpu_check_support harness-pins)" || fail "the test tools' pins: see above"
mapfile -t HARNESS <<<"$HARNESS"
if [ -n "$PYWHEELS" ]; then
  cp "$PYWHEELS"/*.whl "$STAGING/pywheels/" 2>/dev/null || fail "--pywheels $PYWHEELS holds no wheel"
  # the test tools every stage installs must be there, at their pins (packaging, pygments only where the image lacks)
  (cd "$ROOT" && "$TOOLS_PY" -m checks gpu_check_support harness-pins --wheels "$STAGING/pywheels") \
    || fail "--pywheels $PYWHEELS: see above"
else
  mapfile -t CARRIED < <(cd "$ROOT" && "$TOOLS_PY" -m checks gpu_stages carried-python)
  CARRIED+=("${HARNESS[@]}")
  echo "== Python wheels for $PY_TAG: ${CARRIED[*]}"
  run_logged pywheels "$PY" -m pip download --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$STAGING/pywheels" "${CARRIED[@]}"
fi
T_PYWHEELS=$(($(date +%s) - t0))
# the probe's clip for --live on CUDA (checks/gpu_artifacts.py clip): counted in the size check below
run_logged clip bash -c 'cd "$1" && "$2" -m checks gpu_artifacts clip --out "$3"' bash "$ROOT" "$TOOLS_PY" "$STAGING/clips"
tail -n 1 "$LOGS/clip.log"
(cd "$ROOT" && "$TOOLS_PY" -m checks gpu_artifacts size --root "$ROOT" --limit-mib "$LIMIT_MIB" "$STAGING") \
  || fail "refused before building: see above"

# ---- 2. the wheel --------------------------------------------------------------------------------------------------
build_python() {  # the Python that builds the wheel: --python itself where it has the pinned build requirements
  local venv="$BUILD_DIR/venv-$PY_TAG" requires
  requires="$(cd "$ROOT" && "$TOOLS_PY" -c 'import sys; sys.path.append("."); from checks import gpu_check_support as s; print(" ".join(s.project_requirements("build")))')"
  # shellcheck disable=SC2086  # the requirements are words
  if "$PY" -c 'import importlib.metadata as m, sys
def has(pin):
    name, _, version = pin.partition("==")
    try:
        return bool(version) and m.version(name) == version
    except m.PackageNotFoundError:
        return False
sys.exit(not all(has(pin) for pin in sys.argv[1:]))' $requires; then
    BUILD_PY="$PY"  # a project venv: nothing to download
  elif [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requires" 2>/dev/null)" = "$requires" ]; then
    BUILD_PY="$venv/bin/python"
  else
    echo "== a build environment for $PY_TAG: $requires"
    rm -rf "$venv"
    run_logged venv "$PY" -m venv "$venv"
    # shellcheck disable=SC2086  # the requirements are words
    run_logged build_requires "$venv/bin/python" -m pip install -q $requires
    echo "$requires" >"$venv/.requires"
    BUILD_PY="$venv/bin/python"
  fi
}

build_wheel() {
  local args=(-C "build-dir=$WHEEL_BUILD") d status
  build_python
  if [ -n "$ARCHS" ]; then args+=(-C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$ARCHS"); fi
  for d in ${DEFINES[@]+"${DEFINES[@]}"}; do args+=(-C "cmake.define.$d"); done
  echo "== the zsseg_rt wheel for $PY_TAG (CUDA architectures: ${ARCHS:-the default list}; build folder ${WHEEL_BUILD#"$ROOT"/})"
  run_logged wheel env CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" "$BUILD_PY" -m pip wheel -v --no-build-isolation \
    --no-deps --no-cache-dir -w "$STAGING/wheels" "${args[@]}" "$ROOT"
  status="$(grep -o 'zsseg_rt: CUDA kernels [A-Z]* (archs: [^)]*)' "$LOGS/wheel.log" | tail -n 1 || true)"
  WHEEL_ARCHS="$(sed -n 's/.*(archs: \(.*\))/\1/p' <<<"$status")"
  if [ "$CUDA" = 1 ] && [[ "$status" != *"CUDA kernels ON"* ]]; then
    fail "the wheel was built without CUDA kernels ('$status'): see $LOGS/wheel.log"
  fi
  if [ "$CUDA" = 0 ]; then WHEEL_ARCHS="none (ZS_WITH_CUDA=OFF)"; fi
}

# ---- 3. the C++ tests ------------------------------------------------------------------------------------------------
build_cpp() {
  local args=(-S "$ROOT" -B "$CPP_BUILD" -G "$GENERATOR" -DZS_BUILD_TESTS=ON -DZS_BUILD_PYTHON=OFF
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CUDA_ARCHITECTURES=$TEST_ARCHS" -DCMAKE_CUDA_FLAGS=-lineinfo
    -DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST) d
  for d in ${DEFINES[@]+"${DEFINES[@]}"}; do args+=("-D$d"); done
  echo "== the C++ tests (CUDA architectures: $TEST_ARCHS; build folder ${CPP_BUILD#"$ROOT"/})"
  run_logged cpp_configure cmake "${args[@]}"
  run_logged cpp_build cmake --build "$CPP_BUILD" -j "$JOBS" --target zsseg_cpp_tests
  # host debug information off (symbols stay, for the sanitizer's backtraces); the device line information stays
  strip --strip-debug -o "$STAGING/cpp/zsseg_cpp_tests" "$CPP_BUILD/zsseg_cpp_tests"
  if [ "$CUDA" = 0 ]; then TEST_ARCHS="none (ZS_WITH_CUDA=OFF)"; fi
}

t0=$(date +%s)
if [ -n "$PREBUILT_WHEEL" ]; then
  cp "$PREBUILT_WHEEL" "$STAGING/wheels/"
  WHEEL_ARCHS="prebuilt ($(basename "$PREBUILT_WHEEL")): see binaries"
else
  build_wheel
fi
T_WHEEL=$(($(date +%s) - t0))
[ "$(find "$STAGING/wheels" -name "zsseg_rt-*-$PY_TAG-*.whl" | wc -l)" = 1 ] || fail "no $PY_TAG wheel came out (see $LOGS/wheel.log)"
t0=$(date +%s)
if [ -n "$PREBUILT_CPP" ]; then
  install -m 755 "$PREBUILT_CPP" "$STAGING/cpp/zsseg_cpp_tests"
  TEST_ARCHS="prebuilt ($(basename "$PREBUILT_CPP")): see binaries"
else
  build_cpp
fi
T_CPP=$(($(date +%s) - t0))

# ---- 4. the manifest (refuses: over the limit, a library the image may lack, a dirty tree) --------------------------
INFO_NVCC="$NVCC_VERSION" INFO_TAG="$PY_TAG" INFO_WHEEL_ARCHS="$WHEEL_ARCHS" INFO_TEST_ARCHS="$TEST_ARCHS" \
  INFO_CUDA="$CUDA" INFO_DEFINES="$(IFS=';'; echo "${DEFINES[*]:-}")" INFO_PREBUILT="$PREBUILT_WHEEL$PREBUILT_CPP" \
  INFO_HOST="$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), $(ldd --version 2>/dev/null | head -n 1), $(c++ --version 2>/dev/null | head -n 1)" \
  INFO_SECONDS="$T_PYWHEELS $T_WHEEL $T_CPP" "$PY" -c 'import json, os, platform, sys
e = os.environ
seconds = dict(zip(("pywheels", "wheel", "cpp_tests"), map(int, e["INFO_SECONDS"].split())))
json.dump({"nvcc": e["INFO_NVCC"], "python_tag": e["INFO_TAG"], "python": platform.python_version(),
           "wheel_archs": e["INFO_WHEEL_ARCHS"], "test_archs": e["INFO_TEST_ARCHS"], "cuda": e["INFO_CUDA"] == "1",
           "defines": e["INFO_DEFINES"], "prebuilt": bool(e["INFO_PREBUILT"]), "build_host": e["INFO_HOST"],
           "build_seconds": seconds}, open(sys.argv[1], "w"), indent=1)' "$BUILD_DIR/info.json"
DIRTY=()
if [ "$ALLOW_DIRTY" = 1 ]; then DIRTY=(--allow-dirty); fi
echo "== the manifest"
(cd "$ROOT" && "$TOOLS_PY" -m checks gpu_artifacts manifest --artifacts "$STAGING" --root "$ROOT" \
  --info "$BUILD_DIR/info.json" --limit-mib "$LIMIT_MIB" ${DIRTY[@]+"${DIRTY[@]}"}) \
  || fail "refused: the previous artefacts in $OUT are unchanged"
rm -rf "$OUT"
mv "$STAGING" "$OUT"
echo "gpu_artifacts: built $OUT in $(($(date +%s) - T_START)) s (wheel $T_WHEEL s, C++ tests $T_CPP s, Python wheels $T_PYWHEELS s); carry it with: carry [\"${OUT#"$ROOT"/}\"]"
