"""The "Deliberate twins" of docs/development.md (issues 38, 63, 73): every pair the duplicate finder reports with both
places in production code is a row of its table (generated: ``python -m checks twins --write``; compared with the
finder's whole list where the finder is installed), and every row's first place carries the comment that names its
twin and why, but the rows alike in shape only, whose reason ``checks/twins.py`` SHAPE_ONLY keeps (no comment)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------------------------
# Deliberate twins (issue 38): the pairs that `duplicates` still reports are listed in docs/development.md, each
# with a comment at its first place naming the twin and why.

DEVELOPMENT = ROOT / "docs" / "development.md"


def deliberate_twins(text: str) -> List[Tuple[str, str, str]]:
    """``(place, twin, why)`` of every row of the "Deliberate twins" table: the first backticked path of the first
    two cells, and the third cell."""
    section = text.split("## Deliberate twins", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        paths = [re.match(r"`([^`]+)`", cell) for cell in cells[:2]]
        if len(cells) == 3 and all(paths):
            rows.append((paths[0].group(1), paths[1].group(1), cells[2]))  # type: ignore[union-attr]
    return rows


def _comment_blocks(path: Path) -> List[str]:
    """The file's comments, consecutive comment lines joined (``#`` or ``//``)."""
    blocks: List[str] = []
    previous = False
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        is_comment = stripped.startswith(("#", "//"))
        if is_comment and previous:
            blocks[-1] += " " + stripped.lstrip("#/ ")
        elif is_comment:
            blocks.append(stripped.lstrip("#/ "))
        previous = is_comment
    return blocks


def twin_problems(
    root: Path, rows: List[Tuple[str, str, str]], shape_only: Iterable[Tuple[str, str]] = ()
) -> List[str]:
    """What is wrong with the listed twins: a file that does not exist, or a first place without a comment naming
    its twin (the word "twin" and the twin's file: its name, ``folder/stem`` or ``folder.stem``; a family's
    ``__init__.py`` by its folder). Rows whose reason starts with "pending:" (areas being changed) need files only,
    and so do the rows alike in shape only ("shape only: ...") whose pair ``shape_only`` (SHAPE_ONLY) lists."""
    problems, shapes = [], set(shape_only)
    for place, twin, why in rows:
        missing = [path for path in (place, twin) if not (root / path).is_file()]
        problems += [f"{path}: listed as a deliberate twin but there is no such file" for path in missing]
        if why.startswith("shape only:") and tuple(sorted((place, twin))) not in shapes:
            problems.append(f"{place}: says shape only, but checks/twins.py SHAPE_ONLY does not list it with {twin}")
            continue
        if missing or why.startswith(("pending:", "shape only:")):
            continue
        other = Path(twin)
        names = {other.name, f"{other.parent.name}/{other.stem}", f"{other.parent.name}.{other.stem}"}
        if other.name == "__init__.py":
            names.add(other.parent.name)
        if place == twin:
            names = {""}
        if not any("twin" in block and any(name in block for name in names) for block in _comment_blocks(root / place)):
            problems.append(f"{place}: no comment naming its twin {twin} ({why})")
    return problems


def test_twin_checker_flags_a_missing_file_and_a_missing_comment(tmp_path):
    """Control: a row whose twin file is gone, a place without the comment, and a "shape only" row that SHAPE_ONLY
    does not list are reported; a place with the comment, a pending row and a listed shape-only row are not."""
    (tmp_path / "a.py").write_text("x = 1  # no word for the other file here\n")
    (tmp_path / "c.py").write_text("# twin: a.py - the same table on purpose\nx = 1\n")
    (tmp_path / "d.py").write_text("x = 1\n")
    doc = (
        "## Deliberate twins\n\n| place | twin | why |\n|---|---|---|\n"
        "| `a.py` `x` | `gone.py` `x` | reason |\n| `a.py` `x` | `c.py` `x` | reason |\n"
        "| `c.py` `x` | `a.py` `x` | reason |\n| `gone.py` `x` | `a.py` `x` | pending: elsewhere |\n"
        "| `d.py` `x` | `a.py` `x` | shape only: a list |\n| `d.py` `x` | `c.py` `x` | shape only: a list |\n\n## Next\n"
    )
    rows = deliberate_twins(doc)
    assert len(rows) == 6
    assert twin_problems(tmp_path, rows, shape_only={("a.py", "d.py")}) == [
        "gone.py: listed as a deliberate twin but there is no such file",
        "a.py: no comment naming its twin c.py (reason)",
        "gone.py: listed as a deliberate twin but there is no such file",
        "d.py: says shape only, but checks/twins.py SHAPE_ONLY does not list it with c.py",
    ]


