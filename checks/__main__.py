"""``python -m checks NAME [ARGS]``: run one of the modules of this package as a program (``--help`` after NAME
for its options); without NAME, the list of names. Run from the repository root (or with it on PYTHONPATH)."""

from __future__ import annotations

import pkgutil
import runpy
import sys
from pathlib import Path
from typing import List, Optional

PACKAGE = "checks"
_NOT_PROGRAMS = ("common",)


def names() -> List[str]:
    """The programs of this package (every module except shared helpers)."""
    found = pkgutil.iter_modules([str(Path(__file__).resolve().parent)])
    return sorted(m.name for m in found if not m.name.startswith("_") and m.name not in _NOT_PROGRAMS)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m {PACKAGE} NAME [ARGS]   (python -m {PACKAGE} NAME --help for its options)")
        print("names: " + ", ".join(names()))
        return 0 if argv else 2
    name = argv[0]
    if name not in names():
        print(f"python -m {PACKAGE}: unknown name {name!r}; known: {', '.join(names())}", file=sys.stderr)
        return 2
    sys.argv = [f"python -m {PACKAGE} {name}", *argv[1:]]
    runpy.run_module(f"{PACKAGE}.{name}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
