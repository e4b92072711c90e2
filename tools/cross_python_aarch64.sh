#!/usr/bin/env bash
# The Python package on aarch64 without a Jetson (issue 90): the runtime wheel cross-compiled for aarch64 CPython,
# installed with the aarch64 wheels of its dependencies from PyPI, and run under qemu-user (no binfmt).
#   1. an arm64 root (Debian bookworm, `mmdebstrap --variant=extract`: CPython 3.11, its headers, libstdc++, libgomp;
#      no shell, so what the emulated programs start is the host's /bin/sh);
#   2. `zsseg_rt-*-cp311-cp311-linux_aarch64.whl` built here by pip + scikit-build-core with
#      cmake/aarch64-linux-gnu.cmake (CUDA off), against the root's Python headers;
#   3. a venv made by the root's Python under qemu, the wheel and `pip download --platform manylinux2014_aarch64
#      --only-binary=:all:` wheels installed into it (uv, offline, from the cache);
#   4. under qemu: `import zsseg_rt`, `zsseg segment` on the sample photos with a tiny bundle exported here on x86,
#      the Engine's labels and scores with Result.objects(), `zsseg camera ... -o out.mcap --objects` read back, and
#      the native ops' Python tests that need no torch and no GPU (AARCH64_TESTS below);
#   5. here: aarch64's labels against x86's (within a bound, with its reason, at "aarch64 against x86" below), the
#      objects of aarch64's labels found again on x86.
# --jetson adds JetPack's layout (tools/setup_jetson.sh run against a JetPack-like /etc, a stand-in TensorRT 10.3
# in the root's system site-packages, through to a venv that imports zsseg_rt and refuses --backend tensorrt).
# Called by tools/run_tests.sh (both parts); standalone:  bash tools/cross_python_aarch64.sh [--jetson]
#   ZSSEG_VENV             the development venv (default .venv): pip/scikit-build-core/cmake/ninja/uv for the
#                          build, torch for the bundle export, the x86 reference
#   ZSSEG_AARCH64_PY_DIR   this run's files (default build/aarch64-python: the wheel, the venvs, the outputs)
#   ZSSEG_AARCH64_CACHE    the root filesystems and wheels, reused by every run on this machine (default
#                          ~/.cache/zsseg_rt/aarch64, beside the compiler cache; each keyed by what it holds)
# Why no binfmt: registering one changes the whole machine; `qemu-aarch64-static -L ROOT` runs each program and a
# wrapper script (bin/python3) starts the root's Python so, so that a venv made from it and the subprocesses the tests
# start (sys.executable) run under qemu too. qemu-user 7.2 shows the host's /proc/cpuinfo (x86) to the guest, on
# which ONNX Runtime's cpuinfo finds no ARM core and crashes at import: the root holds the /proc/cpuinfo of an
# Orin's Cortex-A78AE cores (qemu reads a guest path from the root when the root has it).
# twin (by shape): tools/runtime_only_tests.sh and the other tools/ scripts - the standalone preamble (repository
# root, venv and Python from the environment)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv}"
OUT="${ZSSEG_AARCH64_PY_DIR:-$ROOT/build/aarch64-python}"
CACHE="${ZSSEG_AARCH64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zsseg_rt/aarch64}"
JETSON=0
case "${1:-}" in
  --jetson) JETSON=1 ;;
  "") ;;
  *) echo "usage: bash tools/cross_python_aarch64.sh [--jetson]" >&2; exit 2 ;;
esac
SUITE=bookworm PYV=3.11 SOABI=cpython-311-aarch64-linux-gnu
DEBS=(python3.11 libpython3.11-dev python3.11-venv libstdc++6 libgomp1)
# The runtime set and the robots extra (the MCAP file) from pyproject.toml's ranges, as a user's `pip install
# zsseg_rt[runtime,robots]` resolves them, with NumPy 1.26 (as on a Jetson whose OpenCV is built against NumPy 1.x;
# so OpenCV resolves to a 4.x built for NumPy 1.x) and ONNX Runtime at the development pin (the x86 reference's
# kernels' version); the tests' tools at their pins (requirements.txt).
EXTRAS=(onnxruntime opencv objects robots)
PINNED=(onnxruntime pytest hypothesis filelock)
# The native ops' tests run under qemu: the CPU kernels' files that need neither torch nor a GPU (their CUDA tests
# skip there; test_segment.py, test_segment_windows.py and test_upsample.py compare with torch). Under qemu a test
# costs about 10x its x86 time, so the files of CUDA tests only, the fuzzers of the bindings and the checks of the
# module's symbols and of the emulator stay x86's.
AARCH64_TESTS=(ops/test_segment_windows_plan.py ops/test_segment_windows_softmax.py ops/test_segment_windows_synonyms.py
  ops/test_segment_windows_variants.py ops/test_warp.py ops/test_temporal_ops.py ops/test_similarity.py
  ops/test_preprocess_op.py ops/test_relation_descriptor.py ops/test_pamr.py ops/test_out_buffers.py
  ops/test_dense_bad_inputs.py ops/test_masks_bad_inputs.py ops/test_op_arguments.py)
