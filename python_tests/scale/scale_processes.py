"""Helpers of the scale tests: the processes a test started (Ray's below the driver), read from Linux /proc."""

from __future__ import annotations

import os
from typing import Dict, Set


def process_tree(root: int) -> Set[int]:
    """``root`` and every process below it now (children, their children, ...)."""
    parents: Dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as handle:
                    parents[int(name)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    family, grown = set(), {root}
    while grown:
        family |= grown
        grown = {pid for pid, parent in parents.items() if parent in grown} - family
    return family
