"""One way to run a module of this checkout (the ``checks`` and ``benchmarks`` packages) in a child process, wherever
the parent runs: from the checkout (CI), or as tools/gpu_check.sh runs its programs on the GPU image, where the cwd is
a work folder, ``PYTHONSAFEPATH=1`` keeps the cwd off ``sys.path`` and ``PYTHONPATH`` holds only the installed wheel
and the carried distributions. There the parent imports ``checks`` only because gpu_check.sh's ``run_module``
appended the checkout to its own ``sys.path``; a child started as ``python -m checks ...`` inherits none of that and
dies with "No module named checks" (the variants step of the H200 run of b235fde: review section 3).

The child gets the same treatment as ``run_module``: a launcher that appends the checkout to the END of
``sys.path`` (nothing of the checkout can shadow the installed zsseg_rt or a standard-library module) and runs the
module as ``__main__``. Standard library only (the probe's parent imports nothing else).

    command, env = checkout_module("checks", "postprocess_variants", "--check-one", "tiled", ...)
    subprocess.run(command, env=env, ...)
    command, env = checkout_module("checks.gpu_probe", "--child", "P10", ...)   # a module of the package directly
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
# python -c LAUNCHER REPO MODULE ARGS...: the checkout appended to sys.path, MODULE run as __main__ with ARGS
LAUNCHER = (
    "import runpy, sys; sys.path.append(sys.argv[1]); sys.argv = [sys.argv[2]] + sys.argv[3:]; "
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def checkout_module(
    module: str,
    *args: object,
    python: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    repo: Path = REPO,
) -> Tuple[List[str], Dict[str, str]]:
    """(command, environment) running ``python -m MODULE ARGS`` of the checkout ``repo`` in a child process:
    ``python`` (default: this interpreter) with the launcher, and ``env`` (default: this process's) with
    ``PYTHONUNBUFFERED=1`` (a child's output arrives as it is written, and its tail survives a kill). The command
    works from any cwd, with ``PYTHONSAFEPATH=1`` and without the checkout on ``PYTHONPATH``."""
    command = [python or sys.executable, "-c", LAUNCHER, str(repo), module, *(str(a) for a in args)]
    environment = dict(os.environ if env is None else env)
    environment["PYTHONUNBUFFERED"] = "1"
    return command, environment