# Deselected under qemu, each with its reason (every other test of those files must pass):
AARCH64_DESELECT=(
  # Both assert the class_state kernel equal to the host path (cv2.resize INTER_AREA) bit for bit where it
  # enlarges; OpenCV's aarch64 wheel computes those linear coefficients with NEON fused multiply-adds, the kernel
  # without contraction (CMakeLists.txt): on aarch64 they differ by 1-8 ulp (e.g. 1x3 -> 1x4: 1.2e-7; 64x85 ->
  # 120x160: 17 % of the values, at most 4.8e-7). The first one's float64 reference bound holds there.
  ops/test_temporal_ops.py::test_class_state_resizes_as_opencv_inter_area
  ops/test_temporal_ops.py::test_class_state_enlarges_as_the_host_path
  # peak-memory accounting (which allocations the fused paths avoid), not arithmetic: the same on every CPU, x86's
  # run has them; 30 s each under qemu
  ops/test_segment_windows_synonyms.py::test_memory_has_no_name_or_class_map
  ops/test_segment_windows_softmax.py::test_peak_memory_has_no_class_map
)
say() { echo "[aarch64-python] $*"; }
die() { echo "[aarch64-python] ERROR: $*" >&2; exit 1; }
t_start=$SECONDS
TIMES="$(mktemp)"
JETSON_PID=""
kill_tree() {  # kill_tree PID: the process and its descendants, children first (a failure ends the rehearsal too)
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
trap 'rm -f "$TIMES"; [ -z "$JETSON_PID" ] || kill_tree "$JETSON_PID"' EXIT
mark() {  # mark WHAT: WHAT, with the wall time since the start and the CPU time of the finished commands (user+sys:
  # qemu's included), as tools/run_tests.sh counts its stages
  times >"$TIMES"
  say "$1 ($((SECONDS - t_start)) s, $(awk 'END { n = split($0, f, /[ ms]+/); s = 0; for (i = 1; i + 1 <= n; i += 2)
    s += f[i] * 60 + f[i + 1]; printf "%.0f", s }' "$TIMES") CPU-s)"
}

missing=()
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (Debian)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
HOST_PYV="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$HOST_PYV" = "$PYV" ] || die "the wheel is built by $VENV/bin/python for its own CPython version: $PYV (Debian $SUITE's) was expected, $HOST_PYV was found"
mkdir -p "$CACHE" "$OUT"
key() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

# ---- 1. the arm64 roots (cached): the plain one, and a JetPack-like copy (hard links) --------------------------
CPUINFO=""
for ((i = 0; i < $(nproc); i++)); do  # as many cores as /sys/devices/system/cpu says (the host's)
  CPUINFO+="processor	: $i
BogoMIPS	: 62.50
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd42
CPU revision	: 1

"
done
# JetPack 6.2 (L4T r36.4.3; JetPack 6.1 is r36.4.0): TensorRT 10.3.0.30 in the system Python's dist-packages
TEGRA_RELEASE="# R36 (release), REVISION: 4.3, GCID: 0 (a stand-in), BOARD: generic, EABI: aarch64"
TEGRA_MODEL="NVIDIA Jetson AGX Orin Developer Kit"
# The stand-ins of JetPack's TensorRT bindings and of its CUDA driver (the root has no GPU): the module imports and
# says its version, as JetPack's does; the driver loads, and cuInit says why there is no device, with its name.
TRT_STANDIN="$(cat <<'PY'
"""A stand-in for JetPack 6.2's TensorRT Python bindings (python3-libnvinfer 10.3.0.30), written by
tools/cross_python_aarch64.sh --jetson into an arm64 root without a GPU: it imports and says its version as
JetPack's does; what needs libnvinfer fails with REASON."""

