"""``python -m zsseg_rt.eval CHECKPOINT --dataset ...``."""

import sys

from zsseg_rt.cli.eval import main  # the command line (zsseg_rt.cli: the commands layer)

if __name__ == "__main__":
    sys.exit(main())
