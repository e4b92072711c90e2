"""The profiler from a pip install (tools/runtime_only_tests.sh runs this against the installed package): every entry
point works from a directory outside the checkout and imports the installed package with its native module. (The
old tools/profile.py put the checkout first on sys.path, so a pip-installed user got the unbuilt source tree's
``zsseg_rt`` and "_C not built".)"""

import os
import subprocess
import sys

from support import console_script

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _tiny_run(bundle, out):
    return ["--bundle", bundle, "--classes", "4", "--iters", "2", "--warmup", "0", "--text-iters", "1", "--no-plot"] + [
        "--out",
        str(out),
        "--quiet",
    ]


def test_profile_runs_from_anywhere_through_every_entry_point(tiny_bundle, tmp_path):
    """`zsseg profile`, `python -m zsseg_rt.profiling` and `python tools/profile.py`, each started from a directory
    outside the checkout: the installed package is imported (its native module built), never the source tree."""
    commands = {
        "zsseg": [console_script(), "profile"],
        "module": [sys.executable, "-m", "zsseg_rt.profiling"],
        "script": [sys.executable, os.path.join(REPO, "tools", "profile.py")],
    }
    for name, command in commands.items():
        out = subprocess.run(
            [*command, *_tiny_run(tiny_bundle, tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=str(tmp_path),
        )
        assert out.returncode == 0 and "not built" not in out.stderr, (name, out.stderr[-2000:])
        assert os.path.isfile(tmp_path / name / "profile.json"), name
