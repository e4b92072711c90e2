"""Guards of the package's shape (docs/development.md, "Layers"): the layer order (a module imports its own layer
and those below, never one above), no import cycle inside ``zsseg_rt``, generic layers that reach a model family
only through the registry, and no merge leftovers.

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
# import paths removed in 0.2.0 (CHANGELOG.md lists them).
ALLOWED: Dict[str, str] = {
    "zsseg_rt.bundle.migrate": "the one migration table of old bundle meta.json files",
    "zsseg_rt.runtime.zegformer": "deprecated path: runtime.pipelines.two_stage",
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


# ---------------------------------------------------------------------------------------------- the layer order
# Lowest first. A module imports modules of its own layer and of the layers below, never of a layer above
# (docs/development.md, "Layers"). Inside a layer, the cycle rule above keeps the order. A package not listed here
# fails the test: a new package is placed on purpose.
LAYERS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "zsseg_rt",
            "zsseg_rt.errors",
            "zsseg_rt.console",  # errors, signal phases, progress, speed (console.arguments: runtime applications)
            "zsseg_rt.outputs.plan",  # the output plan and the owner lock (the rest of outputs/: runtime applications)
            "zsseg_rt.outputs.owner",
            "zsseg_rt.outputs.staged",  # the plan's staged outputs (outputs/plan.py was over 700 lines)
            "zsseg_rt.options",
            "zsseg_rt.image_io",
            "zsseg_rt.io_safety",
            "zsseg_rt.system_info",
            "zsseg_rt.assets",
        ),
    ),
    ("native ops and the vocabulary unit", ("zsseg_rt.ops", "zsseg_rt.vocabulary")),
    ("formats: bundles, datasets, pre/post-processing", ("zsseg_rt.bundle", "zsseg_rt.data", "zsseg_rt.pipeline")),
    # runtime.device (the device pipeline: CUDA memory, graphs, frames in flight) is inside the runtime's layer: the
    # Engine, the pipelines and the backends reach it, it builds the runtime's Results (runtime.result)
    ("the runtime (Engine, backends, the device pipeline; no torch)", ("zsseg_rt.runtime", "zsseg_rt.runtime.device")),
    # one layer above the runtime, which it drives: gates, quantisers, TensorRT builds, records written, the auto
    # preparation. The runtime reaches it as a child process (python -m zsseg_rt.prepare.auto) and by name at run time
    # (a table row's preparer, importlib in precision_records.load_preparer, on first use): never by an import statement
    ("preparing a bundle for this machine (no torch)", ("zsseg_rt.prepare",)),
    (
        "runtime applications (Ray, camera, profiler, zsseg segment)",
        (
            "zsseg_rt.scale",
            "zsseg_rt.stream",
            "zsseg_rt.outputs",  # the output kinds and sinks (they take Results, read stream.sources' tables)
            "zsseg_rt.profiling",
            "zsseg_rt.console.arguments",
        ),
    ),
    ("the family contract (protocol, registry, shared blocks)", ("zsseg_rt.contract",)),
    ("toolkits the families call (export, eval, train)", ("zsseg_rt.export", "zsseg_rt.eval", "zsseg_rt.train")),
    ("the families (plugins)", ("zsseg_rt.models",)),
    # the `zsseg` command line, and the `python -m` entry points of packages below (each runs one of its commands)
    (
        "commands",
        ("zsseg_rt.cli", "zsseg_rt.eval.__main__", "zsseg_rt.train.__main__", "zsseg_rt.profiling.__main__"),
    ),
)


def layer_of(module: str, layers=LAYERS) -> int:
    """The index of ``module``'s layer: the longest listed name that is the module or a package above it."""
    best, found = -1, -1
    for index, (_, names) in enumerate(layers):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), index
    if found < 0:
        raise LookupError(f"{module} is in no layer of test_architecture.LAYERS: place its package on purpose")
    return found