__version__ = "10.3.0.30"
REASON = "a stand-in of JetPack 6.2's TensorRT 10.3.0.30 (tools/cross_python_aarch64.sh --jetson): no libnvinfer, no GPU"


class Logger:
    VERBOSE, INFO, WARNING, ERROR, INTERNAL_ERROR = range(5)

    def __init__(self, min_severity=WARNING):
        self.min_severity = min_severity


class _NeedsTheLibrary:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(REASON)


class Builder(_NeedsTheLibrary):
    pass


class Runtime(_NeedsTheLibrary):
    pass


class OnnxParser(_NeedsTheLibrary):
    pass
PY
)"
CUDA_STANDIN_REASON="no CUDA-capable device is detected (a stand-in of JetPack's CUDA driver, tools/cross_python_aarch64.sh --jetson: an arm64 root under qemu has no GPU)"
# every driver entry point zsseg_rt's Python code names (ctypes declares them all when it loads the library)
mapfile -t CUDA_CALLS < <(grep -rhoE '\bcu[A-Z][A-Za-z0-9_]+' "$ROOT/zsseg_rt" --include='*.py' | sort -u)
RFS="$CACHE/root-$(key "$SUITE" "${DEBS[@]}" "$CPUINFO" v1)"
JRFS="$RFS-jetpack-$(key "$TEGRA_RELEASE" "$TEGRA_MODEL" "$TRT_STANDIN" "$CUDA_STANDIN_REASON" "${CUDA_CALLS[@]}")"
if [ ! -x "$RFS/usr/bin/python$PYV" ]; then
  mark "making the arm64 root $RFS (mmdebstrap --variant=extract: ${DEBS[*]})"
  tmp="$(mktemp -d "$CACHE/.root.XXXXXX")"
  mmdebstrap --quiet --variant=extract --architectures=arm64 --include="$(IFS=,; echo "${DEBS[*]}")" "$SUITE" "$tmp/r" \
    >"$tmp/log" 2>&1 || { tail -30 "$tmp/log"; die "mmdebstrap failed"; }
  # the guest sees the host's /tmp and /dev (a path the root lacks is the host's); its own /proc/cpuinfo
  rm -rf "$tmp/r/tmp" "$tmp/r/dev"
  mkdir -p "$tmp/r/proc" && printf '%s' "$CPUINFO" >"$tmp/r/proc/cpuinfo"
  mv -T "$tmp/r" "$RFS" 2>/dev/null || say "another run made $RFS meanwhile: using it"
  rm -rf "$tmp"
fi
if [ "$JETSON" = 1 ] && [ ! -f "$JRFS/usr/lib/python3/dist-packages/tensorrt/__init__.py" ]; then
  tmp="$(mktemp -d "$CACHE/.jroot.XXXXXX")"
  cp -al "$RFS" "$tmp/r"  # hard links: the copy costs no space; nothing writes into a root
  printf '%s\n' "$TEGRA_RELEASE" >"$tmp/r/etc/nv_tegra_release"
  mkdir -p "$tmp/r/proc/device-tree" "$tmp/r/usr/lib/python3/dist-packages/tensorrt"
  printf '%s\0' "$TEGRA_MODEL" >"$tmp/r/proc/device-tree/model"
  printf '%s\n' "$TRT_STANDIN" >"$tmp/r/usr/lib/python3/dist-packages/tensorrt/__init__.py"
  {
    echo "/* stand-in libcuda.so.1: every call fails with 100, CUDA_ERROR_NO_DEVICE (tools/cross_python_aarch64.sh) */"
    for call in "${CUDA_CALLS[@]}"; do
      case "$call" in
        cuGetErrorString | cuGetErrorName) echo "int $call(int e, const char **s) { *s = \"$CUDA_STANDIN_REASON\"; return 0; }" ;;
        cuDriverGetVersion) echo "int $call(int *v) { *v = 12060; return 0; }" ;;  # JetPack 6.1/6.2: CUDA 12.6
        *) echo "int $call(void) { return 100; }" ;;
      esac
    done
  } >"$tmp/libcuda.c"
  aarch64-linux-gnu-gcc -shared -fPIC -O1 -o "$tmp/r/usr/lib/aarch64-linux-gnu/libcuda.so.1" "$tmp/libcuda.c"
  mv -T "$tmp/r" "$JRFS" 2>/dev/null || true
  rm -rf "$tmp"
