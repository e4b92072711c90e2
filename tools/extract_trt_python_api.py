"""Extract the names of TensorRT's Python API (classes, methods with their parameter names, properties, enums and
their members, module functions and attributes) from the pybind11 sources of one TensorRT release, into the JSON list
the static API-surface check (``python_tests/prepare/trt_api_surface.py``) holds zsseg_rt's code and its test fake
to. The list is checked in (``python_tests/data/trt_reference/python_api_10.3.json``); this script records how it was made
and regenerates it from a clone of https://github.com/NVIDIA/TensorRT:

    git clone https://github.com/NVIDIA/TensorRT && cd TensorRT && git checkout v10.3.0
    python tools/extract_trt_python_api.py --repo /path/to/TensorRT --ref v10.3.0 \
        -o python_tests/data/trt_reference/python_api_10.3.json

Each overload is a list of parameter names (a trailing "=" marks one with a default). Only names are extracted
(no code): ``py::class_<T, Bases...>(m, "Name")`` chains with their ``.def("name", ...,
"param"_a, ...)``, ``.def_property*("name")``, ``.def_readwrite/readonly("name")``, ``.def(py::init...)`` and
``.def_static``; ``py::enum_<T>(m, "Name")`` with ``.value("MEMBER")``; ``m.def("name")`` and ``m.attr("name")``;
and the top-level ``def``s and assignments of the wheel's ``tensorrt/__init__.py`` (``nptype``, ``volume``, the
``Logger`` severity aliases).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
from typing import Dict, List, Optional, Tuple

SOURCES = (
    "python/src/infer/pyCore.cpp",
    "python/src/infer/pyGraph.cpp",
    "python/src/infer/pyFoundationalTypes.cpp",
    "python/src/infer/pyInt8.cpp",
    "python/src/infer/pyAlgorithmSelector.cpp",
    "python/src/infer/pyPlugin.cpp",
    "python/src/parsers/pyOnnx.cpp",
)
PACKAGE_INIT = "python/packaging/bindings_wheel/tensorrt/__init__.py"

_CHAIN_START = re.compile(r"py::(class_|enum_)\s*<")
_PARAM = re.compile(r'(?:"(\w+)"_a|py::arg\("(\w+)"\))(\s*=(?!=))?')


def _git_show(repo: str, ref: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", repo, "show", f"{ref}:{path}"], capture_output=True, text=True, check=True
    ).stdout


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _matching(text: str, start: int, open_char: str, close_char: str) -> int:
    """Index just past the bracket closing the one at ``start`` (string literals skipped)."""
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch == '"':
            i = text.index('"', i + 1) if text[i - 1 : i] != "\\" else i + 1
            while text[i - 1] == "\\":  # escaped quote inside the literal
                i = text.index('"', i + 1)
        elif ch == open_char:
            depth += 1
        elif ch == close_char:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {open_char}{close_char} at {start}")


def _template_args(text: str, start: int) -> Tuple[List[str], int]:
    """The comma-separated template arguments of ``<...>`` starting at ``start`` (nested <> kept whole)."""
    depth, i, parts, current = 0, start, [], ""
    while True:
        ch = text[i]
        if ch == "<":
            depth += 1
            if depth > 1:
                current += ch
        elif ch == ">":
            depth -= 1
            if depth == 0:
                parts.append(current.strip())
                return parts, i + 1
            current += ch
        elif ch == "," and depth == 1:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1


def _calls(chain: str) -> List[Tuple[str, str]]:
    """``(method, argument text)`` of every ``.def*(...)`` / ``.value(...)`` call in a pybind chain."""
    out = []
    for match in re.finditer(r"\.(def\w*|value)\s*\(", chain):
        end = _matching(chain, match.end() - 1, "(", ")")
        out.append((match.group(1), chain[match.end() : end - 1]))
    return out


def _first_string(args: str) -> Optional[str]:
    found = re.match(r'\s*"([^"]*)"', args)
    return found.group(1) if found else None


def _params(args: str) -> List[str]:
    """Parameter names in order; a name ending with "=" has a default value."""
    return [(a or b) + ("=" if default else "") for a, b, default in _PARAM.findall(args)]


def _parse_chain(kind: str, chain: str, scopes: Dict[str, str], cpp_names: Dict[str, str]) -> Tuple[str, Dict]:
    """One ``py::class_<T, Bases...>(scope, "Name")`` / ``py::class_<...> var{scope, "Name"}`` / ``py::enum_``
    statement: (qualified Python name, entry). ``scopes`` maps binding variables (and ``m``) to qualified names."""
    targs, after = _template_args(chain, chain.index("<"))
    found = re.match(r'\s*(\w+)?\s*[({]\s*(\w+)\s*,\s*"(\w+)"', chain[after:])
    if not found:  # a py::class_<T> type mentioned outside a binding (e.g. a function signature)
        return "", {}
    variable, scope, name = found.groups()
    parent = scopes.get(scope, "")
    qualified = f"{parent}.{name}" if parent else name
    if variable:
        scopes[variable] = qualified
    cpp_names[targs[0]] = qualified
    return qualified, _entry(kind, chain, targs)


def _entry(kind: str, chain: str, targs: List[str]) -> Dict:
    if kind == "enum_":
        members = sorted({_first_string(args) for method, args in _calls(chain) if method == "value"} - {None})
        return {"kind": "enum", "members": members, "exported": ".export_values()" in chain.replace(" ", "")}
    entry: Dict = {"kind": "class", "bases_cpp": [t for t in targs[1:] if not t.startswith("std::")]}
    _add_calls(entry, chain)
    return entry


def _add_calls(entry: Dict, chain: str) -> None:
    methods: Dict[str, List[List[str]]] = entry.setdefault("methods", {})
    properties = set(entry.setdefault("properties", []))
    inits = entry.setdefault("init", [])
    for method, args in _calls(chain):
        if method in ("def_property", "def_property_readonly", "def_readwrite", "def_readonly"):
            properties.add(_first_string(args))
        elif method in ("def", "def_static"):
            if args.lstrip().startswith("py::init"):
                inits.append(_params(args))
                continue
            label = _first_string(args)
            if label:
                methods.setdefault(label, []).append(_params(args))
    entry["methods"] = dict(sorted(methods.items()))
    entry["properties"] = sorted(p for p in properties if p)


def _statement_end(text: str, start: int) -> int:
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch == '"':
            i = text.index('"', i + 1)
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == ";" and depth == 0:
            return i
        i += 1
    return len(text)


def extract_bindings(text: str, cpp_names: Dict[str, str]) -> Tuple[Dict[str, Dict], Dict[str, List[str]], List[str]]:
    """(classes and enums by qualified Python name, module functions with params, module attributes) of a source."""
    text = _strip_comments(text)
    entries: Dict[str, Dict] = {}
    scopes: Dict[str, str] = {"m": ""}
    for match in _CHAIN_START.finditer(text):
        end = _statement_end(text, match.start())
        name, entry = _parse_chain(match.group(1), text[match.start() : end], scopes, cpp_names)
        if name:
            entries[name] = entry
    for variable, qualified in scopes.items():  # `binding.def(...)...;` statements on a named binding variable
        if not qualified:
            continue
        for match in re.finditer(rf"(?<![\w.]){variable}\s*\.\s*def", text):
            _add_calls(entries[qualified], text[match.start() : _statement_end(text, match.start())])
    for name, entry in list(entries.items()):  # .export_values(): members reachable on the enclosing class too
        if entry["kind"] == "enum" and entry.pop("exported", False) and "." in name:
            parent = entries.get(name.rsplit(".", 1)[0])
            if parent is not None:
                parent["properties"] = sorted(set(parent["properties"]) | set(entry["members"]))
        entry.pop("exported", None)
    functions = {}
    for match in re.finditer(r'\bm\.def\s*\(\s*"(\w+)"', text):
        end = _matching(text, text.index("(", match.start()), "(", ")")
        functions[match.group(1)] = _params(text[match.end() : end])
    attributes = sorted(set(re.findall(r'\bm\.attr\s*\(\s*"(\w+)"\s*\)\s*=', text)))
    return entries, functions, attributes


def extract_package_init(source: str) -> Tuple[Dict[str, List[str]], List[str], Dict[str, List[str]]]:
    """Module functions, module attributes and class attributes set in the wheel's ``tensorrt/__init__.py``."""
    tree = ast.parse(source.replace("##TENSORRT_MODULE##", "tensorrt"))
    functions, attributes, class_attributes = {}, [], {}  # type: ignore[var-annotated]
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            if node in tree.body:
                functions[node.name] = [a.arg for a in node.args.args]
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and node in tree.body:
                    attributes.append(target.id)
                elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    class_attributes.setdefault(target.value.id, []).append(target.attr)
    return functions, sorted(set(attributes)), class_attributes