def layer_violations(graph: Dict[str, Set[str]], layers=LAYERS) -> List[str]:
    """``a (layer) -> b (higher layer)`` for every import that goes up."""
    found = []
    for module in sorted(graph):
        for target in sorted(graph[module]):
            if layer_of(target, layers) > layer_of(module, layers):
                found.append(
                    f"{module} ({layers[layer_of(module, layers)][0]}) imports {target} "
                    f"({layers[layer_of(target, layers)][0]})"
                )
    return found


def test_layer_finder_finds_an_import_going_up():
    """Control: an engine importing a family, and a contract module importing an engine, are both caught; the
    opposite directions are not."""
    graph = {
        "zsseg_rt.export.graphs": {"zsseg_rt.models.zegclip.model", "zsseg_rt.contract.registry"},
        "zsseg_rt.contract.registry": {"zsseg_rt.eval.evaluate"},
        "zsseg_rt.models.zegclip.model": {"zsseg_rt.export.onnx_export", "zsseg_rt.contract.common.text"},
        "zsseg_rt.eval.evaluate": {"zsseg_rt.scale"},
    }
    found = layer_violations(graph)
    assert len(found) == 2, found
    assert (
        found[0].startswith("zsseg_rt.contract.registry (the family contract") and "zsseg_rt.eval.evaluate" in found[0]
    )
    assert found[1].startswith("zsseg_rt.export.graphs (toolkits") and "zsseg_rt.models.zegclip.model" in found[1]
    with pytest.raises(LookupError, match="no layer"):
        layer_of("zsseg_rt_other.x")


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_import_goes_up_a_layer():
    """The layer order holds for every import, lazy ones (inside functions) included."""
    found = layer_violations(import_graph())
    assert not found, "imports that go up a layer:\n" + "\n".join(found)


# ---------------------------------------------------------------------------------------------- family names
FAMILIES = sorted(
    p.name for p in (PACKAGE / "models").iterdir() if (p / "__init__.py").is_file() and p.name not in ("common",)
)


def _method_names() -> List[str]:
    """The training-free methods (the keys of ``METHODS`` in the family's config, read with ``ast``): generic code
    names them no more than it names a family."""
    tree = ast.parse((PACKAGE / "models" / "training_free" / "config.py").read_text(encoding="utf-8"))
    for node in tree.body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) else None)
        )
        if isinstance(target, ast.Name) and target.id == "METHODS" and isinstance(node.value, ast.Dict):
            return sorted(k.value for k in node.value.keys if isinstance(k, ast.Constant))
    raise AssertionError("METHODS not found in zsseg_rt/models/training_free/config.py")


METHODS = _method_names()
NAMES = sorted(set(FAMILIES) | set(METHODS))
# in strings: the names as words in any case ("zegformer", "ZegFormer's own protocol", "NACLIP"); config names
# (``zegclip_vitb16_voc_inductive``, ``sclip-vitb16``) are names of bundled configs, not families
_WORD = re.compile(
    r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, NAMES)) + r")(?![A-Za-z0-9_]|-[A-Za-z0-9])", re.IGNORECASE
)
# in identifiers: any case (``ZEGFORMER_GRAPH_FILES``, ``ZegFormerEngine`` lowercased, ``run_sclip``)
_PART = re.compile(r"(?:^|_)(" + "|".join(map(re.escape, NAMES)) + r")(?:_|$)", re.IGNORECASE)


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
    assert {"sclip", "naclip", "maskclip"} <= set(METHODS), METHODS
    assert _WORD.search(FAMILIES[0]) and _WORD.search(f"zsseg_rt.{FAMILIES[0]}.v1")
    assert not _WORD.search(f"{FAMILIES[0]}_vitb16_voc_inductive") and not _WORD.search("--config sclip-vitb16")
    assert _PART.search(f"_is_{FAMILIES[0]}") and _PART.search(f"{FAMILIES[0]}_GRAPH_FILES".lower())
    # case does not hide a name (``ZEGFORMER_GRAPH_FILES``, "ZegFormer's"), nor does a method name (``"sclip"``)
    assert _WORD.search("method 'naclip'") and _WORD.search("zsseg_rt.sclip.v1") and _WORD.search("ZegFormer's")
    assert _PART.search("ZEGFORMER_GRAPH_FILES") and _PART.search("zegformer_graph_io") and _PART.search("run_sclip")


