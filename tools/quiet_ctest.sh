#!/usr/bin/env bash
# quiet_ctest.sh CTEST ARGS...: runs ctest with its output in a temporary log; prints only its summary (the pass count,
# the time, the tests that did not run and why) when every test passed, and the whole log (with --output-on-failure:
# each failing test's own output) when one failed. CI keeps its output short so that a failure is not cut away by a
# log limit: the three ctest suites printed two lines per test, about 34 KB of a 99 KB run. Exits with ctest's status.
set -uo pipefail
[ "$#" -ge 1 ] || { echo "usage: quiet_ctest.sh CTEST [ARGS...]" >&2; exit 2; }
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
"$@" >"$LOG" 2>&1
rc=$?
if [ "$rc" = 0 ]; then
  awk '/tests passed/ { shown = 1 } shown' "$LOG"
else
  cat "$LOG"
fi
exit "$rc"
