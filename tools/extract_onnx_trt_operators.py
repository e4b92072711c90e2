"""Turn onnx-tensorrt's ONNX operator support matrix (``docs/operators.md``) into the JSON table zsseg_rt's static
TensorRT check reads (``zsseg_rt/prepare/tensorrt/data/onnx_tensorrt_operators.json``, used by
``zsseg_rt.prepare.tensorrt.compat``). Run once per TensorRT target; the output records where the table came from:

    git clone https://github.com/onnx/onnx-tensorrt && cd onnx-tensorrt
    python tools/extract_onnx_trt_operators.py --repo /path/to/onnx-tensorrt --ref release/10.1-GA \
        --target 10.3 -o zsseg_rt/prepare/tensorrt/data/onnx_tensorrt_operators.json

Only the table's facts are kept: per operator whether it is supported, its supported types and the restriction text
(the per-op restrictions the check enforces are coded in ``trt_compat`` from that text, with their source named).
``TARGET_CHANGES`` lists what the onnx-tensorrt changelog says changed between the table's release and the target.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from typing import Dict, List

# The onnx-tensorrt changelog entries (docs/Changelog.md) between the 10.1 GA table and TensorRT 10.3 GA: no operator
# was added or removed; one restriction was relaxed. release/10.3's own operators.md was not available to the project
# (the onnx-tensorrt mirror it could read ends at 10.1 GA), so the 10.1 GA table plus these entries stand for 10.3.
TARGET_CHANGES = {
    "10.3": [
        "10.2 GA (2024-07-10): improved error handling; minor changes to the GRU and Squeeze importers",
        "10.3 GA (2024-08-07): tensor `axes` inputs accepted for Slice; ScatterElements importer uses an updated plugin",
    ]
}
RELAXED_IN_TARGET = {"10.3": {"Slice": "`axes` may be a tensor input from TensorRT 10.3 (changelog 10.3 GA)"}}
# onnx-tensorrt's ONNX submodule at 10.1 GA is ONNX 1.16 (commit "Update build to support ONNX 1.16", #968), whose
# IR_VERSION is 10; the changelog moves it to ONNX 1.17 only at 10.6 GA, so TensorRT 10.3's parser knows IR <= 10.
ONNX_IR_VERSION_MAX = {"10.3": 10}

_TYPE_FIX = {"INF64": "INT64"}  # a typo in the table (ConstantOfShape)


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True).stdout


def parse_operators_md(text: str) -> Dict:
    """The header facts (documented opset range, data types) and the per-operator rows of ``operators.md``."""
    header = re.search(r"supports operators in the inclusive range of opset (\d+) to opset (\d+)", text)
    types_line = re.search(r"TensorRT supports the following ONNX data types: ([^\n]+)", text)
    operators: Dict[str, Dict] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[1] not in ("Y", "N") or not re.fullmatch(r"[A-Za-z0-9]+", cells[0]):
            continue
        types: List[str] = []
        if len(cells) > 2:
            types = [_TYPE_FIX.get(t.strip(), t.strip()) for t in cells[2].split(",") if t.strip()]
        restriction = cells[3] if len(cells) > 3 else ""
        operators[cells[0]] = {
            "supported": cells[1] == "Y",
            "types": types,
            "restrictions": re.sub(r"<br\s*/?>", " ", restriction).strip(),
        }
    data_types = [t.strip().replace("and ", "") for t in types_line.group(1).split(",")] if types_line else []
    return {
        "documented_opsets": [int(header.group(1)), int(header.group(2))] if header else None,
        "data_types": [t for t in data_types if t],
        "operators": dict(sorted(operators.items())),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="a clone (or bare mirror) of onnx/onnx-tensorrt")
    parser.add_argument("--ref", default="release/10.1-GA", help="tag/branch/commit of docs/operators.md")
    parser.add_argument("--target", default="10.3", help="the TensorRT version the table stands for")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    commit = _git(args.repo, "rev-parse", f"{args.ref}^{{commit}}").strip()
    table = parse_operators_md(_git(args.repo, "show", f"{commit}:docs/operators.md"))
    data = {
        "source": {
            "repository": "https://github.com/onnx/onnx-tensorrt",
            "ref": args.ref,
            "commit": commit,
            "file": "docs/operators.md",
            "extracted_by": "tools/extract_onnx_trt_operators.py",
        },
        "target_tensorrt": args.target,
        "changes_to_target": TARGET_CHANGES.get(args.target, []),
        "relaxed_in_target": RELAXED_IN_TARGET.get(args.target, {}),
        "onnx_ir_version_max": ONNX_IR_VERSION_MAX.get(args.target),
        **table,
    }
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")
    supported = sum(1 for op in data["operators"].values() if op["supported"])
    print(
        f"{len(data['operators'])} operators ({supported} supported) from {args.ref} ({commit[:10]}) -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