def test_generic_layers_name_no_family():
    """Generic layers (runtime, pipeline, bundle, export, eval, train, scale, stream, cli, data, ops, the contract)
    reach a family only through the registry."""
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
    deprecated = "".join(re.findall(r"^### Deprecated.*?(?=^### |^## |\Z)", changelog, re.S | re.M))
    assert f"`{module}`" in deprecated, f"{module} is not in a Deprecated list of CHANGELOG.md"
    assert "removed in 0.2.0" in text, f"{module}: a deprecation shim says when it goes (removed in 0.2.0)"


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


# ---------------------------------------------------------------------------------------------- backend names
# Backend names are spelled in the backend table (zsseg_rt/runtime/backends/) and in the modules each row lists as its
# own (``own_modules``); everything else reads the table (docs/development.md, "Adding a backend"). A string equal to a
# backend name is still a library's name where it names a Python module (the calls below) and in these places:
BACKEND_NAME_CALLS = {"get", "find_spec", "import_module", "importorskip", "_module_version", "version"}
BACKEND_LITERALS_ALLOWED: Dict[Tuple[str, str], str] = {
    ("zsseg_rt.cli", "torch"): "the PyTorch side's module names whose presence a torch command checks",
    ("zsseg_rt.eval.evaluate", "torch"): "the kind of checkpoint evaluated (a PyTorch model, not a backend)",
    ("zsseg_rt.export.onnx_export", "torch"): "the two sides of an export's parity check: PyTorch's outputs",
    ("zsseg_rt.export.onnx_export", "onnxruntime"): "the two sides of an export's parity check: ONNX Runtime's",
    ("zsseg_rt.models.zeroseg.evaluate", "torch"): "the source of a reference prediction (the PyTorch model)",
    ("zsseg_rt.options.engine_rows", "onnxruntime"): "the backend row's example (python_tests/test_option_examples.py "
    "checks that the backend table takes it)",
    ("zsseg_rt.profiling", "onnxruntime"): "system_info's library versions, printed",
    ("zsseg_rt.profiling", "tensorrt"): "system_info's library versions, printed",
    ("zsseg_rt.runtime.device.device_pipeline", "torch"): "a memory kind (TorchMemory: torch tensors), not a backend",
    ("zsseg_rt.runtime.device.memories", "torch"): "TorchMemory's kind (torch tensors), not a backend",
    ("zsseg_rt.system_info", "onnxruntime"): "the versions of installed libraries (distribution names)",
    ("zsseg_rt.system_info", "tensorrt"): "the versions of installed libraries (distribution names)",
    ("zsseg_rt.train.checkpoint", "torch"): "the torch version a checkpoint records",
}


def backend_literals(module: str, tree: ast.AST, names, own=None) -> List[str]:
    """``"module:line: 'name'"`` for every string constant equal to a backend name in ``names`` that is not a
    docstring, not the argument of a call naming a Python module, and not allowed (the backend's own modules,
    ``BACKEND_LITERALS_ALLOWED``)."""
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    lookups = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in BACKEND_NAME_CALLS:
                lookups.update(id(arg) for arg in node.args)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names):
            continue
        if id(node) in docs or id(node) in lookups or (module, node.value) in BACKEND_LITERALS_ALLOWED:
            continue
        if any(module == m or module.startswith(m + ".") for m in (own or {}).get(node.value, ())):
            continue
        found.append(f"{module}:{node.lineno}: {node.value!r}")
    return found


