"""``python -m zsseg_rt.profiling ...``: ``zsseg profile`` (the command is :mod:`zsseg_rt.cli.profile`)."""

import sys

from zsseg_rt.cli.profile import main

if __name__ == "__main__":
    sys.exit(main())
