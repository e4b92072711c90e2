#!/usr/bin/env bash
# The acceptance run on a lent CUDA GPU machine: the stages of one command of the plan (checks/gpu_stages.py: PLAN;
# `python -m checks gpu_plan` prints the device tool's calls), each from a bare start, from artefacts built on
# the development machine (tools/gpu_artifacts.sh: the wheel, the C++ tests, the Python wheels the image lacks).
# NOTHING is built here: no cmake, no nvcc, no pip build. Each stage writes a run record (a JSON file, committed into
# docs/gpu_runs/ with `python -m checks gpu_record add`, which also regenerates BENCHMARKS.md's table of stages).
#
#   bash tools/gpu_check.sh (--stage NAME[,NAME...] | --command N) [--artifacts DIR] [--record-dir DIR] [--out DIR]
#                           [--budget S] [--pytest-args "ARGS"] [--quick] [--list]
#     --stage NAMES      stages of `--list` (the table: checks/gpu_stages.py), comma-separated, run one after the
#                        other in this command; or "all" (every stage: more files than the device tool brings back)
#     --command N        the stages of the plan's command N (1-based)
#     --artifacts DIR    the carried artefacts (default gpu_artifacts)
#     --record-dir DIR   where the run record goes: DATE_MACHINE_STAGE.json and .logs.tar.gz beside it (default
#                        OUT/records; on a lent machine "$OUT", which the device tool brings back)
#     --out DIR          the work folder: the installed packages and every log (default out/gpu_check; a stage's
#                        folder is emptied first, so each stage starts bare even on a machine still warm)
#     --budget S         each stage's time bound instead of the table's (a run under another bound is "partial")
#     --pytest-args ARGS more pytest arguments after the stage's own, shell-quoted (e.g. "-n 4" instead of 16, or
#                        "-k 'a or b'"); any beyond reporting and the worker count makes the record "partial", never
#                        a pass: -k, -m, --deselect, --ignore*, -x/--maxfail, --lf/--ff, test paths, ...
#     --quick            the engine step without the full-size ViT-B/16 timing (its target is then not checked:
#                        the stage cannot pass; for finding breakage fast)
#     --list             the stages: name, budget in seconds, what it checks
#   PYTHON               the Python to use (default python3: on the GPU image, /opt/torch/.venv's 3.12 with torch)
#   ZSSEG_GPU_CHECK_REHEARSAL  a fake machine (CI): the record says "rehearsal: TEXT" and gpu_record refuses it
#
# Every pytest step runs with `--dist loadgroup` (as CI) and the stage definition's own `-m "not host_only"` (the
# tests pinned to the CPU are CI's; the record names them), on the project's test tools: pytest, xdist and what they
# need, carried as wheels at requirements.txt's pins and installed into the stage's site ahead of the image's
# (checks/_harness.py; the image's pytest 9.1.1 lacked what CI's 9.2.0 has: the H200 run of b235fde), with no plugin
# autoloaded (--disable-plugin-autoload -p xdist.plugin -p _hypothesis_pytestplugin: the image's
# pytest-benchmark, cov, mock and timeout stay out); `probe` runs `python -m checks gpu_probe --out DIR`, DIR
# a folder of the record folder, so that its files come back even when the command is cut during it.
#
# Every stage first checks the artefacts (each file's SHA-256, the Python they were built for, the checkout's build
# inputs against theirs, every shared library resolvable: checks/gpu_artifacts.py verify), installs the carried
# wheel, the test tools (above) and, of the other carried Python wheels, only what the machine lacks (pip --no-index
# --only-binary=:all:), and runs the import check (zsseg_rt from that install, CUDA usable); the record's notes give
# the image's version of every package the project pins, beside the pin, and its logs the image's `pip freeze`; then its steps, within its budget (a step still
# running at the bound is stopped: "timeout"; steps not started are listed). Exit code: 0 when the stage passed, 1
# otherwise (the record says why), 2 for a bad argument. Nothing here needs network access.
#
# Every Python step imports the installed wheel, never the source tree: pytest and the scripts run from the work
# folder with PYTHONSAFEPATH=1, the benchmarks/checks programs through a launcher that appends the checkout to the
# END of sys.path (so nothing in it can shadow the wheel or a standard-library module).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/out/gpu_check"
ARTIFACTS="$ROOT/gpu_artifacts"
RECORD_DIR=""
STAGE=""
BUDGET=""
PYTEST_ARGS=""
QUICK=0
LIST=0
COMMAND_NUMBER=""
COMMAND="tools/gpu_check.sh$(printf ' %q' "$@")"  # shell-quoted: gpu_record reads the filters back from it

