"""tools/run_tests.sh (CI's command) up to its first check, on a machine that has never run it: no compiler cache
folder yet. The preamble's count of the cache's objects ran `find` on the missing folder under pipefail + errexit, so
the run ended in its first second, before any stage, with only "SUITES_FILE: unbound variable" from the exit trap
(the CI of a clean clone on a cold machine, stop 84). Here the disk check is made to refuse (ZSSEG_TEST_DISK_GB): the
run must get that far, fail with the disk check's own one-line error and still print its stage table."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_until_the_disk_check(tmp_path: Path, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CCACHE_DIR=str(cache_dir), ZSSEG_TEST_DISK_GB="999999999", TMPDIR=str(tmp_path))
    env.pop("CCACHE_STATSLOG", None)
    return subprocess.run(
        ["bash", str(ROOT / "tools" / "run_tests.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_a_machine_without_a_compiler_cache_gets_past_the_preamble(tmp_path: Path) -> None:
    missing = tmp_path / "never-made" / "ccache"
    run = _run_until_the_disk_check(tmp_path, missing)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "unbound variable" not in out, out
    assert "the run needs about 999999999 GB free" in run.stderr, out
    assert "== stages" in run.stdout and "FAILED (1)" in run.stdout, out
    assert "COLD at the start (empty)" in run.stdout, out
    assert not missing.exists(), "the preamble only looks at the cache; setup_env.sh makes it"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "never-made")
    assert leftovers == [], f"the run's temporary files outlived it: {leftovers}"


def test_the_same_run_with_a_cache_folder_counts_its_objects(tmp_path: Path) -> None:
    """The control: the same preamble with a cache folder holding one object reports it warm (the count ran)."""
    cache = tmp_path / "ccache"
    (cache / "a").mkdir(parents=True)
    (cache / "a" / "0123R").write_bytes(b"x")
    run = _run_until_the_disk_check(tmp_path, cache)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "warm at the start (1 objects)" in run.stdout, run.stdout + run.stderr
