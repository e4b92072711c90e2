"""``python -m checks NAME [ARGS]``: run one of the modules of this package as a program (``--help`` after NAME
for its options); without NAME, the list of names. Run from the repository root (or with it on PYTHONPATH)."""

from __future__ import annotations

import sys
from typing import List, Optional

from benchmarks.common import program_names, run_program

PACKAGE = "checks"


def names() -> List[str]:
    """The programs of this package (every module except shared helpers)."""
    return program_names(PACKAGE)


def main(argv: Optional[List[str]] = None) -> int:
    return run_program(PACKAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