def _backend_table():
    from zsseg_rt.runtime.backends import table

    rows = [table.backend_row(name) for name in table.BUILTIN_BACKENDS]
    return {row.name for row in rows}, {row.name: row.own_modules for row in rows}


def test_backend_literal_finder_finds_a_hand_list():
    """Control: a hand-written choice list and a dispatch on a backend name are caught; a module lookup, a docstring
    and the backend's own module are not."""
    code = (
        '"""Runs on onnxruntime."""\n'
        "import sys\n"
        'CHOICES = ("auto", "onnxruntime", "openvino")\n'
        'def run(backend):\n    """torch"""\n    if backend == "torch":\n        return sys.modules.get("torch")\n'
    )
    tree = ast.parse(code)
    names = {"onnxruntime", "openvino", "torch", "tensorrt"}
    assert backend_literals("zsseg_rt.fake", tree, names) == [
        "zsseg_rt.fake:3: 'onnxruntime'",
        "zsseg_rt.fake:3: 'openvino'",
        "zsseg_rt.fake:6: 'torch'",
    ]
    assert backend_literals("zsseg_rt.fake", tree, names, {"onnxruntime": ("zsseg_rt.fake",)}) == [
        "zsseg_rt.fake:3: 'openvino'",
        "zsseg_rt.fake:6: 'torch'",
    ]


def test_no_backend_name_is_written_outside_the_backend_table():
    names, own = _backend_table()
    found = []
    for module in MODULES:
        if module == "zsseg_rt.runtime.backends" or module.startswith("zsseg_rt.runtime.backends."):
            continue
        found += backend_literals(module, _tree(module), names, own)
    assert not found, (
        "backend names written by hand (read zsseg_rt.runtime.backends.table instead: backend_names(), "
        "precision_names(), a row's fields):\n" + "\n".join(found)
    )
    unused = [key for key in BACKEND_LITERALS_ALLOWED if key[0] not in MODULES]
    assert not unused, f"BACKEND_LITERALS_ALLOWED names modules that do not exist: {unused}"


# ---------------------------------------------------------------------------------------------- family layout
# docs/development.md "Family layout": the files every family has, and the role modules' one name each
FAMILY_REQUIRED = ("__init__.py", "family.py", "config.py", "configs/", "model.py")
FAMILY_ROLES = ("predict.py", "export.py", "evaluate.py", "official.py", "losses.py", "weights.py")
# a role under another name -> the role's name
FAMILY_ROLE_ALIASES = {
    "infer.py": "predict.py",
    "inference.py": "predict.py",
    "protocol.py": "evaluate.py",
    "eval.py": "evaluate.py",
    "bundle.py": "export.py",
    "onnx.py": "export.py",
    "loss.py": "losses.py",
}
NOT_FAMILIES = ("common",)  # zsseg_rt/models/common: the dated alias of zsseg_rt.contract.common


def family_dirs(models: Path) -> List[Path]:
    """The family packages: every package folder under ``models`` (read from the file system, so a new family is
    checked without being listed here)."""
    return sorted(p for p in models.iterdir() if (p / "__init__.py").is_file() and p.name not in NOT_FAMILIES)


def family_layout_problems(family: Path) -> List[str]:
    """What breaks the one family layout in the package folder ``family``."""
    problems = []
    for name in FAMILY_REQUIRED:
        path = family / name.rstrip("/")
        if not (path.is_dir() if name.endswith("/") else path.is_file()):
            problems.append(f"{family.name}: no {name}")
    for name, role in sorted(FAMILY_ROLE_ALIASES.items()):
        if (family / name).exists():
            problems.append(f"{family.name}/{name}: a role module under another name (call it {role})")
    init = family / "__init__.py"
    if init.is_file():
        tree = ast.parse(init.read_text(encoding="utf-8"))
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        if not calls & {"register_family", "declare_family"}:
            problems.append(f"{family.name}/__init__.py: registers no family (declare_family or register_family)")
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                problems.append(f"{family.name}/__init__.py:{node.lineno}: {node.name} (registration only)")
    return problems


