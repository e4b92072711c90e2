"""The "Deliberate twins" table of docs/development.md, generated from the duplicate finder's report.

    python -m checks twins            # the table, from a run of the finder (`duplicates`, on PATH), on stdout
    python -m checks twins --write    # the same, written between the table's markers in docs/development.md
    python -m checks twins --check    # exit 1, listing the differences, when the table is not the finder's list

Every pair of places the finder reports with both places in production code (``zsseg_rt/``, ``csrc/``) is one row
(one per pair of files). A pair alike in shape only (a list, a table's rows, a declaration's keywords, the idiom every
module of a kind has) is a row of ``SHAPE_ONLY`` below, its reason kept there: a comment at the code would tell the
reader nothing. Any other pair shares logic, and the place whose comment names its twin (a comment with the word
"twin" and the other file's name) says what the reader must know, after " - ": the row is that place, the twin and
that reason. A pair with neither is a row that says so: the pair is merged, or it gets its comment.
``python_tests/test_twins.py`` runs ``--check``'s comparison where the finder is installed, and checks every row's
comment everywhere.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "development.md"
BEGIN, END = "<!-- twins:begin -->", "<!-- twins:end -->"
PRODUCTION = ("zsseg_rt/", "csrc/")
FINDER = ["duplicates", "--most", "200", "--seconds", "300"]
MISSING = "MISSING: no comment at either place names the other; merge the two, or say why at the first"
# pairs in code being written in this checkout by other work (its owners name them when it lands): a row whose reason
# starts with "pending:" needs its files only (python_tests/test_architecture.py)
PENDING: Dict[Tuple[str, str], str] = {}
SHAPE = "shape only:"  # how the table's "why" starts for a SHAPE_ONLY row (test_twins: its files, no comment)
# The pairs of files (sorted) the finder reports whose places are alike in shape only, and why they stay so. A pair
# that leaves the finder's list leaves this table too (--check says so).
SHAPE_ONLY: Dict[Tuple[str, str], str] = {
    ("csrc/bindings/module.cpp", "csrc/bindings/module.cpp"): "one call per binding file (registry.h declares them), "
    "each registering its own ops: a list, not a copy",
    ("csrc/bindings/pamr.cpp", "csrc/bindings/warp.cpp"): "each binding fills its op's params struct from its "
    "checked arrays",
    ("csrc/bindings/segment.cpp", "csrc/bindings/upsample.cpp"): "both ops take the same inputs, parsed once by "
    "parse_resize_inputs; the rest is each binding's call",
    ("csrc/bindings/testing.cpp", "csrc/bindings/testing.cpp"): "each test helper makes one CUDA object and hands "
    "back its handle",
    ("csrc/bindings/emulation.cpp", "csrc/bindings/testing.cpp"): "each copies another struct's counters into a dict "
    "by name (the emulated runtime's statistics; segment_windows' pruning counters)",
    ("csrc/cuda/mma.cuh", "csrc/cuda/mma.cuh"): "one inline-asm wrapper per mma.sync shape (m16n8k16 f16, m16n8k8 "
    "tf32): PTX spells each instruction out",
    ("csrc/emu/cuda_emu_runtime.h", "csrc/emu/cuda_emu_runtime.h"): "CUDA's runtime enums as cuda_runtime_api.h "
    "spells them",
    ("csrc/emu/cuda_emu_runtime.h", "csrc/emu/cuda_emu_types.h"): "CUDA's runtime enums as cuda_runtime_api.h "
    "spells them",
    ("zsseg_rt/cli/batch.py", "zsseg_rt/cli/serve.py"): "the imports of two commands that use all of what they share",
    ("zsseg_rt/cli/build_engine.py", "zsseg_rt/cli/eval.py"): "the add_command idiom of every command module",
    ("zsseg_rt/cli/serve.py", "zsseg_rt/train/trainer.py"): "keyword arguments passed on",
    ("zsseg_rt/outputs/mcap_sink.py", "zsseg_rt/outputs/robot_sinks.py"): "each robot output's constructor keywords "
    "(sources, frame id, overlay, JPEG quality, objects): declarations, the writing is each sink's own",
    ("zsseg_rt/models/cliprc/__init__.py", "zsseg_rt/models/zegformer/__init__.py"): "declare_family's keywords by "
    "design; the values are each family's own",
    ("zsseg_rt/models/cliprc/__init__.py", "zsseg_rt/models/zeroseg/__init__.py"): "declare_family's keywords by "
    "design; the values are each family's own",
    ("zsseg_rt/models/training_free/__init__.py", "zsseg_rt/models/zegclip/__init__.py"): "declare_family's "
    "keywords by design; the values are each family's own",
    ("zsseg_rt/models/zegclip/__init__.py", "zsseg_rt/models/zegformer/__init__.py"): "declare_family's keywords by "
    "design; the values are each family's own",
    ("zsseg_rt/models/zegformer/__init__.py", "zsseg_rt/models/zeroseg/__init__.py"): "declare_family's keywords by "
    "design; the values are each family's own",
    ("zsseg_rt/models/cliprc/head.py", "zsseg_rt/models/cliprc/model.py"): "decode prepares the text and hands the "
    "head its arguments",
    ("zsseg_rt/models/zegclip/official.py", "zsseg_rt/models/zegformer/official.py"): "the importers' imports of the "
    "same shared helpers",
    ("zsseg_rt/models/zegformer/family.py", "zsseg_rt/models/zeroseg/family.py"): "FamilyArgument declarations",
    ("zsseg_rt/models/zegformer/model.py", "zsseg_rt/models/zegformer/predict.py"): "optional arguments of the same "
    "inference",
    ("zsseg_rt/prepare/onnxruntime.py", "zsseg_rt/prepare/openvino.py"): "the precision preparers' signature",
    ("zsseg_rt/options/engine_rows.py", "zsseg_rt/options/engine_rows.py"): "a table: the same fields, each row its "
    "own values (postprocess_kernel and encoder_variant: the device pipeline's two measured choices)",
    ("zsseg_rt/runtime/backends/table.py", "zsseg_rt/runtime/backends/table.py"): "a table: the same fields, each "
    "row its own values",
    ("zsseg_rt/options/run_rows.py", "zsseg_rt/options/run_rows.py"): "a table (the run's options, issue 88): the "
    "same fields, each row its own values",
    ("zsseg_rt/outputs/kinds.py", "zsseg_rt/outputs/kinds.py"): "the rows of the output kinds' table: each kind's "
    "declaration (option, spec, sink, plan entry, commands, help), the values each kind's own",
    ("zsseg_rt/outputs/ros_messages.py", "zsseg_rt/outputs/ros_messages.py"): "one CDR writer per type: its size, "
    "alignment and struct code",
}
_ROW = re.compile(r"^(D\d+) (\S+?):(\d+)-(\d+) ~ (\S+?):(\d+)-(\d+)")


@dataclass(frozen=True)
class Pair:
    """One pair the finder reports: two places (file, first line, last line)."""

    a: Tuple[str, int, int]
    b: Tuple[str, int, int]

    @property
    def files(self) -> Tuple[str, str]:
        return tuple(sorted((self.a[0], self.b[0])))  # type: ignore[return-value]


def production_pairs(report: str) -> List[Pair]:
    """The finder's pairs with both places in production code, one per pair of files (the first the finder lists)."""
    found: Dict[Tuple[str, str], Pair] = {}
    for line in report.splitlines():
        match = _ROW.match(line.strip())
        if not match:
            continue
        a = (match.group(2), int(match.group(3)), int(match.group(4)))
        b = (match.group(5), int(match.group(6)), int(match.group(7)))
        pair = Pair(a, b)
        if all(place[0].startswith(PRODUCTION) for place in (a, b)):
            found.setdefault(pair.files, pair)
    return [found[key] for key in sorted(found)]


