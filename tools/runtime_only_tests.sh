#!/usr/bin/env bash
# The runtime as a lean deployment installs it: a clean venv with only the runtime dependencies (`.[runtime,openvino]`:
# the OpenVINO backend is torch-free too and is tested here; NumPy 1.26 as on a Jetson whose OpenCV is built against
# NumPy 1.x), no torch, no open_clip; the package is built and installed into it (CUDA off), then the runtime tests run
# against the installed package.
# The tiny test bundle is exported beforehand with the development venv (which has torch) and handed over through
# $ZSSEG_TEST_TINY_BUNDLE, so the bundle-based tests run instead of skipping; one given in $ZSSEG_TEST_TINY_BUNDLE
# (tools/run_tests.sh's, exported once for all its suites) is taken as it is.
# Standalone:  bash tools/runtime_only_tests.sh [pytest args]   (the venv, then the tests)
# tools/run_tests.sh splits it in two: `--prepare` (the venv and the package build, which need nothing of the
# development venv) alongside setup_env.sh, and `--prepared [pytest args]` (the bundle export and the tests) later;
# --prepared refuses a venv that --prepare did not finish for this commit.
#   ZSSEG_VENV          the development venv (default .venv), used only to export the test bundle
#   ZSSEG_RUNTIME_VENV  the runtime-only venv (default .venv-runtime; recreated from scratch every run)
# twin (by shape): tools/setup_jetson.sh and the other tools/ scripts - the standalone preamble (repository root,
# venv and Python from the environment)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv}"
RVENV="${ZSSEG_RUNTIME_VENV:-$ROOT/.venv-runtime}"
PY="${PYTHON:-python3}"
NUMPY_PIN="numpy==1.26.4"
# Runtime test directories (the runtime and the preparation: both torch-free); the files listed in TORCH_ONLY
# import torch at import time (kernels compared against torch, a bundle exported).
RUNTIME_TESTS=(python_tests/runtime python_tests/prepare python_tests/pipeline python_tests/ops python_tests/stream
  python_tests/vocabulary python_tests/cli/test_cli_camera.py python_tests/cli/test_cli_camera_multi.py python_tests/cli/test_cli_camera_video.py
  python_tests/cli/test_cli_camera_video_output.py)  # zsseg camera: the runtime-only install's command
TORCH_ONLY=(python_tests/ops/test_segment.py python_tests/ops/test_segment_windows.py python_tests/ops/test_upsample.py
  python_tests/prepare/test_tensorrt_whole_image.py)  # (this one exports a whole-image bundle with torch)
MODE=all
case "${1:-}" in
  --prepare) MODE=prepare; shift ;;
  --prepared) MODE=prepared; shift ;;
