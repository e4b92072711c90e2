"""TensorRT's Python API per minor version the package accepts, restricted to the names zsseg_rt and its fakes use.

zsseg_rt accepts every TensorRT 10.x (``zsseg_rt.runtime.backends.tensorrt.engines``: ``MIN_TENSORRT`` = (10, 0) <= version <
``MAX_TENSORRT`` = (11, 0)), while ``python_api_10.3.json`` is TensorRT 10.3's alone (JetPack 6). The table
``python_tests/data/trt_reference/python_api_used_by_version.json`` holds, for the newest release tag of every 10.x minor
version in NVIDIA/TensorRT, the part of its Python API that the package and its test fakes name: the classes and
enums they use (with their bases and subclasses, which the surface check searches), and of those only the methods
(with parameter names), properties and enum members named somewhere in ``names`` (the names the surface check looked
up in the package and the fakes when the table was made). Names only, no code: generated data.

How it was made (``generated_by`` in the table), from a clone or bare mirror of https://github.com/NVIDIA/TensorRT:

    .venv/bin/python python_tests/prepare/trt_api_versions.py --repo /path/to/TensorRT

which, for each minor version, runs ``tools/extract_trt_python_api.py``'s extraction on the pybind11 sources at that
tag (``python/src/infer/*.cpp``, ``python/src/parsers/pyOnnx.cpp`` and the wheel's ``tensorrt/__init__.py``, whose
``##NAME##`` build placeholders other than ``##TENSORRT_MODULE##`` are replaced by bare names so that the 10.11+
file parses), then keeps the names above (``prune``). ``python_tests/prepare/test_trt_api_versions.py`` checks the
package and the fakes against every version of it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from typing import Dict, Iterable, List, Mapping, Set

import trt_api_surface as surface

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TABLE_PATH = os.path.join(ROOT, "python_tests", "data", "trt_reference", "python_api_used_by_version.json")
GENERATED_BY = ".venv/bin/python python_tests/prepare/trt_api_versions.py --repo <a clone of NVIDIA/TensorRT>"
_TAG = re.compile(r"^v(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


# ---------------------------------------------------------------------------------------------- the names used
def used_names(api: surface.Api) -> Set[str]:
    """The TensorRT names the package (``check_source`` over its files and tools/) and the fakes (``check_fake``)
    look up, as "Class", "Class.member", "function" or "attribute"; plus the LayerType members the package names by
    string (``trt_precision.VALUE_INPUTS``, SHAPE, CONSTANT)."""
    from zsseg_rt.prepare.tensorrt.precision import VALUE_INPUTS

    checked: Set[str] = set()
    surface.check_everything(ROOT, api, checked=checked)
    names = {name[len("trt.") :] if name.startswith("trt.") else name for name in checked}
    return names | {f"LayerType.{member}" for member in [*VALUE_INPUTS, "SHAPE", "CONSTANT"]}


def prune(full: Mapping, names: Iterable[str]) -> Dict:
    """The part of one version's extracted API (``tools/extract_trt_python_api.py``'s JSON) that ``names`` can
    reach: module functions/attributes named; classes named, with their bases (members are looked up through them)
    and the subclasses that have a member named (code downcasts: ``layer`` may be an ``IUnaryLayer``); in each kept
    class only the methods, properties and enum members whose name is the member part of some name; constructors of
    named classes only. Empty fields are left out."""
    names = set(names)
    heads = {name.split(".", 1)[0] for name in names} | set(surface.RECEIVERS.values())
    members = {name.split(".", 1)[1] for name in names if "." in name}
    classes = full["classes"]
    api = surface.Api(full)

    def reduced(name: str) -> Dict:
        entry = {"kind": classes[name]["kind"]}
        for key, value in classes[name].items():
            if key == "methods":
                value = {k: v for k, v in value.items() if k in members}
            elif key in ("properties", "members"):
                value = [m for m in value if m in members]
            elif key == "init" and name not in heads:
                value = None
            if value and key != "kind":
                entry[key] = value
        return entry

    kept = {head for head in heads if head in classes}
    kept |= {
        sub
        for head in list(kept)
        for sub in api.subclasses(head)
        if set(reduced(sub)) & {"methods", "properties", "members"}
    }
    kept |= {n for n in classes if "." in n and n.split(".")[0] in kept and n.rsplit(".", 1)[1] in members}
    todo = list(kept)
    while todo:  # the bases of everything kept
        for base in classes.get(todo.pop(), {}).get("bases", []):
            if base not in kept:
                kept.add(base)
                todo.append(base)
    functions = {k: v for k, v in full["module"]["functions"].items() if k in heads}
    attributes = [a for a in full["module"]["attributes"] if a in heads]
    return {
        "module": {"functions": functions, "attributes": attributes},
        "classes": {name: reduced(name) for name in sorted(kept)},
    }


# ---------------------------------------------------------------------------------------------- the table
def load_table(path: str = TABLE_PATH) -> Mapping:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def version_api(table: Mapping, version: str) -> surface.Api:
    """The ``surface.Api`` of one minor version of the table (its messages name that version)."""
    entry = table["versions"][version]
    return surface.Api({"version": version, "source": {"ref": entry["ref"]}, **table["apis"][entry["api"]]})


def minor_tags(repo: str, major: int = 10) -> Dict[str, str]:
    """The newest release tag of every ``major``.x minor version in the repository (``v10.13.3`` for 10.13)."""
    tags = subprocess.run(["git", "-C", repo, "tag"], capture_output=True, text=True, check=True).stdout.split()
    best: Dict[str, tuple] = {}
    for tag in tags:
        found = _TAG.match(tag)
        if not found or int(found.group(1)) != major:
            continue
        key = tuple(int(g or 0) for g in found.groups())
        minor = f"{major}.{key[1]}"
        if minor not in best or key > best[minor][0]:
            best[minor] = (key, tag)
    return {minor: best[minor][1] for minor in sorted(best, key=lambda v: int(v.split(".")[1]))}


def extract(repo: str, ref: str) -> Dict:
    """``tools/extract_trt_python_api.py``'s extraction at ``ref``, the wheel ``__init__.py``'s build placeholders
    other than ``##TENSORRT_MODULE##`` (which the extractor replaces itself) made bare names so that it parses."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import extract_trt_python_api as extractor
    finally:
        sys.path.pop(0)
    show = extractor._git_show

    def git_show(repo_: str, ref_: str, path: str) -> str:
        text = show(repo_, ref_, path)
        if path == extractor.PACKAGE_INIT:
            text = re.sub(r"##(?!TENSORRT_MODULE##)(\w+)##", r"\1", text)
        return text

    extractor._git_show = git_show
    try:
        return extractor.extract(repo, ref)
    finally:
        extractor._git_show = show


