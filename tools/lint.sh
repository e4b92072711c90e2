#!/usr/bin/env bash
# Static checks, run by tools/run_tests.sh (and so by .ci/run) before the tests, and by .pre-commit-config.yaml:
#   ruff (lint + format check) on Python, mypy on the package, clang-format (check) on csrc/ and cpp_tests/.
# Fix formatting with:  tools/lint.sh --fix
# Tools are pinned in requirements.txt (ruff, mypy, clang-format from PyPI) and run from the venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZSSEG_VENV:-$ROOT/.venv}"
BIN="$VENV/bin"
cd "$ROOT"
PY_PATHS=(zsseg_rt python_tests tools benchmarks setup.py)
mapfile -t CXX_FILES < <(git ls-files 'csrc/*.cpp' 'csrc/*.h' 'csrc/*.cu' 'csrc/*.cuh' 'cpp_tests/*.cpp' 'cpp_tests/*.h')

if [ "${1:-}" = "--fix" ]; then
  "$BIN/ruff" check --fix "${PY_PATHS[@]}"
  "$BIN/ruff" format "${PY_PATHS[@]}"
  "$BIN/clang-format" -i "${CXX_FILES[@]}"
  exit 0
fi

echo "== ruff check =="
"$BIN/ruff" check "${PY_PATHS[@]}"
echo "== ruff format --check =="
"$BIN/ruff" format --check "${PY_PATHS[@]}"
echo "== mypy zsseg_rt =="
"$BIN/mypy"
echo "== clang-format --dry-run (${#CXX_FILES[@]} files) =="
"$BIN/clang-format" --dry-run --Werror "${CXX_FILES[@]}"
