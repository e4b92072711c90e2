#!/usr/bin/env bash
# The README's main job: set up (venv + build, from scratch if needed), then segment a sample VOC photo end
# to end (export a verified ONNX bundle, run zsseg_rt.Engine, write out/demo_overlay.png).
# Pass a trained checkpoint for real labels:  bash tools/run_demo.sh --official /path/to/zegclip.pth
# Without one it says so and runs a pipeline check labelled RANDOM WEIGHTS.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv}"
ZSSEG_NEED_GTEST=0 ZSSEG_NEED_BROWSER=0 ZSSEG_NEED_VIDEO_CLIPS=0 bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "$VENV/bin/zsseg" demo --allow-random-weights "$@"
