"""The TensorRT Python API zsseg_rt and its test fakes use, held to TensorRT's bindings without TensorRT.

``python_tests/data/trt_reference/python_api_10.3.json`` lists TensorRT 10.3's Python names (classes, methods with their
parameter names, properties, enum members, module functions and attributes), extracted once from NVIDIA/TensorRT's
pybind11 sources at tag v10.3.0 by ``tools/extract_trt_python_api.py`` (its ``source`` names the commit).
``trt_api_versions.py`` holds the same checks to every minor version the package accepts (10.0 ... the newest 10.x),
from a table of the names used, per version (``python_tests/data/trt_reference/python_api_used_by_version.json``).

* ``check_source(path)``: an AST pass over a module. ``trt.X`` / ``trt.X.Y`` chains (``trt``, ``self.trt`` and
  ``self._trt`` are the tensorrt module by the code's convention) must name a class, function, attribute, enum
  member or class attribute that exists; calls ``trt.X(...)`` must fit one of X's signatures; in modules that use
  TensorRT, method calls and attribute accesses on receivers named like TensorRT objects (``builder``, ``config``,
  ``network``, ``engine``, ``context``, ...; ``RECEIVERS``) must exist on that class or a subclass (code downcasts
  layers), with arguments that fit.
* ``check_fake(module)``: every class of the fake with a TensorRT name has only methods, properties and parameter
  names that TensorRT version has; every enum member of the fake exists in the real enum.

Messages name the version of the ``Api`` they were checked against (``Api.version``: 10.3 for the full list).
"""

from __future__ import annotations

import ast
import enum
import functools
import glob
import inspect
import json
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set

API_PATH = os.path.join(os.path.dirname(__file__), "..", "data", "trt_reference", "python_api_10.3.json")
TRT_ROOTS = ("trt", "self.trt", "self._trt")
RECEIVERS = {
    "builder": "Builder",
    "config": "IBuilderConfig",
    "network": "INetworkDefinition",
    "parser": "OnnxParser",
    "profile": "IOptimizationProfile",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "runtime": "Runtime",
    "inspector": "EngineInspector",
    "timing_cache": "ITimingCache",
    "layer": "ILayer",
    "sqrt": "ILayer",
    "reduce": "ILayer",
    "square": "ILayer",
    "logger": "Logger",
    "tensor": "ITensor",
}
_PYTHON_OBJECT_METHODS = {"__class__", "__dict__"}


def load_api(path: str = API_PATH) -> Mapping:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class Api:
    """Lookups in the extracted API list."""

    def __init__(self, data: Mapping):
        self.data = data
        ref = str(data.get("source", {}).get("ref", ""))
        self.version = data.get("version") or ".".join(ref.lstrip("v").split(".")[:2]) or "?"
        self.classes: Mapping[str, Mapping] = data["classes"]
        self.functions: Mapping[str, List[str]] = data["module"]["functions"]
        self.attributes: Set[str] = set(data["module"]["attributes"])

    def subclasses(self, name: str) -> List[str]:
        found = [name]
        for other, entry in self.classes.items():
            if entry.get("kind") == "class" and name in self._bases(other):
                found.append(other)
        return found

    def _bases(self, name: str) -> List[str]:
        out, todo = [], list(self.classes.get(name, {}).get("bases", []))
        while todo:
            base = todo.pop()
            out.append(base)
            todo += self.classes.get(base, {}).get("bases", [])
        return out

    def members(self, name: str) -> Dict[str, Optional[List[List[str]]]]:
        """Member name -> overloads (None for a property/attribute) of ``name`` and its bases."""
        members: Dict[str, Optional[List[List[str]]]] = {}
        for cls in [name] + self._bases(name):
            entry = self.classes.get(cls, {})
            for prop in entry.get("properties", []):
                members.setdefault(prop, None)
            for member in entry.get("members", []):
                members.setdefault(member, None)
            for method, overloads in entry.get("methods", {}).items():
                members.setdefault(method, overloads)
        for nested, entry in self.classes.items():  # nested enums (ILogger.Severity) are class attributes
            if nested.startswith(name + "."):
                members.setdefault(nested.split(".", 1)[1], None)
        return members

    def signatures(self, name: str) -> Optional[List[List[str]]]:
        """Overloads of a module function or a class's constructor."""
        if name in self.functions:
            return [self.functions[name]]
        entry = self.classes.get(name)
        if entry is not None and entry.get("kind") == "class":
            return entry.get("init") or [[]]
        return None


def fits(overloads: Sequence[Sequence[str]], positional: int, keywords: Iterable[str], star: bool = False) -> bool:
    """True when a call with ``positional`` arguments and ``keywords`` fits one overload (``star``: *args/**kwargs,
    not checkable)."""
    if star:
        return True
    keywords = set(keywords)
    for params in overloads:
        names = [p.rstrip("=") for p in params]
        required = [p.rstrip("=") for p in params if not p.endswith("=")]
        if positional > len(names) or not keywords <= set(names[positional:]):
            continue
        if all(name in names[:positional] or name in keywords for name in required):
            return True
    return False