def test_family_layout_checker_flags_a_bad_family(tmp_path):
    """Control: a fake family without model.py and configs/, with roles under old names and code in its
    ``__init__.py``, is flagged on each count; a fake family in the layout is not; ``common`` is no family."""
    good, bad = tmp_path / "goodfam", tmp_path / "badfam"
    for folder in (good, bad, tmp_path / "common"):
        folder.mkdir()
        (folder / "__init__.py").write_text(
            "from zsseg_rt.contract.registry import register_family\n\nFAMILY = register_family(F)\n"
        )
    for name in ("family.py", "config.py", "model.py", "predict.py", "export.py"):
        (good / name).write_text("")
    (good / "configs").mkdir()
    for name in ("family.py", "config.py", "infer.py", "protocol.py", "bundle.py", "onnx.py"):
        (bad / name).write_text("")
    (bad / "__init__.py").write_text("def helper():\n    pass\n")
    assert [p.name for p in family_dirs(tmp_path)] == ["badfam", "goodfam"]
    assert family_layout_problems(good) == []
    assert family_layout_problems(bad) == [
        "badfam: no configs/",
        "badfam: no model.py",
        "badfam/bundle.py: a role module under another name (call it export.py)",
        "badfam/infer.py: a role module under another name (call it predict.py)",
        "badfam/onnx.py: a role module under another name (call it export.py)",
        "badfam/protocol.py: a role module under another name (call it evaluate.py)",
        "badfam/__init__.py: registers no family (declare_family or register_family)",
        "badfam/__init__.py:1: helper (registration only)",
    ]


def test_every_family_has_the_one_layout():
    families = family_dirs(PACKAGE / "models")
    assert [p.name for p in families] == FAMILIES and len(families) >= 5
    found = [problem for family in families for problem in family_layout_problems(family)]
    assert not found, "families out of the layout of docs/development.md (Family layout):\n" + "\n".join(found)


# A family builds on the family contract (zsseg_rt.contract), never on another family's code: what two families share
# moves to contract/common. The one exception: CLIP-RC is ZegCLIP with regional clues (its model, backbone, head, losses
# and official import extend ZegCLIP's).
FAMILY_BASES: Dict[str, Set[str]] = {"cliprc": {"zegclip"}}


def cross_family_imports(graph: Dict[str, Set[str]], bases=FAMILY_BASES) -> List[str]:
    """``"importer -> imported"`` for every import of one family package's module by another family's module that
    ``bases`` does not allow."""

    def family(module: str) -> str:
        parts = module.split(".")
        return parts[2] if len(parts) > 2 and parts[:2] == ["zsseg_rt", "models"] and parts[2] != "common" else ""

    found = []
    for module, targets in sorted(graph.items()):
        own = family(module)
        for target in sorted(targets):
            other = family(target)
            if own and other and other != own and other not in bases.get(own, set()):
                found.append(f"{module} -> {target}")
    return found


def test_cross_family_finder_finds_a_borrowed_block():
    """Control: a family importing another family's module is caught; CLIP-RC's import of ZegCLIP is not."""
    graph = {
        "zsseg_rt.models.zegformer.model": {"zsseg_rt.models.zegclip.model", "zsseg_rt.contract.common.clip"},
        "zsseg_rt.models.cliprc.model": {"zsseg_rt.models.zegclip.model"},
        "zsseg_rt.models.zegclip.model": {"zsseg_rt.models.cliprc.model"},
    }
    assert cross_family_imports(graph) == [
        "zsseg_rt.models.zegclip.model -> zsseg_rt.models.cliprc.model",
        "zsseg_rt.models.zegformer.model -> zsseg_rt.models.zegclip.model",
    ]


def test_no_family_imports_another_family():
    found = cross_family_imports(import_graph())
    assert not found, (
        "a family borrowing another family's code (move what they share to zsseg_rt/contract/common/):\n"
        + "\n".join(found)
    )


