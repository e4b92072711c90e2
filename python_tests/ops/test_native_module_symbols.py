"""The native module exports nothing but its init function (issue 25).

On the first GPU run the machine's compiler linked libstdc++ statically into ``_C``: its symbols, among them the
STB_GNU_UNIQUE ids of the locale facets, were exported and bound to the process's other libstdc++ (loaded first by
NumPy and torch), and formatting an error message through an iostream crashed. The build now keeps every symbol
local (``-Wl,--exclude-libs,ALL`` and a version script, CMakeLists.txt), whatever the toolchain links in; this test
fails on a module that exports anything else (before the fix: 4353 symbols, 106 of them unique, with
``g++-11 -static-libstdc++``). The crash itself needs two libstdc++ versions whose facet tables differ (GCC 13 in
``_C`` next to GCC 14's shared one on that machine); the symbol table is the deterministic check of its cause."""

import shutil
import subprocess

import pytest

from zsseg_rt.ops import native_module


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm to read the dynamic symbol table")
def test_the_native_module_exports_only_its_init_function():
    path = native_module().__file__
    out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True).stdout
    exported = sorted(line.split()[-1] for line in out.splitlines() if line.strip())
    assert exported and all(name.startswith("PyInit_") for name in exported), exported[:20]
    unique = [line for line in out.splitlines() if " u " in line]
    assert unique == []  # STB_GNU_UNIQUE symbols would be shared with every other library in the process
