"""zsseg_rt is built by scikit-build-core from pyproject.toml + CMakeLists.txt.

This file exists for tools that still look for setup.py; it does not build anything itself.
Build/install with:  pip install .            (or, for development: pip install --no-build-isolation -e .)
"""

import sys

if __name__ == "__main__":
    sys.exit(
        "zsseg_rt is built with scikit-build-core: run `pip install .` "
        "(development: `pip install --no-build-isolation -e .`). See README.md."
    )