usage_error() {
  echo "gpu_check: $1 (see the header of tools/gpu_check.sh, or --list)" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --stage | --command | --artifacts | --record-dir | --out | --budget | --pytest-args)
      [ $# -ge 2 ] || usage_error "$1 needs a value"
      case "$1" in
        --stage) STAGE="$2" ;;
        --command) [[ "$2" =~ ^[0-9]+$ ]] || usage_error "--command needs the number of a command of the plan, got '$2'"; COMMAND_NUMBER="$2" ;;
        --artifacts) ARTIFACTS="$2" ;;
        --record-dir) RECORD_DIR="$2" ;;
        --out) OUT="$2" ;;
        --budget) [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || usage_error "--budget needs seconds"; BUDGET="$2" ;;
        --pytest-args) PYTEST_ARGS="$2" ;;
      esac
      shift 2
      ;;
    --quick) QUICK=1; shift ;;
    --list) LIST=1; shift ;;
    *) usage_error "unknown argument $1" ;;
  esac
done

PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "gpu_check: $PY not found: every stage and its record need Python (set PYTHON=/path/to/python3)" >&2
  exit 1
fi
if [[ "$PY" == */* ]]; then PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"; fi  # steps run from $WORK
export PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1 PY ROOT
unset ZSSEG_CUDA_EMULATION ZSSEG_NATIVE_MODULE  # this checks the real CUDA build, never the emulated one

# Run a program of this checkout's benchmarks/ or checks/ package (python -m PACKAGE NAME ...) from the current
# folder, with the checkout APPENDED to the end of sys.path: the installed wheel (on PYTHONPATH) provides zsseg_rt,
# the checkout only the benchmarks/checks packages, and nothing of the checkout can shadow another module.
run_module() {
  "$PY" -c 'import runpy, sys; sys.path.append(sys.argv[1]); package = sys.argv[2]; \
sys.argv = [package] + sys.argv[3:]; runpy.run_module(package, run_name="__main__", alter_sys=True)' "$ROOT" "$@"
}
export -f run_module

mapfile -t STAGE_LINES < <(run_module checks gpu_stages list)
ALL_STAGES=()
for line in "${STAGE_LINES[@]}"; do ALL_STAGES+=("${line%%$'\t'*}"); done
if [ "$LIST" = 1 ]; then
  printf '%s\n' "${STAGE_LINES[@]}"
  exit 0
fi
if [ -n "$COMMAND_NUMBER" ]; then
  [ -z "$STAGE" ] || usage_error "--stage and --command exclude each other (got both)"
  STAGE="$(run_module checks gpu_stages command "$COMMAND_NUMBER" 2>&1 | paste -sd, -)" \
    && [ -n "$STAGE" ] || usage_error "$STAGE"
fi
[ -n "$STAGE" ] || usage_error "--stage NAME[,NAME...] or --command N is needed (stages: ${ALL_STAGES[*]}, or all)"
SELECTED=()
if [ "$STAGE" = all ]; then
  SELECTED=("${ALL_STAGES[@]}")
else
  IFS=, read -r -a NAMES <<<"$STAGE"
  for name in "${NAMES[@]}"; do
    case " ${ALL_STAGES[*]} ${SELECTED[*]:-} " in
      *" $name "*" $name "*) usage_error "stage '$name' is named twice in '$STAGE'" ;;
      *" $name "*) SELECTED+=("$name") ;;
      *) usage_error "unknown stage '$name' in '$STAGE'; stages: ${ALL_STAGES[*]} (or all)" ;;
    esac
  done
fi
FILES="$(run_module checks gpu_stages files "${SELECTED[@]}")"
if [ "$FILES" -gt 8 ]; then
  echo "gpu_check: note: ${SELECTED[*]} may leave $FILES files in the record folder; the device tool brings back 8" >&2
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
[ -d "$ARTIFACTS" ] && ARTIFACTS="$(cd "$ARTIFACTS" && pwd)"
RECORD_DIR="${RECORD_DIR:-$OUT/records}"
mkdir -p "$RECORD_DIR"
RECORD_DIR="$(cd "$RECORD_DIR" && pwd)"
PYTEST_EXTRA=()  # split as a shell would (quotes kept together), not at every space
if [ -n "$PYTEST_ARGS" ]; then
  SPLIT="$("$PY" -c 'import shlex, sys
try:
    print("\n".join(shlex.split(sys.argv[1])))
except ValueError as exc:
    print(f"--pytest-args cannot be split as a shell would ({exc}): got {sys.argv[1]!r}")
    sys.exit(1)' "$PYTEST_ARGS")" || usage_error "$SPLIT"
  mapfile -t PYTEST_EXTRA <<<"$SPLIT"
fi
# -rfEs: the summary names every failure and error (a bare -rs hid them: the first H200 run printed only counts)
PYTEST_COMMON=(-q -p no:cacheprovider --rootdir "$ROOT" -c "$ROOT/pyproject.toml" -rfEs)
WORKERS="$(run_module checks gpu_stages workers)"
SANITIZED_WORKERS="$(run_module checks gpu_stages workers --sanitized)"
# The stage definition's own pytest arguments (not a user's filter): -m "not host_only" (-m cuda under the sanitizer)
# and --dist loadgroup, as CI schedules (xdist_group marks hold there)
mapfile -t PYTEST_OWN < <(run_module checks gpu_stages pytest-options)
mapfile -t SANITIZED_OWN < <(run_module checks gpu_stages pytest-options --sanitized)
# No plugin autoloaded, the harness's plugins named (checks/_harness.py PYTEST_ARGS)
mapfile -t PYTEST_PLUGINS < <(run_module checks gpu_check_support pytest-harness)
PROBE_RESERVE=10  # of what is left of the probe stage's budget when the probe starts: its own --budget ends before
CLIP_NAME="live.avi"  # the clip the artefacts carry for the probe's --live run (checks/gpu_artifacts.py clip)
# Threads per pytest worker, as tools/run_tests.sh gives them (cores / workers; torch's and the OpenMP ops' threads,
# not ONNX Runtime's): with torch's default of one thread per core, 16 workers ran 16 x 16 threads on 16 cores (the first H200 run: the models stage
# timed out at its 240 s budget, ops took 166 s where the first H100 run took 42 s).
pytest_threads() { local cores; cores="$(nproc)"; echo $((cores / $1 > 0 ? cores / $1 : 1)); }

# A step's verdict from what it FOUND, not only from its exit code: the benchmark and the Engine check write a JSON
# report (rows with "pass", or "failed"/"not_checked" targets, and a top-level "pass"); targets_met JSON exits 0
# only when that report exists, is complete and says every target was checked and met; 1 when a row or target
# missed (or no/invalid/incomplete report); 4 when nothing missed but a target was not checked (--quick): a stage
# is never recorded as passed for a target it did not check, even when the program itself exited 0.
targets_met() {  # targets_met JSON
  "$PY" -c 'import json, sys
path = sys.argv[1]
try:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
except FileNotFoundError:
    sys.exit(f"NO REPORT: {path} was not written")
except ValueError:
    sys.exit(f"NO REPORT: {path} is not valid JSON (cut off?)")
missed = [str(r.get("case", r.get("description", "?"))) for r in data.get("rows", []) if r.get("pass") is not True]
missed += [str(what) for what in data.get("failed", [])]
unchecked = [str(what) for what in data.get("not_checked", [])]
for what in missed:
    print(f"MISS: {what}")
for what in unchecked:
    print(f"NOT CHECKED: {what}")
if data.get("complete") is False:
    sys.exit(f"INCOMPLETE: {path} covers only part of its cases")
if missed or (data.get("pass") is not True and not unchecked):
    sys.exit(f"targets missed ({path})")
if unchecked:
    print(f"targets not checked ({path}): not a pass")
    sys.exit(4)
print(f"every target checked and met ({path})")' "$1"
}
export -f targets_met

# ---- steps -----------------------------------------------------------------------------------------------------------
step() {  # step NAME LOG COMMAND...: run COMMAND from $WORK within what is left of the stage's budget
  local name="$1" log="$2" t0 left rc=0
  shift 2
  t0="$(date +%s)"
  left=$((STAGE_DEADLINE - t0))
  if [ "$left" -le 0 ]; then
    echo "not started: the stage's budget (${STAGE_BUDGET}s) was used up" >"$log"
    printf '%s\t124\t0\t%s\n' "$name" "${log#"$WORK"/}" >>"$STAGE_STEPS"
    return 124
  fi
  echo "-- $name (at most ${left}s; log ${log#"$WORK"/})"
  if declare -F "$1" >/dev/null; then  # a function of this script (run_module): timeout runs programs only
    set -- bash -c '"$@"' bash "$@"
  fi
  # At the bound SIGINT first: pytest then prints its summary (which tests failed so far, which were running) and
  # writes its XML report, as a KeyboardInterrupt; 20 s later SIGKILL. (SIGTERM left nothing: the first H200 run's
  # models stage timed out with 4 failures and no name.) The exit code is still timeout's 124.
  (cd "$WORK" && exec timeout --signal=INT --kill-after=20 "$left" "$@") >"$log" 2>&1 || rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" "${log#"$WORK"/}" >>"$STAGE_STEPS"
  tail -n 3 "$log" | sed 's/^/   /' || true
  return "$rc"
}

missing() {  # missing LINE: a prerequisite the stage lacks (the record lists it; the stage cannot pass)
  printf '%s\n' "$1" >>"$STAGE_MISSING"
}

setup() {  # the artefacts checked, the wheel and the missing Python distributions installed, the import check
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    missing "GPU: nvidia-smi not found (no NVIDIA driver here): run this on the GPU machine"
  fi
  # the image's own packages (without the stage's site), into the logs: versions read, not inferred from tracebacks
  # (once per command: the image does not change between its stages)
  if [ ! -s "$OUT/pip_freeze.txt" ]; then
    (cd "$WORK" && env -u PYTHONPATH "$PY" -m pip freeze --all >"$OUT/pip_freeze.txt" 2>&1) \
      || echo "note: the image's pip freeze failed (logs/pip_freeze.txt)" >>"$STAGE_NOTES"
  fi
  cp "$OUT/pip_freeze.txt" "$WORK/logs/pip_freeze.txt" 2>/dev/null || true
  if ! step artifacts "$WORK/logs/artifacts.log" run_module checks gpu_artifacts verify --artifacts "$ARTIFACTS" \
    --root "$ROOT" --json "$WORK/artifacts.json"; then
    grep '^MISSING ' "$WORK/logs/artifacts.log" | sed 's/^MISSING //' >>"$STAGE_MISSING" || true
    [ -s "$STAGE_MISSING" ] || missing "artefacts: the check itself failed: see logs/artifacts.log"
    return 1
  fi
  grep '^note: ' "$WORK/logs/artifacts.log" >>"$STAGE_NOTES" || true
  local wheel
  wheel="$(ls "$ARTIFACTS"/wheels/zsseg_rt-*.whl)"
  # The site (the wheel, the carried distributions the machine lacks) is the command's: installed by its first stage
  # whose set-up passed, reused by the others (the same artefacts, verified above; 5-6 s of pip a stage: issue 86
  # item 6), its notes with it. A stage whose set-up failed leaves no mark, so the next one installs again.
  if [ -f "$SITE/.installed" ]; then
    step install "$WORK/logs/install.log" echo "reused: $SITE as stage $(cat "$SITE/.installed") of this command" \
      "installed it from $wheel and $ARTIFACTS/pywheels"
    cat "$SITE/.notes" >>"$STAGE_NOTES" 2>/dev/null || true
  else
    rm -rf "$SITE"
    step install "$WORK/logs/install.log" "$PY" -m pip install --no-index --no-deps --only-binary=:all: --no-compile \
      --no-cache-dir --target "$SITE/pkg" "$wheel" || { missing "the wheel: pip could not install $wheel (logs/install.log)"; return 1; }
    # the test tools first, into $SITE/deps whatever the image has (--harness), then only what the machine lacks
    local deps_rc=0
    step python_deps "$WORK/logs/python_deps.log" run_module checks gpu_check_support python-deps \
      --group acceptance --wheels "$ARTIFACTS/pywheels" --site "$SITE/deps" --harness || deps_rc=$?
    grep -E '^(note|wheels|harness|version): ' "$WORK/logs/python_deps.log" >"$SITE/.notes" || true
    cat "$SITE/.notes" >>"$STAGE_NOTES"
    if [ "$deps_rc" != 0 ]; then
      grep '^MISSING ' "$WORK/logs/python_deps.log" | sed 's/^MISSING //' >>"$STAGE_MISSING" || true
      [ -s "$STAGE_MISSING" ] || missing "Python: the dependency check failed: see logs/python_deps.log"
      return 1
    fi
    echo "$STAGE_NAME" >"$SITE/.installed"
  fi
  step import "$WORK/logs/import.log" run_module checks gpu_check_support import-check --build "$SITE/pkg" \
    --require-cuda || true  # every step still runs: each says for itself what a missing CUDA does to it
}

do_engine() {
  # the full-size export kept in one folder for the command, which the probe reuses (~40-60 s of export once)
  local args=(--out "$WORK" --work "$OUT/shared_exports")
  if [ "$QUICK" = 1 ]; then args+=(--skip-full); fi
  step engine "$WORK/logs/engine.log" run_module checks gpu_engine "${args[@]}" || true
  # the targets it checked and met: --quick leaves the post-processing target unchecked (not passed: exit 4)
  step engine_targets "$WORK/logs/engine_targets.log" targets_met "$WORK/engine_check.json" || true
  # the post-processing candidates timed against each other on the same GPU at C=20, on the Engine's logits too (the
  # export above, reused): postprocess_variants.json; fails only when the default fails its check or one crashed. At
  # C=171 the engine check itself checks and times every candidate on three kinds of logits (checks/_gpu_postprocess.py)
  if [ "$QUICK" != 1 ]; then
    step variants "$WORK/logs/variants.log" run_module checks postprocess_variants --out "$WORK" --classes 20 \
      --work "$OUT/shared_exports" --engine-check "$WORK/engine_check.json" || true
  fi
}

do_bench() {
  step bench "$WORK/logs/bench.log" run_module benchmarks cuda --json "$WORK/bench_cuda.json" --check || true
  # pass/fail from the rows it wrote, not only its exit code (a MISS row fails the stage even after exit 0)
  step bench_targets "$WORK/logs/bench_targets.log" targets_met "$WORK/bench_cuda.json" || true
}

cpp_binary() {  # the carried C++ tests, executable (a copy: the carry need not keep file modes)
  install -m 755 "$ARTIFACTS/cpp/zsseg_cpp_tests" "$WORK/bin/zsseg_cpp_tests"
  echo "$WORK/bin/zsseg_cpp_tests"
}

do_cpp() {
  step cpp "$WORK/logs/cpp.log" "$(cpp_binary)" "--gtest_output=xml:$WORK/cpp.xml" || true
  # every CUDA test must have RUN here (a test that skips "no CUDA device" exits 0 in gtest)
  step cpp_cuda_ran "$WORK/logs/cpp_cuda_ran.log" run_module checks gpu_check_support gtest-verdict \
    --xml "$WORK/cpp.xml" --cuda || true
}

do_pytest() {  # do_pytest PIECE...: those pieces of python_tests in one pytest run, on every core
  local name targets
  name="pytest:$(IFS=,; echo "$*")"
  mapfile -t targets < <(run_module checks gpu_stages pytest-targets "$@")
  # Everything, not only the CUDA tests: a GPU changes which paths run
  step "$name" "$WORK/logs/pytest_${1}.log" env OMP_NUM_THREADS="$(pytest_threads "$WORKERS")" \
    "$PY" -m pytest "${targets[@]}" "${PYTEST_COMMON[@]}" "${PYTEST_PLUGINS[@]}" "${PYTEST_OWN[@]}" \
    "--junitxml=$WORK/pytest_${1}.xml" -n "$WORKERS" ${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"} || true
}

do_probe() {  # the probe (checks/gpu_probe.py): its files straight under the record folder, kept when a command is cut
  local left
  PROBE_DIR="$RECORD_DIR/$(date +%Y-%m-%dT%H%M%S)_probe"
  mkdir -p "$PROBE_DIR"
  if [ ! -f "$ROOT/checks/gpu_probe.py" ]; then
    step probe "$WORK/logs/probe.log" bash -c 'echo "NO PROBE: checks/gpu_probe.py is not in this checkout, so the \
probe did not run (it is not a pass: nothing was measured)"; exit 1' || true
    return 0
  fi
  left=$((STAGE_DEADLINE - $(date +%s) - PROBE_RESERVE))
  # CI's fake machine rehearses the plumbing (the probe's files under the record folder, into the record and its
  # logs): the probe's stand-in parts, seconds instead of minutes of CPU export there (the record says rehearsal)
  # P9 times --live on the carried clip (gpu_artifacts/clips; without it a synthetic one)
  local clip=()
  if [ -f "$ARTIFACTS/clips/$CLIP_NAME" ]; then clip=(--clip "$ARTIFACTS/clips/$CLIP_NAME"); fi
  step probe "$WORK/logs/probe.log" run_module checks gpu_probe --out "$PROBE_DIR" --budget "$((left > 1 ? left : 1))" \
    --work "$OUT/shared_exports" ${clip[@]+"${clip[@]}"} ${ZSSEG_GPU_CHECK_REHEARSAL:+--dry-run} || true
  # its report must be there, whole, and say it finished (a probe cut at its budget measured only part)
  step probe_report "$WORK/logs/probe_report.log" run_module checks gpu_check_support probe-verdict \
    --json "$PROBE_DIR/probe.json" || true
}

do_sanitizer() {  # do_sanitizer TOOL cpp|pytest: compute-sanitizer over the C++ CUDA tests or the Python ones
  local tool="$1" target="$2" san log="$WORK/logs/sanitizer_${1}_${2}.log"
  san="$(command -v compute-sanitizer || true)"
  for dir in /usr/local/cuda/bin "$(dirname "$(command -v nvcc 2>/dev/null || echo /nonexistent/x)")"; do
    if [ -z "$san" ] && [ -x "$dir/compute-sanitizer" ]; then san="$dir/compute-sanitizer"; fi
  done
  if [ -z "$san" ]; then
    missing "compute-sanitizer: not on PATH nor in /usr/local/cuda/bin: it ships with the CUDA toolkit"
    return 0
  fi
  if [ "$target" = cpp ]; then
    step "${tool}_cpp" "$log" "$san" --tool "$tool" --error-exitcode 99 "$(cpp_binary)" --gtest_filter='*Cuda.*-BuildWithoutCuda.*' \
      "--gtest_output=xml:$WORK/sanitizer_${tool}_cpp.xml" || true
    step "${tool}_cpp_verdict" "$WORK/logs/sanitizer_${tool}_cpp_verdict.log" run_module checks gpu_check_support \
      sanitizer-verdict --log "$log" --xml "$WORK/sanitizer_${tool}_cpp.xml" --cuda || true
  else
    # the must-runs first, each test bounded, none started past the bound less that bound and the report's time: at
    # the bound compute-sanitizer ends the tree with no summary and no XML (python_tests/stage_order.py)
    # only the files that hold CUDA tests are collected (as CI's emulation stage does), not the whole tree per worker
    local bound report first files
    read -r bound report < <(run_module checks gpu_stages sanitized-bounds)
    first="$(run_module checks gpu_stages must-run sanitizers)"
    mapfile -t files < <(run_module checks gpu_stages cuda-files)
    step "${tool}_pytest" "$log" env OMP_NUM_THREADS="$(pytest_threads "$SANITIZED_WORKERS")" \
      ZSSEG_TESTS_FIRST="$first" ZSSEG_TEST_TIME_BOUND="$bound" ZSSEG_TEST_DEADLINE="$((STAGE_DEADLINE - bound - report))" \
      "$san" --tool "$tool" --error-exitcode 99 --target-processes all "$PY" -m pytest \
      "${files[@]/#/$ROOT/}" "${SANITIZED_OWN[@]}" "${PYTEST_COMMON[@]}" "${PYTEST_PLUGINS[@]}" \
      "--junitxml=$WORK/sanitizer_${tool}_pytest.xml" \
      -n "$SANITIZED_WORKERS" ${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"} || true
    step "${tool}_pytest_verdict" "$WORK/logs/sanitizer_${tool}_pytest_verdict.log" run_module checks \
      gpu_check_support sanitizer-verdict --log "$log" || true
  fi
}

FAILED=0
run_stage() {  # run_stage NAME: from a bare work folder, its steps within its budget, then its run record
  local name="$1" t0 line kind
  WORK="$OUT/$name"
  rm -rf "$WORK"
  mkdir -p "$WORK/logs" "$WORK/bin"
  SITE="$OUT/site"  # the command's (setup: installed by its first stage, reused by the others)
  STAGE_NAME="$name"
  # The wheel, then the carried distributions the machine lacked; the system's site-packages after them
  export PYTHONPATH="$SITE/pkg:$SITE/deps"
  export PATH="$SITE/pkg/bin:$SITE/deps/bin:$PATH"  # the wheel's console script (zsseg) first
  export ZSSEG_NO_BUILD=1  # tests that would build something (nvcc, cmake) skip: nothing is built here
  STAGE_STEPS="$WORK/steps.tsv"
  STAGE_MISSING="$WORK/missing.txt"
  STAGE_NOTES="$WORK/notes.txt"
  PROBE_DIR=""
  : >"$STAGE_STEPS"
  : >"$STAGE_MISSING"
  : >"$STAGE_NOTES"
  STAGE_BUDGET="${BUDGET:-$(run_module checks gpu_stages budget "$name")}"
  t0="$(date +%s)"
  STAGE_DEADLINE=$((t0 + STAGE_BUDGET))
  echo "== $name (budget ${STAGE_BUDGET}s)"
  if setup; then
    while read -r kind rest; do
      [ -n "$kind" ] || continue
      # shellcheck disable=SC2086  # the step's arguments are words
      "do_$kind" $rest
    done < <(run_module checks gpu_stages steps "$name")
  fi
  if ! (cd "$WORK" && run_module checks gpu_record write --work "$WORK" --stage "$name" --budget "$STAGE_BUDGET" \
    --seconds "$(($(date +%s) - t0))" --command "$COMMAND" --record-dir "$RECORD_DIR" \
    --coverage "$OUT/coverage.json" ${PROBE_DIR:+--probe-dir "$PROBE_DIR"}); then
    FAILED=1
  fi
}

# This command's shared set-up starts empty (a site or image freeze an earlier command left in OUT is not reused)
rm -rf "$OUT/site" "$OUT/pip_freeze.txt"
# What each stage covers, hashed once for the whole command before any stage runs (a test that writes into the tree
# cannot change a later stage's hash): a pass counts at a later tree only while its stage's hash is the same
rm -f "$OUT/coverage.json"
run_module checks gpu_artifacts coverage --root "$ROOT" --json "$OUT/coverage.json" \
  || echo "gpu_check: the coverage hashes could not be computed: these records' passes will not count" >&2
for name in "${SELECTED[@]}"; do
  run_stage "$name"
done
exit "$FAILED"