def test_every_family_has_its_test_folder():
    """docs/development.md "Test layout": a family's tests are in python_tests/models/<family>/, and no test file
    named for one family is anywhere else."""
    tests = ROOT / "python_tests"
    missing = [f for f in FAMILIES if not list((tests / "models" / f).glob("test_*.py"))]
    assert not missing, f"families without tests in python_tests/models/<family>/: {missing}"
    named = re.compile(r"(?:^|_)(" + "|".join(map(re.escape, FAMILIES)) + r")(?:_|\.py$)")
    # control: the names of the old places are caught, a generic name is not
    assert [m and m.group(1) for m in map(named.search, ("test_zeroseg_bundle.py", "test_registry.py"))] == [
        "zeroseg",
        None,
    ]
    astray = [
        str(path.relative_to(tests))
        for path in sorted(tests.rglob("test_*.py"))
        if named.search(path.name) and path.parent != tests / "models" / named.search(path.name).group(1)
    ]
    assert not astray, f"test files named for a family outside its folder python_tests/models/<family>/: {astray}"


# ---------------------------------------------------------------------------------------------- private names
def owner_package(module: str) -> str:
    """The package a module belongs to for the private-name rule: a family (``zsseg_rt.models.<family>``), or the
    first package below ``zsseg_rt`` (``zsseg_rt.export``, ``zsseg_rt.contract``, ...)."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "models":
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(module: str, tree: ast.AST, is_package: bool) -> List[str]:
    """``from <another package> import _name`` and the imports of another package's ``_private`` module
    (``from zsseg_rt.ops._probe import name``, ``import zsseg_rt.ops._probe``) anywhere in ``tree`` (lazy imports
    included)."""
    base = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                f"{module}:{node.lineno} imports {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] == "zsseg_rt"
                and owner_package(alias.name) != owner_package(module)
                and any(_private(part) for part in alias.name.split(".")[1:])
            ]
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            parts = base.split(".")
            source = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source.split(".")[0] != "zsseg_rt" or owner_package(source) == owner_package(module):
            continue
        private_module = any(_private(part) for part in source.split(".")[1:])
        found += [
            f"{module}:{node.lineno} imports {source}.{alias.name}"
            for alias in node.names
            if private_module or _private(alias.name)
        ]
    return found


def test_private_name_finder_finds_one_across_packages():
    """Control: a private name or module from another package (or from another family) is caught; from the same
    package it is not."""
    tree = ast.parse(
        "from zsseg_rt.export.verify import _f64\n"
        "from zsseg_rt.models.zegclip.model import _make_tokenizer\n"
        "from .head import _private_here\n"
        "from ._own import public_here\n"
        "from zsseg_rt.ops._loader import native_module\n"
        "import zsseg_rt.ops._loader\n"
        "import zsseg_rt.ops.windows\n"
        "def f():\n    from zsseg_rt.runtime.engine_cache import _atomic_write\n"
    )
    found = private_imports("zsseg_rt.models.zeroseg.export", tree, False)
    assert sorted(line.split(" imports ")[1] for line in found) == [
        "zsseg_rt.export.verify._f64",
        "zsseg_rt.models.zegclip.model._make_tokenizer",
        "zsseg_rt.ops._loader",
        "zsseg_rt.ops._loader.native_module",
        "zsseg_rt.runtime.engine_cache._atomic_write",
    ]


def test_no_module_imports_a_private_name_of_another_package():
    """What one package uses of another is that package's public API (issue 38): a private name imported across
    packages is made public where it lives, or moved."""
    found = [line for module, (_, pkg) in MODULES.items() for line in private_imports(module, _tree(module), pkg)]
    assert not found, "private names imported across packages:\n" + "\n".join(found)


# ------------------------------------------------------------------------- nothing in the test tree shadows a module
# pytest puts every test file's folder on sys.path (the tree has no __init__.py files), so a folder or file there
# named like a module the package imports is what `import <name>` finds first: a data folder named `tensorrt` made
# `import tensorrt` succeed (an empty namespace package) for every test after one in that folder had run, and two
# checks of the TensorRT-less path skipped ("TensorRT is installed here") in every full run.
def third_party_imports(package: Path) -> Set[str]:
    """Top-level names of every absolute import in ``package`` (function-level ones too), but the package's own."""
    names = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return names - {package.name, "__future__"}