def test_every_deliberate_twin_is_named_at_its_site():
    """Every pair docs/development.md lists as a deliberate twin exists and carries the comment that explains it."""
    rows = deliberate_twins(DEVELOPMENT.read_text(encoding="utf-8"))
    assert len(rows) >= 10, "the Deliberate twins table of docs/development.md was not found"
    problems = twin_problems(ROOT, rows, _twins_tool().SHAPE_ONLY)
    assert not problems, "\n".join(problems)


def _twins_tool():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("twins_tool", ROOT / "checks" / "twins.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules.setdefault("twins_tool", module)  # (its dataclasses look their module up)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules["twins_tool"]


def test_the_twin_comparison_finds_a_missing_and_a_stale_row(tmp_path):
    """Control of the whole-list check: a production pair the finder reports that the table lacks, and a row the
    finder no longer reports, are both named; a pair with one side outside production code is not a row."""
    twins = _twins_tool()
    report = (
        "3 pairs of places (9 files read), ...\n"
        "D1 zsseg_rt/a.py:1-9 ~ zsseg_rt/b.py:4-12\n"
        "D2 zsseg_rt/a.py:20-26 ~ csrc/c.cpp:1-7 shape\n"
        "D3 zsseg_rt/a.py:30-36 ~ python_tests/t.py:1-7\n"
    )
    pairs = twins.production_pairs(report)
    assert [pair.files for pair in pairs] == [("csrc/c.cpp", "zsseg_rt/a.py"), ("zsseg_rt/a.py", "zsseg_rt/b.py")]
    doc = f"x\n{twins.BEGIN}\n| a | b | why |\n|---|---|---|\n| `zsseg_rt/a.py` f | `zsseg_rt/b.py` g | ok |\n"
    doc += f"| `zsseg_rt/a.py` f | `zsseg_rt/gone.py` g | old |\n{twins.END}\n"
    assert twins.differences(doc, pairs) == [
        "reported by the finder, not in the table: csrc/c.cpp ~ zsseg_rt/a.py",
        "in the table, no longer reported by the finder: zsseg_rt/a.py ~ zsseg_rt/gone.py",
    ]
    assert (
        twins.differences(doc.replace("gone.py", "b.py").replace("zsseg_rt/b.py` g | ok", "csrc/c.cpp` g | ok"), pairs)
        == []
    )
    # a SHAPE_ONLY pair the finder no longer reports is named too; one it reports is not
    shapes = {("zsseg_rt/a.py", "zsseg_rt/b.py"): "a list", ("zsseg_rt/a.py", "zsseg_rt/gone.py"): "a table"}
    assert twins.stale_shapes(pairs, shapes) == [
        "SHAPE_ONLY lists a pair the finder no longer reports: zsseg_rt/a.py ~ zsseg_rt/gone.py"
    ]
    # and a reported SHAPE_ONLY pair is a row with its reason, whatever the comments say
    (tmp_path / "zsseg_rt").mkdir()
    (tmp_path / "zsseg_rt" / "a.py").write_text("\n".join(f"x{i} = {i}" for i in range(40)) + "\n")
    (tmp_path / "zsseg_rt" / "b.py").write_text("\n".join(f"y{i} = {i}" for i in range(40)) + "\n")
    assert [row[2] for row in twins.rows(tmp_path, [pairs[1]], shapes)] == [f"{twins.SHAPE} a list"]
    assert twins.rows(tmp_path, [pairs[1]], {})[0][2] == twins.MISSING


def test_the_twin_table_is_the_finders_whole_list():
    """The "Deliberate twins" table lists every pair the duplicate finder reports with both places in production code,
    and no other (generated: python -m checks twins --write)."""
    import shutil

    if shutil.which("duplicates") is None:
        pytest.skip("the duplicate finder (`duplicates`) is not on PATH here: its list cannot be compared")
    twins = _twins_tool()
    pairs = twins.production_pairs(twins.run_finder())
    found = twins.differences(DEVELOPMENT.read_text(encoding="utf-8"), pairs) + twins.stale_shapes(pairs)
    assert not found, "\n".join(found) + "\n(python -m checks twins --write writes the table again)"
