"""Guards of the package's shape (DESIGN.md, "Layers"): no import cycle inside ``zsseg_rt``, and generic layers
that reach a model family only through the registry.

Both read the source with ``ast`` (no import), so lazy imports inside functions count like module-level ones.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "zsseg_rt"

# Modules allowed to name families: the one migration table of old bundle meta.json files, and the deprecated
# import paths kept for one release (CHANGELOG.md lists them).
ALLOWED: Dict[str, str] = {
    "zsseg_rt.bundle.migrate": "the one migration table of old bundle meta.json files",
    "zsseg_rt.runtime.zegformer": "deprecated path: runtime.pipelines.two_stage",
    "zsseg_rt.export.zegformer": "deprecated path: models.zegformer.export",
    "zsseg_rt.export.zeroseg": "deprecated path: models.zeroseg.onnx",
    "zsseg_rt.eval.zeroseg_protocol": "deprecated path: models.zeroseg.protocol",
    "zsseg_rt.train.zeroseg": "deprecated path: models.zeroseg.trainer",
}


# ---------------------------------------------------------------------------------------------- the module graph
def _modules() -> Dict[str, Tuple[Path, bool]]:
    """Module name -> (file, is_package) for every ``.py`` file of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _deepest_module(name: str) -> str:
    while name and name not in MODULES:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def _imported(module: str, tree: ast.AST, is_package: bool) -> Iterator[Tuple[str, int]]:
    """``(imported zsseg_rt module, line)`` for every import statement anywhere in ``tree``."""
    base = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "zsseg_rt":
                    yield _deepest_module(alias.name), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                source = ".".join(parts + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "zsseg_rt":
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                yield (full if full in MODULES else _deepest_module(source)), node.lineno


@functools.lru_cache(maxsize=None)
def _tree(module: str) -> ast.AST:
    path = MODULES[module][0]
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


@functools.lru_cache(maxsize=None)
def import_graph() -> Dict[str, Set[str]]:
    """Module -> the ``zsseg_rt`` modules it imports (module level, in functions, under ``if``: all of them)."""
    graph = {}
    for module, (_, is_package) in MODULES.items():
        graph[module] = {
            target for target, _ in _imported(module, _tree(module), is_package) if target and target != module
        }
    return graph


def import_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return sorted(cycles)


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    """No import cycle inside zsseg_rt, lazy (function-level) imports included."""
    cycles = import_cycles(import_graph())
    assert not cycles, f"import cycles inside zsseg_rt: {cycles}"


# ---------------------------------------------------------------------------------------------- family names
FAMILIES = sorted(
    p.name for p in (PACKAGE / "models").iterdir() if (p / "__init__.py").is_file() and p.name not in ("common",)
)
_WORD = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, FAMILIES)) + r")(?![A-Za-z0-9_])")
_PART = re.compile(r"(?:^|_)(" + "|".join(map(re.escape, FAMILIES)) + r")(?:_|$)")


def is_generic(module: str) -> bool:
    """Every module outside ``zsseg_rt.models.<family>`` is generic."""
    return not any(module == f"zsseg_rt.models.{f}" or module.startswith(f"zsseg_rt.models.{f}.") for f in FAMILIES)


def _docstrings(tree: ast.AST) -> Set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


@functools.lru_cache(maxsize=None)
def family_leaks(module: str) -> List[str]:
    """Where a module names a model family: an import of a family package, a string holding a family name as a
    word (``"zegformer"``, ``"zsseg_rt.zeroseg."``; prose such as "ZegFormer" and config names such as
    ``"zegclip_vitb16_voc_inductive"`` are not family names), or an identifier with a family name as one of its
    ``_``-separated parts (``_is_zeroseg``, ``ZEGFORMER_GRAPH_FILES``). Docstrings and comments are prose."""
    path, is_package = MODULES[module]
    tree = _tree(module)
    found = [
        f"{path.name}:{line}: imports {target}"
        for target, line in _imported(module, tree, is_package)
        if target and not is_generic(target)
    ]
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if _WORD.search(node.value):
                found.append(f"{path.name}:{node.lineno}: string {node.value[:60]!r}")
        names = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
        elif isinstance(node, ast.arg):
            names.append(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            names.append(node.arg)
        elif isinstance(node, ast.alias):
            names.append(node.asname or node.name.split(".")[-1])
        for name in names:
            if _PART.search(name.lower()):
                found.append(f"{path.name}:{getattr(node, 'lineno', '?')}: name {name}")
    return found


def test_family_finder_finds_leaks(tmp_path):
    assert FAMILIES and "common" not in FAMILIES
    assert _WORD.search(FAMILIES[0]) and _WORD.search(f"zsseg_rt.{FAMILIES[0]}.v1")
    assert not _WORD.search(f"{FAMILIES[0]}_vitb16_voc_inductive")
    assert _PART.search(f"_is_{FAMILIES[0]}") and _PART.search(f"{FAMILIES[0]}_GRAPH_FILES".lower())


def test_generic_layers_name_no_family():
    """Generic layers (runtime, pipeline, bundle, export, eval, train, scale, stream, cli, data, ops, models/common,
    the registry) reach a family only through the registry."""
    leaks = {module: family_leaks(module) for module in MODULES if is_generic(module) and module not in ALLOWED}
    leaks = {module: found for module, found in leaks.items() if found}
    assert not leaks, "generic modules naming a model family:\n" + "\n".join(
        f"{module}: {found}" for module, found in leaks.items()
    )


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_allowed_modules_are_the_migration_table_or_deprecated_paths(module):
    """What may name families: the migration table, and small deprecation shims that warn and only re-export."""
    assert module in MODULES, f"{module} no longer exists: remove it from ALLOWED (and the CHANGELOG's list)"
    if module.endswith(".migrate"):
        return
    text = MODULES[module][0].read_text(encoding="utf-8")
    assert "Deprecated import path" in text and "DeprecationWarning" in text, module
    defined = [n for n in _tree(module).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert not defined, f"{module} defines code; a deprecation shim only re-exports"
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    deprecated = re.search(r"^### Deprecated.*?(?=^### |^## |\Z)", changelog, re.S | re.M)
    assert deprecated and f"`{module}`" in deprecated.group(0), f"{module} is not in CHANGELOG.md's Deprecated list"


# ---------------------------------------------------------------------------------------------- merge leftovers
LEFTOVER = re.compile(r"(\.orig|\.rej|\.bak|\.swp|~)$|^#.*#$")
SOURCE_DIRS = ("zsseg_rt", "python_tests", "csrc", "cpp_tests", "tools", "checks", "benchmarks", "docs")


def _leftovers(root: Path) -> List[str]:
    """Files under the source folders whose names are merge/patch/editor leftovers (``x.py.orig``, ``x.rej``, ...)."""
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and LEFTOVER.search(path.name) and ".venv" not in path.parts:
                found.append(str(path.relative_to(root)))
    return found


def test_leftover_finder_finds_leftovers(tmp_path):
    """Control: the finder flags the names a merge or an editor leaves (a ``trainer.py.orig`` was tracked once)."""
    (tmp_path / "zsseg_rt" / "models").mkdir(parents=True)
    for name in ("trainer.py.orig", "head.py.rej", "x.cpp~", "model.py"):
        (tmp_path / "zsseg_rt" / "models" / name).write_text("")
    assert _leftovers(tmp_path) == [f"zsseg_rt/models/{n}" for n in ("head.py.rej", "trainer.py.orig", "x.cpp~")]


def test_no_merge_leftovers_in_the_source():
    assert _leftovers(ROOT) == [], "remove these merge/patch leftovers (and do not commit them)"
