"""``python -m zsseg_rt.train CONFIG`` / ``torchrun --nproc_per_node=N -m zsseg_rt.train CONFIG``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
