"""``python -m zsseg_rt.cli ...``: the ``zsseg`` command."""

import sys

from zsseg_rt.cli import main

sys.exit(main())