def _dotted(node) -> Optional[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _root_chain(dotted: str) -> Optional[List[str]]:
    """``trt.X.Y`` -> ["X", "Y"] for a TensorRT root, else None."""
    for root in sorted(TRT_ROOTS, key=len, reverse=True):
        if dotted.startswith(root + "."):
            return dotted[len(root) + 1 :].split(".")
    return None


def _call_shape(call: ast.Call):
    star = any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords)
    return len(call.args), [k.arg for k in call.keywords if k.arg], star


class _Scanner(ast.NodeVisitor):
    def __init__(self, api: Api, path: str, typed_receivers: bool):
        self.api, self.path, self.typed = api, path, typed_receivers
        self.problems: List[Problem] = []
        self.checked: Set[str] = set()  # "trt.X[.Y]" and "Class.member" names looked up
        self._seen_chains: Set[int] = set()

    def report(self, node, message: str) -> None:
        self.problems.append(Problem(f"{os.path.relpath(self.path)}:{node.lineno}", message))

    def visit_Call(self, node: ast.Call) -> None:
        dotted = _dotted(node.func)
        chain = _root_chain(dotted) if dotted else None
        if chain is not None and len(chain) == 1:
            overloads = self.api.signatures(chain[0])
            if overloads is not None and not fits(overloads, *_call_shape(node)):
                self.report(
                    node, f"trt.{chain[0]}(...) does not fit TensorRT {self.api.version}'s signatures {overloads}"
                )
        elif isinstance(node.func, ast.Attribute) and self.typed:
            cls = self._receiver_class(node.func.value)
            if cls is not None:
                self._check_member(node, cls, node.func.attr, call=node)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = _dotted(node)
        chain = _root_chain(dotted) if dotted else None
        if chain is not None and id(node) not in self._seen_chains:
            self._check_chain(node, chain)
            child = node.value
            while isinstance(child, ast.Attribute):  # the inner parts of this chain are checked with it
                self._seen_chains.add(id(child))
                child = child.value
        elif chain is None and self.typed and not isinstance(getattr(node, "ctx", None), ast.Del):
            cls = self._receiver_class(node.value)
            if cls is not None and not self._is_call_target(node):
                self._check_member(node, cls, node.attr, call=None)
        self.generic_visit(node)

    def _is_call_target(self, node) -> bool:
        parent = getattr(node, "_parent", None)
        return isinstance(parent, ast.Call) and parent.func is node

    def _receiver_class(self, value) -> Optional[str]:
        name = value.attr if isinstance(value, ast.Attribute) else value.id if isinstance(value, ast.Name) else None
        return RECEIVERS.get(name) if name else None

    def _check_member(self, node, cls: str, member: str, call: Optional[ast.Call]) -> None:
        if member.startswith("__") or member in _PYTHON_OBJECT_METHODS:
            return
        self.checked.add(f"{cls}.{member}")
        candidates = [c for c in self.api.subclasses(cls) if member in self.api.members(c)]
        if not candidates:
            self.report(node, f"{cls} (or a subclass) has no {member!r} in TensorRT {self.api.version}")
            return
        if call is not None:
            overloads = [o for c in candidates for o in (self.api.members(c)[member] or [])]
            if overloads and not fits(overloads, *_call_shape(call)):
                self.report(
                    node, f"{cls}.{member}(...) does not fit TensorRT {self.api.version}'s signatures {overloads}"
                )

    def _check_chain(self, node, chain: List[str]) -> None:
        head = chain[0]
        self.checked.add("trt." + ".".join(chain[:2]))
        if head not in self.api.classes and head not in self.api.functions and head not in self.api.attributes:
            self.report(node, f"trt.{head} does not exist in TensorRT {self.api.version}")
            return
        if len(chain) > 1 and head in self.api.classes:
            if chain[1] not in self.api.members(head):
                self.report(node, f"trt.{head}.{chain[1]} does not exist in TensorRT {self.api.version}")


def _link_parents(tree) -> None:
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            child._parent = parent  # type: ignore[attr-defined]


def uses_tensorrt(tree) -> bool:
    """True when the module uses the tensorrt module through one of ``TRT_ROOTS`` (then its receivers are typed)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted and _root_chain(dotted):
                return True
    return False


@functools.lru_cache(maxsize=None)
def _parsed_file(path: str, mtime_ns: int, size: int):
    """(tree with parents linked, uses TensorRT) of a file; the scanner only reads the tree."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    _link_parents(tree)
    return tree, uses_tensorrt(tree)


def check_source(
    path: str, api: Optional[Api] = None, text: Optional[str] = None, checked: Optional[Set[str]] = None
) -> List[Problem]:
    """Problems in one Python file (see the module docstring); ``checked`` collects the names looked up."""
    api = api or Api(load_api())
    if text is not None:
        tree, typed = ast.parse(text, filename=path), None
        _link_parents(tree)
    else:  # a file: parsed once per content (the version checks scan every file once per TensorRT version)
        stat = os.stat(path)
        tree, typed = _parsed_file(path, stat.st_mtime_ns, stat.st_size)
    scanner = _Scanner(api, path, typed_receivers=uses_tensorrt(tree) if typed is None else typed)
    scanner.visit(tree)
    if checked is not None:
        checked |= scanner.checked
    return scanner.problems


