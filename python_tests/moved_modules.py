"""The check every set of moved modules gets: each old import path still imports, in a fresh interpreter, and is
the very module object of its new path (one class, one registry, one patch target: a copy would split state and fail
``isinstance``), with a ``DeprecationWarning`` that names the new path and the release that removes the old one."""

from __future__ import annotations

import subprocess
import sys
from typing import Mapping

from support import subprocess_env

_CODE = """
import importlib, warnings
for old, new in {moved!r}.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        module = importlib.import_module(old)
    assert module is importlib.import_module(new), (old, module)
    assert module.__spec__.name == module.__name__ == new, module.__spec__
    said = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any(new in text and 'removed in 0.2.0' in text for text in said), (old, said)
print('ok')
"""


def assert_moved(moved: Mapping[str, str]) -> None:
    """Fail with the interpreter's error unless every ``old -> new`` of ``moved`` holds as the docstring says."""
    run = subprocess.run(
        [sys.executable, "-c", _CODE.format(moved=dict(moved))], capture_output=True, text=True, env=subprocess_env()
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
