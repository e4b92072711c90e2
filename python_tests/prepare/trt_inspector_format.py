"""TensorRT's engine-inspector JSON, as NVIDIA documents and publishes it: the layout the fake inspector
(``fake_tensorrt.EngineInspector``) writes and the ``Format/Datatype`` strings the package reads pins from.

``python_tests/data/trt_reference/engine_inspector_format.json`` is generated data (strings and key names only), made from
NVIDIA/TensorRT at a 10.x release tag by

    .venv/bin/python python_tests/prepare/trt_inspector_format.py --repo <a clone of NVIDIA/TensorRT> --ref v10.16

from two of NVIDIA's own sources in that repository:

* the engine-inspector JSON files NVIDIA publishes with TensorRT Engine Explorer
  (``tools/experimental/trt-engine-explorer/**/*.graph.json``: ``get_engine_information(JSON)`` of engines built
  with ``ProfilingVerbosity.DETAILED``): the top-level keys, the keys every layer has, the keys every input/output
  tensor has, and the ``Format/Datatype`` strings they contain;
* TREx's table of the ``Format/Datatype`` strings TensorRT prints (``trex/activations.py``, ``_regionFormatDict``:
  string -> TREx's short name, whose first word is the precision, e.g. "Row major linear FP16 format" ->
  "FP16 NCHW").

What the documentation says besides (and the fake follows): with ``ProfilingVerbosity.LAYER_NAMES_ONLY`` (the
default) "only layer names will be printed" (``Layers`` is a list of strings: TREx refuses such a file and asks for
DETAILED); ``kNONE`` prints no layer information; without an execution context whose input shapes are set "values
dependent on input shapes will be displayed as -1 and format information will not be shown"
(``include/NvInferRuntime.h``, ``IEngineInspector`` and ``setExecutionContext``, v10.3.0; the developer guide's
"Engine Inspector" section, https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/engine-tools.html).
Fused layers are named "a + b" and the reformatting layers TensorRT inserts "Reformatting CopyNode for Input Tensor
0 to <layer>" (NVIDIA's example files).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
from typing import Dict, List, Mapping, Set

HERE = os.path.dirname(os.path.abspath(__file__))
FORMAT_PATH = os.path.join(HERE, "..", "data", "trt_reference", "engine_inspector_format.json")
TREX = "tools/experimental/trt-engine-explorer"
FORMATS_FILE = f"{TREX}/trex/activations.py"
GENERATED_BY = (
    ".venv/bin/python python_tests/prepare/trt_inspector_format.py --repo <a clone of NVIDIA/TensorRT> --ref v10.16"
)


def load_format(path: str = FORMAT_PATH) -> Mapping:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True).stdout


def _format_table(source: str) -> Dict[str, str]:
    """The ``_regionFormatDict`` literal of TREx's activations.py (read as data: ``ast.literal_eval``)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_regionFormatDict" for t in node.targets):
            return dict(ast.literal_eval(node.value))
    raise ValueError("no _regionFormatDict in TREx's activations.py")


def generate(repo: str, ref: str) -> Dict:
    commit = _git(repo, "rev-parse", f"{ref}^{{commit}}").strip()
    examples = sorted(
        p for p in _git(repo, "ls-tree", "-r", "--name-only", ref, TREX).split() if p.endswith(".graph.json")
    )
    top: Set[str] = set()
    layer_always = tensor_always = None
    layer_seen: Set[str] = set()
    tensor_seen: Set[str] = set()
    example_formats: Set[str] = set()
    for path in examples:
        graph = json.loads(_git(repo, "show", f"{ref}:{path}"))
        top |= set(graph)
        for layer in graph["Layers"]:
            layer_always = set(layer) if layer_always is None else layer_always & set(layer)
            layer_seen |= set(layer)
            for tensor in layer.get("Inputs", []) + layer.get("Outputs", []):
                tensor_always = set(tensor) if tensor_always is None else tensor_always & set(tensor)
                tensor_seen |= set(tensor)
                example_formats.add(tensor["Format/Datatype"])
    formats = _format_table(_git(repo, "show", f"{ref}:{FORMATS_FILE}"))
    return {
        "source": {
            "repository": "https://github.com/NVIDIA/TensorRT",
            "ref": ref,
            "commit": commit,
            "files": [FORMATS_FILE] + examples,
            "docs": [
                "https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/engine-tools.html",
                "include/NvInferRuntime.h (v10.3.0): IEngineInspector, setExecutionContext, ProfilingVerbosity",
            ],
            "generated_by": GENERATED_BY,
        },
        "top_level_keys": sorted(top),
        "layer_keys_always": sorted(layer_always or ()),
        "layer_keys_seen": sorted(layer_seen),
        "tensor_keys_always": sorted(tensor_always or ()),
        "tensor_keys_seen": sorted(tensor_seen),
        "example_formats": sorted(example_formats),
        "formats": formats,
    }


def precision_word(short_name: str) -> str:
    """The precision word of a TREx short name ("FP16 NHWC8" -> "FP16", "Half" -> "Half")."""
    return short_name.split(" ")[0]


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--ref", default="v10.16")
    parser.add_argument("-o", "--output", default=FORMAT_PATH)
    args = parser.parse_args(argv)
    data = generate(args.repo, args.ref)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")
    print(f"{len(data['formats'])} formats, {len(data['source']['files']) - 1} example files -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