def _public_members(cls) -> Dict[str, object]:
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    }


def _same_parameters(params: Sequence[str], overloads: Sequence[Sequence[str]]) -> bool:
    """The fake's parameter names are an overload's, leaving out only trailing parameters that have defaults."""
    for overload in overloads:
        names = [p.rstrip("=") for p in overload]
        if list(params) == names[: len(params)] and all(p.endswith("=") for p in overload[len(params) :]):
            return True
    return False


def check_fake(
    module,
    api: Optional[Api] = None,
    aliases: Optional[Mapping[object, str]] = None,
    checked: Optional[Set[str]] = None,
    known: Iterable[str] = (),
) -> List[Problem]:
    """Every TensorRT-named class of the fake module (or namespace) only has members and parameters the TensorRT
    version of ``api`` has; ``aliases`` maps other stand-in classes to the TensorRT class they stand for;
    ``checked`` collects the names looked up ("Class", "Class.member"); ``known``: TensorRT class names of other
    versions (a fake class so named that this version lacks is a problem, not an unrelated helper class)."""
    api = api or Api(load_api())
    version = api.version
    seen = checked if checked is not None else set()
    known = set(known)
    problems = []
    items = [(name, value, name) for name, value in vars(module).items()] if module is not None else []
    items += [(getattr(cls, "__name__", str(cls)), cls, trt_name) for cls, trt_name in (aliases or {}).items()]
    for label, value, name in items:
        if label.startswith("_"):
            continue
        if name not in api.classes:
            if name in known and isinstance(value, type):
                problems.append(Problem(f"fake {label}", f"class {name!r} is not in TensorRT {version}"))
            continue
        seen.add(name)
        entry = api.classes[name]
        if isinstance(value, type) and issubclass(value, enum.Enum):
            seen.update(f"{name}.{m}" for m in value.__members__)
            missing = [m for m in value.__members__ if m not in entry.get("members", [])]
            problems += [Problem(f"fake {label}", f"enum member {m!r} is not in TensorRT {version}") for m in missing]
            continue
        if not isinstance(value, type):
            continue
        members = api.members(name)
        for member, impl in _public_members(value).items():
            seen.add(f"{name}.{member}")
            if member not in members and not any(member in api.members(c) for c in api.subclasses(name)):
                problems.append(Problem(f"fake {label}", f"member {member!r} is not in TensorRT {version}'s {name}"))
                continue
            overloads = members.get(member)
            if overloads and callable(impl) and not isinstance(impl, property):
                params = [p.name for p in list(inspect.signature(impl).parameters.values())[1:]]
                if not _same_parameters(params, overloads):
                    problems.append(
                        Problem(
                            f"fake {label}.{member}",
                            f"parameters {params} differ from TensorRT {version}'s {overloads}",
                        )
                    )
        init = vars(value).get("__init__")
        if init is not None and entry.get("init") and label == name:  # stand-ins' constructors are their own
            params = [p.name for p in list(inspect.signature(init).parameters.values())[1:]]
            if not _same_parameters(params, entry["init"]):
                problems.append(Problem(f"fake {label}()", f"parameters {params} differ from {entry['init']}"))
    return problems


def package_files(root: str) -> List[str]:
    """The Python files whose TensorRT use is checked: the package and tools/."""
    return sorted(glob.glob(os.path.join(root, "zsseg_rt", "**", "*.py"), recursive=True)) + sorted(
        glob.glob(os.path.join(root, "tools", "*.py"))
    )


def fakes(root: str):
    """(modules, aliases) of every TensorRT fake of the tests: ``fake_tensorrt`` (its module-level classes and the
    module ``make_module()`` returns) and the stand-ins of ``host_cuda`` and ``runtime/test_tensorrt_executor.py``."""
    import importlib.util

    import fake_tensorrt
    from host_cuda import OrtContext, OrtEngine

    spec = importlib.util.spec_from_file_location(
        "executor_fakes", os.path.join(root, "python_tests", "runtime", "test_tensorrt_executor.py")
    )
    assert spec is not None and spec.loader is not None
    executor_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(executor_tests)
    aliases = {
        OrtEngine: "ICudaEngine",
        OrtContext: "IExecutionContext",
        executor_tests.FakeEngine: "ICudaEngine",
        executor_tests.FakeContext: "IExecutionContext",
    }
    return [fake_tensorrt, fake_tensorrt.make_module()], aliases


def check_everything(
    root: str, api: Api, checked: Optional[Set[str]] = None, known: Iterable[str] = ()
) -> List[Problem]:
    """``check_source`` over ``package_files`` and ``check_fake`` over ``fakes``, against one ``api`` (``known``:
    see ``check_fake``)."""
    checked = set() if checked is None else checked
    problems = [p for path in package_files(root) for p in check_source(path, api, checked=checked)]
    modules, aliases = fakes(root)
    for module in modules:
        problems += check_fake(module, api, checked=checked, known=known)
    return problems + check_fake(None, api, aliases, checked=checked, known=known)