esac
MARKER="$RVENV/.zsseg-runtime-only-prepared"  # what --prepare finished: the commit it built
HEAD_NOW="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo "no git")"
cd "$ROOT"
# pip, minus one harmless warning this machine's pip configuration repeats for every package
pip_q() { "$RVENV/bin/pip" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
unset PYTHONPATH  # the tests must import the installed package, not the source tree
# no selenium in a runtime install: the browser tests skip here (they run, required, in the development venv)
unset ZSSEG_REQUIRE_BROWSER

if [ "$MODE" = prepared ]; then
  if [ ! -f "$MARKER" ] || [ "$(cat "$MARKER")" != "$HEAD_NOW" ]; then
    echo "[runtime-only] no venv prepared for commit $HEAD_NOW at $RVENV ($MARKER: $(cat "$MARKER" 2>/dev/null || echo missing)): run tools/runtime_only_tests.sh --prepare first, or without --prepared" >&2
    exit 1
  fi
  echo "[runtime-only] the venv $RVENV prepared for $HEAD_NOW (--prepare)"
else
echo "[runtime-only] clean venv $RVENV ($("$PY" --version)), $NUMPY_PIN, .[runtime,openvino], no torch"
rm -rf "$RVENV"
"$PY" -m venv "$RVENV"
pip_q install -q -U pip
# Test and build tools at the development pins (requirements.txt); the runtime set itself resolves from
# pyproject.toml's ranges, as a user's `pip install .[runtime]` does.
# (the pins only: a line's trailing comment is no requirement pip can read)
mapfile -t TOOLS < <(grep -E '^(pytest|pytest-xdist|execnet|filelock|hypothesis|scikit-build-core|pybind11|cmake|ninja)==' \
  requirements.txt | sed -E 's/[[:space:]]*#.*$//')
pip_q install -q "$NUMPY_PIN" "${TOOLS[@]}"
echo "[runtime-only] tools installed (${SECONDS}s); installing .[runtime,openvino] and building the package (CUDA off)"
# ZSSEG_CCACHE=1 (tools/run_tests.sh): through the compiler cache, as setup_env.sh builds (this build ran without it:
# 75 CPU-s in every CI run, the cache warm or not; its CPU kernels are the image twin's cp312 wheel's, CUDA off both)
if [ "${ZSSEG_CCACHE:-0}" = 1 ] && command -v ccache >/dev/null 2>&1; then export CMAKE_CXX_COMPILER_LAUNCHER=ccache; fi
pip_q install -q --no-build-isolation -C build-dir=build/runtime-only \
  -C cmake.define.ZS_WITH_CUDA=OFF ".[runtime,openvino]" "$NUMPY_PIN"
# the OpenVINO backend's tests fail instead of skipping here: the venv installs it (python_tests/support.py)
export ZSSEG_REQUIRE_OPENVINO=1

# What the venv holds: the runtime set, NumPy 1.26, the installed package, and neither torch nor open_clip.
(cd / && "$RVENV/bin/python" - "$RVENV" <<'PY'
import importlib, importlib.metadata as md, sys
venv = sys.argv[1]
for name in ("torch", "open_clip", "torchvision"):
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    sys.exit(f"[runtime-only] {name} is importable in the runtime-only venv; it must not be")
import numpy, zsseg_rt, zsseg_rt.ops as ops
if not numpy.__version__.startswith("1.26."):
    sys.exit(f"[runtime-only] expected NumPy 1.26.x, got {numpy.__version__}")
if not zsseg_rt.__file__.startswith(venv):
    sys.exit(f"[runtime-only] zsseg_rt imports from {zsseg_rt.__file__}, not from the venv {venv}")
versions = {d: md.version(d) for d in ("numpy", "onnxruntime", "openvino", "opencv-python-headless", "tokenizers", "ftfy")}
print("[runtime-only]", ", ".join(f"{k} {v}" for k, v in versions.items()),
      "| torch, open_clip: not importable | _C CUDA compiled:", ops.native_module().cuda_compiled())
PY
)
echo "$HEAD_NOW" >"$MARKER"
echo "[runtime-only] venv ready in ${SECONDS}s"
if [ "$MODE" = prepare ]; then exit 0; fi
fi

BUNDLE_DIR="$(mktemp -d)"
JUNIT="$BUNDLE_DIR/junit.xml"
trap 'rm -rf "$BUNDLE_DIR"' EXIT
if [ -n "${ZSSEG_TEST_TINY_BUNDLE:-}" ] && [ -f "$ZSSEG_TEST_TINY_BUNDLE/meta.json" ]; then
  # exported beforehand (tools/run_tests.sh exports it once for all its suites)
  TEST_BUNDLE="$ZSSEG_TEST_TINY_BUNDLE"
  echo "[runtime-only] the tiny test bundle exported beforehand: $TEST_BUNDLE"
else
  echo "[runtime-only] exporting the tiny test bundle with the development venv"
  PYTHONPATH="$ROOT:$ROOT/python_tests" "$VENV/bin/python" -c \
    "import sys; from support import export_tiny_bundle; export_tiny_bundle(sys.argv[1])" "$BUNDLE_DIR" >/dev/null
  TEST_BUNDLE="$BUNDLE_DIR/bundle"
  echo "[runtime-only] bundle exported (${SECONDS}s)"
fi
IGNORES=(); for f in "${TORCH_ONLY[@]}"; do IGNORES+=("--ignore=$f"); done
echo "[runtime-only] pytest ${RUNTIME_TESTS[*]} (torch-only files ignored: ${TORCH_ONLY[*]##*/})"
# The console script, not `python -m pytest` (that would put the source tree first on sys.path), run from outside
# the repository: subprocesses that the tests start (`python -c ...`) put their working directory first on sys.path,
# and must import the installed package, not the source tree (which has no built _C in a clean clone).
(cd "$BUNDLE_DIR" && ZSSEG_TEST_TINY_BUNDLE="$TEST_BUNDLE" "$RVENV/bin/pytest" \
  "${RUNTIME_TESTS[@]/#/$ROOT/}" "${IGNORES[@]/#--ignore=/--ignore=$ROOT/}" \
  --rootdir="$ROOT" -c "$ROOT/pyproject.toml" -q -p no:cacheprovider -rfE --junitxml="$JUNIT" "$@")
# Tests must have run, and none may have skipped for want of the bundle.
"$RVENV/bin/python" - "$JUNIT" <<'PY'
import ast, sys, xml.etree.ElementTree as ET
from collections import Counter
cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
skips = [s.get("message", "") for c in cases for s in c.findall("skipped")]
passed = len(cases) - len(skips) - sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
if passed == 0:
    sys.exit("[runtime-only] no runtime test passed")
if any("tiny test bundle needs torch" in s for s in skips):
    sys.exit("[runtime-only] bundle tests skipped: the prebuilt bundle was not used")
print(f"[runtime-only] {passed} passed, {len(skips)} skipped (GPU / TensorRT / torch comparisons) of {len(cases)}")
# the skips by reason (pytest's -ra listed them one line per test: 114 lines, a third of a CI run's output)
def why(element):  # a module skipped at collection: its reason is in the text, "(path, line, 'Skipped: ...')"
    if element.get("message") == "collection skipped":
        try:
            return "(a whole module) " + str(ast.literal_eval(element.text)[2]).removeprefix("Skipped: ")
        except (ValueError, SyntaxError, TypeError, IndexError):
            pass
    return element.get("message", "")
for reason, count in Counter(why(s) for c in cases for s in c.findall("skipped")).most_common():
    print(f"[runtime-only]   {count:4d} skipped: {reason}")
PY
echo "[runtime-only] done in ${SECONDS}s"