def run_finder(root: Path = ROOT) -> str:
    """The finder's report of ``root`` (raises FileNotFoundError where it is not installed)."""
    if shutil.which(FINDER[0]) is None:
        raise FileNotFoundError(f"the duplicate finder `{FINDER[0]}` is not on PATH")
    done = subprocess.run(FINDER, cwd=root, capture_output=True, text=True, check=False)
    if "incomplete:" in done.stdout:
        raise RuntimeError(f"the finder did not read everything: {done.stdout.splitlines()[-1]}")
    return done.stdout


def _comments(path: Path) -> List[Tuple[int, str]]:
    """``(first line, text)`` of each comment block of ``path`` (consecutive ``//`` lines in C/C++, ``#`` elsewhere,
    joined)."""
    blocks: List[Tuple[int, str]] = []
    previous = False
    marks = ("//",) if path.suffix in (".c", ".cc", ".cpp", ".cu", ".cuh", ".h", ".hpp") else ("#",)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        comment = stripped.startswith(marks)
        if comment and previous:
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + " " + stripped.lstrip("#/ "))
        elif comment:
            blocks.append((number, stripped.lstrip("#/ ")))
        previous = comment
    return blocks


def names_of(twin: str) -> Iterable[str]:
    """How a comment may name the file ``twin``: its name, ``folder/stem``, ``folder.stem``; a package's face by its
    folder."""
    other = Path(twin)
    names = {other.name, f"{other.parent.name}/{other.stem}", f"{other.parent.name}.{other.stem}"}
    if other.name == "__init__.py":
        names.add(other.parent.name)
    return names


