"""Shared pieces of the benchmark scripts: machine description and BENCHMARKS.md section writing."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parent.parent


def machine_description(threads: int) -> List[str]:
    """Markdown bullet lines naming the CPU, cores, OS, thread count and versions."""
    cpu = "unknown CPU"
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1).strip()
    except (OSError, AttributeError):
        pass
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return [
        f"- Machine: {cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}",
        f"- Threads: {threads} (OMP_NUM_THREADS for zsseg_rt, torch.set_num_threads for PyTorch)",
        f"- PyTorch {torch_version}, Python {platform.python_version()}, date {datetime.date.today().isoformat()}",
    ]


def write_section(section: str, text: str) -> Path:
    """Replace (or append) the ``section`` heading's block of BENCHMARKS.md with ``text``."""
    path = REPO / "BENCHMARKS.md"
    if not path.exists():
        path.write_text("# Benchmarks\n\nEach section says how to regenerate it.\n\n" + text)
        return path
    content = path.read_text()
    pattern = re.compile(re.escape(section) + r".*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(content):
        content = pattern.sub(lambda _: text + "\n", content)
    else:
        content = content.rstrip() + "\n\n" + text
    path.write_text(content)
    return path