fi
python_wrapper() {  # python_wrapper ROOTFS FILE: FILE runs the root's CPython under qemu; its argv[0] stays FILE's
  # path (a venv made from it finds its pyvenv.cfg), its bytecode goes to the cache (the venvs are made every run),
  # also where PYTHONDONTWRITEBYTECODE=1 is set (the CI machine): it wrote none there, so each of the script's
  # processes under qemu compiled every module it imported (NumPy, ONNX Runtime, zsseg_rt, pytest, pip) at about 10x
  # x86's cost; with the bytecode in the cache the script took 241 CPU-s against 292 (--jetson, cold, 2-core EPYC).
  # Only the cache receives it (PYTHONPYCACHEPREFIX), never a tree or a venv.
  mkdir -p "$(dirname "$2")"
  cat >"$2" <<EOF
#!/bin/sh
# the aarch64 CPython of $1 under qemu-user (tools/cross_python_aarch64.sh)
export PYTHONPYCACHEPREFIX="\${PYTHONPYCACHEPREFIX:-$CACHE/pycache}"
unset PYTHONDONTWRITEBYTECODE
exec qemu-aarch64-static -L "$1" -0 "\$0" "$1/usr/bin/python$PYV" "\$@"
EOF
  chmod +x "$2"
}
python_wrapper "$RFS" "$OUT/bin/python3"
"$OUT/bin/python3" -c 'import platform, sys; assert platform.machine() == "aarch64", platform.machine()'