def twin_comment(root: Path, place: Tuple[str, int, int], twin: str) -> Optional[str]:
    """The comment at ``place``'s file naming ``twin`` (the one nearest the place), or None."""
    names = {""} if place[0] == twin else set(names_of(twin))
    found = [
        (abs(line - place[1]), text)
        for line, text in _comments(root / place[0])
        if "twin" in text and any(name in text for name in names)
    ]
    return min(found)[1] if found else None


def symbol_at(root: Path, place: Tuple[str, int, int]) -> str:
    """The definition that holds ``place`` (``Class.method``, ``function``, ``NAME =``), or its lines."""
    path, first, last = place
    if path.endswith(".py"):
        tree = ast.parse((root / path).read_text(encoding="utf-8"))
        best: Optional[str] = None
        stack: List[Tuple[ast.AST, str]] = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                end = getattr(child, "end_lineno", None)
                if end is None or not (child.lineno <= first <= end):
                    continue
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    best = f"{prefix}{child.name}"
                    stack.append((child, best + "."))
                elif isinstance(child, ast.Assign) and isinstance(child.targets[0], ast.Name) and best is None:
                    best = child.targets[0].id
        if best:
            return f"`{best}`"
    return f"lines {first}-{last}"


def rows(
    root: Path, pairs: Sequence[Pair], shape_only: Dict[Tuple[str, str], str] = SHAPE_ONLY
) -> List[Tuple[str, str, str]]:
    """``(place cell, twin cell, why)`` per pair: a pair of ``shape_only`` with its reason there, else the side whose
    comment names the other."""
    out = []
    for pair in pairs:
        if pair.files in shape_only:
            place, twin, why = pair.a, pair.b, f"{SHAPE} {shape_only[pair.files]}"
            out.append((f"`{place[0]}` {symbol_at(root, place)}", f"`{twin[0]}` {symbol_at(root, twin)}", why))
            continue
        for place, twin in ((pair.a, pair.b), (pair.b, pair.a)):
            comment = twin_comment(root, place, twin[0])
            if comment is not None:
                said = comment[comment.index("twin") :]
                why = said.split(" - ", 1)[1] if " - " in said else said
                break
        else:
            pending = PENDING.get(pair.files)
            place, twin, why = pair.a, pair.b, f"pending: {pending}" if pending else MISSING
        out.append(
            (f"`{place[0]}` {symbol_at(root, place)}", f"`{twin[0]}` {symbol_at(root, twin)}", why.replace("|", "/"))
        )
    return sorted(out)


def table(found: Sequence[Tuple[str, str, str]]) -> str:
    lines = ["| place (with the comment) | twin | why |", "|---|---|---|"]
    return "\n".join(lines + [f"| {a} | {b} | {why} |" for a, b, why in found])


def documented(text: str) -> str:
    """The table between the markers of docs/development.md's text."""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def table_pairs(text: str) -> List[Tuple[str, str]]:
    """The pairs of files (sorted) a table's rows name (the first backticked path of its first two cells)."""
    found = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        paths = [re.match(r"`([^`]+)`", cell) for cell in cells[:2]]
        if len(cells) == 3 and all(paths):
            found.append(tuple(sorted(match.group(1) for match in paths if match)))
    return sorted(found)  # type: ignore[arg-type]


def differences(doc_text: str, pairs: Sequence[Pair]) -> List[str]:
    """What differs between the documented table and the finder's pairs of files (each way)."""
    listed, reported = set(table_pairs(documented(doc_text))), {pair.files for pair in pairs}
    return [f"reported by the finder, not in the table: {a} ~ {b}" for a, b in sorted(reported - listed)] + [
        f"in the table, no longer reported by the finder: {a} ~ {b}" for a, b in sorted(listed - reported)
    ]


def stale_shapes(pairs: Sequence[Pair], shape_only: Dict[Tuple[str, str], str] = SHAPE_ONLY) -> List[str]:
    """The pairs ``shape_only`` lists that the finder no longer reports."""
    reported = {pair.files for pair in pairs}
    return [f"SHAPE_ONLY lists a pair the finder no longer reports: {a} ~ {b}" for a, b in sorted(shape_only)
            if (a, b) not in reported]  # fmt: skip


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write the table into docs/development.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when the table is not the finder's list")
    args = parser.parse_args(argv)
    pairs = production_pairs(run_finder())
    text = DOC.read_text(encoding="utf-8")
    if args.check:
        found = differences(text, pairs) + stale_shapes(pairs)
        print("\n".join(found) or f"the table is the finder's list ({len(pairs)} pairs of files)")
        return 1 if found else 0
    generated = table(rows(ROOT, pairs))
    if args.write:
        head, rest = text.split(BEGIN, 1)
        DOC.write_text(f"{head}{BEGIN}\n{generated}\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")
        print(f"wrote {len(pairs)} rows into {DOC.relative_to(ROOT)}")
    else:
        print(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