def generate(repo: str) -> Dict:
    """The table: ``names``; per minor version its tag, commit and the key of its API in ``apis`` (versions whose
    pruned APIs are equal share one entry, keyed by the range of versions it covers)."""
    names = sorted(used_names(surface.Api(surface.load_api())))
    versions: Dict[str, Dict] = {}
    pruned: Dict[str, Dict] = {}
    files: List[str] = []
    for minor, tag in minor_tags(repo).items():
        full = extract(repo, tag)
        files = full["source"]["files"]
        versions[minor] = {"ref": tag, "commit": full["source"]["commit"]}
        pruned[minor] = prune(full, names)
    apis: Dict[str, Dict] = {}
    minors = list(versions)
    i = 0
    while i < len(minors):
        j = i
        while j + 1 < len(minors) and pruned[minors[j + 1]] == pruned[minors[i]]:
            j += 1
        key = minors[i] if i == j else f"{minors[i]}-{minors[j]}"
        apis[key] = pruned[minors[i]]
        for minor in minors[i : j + 1]:
            versions[minor]["api"] = key
        i = j + 1
    return {
        "source": {
            "repository": "https://github.com/NVIDIA/TensorRT",
            "files": files,
            "extracted_by": "tools/extract_trt_python_api.py (extract), python_tests/prepare/trt_api_versions.py (prune)",
            "generated_by": GENERATED_BY,
            "what": "per minor version (its newest release tag): the classes, members and parameter names of "
            "TensorRT's Python bindings that `names` reach (names only, from the pybind11 sources)",
        },
        "names": names,
        "versions": versions,
        "apis": apis,
    }


def dumps(table: Mapping) -> str:
    """JSON with one line per version and per class (readable diffs when a version or a name is added)."""
    lines = ["{", f' "source": {json.dumps(table["source"], indent=None)},', f' "names": {json.dumps(table["names"])},']
    lines.append(' "versions": {')
    items = list(table["versions"].items())
    lines += [
        f"  {json.dumps(k)}: {json.dumps(v)}" + ("," if n < len(items) - 1 else "") for n, (k, v) in enumerate(items)
    ]
    lines += [" },", ' "apis": {']
    apis = list(table["apis"].items())
    for n, (key, api) in enumerate(apis):
        lines += [f"  {json.dumps(key)}: {{", f'   "module": {json.dumps(api["module"])},', '   "classes": {']
        classes = list(api["classes"].items())
        lines += [
            f"    {json.dumps(k)}: {json.dumps(v)}" + ("," if m < len(classes) - 1 else "")
            for m, (k, v) in enumerate(classes)
        ]
        lines += ["   }", "  }" + ("," if n < len(apis) - 1 else "")]
    lines += [" }", "}"]
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == json.loads(json.dumps(table))
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="a clone (or bare mirror) of NVIDIA/TensorRT with its tags")
    parser.add_argument("-o", "--output", default=TABLE_PATH)
    args = parser.parse_args(argv)
    table = generate(args.repo)
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write(dumps(table))
    print(
        f"{len(table['names'])} names x {len(table['versions'])} versions ({len(table['apis'])} distinct) -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.path[:0] = [HERE, os.path.dirname(HERE), ROOT]  # trt_api_surface, fake_tensorrt, host_cuda, zsseg_rt
    raise SystemExit(main())