def extract(repo: str, ref: str) -> Dict:
    commit = subprocess.run(
        ["git", "-C", repo, "rev-parse", f"{ref}^{{commit}}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    cpp_names: Dict[str, str] = {}
    classes: Dict[str, Dict] = {}
    functions: Dict[str, List[str]] = {}
    attributes: List[str] = ["__version__"]
    for path in SOURCES:
        entries, funcs, attrs = extract_bindings(_git_show(repo, ref, path), cpp_names)
        classes.update(entries)
        functions.update(funcs)
        attributes += attrs
    init_functions, init_attributes, class_attributes = extract_package_init(_git_show(repo, ref, PACKAGE_INIT))
    functions.update(init_functions)
    attributes += [a for a in init_attributes if not a.startswith("_")]
    for entry in classes.values():
        if entry["kind"] == "class":
            entry["bases"] = [cpp_names[base] for base in entry.pop("bases_cpp") if base in cpp_names]
    for cls, names in class_attributes.items():
        if cls in classes and classes[cls]["kind"] == "class":
            extra = set(names) - {"__enter__", "__exit__"}
            classes[cls]["properties"] = sorted(set(classes[cls]["properties"]) | extra)
    # __init__.py: ``Logger.Severity = ILogger.Severity`` and ``setattr(Logger, attr, value)`` for its members
    if "Logger" in classes and "ILogger.Severity" in classes:
        severity = classes["ILogger.Severity"]["members"]
        classes["Logger"]["properties"] = sorted(set(classes["Logger"]["properties"]) | set(severity) | {"Severity"})
    return {
        "source": {
            "repository": "https://github.com/NVIDIA/TensorRT",
            "ref": ref,
            "commit": commit,
            "files": list(SOURCES) + [PACKAGE_INIT],
            "extracted_by": "tools/extract_trt_python_api.py",
        },
        "module": {"functions": dict(sorted(functions.items())), "attributes": sorted(set(attributes))},
        "classes": dict(sorted(classes.items())),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="a clone (or bare mirror) of NVIDIA/TensorRT")
    parser.add_argument("--ref", default="v10.3.0", help="tag or commit to read (default: v10.3.0)")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    data = extract(args.repo, args.ref)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=False)
        handle.write("\n")
    count = sum(len(c.get("methods", {})) + len(c.get("members", [])) for c in data["classes"].values())
    print(f"{len(data['classes'])} classes/enums, {count} methods/members -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
