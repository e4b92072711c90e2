"""``python -m zsseg_rt.train CONFIG`` / ``torchrun --nproc_per_node=N -m zsseg_rt.train CONFIG``."""

import sys

from zsseg_rt.cli.train import main  # the command line (zsseg_rt.cli: the commands layer)

if __name__ == "__main__":
    sys.exit(main())