# ---- 2. the dependencies' aarch64 wheels (cached) ----------------------------------------------------------------
mapfile -t REQS < <(grep -E "^($(IFS='|'; echo "${PINNED[*]}"))==" "$ROOT/requirements.txt" | sed -E 's/[[:space:]]*#.*$//')
[ ${#REQS[@]} = ${#PINNED[@]} ] || die "requirements.txt pins ${#REQS[@]} of the ${#PINNED[@]} packages ${PINNED[*]}"
REQS+=("numpy==1.26.4")
mapfile -t -O ${#REQS[@]} REQS < <("$VENV/bin/python" - "$ROOT/pyproject.toml" "${EXTRAS[@]}" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["dependencies"] + [r for extra in sys.argv[2:] for r in project["optional-dependencies"][extra]]))
PY
)
PLATFORMS=(manylinux2014_aarch64 manylinux_2_28_aarch64)  # glibc <= 2.28: what JetPack 6 (Ubuntu 22.04, 2.35) runs
WHEELS="$CACHE/wheels-$(key "$PYV" "${PLATFORMS[@]}" "${REQS[@]}")"
if [ ! -f "$WHEELS/.complete" ]; then
  mark "downloading the aarch64 wheels of ${#REQS[@]} packages into $WHEELS"
  tmp="$(mktemp -d "$CACHE/.wheels.XXXXXX")"
  "$VENV/bin/pip" download -q -d "$tmp" --only-binary=:all: --implementation cp --python-version "$PYV" \
    --abi "cp${PYV/./}" "${PLATFORMS[@]/#/--platform=}" "${REQS[@]}" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  touch "$tmp/.complete"
  mv -T "$tmp" "$WHEELS" 2>/dev/null || rm -rf "$tmp"
fi

# ---- 3. the zsseg_rt wheel, cross-compiled ------------------------------------------------------------------------
mark "cross-compiling the zsseg_rt wheel for aarch64 CPython $PYV (CUDA off)"
if [ "${ZSSEG_CCACHE:-0}" = 1 ] && command -v ccache >/dev/null 2>&1; then export CMAKE_CXX_COMPILER_LAUNCHER=ccache; fi
rm -rf "$OUT/dist" && mkdir -p "$OUT/dist"
LOG="$OUT/wheel.log"
# The kernels as a user's build compiles them (-O3); the glue as unity sources at -O1 without LTO (ZS_QUICK_BINDINGS:
# 102 -> 38 CPU-s for the whole wheel with the compiler cache off, 2-core EPYC; it runs little of the tests' time).
# the wheel's tag from _PYTHON_HOST_PLATFORM, _C's suffix from PYTHON_MODULE_EXTENSION; the root's headers (their
# pyconfig.h is aarch64's) after the cross compiler's own
(cd "$ROOT" && _PYTHON_HOST_PLATFORM=linux-aarch64 SETUPTOOLS_EXT_SUFFIX=".$SOABI.so" "$VENV/bin/pip" wheel -q \
  --no-build-isolation --no-deps -w "$OUT/dist" . -C build-dir=build/aarch64-py \
  -C cmake.define.CMAKE_TOOLCHAIN_FILE="$ROOT/cmake/aarch64-linux-gnu.cmake" -C cmake.define.ZS_WITH_CUDA=OFF \
  -C cmake.define.ZS_QUICK_BINDINGS=ON -C cmake.define.CMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
  -C cmake.define.Python_INCLUDE_DIR="$RFS/usr/include/python$PYV" \
  -C cmake.define.PYTHON_MODULE_EXTENSION=".$SOABI.so" \
  -C cmake.define.pybind11_DIR="$("$VENV/bin/python" -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -C cmake.define.CMAKE_CXX_FLAGS="-idirafter $RFS/usr/include") >"$LOG" 2>&1 || { tail -40 "$LOG"; die "the wheel build failed"; }
WHEEL="$(ls "$OUT"/dist/zsseg_rt-*-cp${PYV/./}-cp${PYV/./}-linux_aarch64.whl)"
"$VENV/bin/python" - "$WHEEL" "$SOABI" <<'PY'
import sys, zipfile
wheel, soabi = sys.argv[1:]
names = [n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("zsseg_rt/_C")]
want = f"zsseg_rt/_C.{soabi}.so"
if names != [want]:
    sys.exit(f"[aarch64-python] the wheel's native module is {names}, expected [{want!r}]")
with zipfile.ZipFile(wheel).open(want) as so:
    head = so.read(20)
if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != 183:  # e_machine 183: EM_AARCH64
    sys.exit(f"[aarch64-python] {want} is not an aarch64 ELF file")
PY
say "$(basename "$WHEEL"): zsseg_rt/_C.$SOABI.so, an aarch64 ELF file"

# ---- 4. the venv under qemu ---------------------------------------------------------------------------------------
export UV_CACHE_DIR="$CACHE/uv"
AVENV="$OUT/venv"
rm -rf "$AVENV"
"$OUT/bin/python3" -m venv --without-pip "$AVENV"
"$VENV/bin/uv" pip install -q --python "$AVENV/bin/python" --offline --no-index --find-links "$WHEELS" \
  "$WHEEL[$(IFS=,; echo "${EXTRAS[*]}")]" "${REQS[@]}"
mark "venv $AVENV: $(basename "$WHEEL") and the aarch64 wheels installed"

# ---- 5. the checks: under qemu, then aarch64 against x86 ----------------------------------------------------------
SAMPLES="$ROOT/zsseg_rt/assets/samples/JPEGImages"
RUN="$OUT/run"
rm -rf "$RUN" && mkdir -p "$RUN/x86" "$RUN/aarch64"
if [ -n "${ZSSEG_TEST_TINY_BUNDLE:-}" ] && [ -f "$ZSSEG_TEST_TINY_BUNDLE/meta.json" ]; then
  # exported beforehand, on x86 too (tools/run_tests.sh exports it once for all its suites): copied
  cp -r "$ZSSEG_TEST_TINY_BUNDLE" "$RUN/bundle"
  [ ! -d "$(dirname "$ZSSEG_TEST_TINY_BUNDLE")/native" ] || cp -r "$(dirname "$ZSSEG_TEST_TINY_BUNDLE")/native" "$RUN/native"
  BUNDLE="$RUN/bundle"
  mark "tiny bundle exported on x86 beforehand ($ZSSEG_TEST_TINY_BUNDLE), copied"
else
  PYTHONPATH="$ROOT:$ROOT/python_tests" "$VENV/bin/python" -c \
    "import sys; from support import export_tiny_bundle; export_tiny_bundle(sys.argv[1])" "$RUN" >/dev/null
  BUNDLE="$RUN/bundle"
  mark "tiny bundle exported on x86"
fi
# The Engine on each sample photo (VOC's 21 classes, ONNX Runtime fp32): labels and scores, Result.objects(); the
# same program on both machines. On aarch64 it also reads back the MCAP file that `zsseg camera` wrote.
ENGINE_PY="$(cat <<'PY'
import glob, json, os, platform, sys
import numpy as np
import zsseg_rt
import zsseg_rt.ops as ops
from zsseg_rt import Engine

bundle, samples, out = sys.argv[1:4]
module = ops.native_module()
print(f"[aarch64-python] {platform.machine()}: zsseg_rt {zsseg_rt.__version__} from {os.path.dirname(zsseg_rt.__file__)}, "
      f"_C {os.path.basename(module.__file__)}, CUDA kernels compiled: {module.cuda_compiled()}, numpy {np.__version__}")
engine = Engine(bundle, classes="voc21", backend="onnxruntime", device="cpu")
objects = {}
for path in sorted(glob.glob(os.path.join(samples, "*.jpg"))):
    result = engine(path)
    name = os.path.basename(path)
    np.savez(os.path.join(out, name + ".npz"), labels=result.labels, scores=result.scores)
    objects[name] = result.objects().to_dict()
with open(os.path.join(out, "objects.json"), "w") as handle:
    json.dump({"machine": platform.machine(), "classes": engine.class_names, "objects": objects}, handle)
if len(sys.argv) > 4:  # the MCAP file of `zsseg camera SAMPLES -o FILE --objects`, read by the MCAP project's reader
    from mcap_ros2.reader import read_ros2_messages

    topics = {}
    for message in read_ros2_messages(sys.argv[4]):
        topics.setdefault(message.channel.topic, []).append(message.ros_msg)
    names = sorted(objects)
    counts = {topic: len(found) for topic, found in topics.items()}
    want = {f"/JPEGImages/{kind}": len(names) for kind in ("labels", "overlay", "objects", "annotations")}
    want["/JPEGImages/label_info"] = 1
    assert counts == want, f"MCAP topics {counts}, expected {want}"
    info = [entry.class_name for entry in topics["/JPEGImages/label_info"][0].class_map]
    assert info == engine.class_names, f"label_info {info} != {engine.class_names}"
    for name, image, detections in zip(names, topics["/JPEGImages/labels"], topics["/JPEGImages/objects"]):
        labels = np.frombuffer(bytes(image.data), "<u2").reshape(image.height, image.width)
        mine = np.load(os.path.join(out, name + ".npz"))["labels"]
        assert labels.shape == mine.shape and (labels == mine).all(), f"{name}: the MCAP labels differ from the Engine's"
        found = [d.results[0].hypothesis.class_id for d in detections.detections]
        expected = [o["name"] for o in objects[name]["objects"]]
        assert found == expected, f"{name}: MCAP objects {found}, Result.objects() {expected}"
    print(f"[aarch64-python] {sys.argv[4]}: {sum(counts.values())} messages read back; every frame's labels equal the "
          f"Engine's, its objects Result.objects()'s ({sum(len(o['objects']) for o in objects.values())} in all)")
PY
)"
(cd "$RUN" && "$VENV/bin/python" -c "$ENGINE_PY" "$BUNDLE" "$SAMPLES" "$RUN/x86" | sed 's/^/  /')
mark "x86 reference done"
# under qemu, from $RUN (not the repository: the installed package is imported)
(cd "$RUN" && "$AVENV/bin/zsseg" segment "$SAMPLES" --bundle "$BUNDLE" --classes voc21 --backend onnxruntime \
  --save-labels -o "$RUN/segment" >"$RUN/segment.log" 2>&1) || { cat "$RUN/segment.log"; die "zsseg segment failed under qemu"; }
say "  $(grep -m1 '^Speed' "$RUN/segment.log" || tail -1 "$RUN/segment.log")"
mark "zsseg segment on aarch64 done"
(cd "$RUN" && "$AVENV/bin/zsseg" camera "$SAMPLES" --bundle "$BUNDLE" --classes voc21 --backend onnxruntime \
  --objects -o "$RUN/camera.mcap" >"$RUN/camera.log" 2>&1) || { cat "$RUN/camera.log"; die "zsseg camera failed under qemu"; }
mark "zsseg camera -o camera.mcap on aarch64 done"
(cd "$RUN" && "$AVENV/bin/python" -c "$ENGINE_PY" "$BUNDLE" "$SAMPLES" "$RUN/aarch64" "$RUN/camera.mcap" | sed 's/^/  /')
mark "Engine, Result.objects() and the MCAP file on aarch64 done"

# aarch64 against x86. The bound: ONNX Runtime's fp32 kernels (MLAS: AVX2/FMA here, NEON there) sum in other
# orders, so the scores differ by about 1e-6, and a pixel whose two best classes are closer than that may take the
# other one: the tiny model's random weights give many such near-ties (0.3-0.7 % of the pixels of each photo). So:
# where the labels agree, the scores within 1e-5; where they differ, the two winners' scores within 1e-5 (a tie,
# to the precision of the kernels); at least 99 % of each photo's pixels agree. zsseg segment's label files are the
# Engine's labels exactly (same machine), and x86 finds in aarch64's labels and scores the objects aarch64 found.
(cd "$RUN" && "$VENV/bin/python" - "$RUN" <<'PY'
import glob, json, os, sys
import cv2
import numpy as np
from zsseg_rt.runtime.result import Result

run = sys.argv[1]
arm = json.load(open(os.path.join(run, "aarch64", "objects.json")))
assert arm["machine"] == "aarch64", arm["machine"]
names = sorted(arm["objects"])
assert len(names) == 4, names
for name in names:
    x86, a64 = (np.load(os.path.join(run, side, name + ".npz")) for side in ("x86", "aarch64"))
    agree = x86["labels"] == a64["labels"]
    diff = np.abs(x86["scores"].astype(np.float64) - a64["scores"])
    stem = os.path.splitext(name)[0]
    written = cv2.imread(os.path.join(run, "segment", stem + "_labels.png"), cv2.IMREAD_UNCHANGED)
    assert written is not None and (written == a64["labels"]).all(), f"{name}: zsseg segment's labels differ from the Engine's"
    flips = diff[~agree].max(initial=0.0)
    print(f"  {name}: labels equal on {agree.mean():.2%} ({(~agree).sum()} pixels differ, the two winners' scores "
          f"within {flips:.1e} there), scores within {diff[agree].max():.1e} where equal")
    assert agree.mean() >= 0.99 and diff[agree].max() <= 1e-5 and flips <= 1e-5, f"{name}: beyond the bound"
    again = Result(labels=a64["labels"], scores=a64["scores"], class_names=arm["classes"]).objects().to_dict()
    mine = arm["objects"][name]
    scores = [[o.pop("score") for o in found["objects"]] for found in (again, mine)]
    assert again == mine and np.allclose(*scores, rtol=0, atol=1e-9), (
        f"{name}: the objects of aarch64's labels found on x86 differ from aarch64's Result.objects()"
    )
print(f"[aarch64-python] labels within the bound on {len(names)} photos; zsseg segment's files are the Engine's labels; "
      f"Result.objects() of aarch64's labels equal on x86 ({sum(len(arm['objects'][n]['objects']) for n in names)} objects)")
PY
)
mark "aarch64 against x86 compared"

# ---- 6. --jetson: JetPack's layout rehearsed, beside the tests ------------------------------------------------------
rehearse_jetson() {
  # tools/setup_jetson.sh as on a Jetson, but its shell runs here (without binfmt the root's programs cannot start one
  # another) and reads the root's /etc and /proc through ZSSEG_SYSROOT; its Python, the venv (--system-site-packages:
  # the stand-in TensorRT), pip and the package are the root's aarch64 ones under qemu. pip installs offline from the
  # cached wheels (no config file of this machine's), and the wheel above stands in for the build on the device,
  # which needs JetPack's nvcc (docs/jetson.md).
  JET="$OUT/jetson"
  rm -rf "$JET" && mkdir -p "$JET"
  python_wrapper "$JRFS" "$JET/bin/python3"
  rc=0
  ZSSEG_SYSROOT="$JRFS" PYTHON="$JET/bin/python3" ZSSEG_VENV="$JET/venv" ZSSEG_JETSON_WHEEL="$WHEEL" \
    CUDA_HOME="$JET/no-cuda" PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_FIND_LINKS="$WHEELS" PIP_NO_COMPILE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 bash "$ROOT/tools/setup_jetson.sh" >"$JET/setup.log" 2>&1 || rc=$?
  sed 's/^/  /' "$JET/setup.log"
  [ "$rc" = 0 ] || die "tools/setup_jetson.sh failed in the JetPack-like root (exit $rc)"
  for line in "L4T R36.4.3 | JetPack 6.1 or newer" "GPU: $TEGRA_MODEL (building for sm_87)" "TensorRT: 10.3.0.30" \
    "zsseg_rt 0.1.0 | numpy 1.26.4 | tensorrt 10.3.0.30 | onnxruntime" "CUDA kernels compiled: False | GPU usable: False"; do
    grep -qF "$line" "$JET/setup.log" || die "setup_jetson.sh did not say: $line"
  done
  mark "tools/setup_jetson.sh: venv $JET/venv made in the JetPack-like root"
  # The venv takes JetPack's TensorRT (the root's system site-packages) and zsseg_rt accepts its version; the backend
  # is refused with the stand-in driver's reason, in one line, before the bundle is opened.
  (cd "$JET" && "$JET/venv/bin/python" -c '
import tensorrt
from zsseg_rt.runtime.backends.tensorrt.engines import import_tensorrt
assert tensorrt.__file__ == "/usr/lib/python3/dist-packages/tensorrt/__init__.py", tensorrt.__file__
print("[aarch64-python]   the venv imports TensorRT", import_tensorrt().__version__, "from", tensorrt.__file__)
')
  rc=0
  (cd "$JET" && "$JET/venv/bin/zsseg" segment "$SAMPLES/2011_000003.jpg" --bundle "$BUNDLE" --classes voc21 \
    --backend tensorrt -o "$JET/trt.png") >"$JET/tensorrt.log" 2>&1 || rc=$?
  sed 's/^/  /' "$JET/tensorrt.log"
  [ "$rc" != 0 ] && [ ! -e "$JET/trt.png" ] || die "zsseg segment --backend tensorrt was not refused (exit $rc)"
  grep -q "^zsseg segment: error: .*$CUDA_STANDIN_REASON" "$JET/tensorrt.log" \
    || die "the refusal of --backend tensorrt does not give the stand-in driver's reason"
  [ "$(wc -l <"$JET/tensorrt.log")" = 1 ] || die "the refusal of --backend tensorrt is not one line"
}
if [ "$JETSON" = 1 ]; then  # beside the tests below (each is mostly one process); its output follows theirs
  rehearse_jetson >"$OUT/jetson.out" 2>&1 &
  JETSON_PID=$!
fi

# the native ops' tests under qemu (the console script: the installed package, not the source tree, is imported)
DESELECT=(); for t in "${AARCH64_DESELECT[@]}"; do DESELECT+=(--deselect "python_tests/$t"); done  # node ids: from --rootdir
say "pytest under qemu: ${AARCH64_TESTS[*]##*/} (deselected, see AARCH64_DESELECT: ${AARCH64_DESELECT[*]##*::})"
rc=0
(cd "$RUN" && OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" "$AVENV/bin/pytest" "${AARCH64_TESTS[@]/#/$ROOT/python_tests/}" \
  "${DESELECT[@]}" --rootdir="$ROOT" -c "$ROOT/pyproject.toml" -q -p no:cacheprovider --no-header -o addopts="" \
  -rfE --junitxml="$RUN/ops.xml" >"$RUN/ops.log" 2>&1) || rc=$?
[ "$rc" = 0 ] || { grep -v '^SKIPPED' "$RUN/ops.log" | tail -80; die "the native ops' tests failed under qemu (exit $rc)"; }
"$VENV/bin/python" - "$RUN/ops.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
bad = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
skipped = sum(1 for c in cases if c.find("skipped") is not None)
if bad or len(cases) - skipped == 0:
    sys.exit(f"[aarch64-python] native ops' tests under qemu: {len(bad)} failed, {len(cases) - skipped - len(bad)} passed")
print(f"[aarch64-python] native ops' tests under qemu: {len(cases) - skipped} passed, {skipped} skipped (CUDA, torch)")
PY
mark "native ops' tests on aarch64 done"

if [ -n "$JETSON_PID" ]; then
  rc=0
  wait "$JETSON_PID" || rc=$?
  JETSON_PID=""
  cat "$OUT/jetson.out"
  [ "$rc" = 0 ] || die "the rehearsal of JetPack's layout failed (exit $rc)"
fi
mark "done$([ "$JETSON" = 1 ] && echo " (with --jetson)")"
