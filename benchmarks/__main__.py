"""``python -m benchmarks NAME [ARGS]``: run one of the modules of this package as a program (``--help`` after NAME
for its options); without NAME, the list of names. Run from the repository root (or with it on PYTHONPATH)."""

import sys

from benchmarks.common import Programs

PROGRAMS = Programs("benchmarks")
names, main = PROGRAMS.names, PROGRAMS.main

if __name__ == "__main__":
    sys.exit(main())
