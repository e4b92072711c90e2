#!/usr/bin/env python3
"""``python tools/profile.py --bundle B ...``: the per-stage latency profiler of a bundle (``--help`` for the
options). The code is the importable package: the profiler :mod:`zsseg_rt.profiling`, the command
:mod:`zsseg_rt.cli.profile` (``python -m zsseg_rt.profiling`` and ``zsseg profile`` are the same command); this file
only forwards to it.

This file is named like the standard library's ``profile`` module, and running a script puts its directory first
on ``sys.path``: when something in the same process imports ``profile`` (``cProfile`` does, and torch's compiler
imports ``cProfile``), it finds this file. Imported under that name, this file therefore becomes the standard
library's module, loaded from the standard library's directory, so it never shadows it. It is the only Python
file in tools/ (the rest are shell scripts; benchmarks and checks are the packages ``benchmarks/`` and ``checks/``).
"""

if __name__ == "__main__":
    import sys

    from zsseg_rt.cli.profile import main

    sys.exit(main())
elif __name__ == "profile":  # imported as the standard library's module: be that module
    import importlib.util
    import os
    import sys
    import sysconfig

    _spec = importlib.util.spec_from_file_location(
        __name__, os.path.join(sysconfig.get_paths()["stdlib"], "profile.py")
    )
    _stdlib_profile = importlib.util.module_from_spec(_spec)
    sys.modules[__name__] = _stdlib_profile  # what `import profile` hands back once this file has run
    _spec.loader.exec_module(_stdlib_profile)
