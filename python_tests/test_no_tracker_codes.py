"""The package code names no issue of the tracker: a reader of zsseg_rt/ and csrc/ does not have the tracker, so a
comment says why in its own words (CHANGELOG.md, the tests and docs/ may keep the issue numbers)."""

import re
from pathlib import Path
from typing import Iterable, List, Tuple

REPO = Path(__file__).resolve().parents[1]
# "issue 87", "Issue 13:", "issues 13, 25", "issue #5", and a number wrapped onto the next line of a docstring
# ("issue\n    87") or of a comment ("issue\n# 87", "issue\n// 87")
TRACKER = re.compile(r"\bissues?\s+(?:(?:#|//|\*)\s*)?\d+", re.IGNORECASE)
NATIVE_SUFFIXES = {".cpp", ".h", ".cu", ".cuh"}


def tracker_hits(name: str, text: str) -> List[str]:
    """``name:line: text`` for each line of ``text`` where a tracker reference starts."""
    lines = text.splitlines()
    numbers = sorted({text.count("\n", 0, match.start()) + 1 for match in TRACKER.finditer(text)})
    return [f"{name}:{number}: {lines[number - 1].strip()[:120]}" for number in numbers]


def _package_files() -> Iterable[Tuple[str, Path]]:
    for path in sorted((REPO / "zsseg_rt").rglob("*.py")):
        yield str(path.relative_to(REPO)), path
    for path in sorted((REPO / "csrc").rglob("*")):
        if path.suffix in NATIVE_SUFFIXES and path.is_file():
            yield str(path.relative_to(REPO)), path


def test_the_scan_reports_a_tracker_reference_and_nothing_else():
    sample = (
        "x = 1  # fine\n"
        "# the cache (issue 12: it was slow; issue 13 too)\n"
        "// Issues 3, 4: same\n"
        "# a wrapped issue\n"
        "# 7 here\n"
        '"""a docstring\'s issue\n'
        '    8"""\n'
    )
    assert tracker_hits("sample.py", sample) == [
        "sample.py:2: # the cache (issue 12: it was slow; issue 13 too)",
        "sample.py:3: // Issues 3, 4: same",
        "sample.py:4: # a wrapped issue",
        'sample.py:6: """a docstring\'s issue',
    ]
    clean = "# an L2 norm, F1 score, sm_87, probe P7, M1 Max, 0x87, H.264; this issues a warning\nissue = 3\n"
    assert tracker_hits("clean.py", clean) == []


def test_no_package_file_names_a_tracker_issue():
    files = list(_package_files())
    assert len(files) > 100 and any(name.endswith(".cu") for name, _ in files)  # the scan found the trees
    hits = [hit for name, path in files for hit in tracker_hits(name, path.read_text(encoding="utf-8"))]
    assert not hits, "tracker references in package code (say why in words; CHANGELOG.md keeps the number):\n" + (
        "\n".join(hits)
    )