def shadowing_entries(tests: Path, modules: Set[str]) -> List[str]:
    """Entries of a folder holding test files (or a conftest.py) named like one of ``modules`` (a folder, or a
    ``.py`` / extension file by its stem)."""
    found = []
    for folder in sorted({p.parent for p in tests.rglob("test_*.py")} | {p.parent for p in tests.rglob("conftest.py")}):
        for entry in folder.iterdir():
            name = entry.name if entry.is_dir() else entry.name.split(".")[0]
            if name in modules and (entry.is_dir() or entry.suffix in (".py", ".so", ".pyd")):
                found.append(f"{entry.relative_to(tests)}: on sys.path under pytest, shadows the module {name!r}")
    return found


def test_shadowing_finder_finds_a_data_folder_named_like_a_module(tmp_path):
    (tmp_path / "data" / "tensorrt").mkdir(parents=True)
    (tmp_path / "data" / "test_x.py").write_text("")
    (tmp_path / "data" / "cv2.py").write_text("")
    (tmp_path / "data" / "notes").mkdir()
    (tmp_path / "elsewhere" / "onnx").mkdir(parents=True)  # no test file beside it: never on sys.path
    found = shadowing_entries(tmp_path, {"tensorrt", "cv2", "onnx"})
    assert sorted(f.split(":")[0] for f in found) == ["data/cv2.py", "data/tensorrt"]


def test_no_test_folder_shadows_a_module_the_package_imports():
    modules = third_party_imports(PACKAGE)
    assert {"tensorrt", "openvino", "onnxruntime", "torch"} <= modules  # the finder reads the lazy imports too
    assert shadowing_entries(ROOT / "python_tests", modules) == []


# ------------------------------------------------------------------------- the layout table names every program
def programs(package: Path) -> List[str]:
    """The programs ``python -m PACKAGE NAME`` runs (benchmarks/common.py ``Programs.names``: every module but the
    ``_private`` ones and ``common``)."""
    return sorted(p.stem for p in package.glob("*.py") if not p.stem.startswith("_") and p.stem != "common")


def unnamed_programs(doc: str, folder: str, names: List[str]) -> List[str]:
    """The names of ``names`` that the row of ``folder`` in the layout table of ``doc`` does not give in backticks."""
    rows = [line for line in doc.splitlines() if line.startswith(f"| `{folder}/` |")]
    named = set(re.findall(r"`([a-z0-9_]+)`", rows[0])) if rows else set()
    return [name for name in names if name not in named]


def test_the_program_finder_finds_an_unnamed_one():
    doc = "| path | what |\n|---|---|\n| `benchmarks/` | `python -m benchmarks NAME` (`ops`, `cuda`) |\n"
    assert unnamed_programs(doc, "benchmarks", ["cuda", "ops", "serve"]) == ["serve"]
    assert unnamed_programs(doc, "checks", ["twins"]) == ["twins"]  # no row at all


def test_the_layout_table_names_every_benchmark_and_check():
    """docs/development.md's layout table names every program of benchmarks/ and checks/ (it named 10 of the 20
    benchmarks: architecture review 0707000, section 7)."""
    doc = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    for folder in ("benchmarks", "checks"):
        assert len(programs(ROOT / folder)) >= 10, folder
        missing = unnamed_programs(doc, folder, programs(ROOT / folder))
        assert not missing, f"docs/development.md's `{folder}/` row does not name: {missing}"
