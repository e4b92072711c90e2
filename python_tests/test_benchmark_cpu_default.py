"""``python -m benchmarks cpu_default`` (issue 54): the program runs end to end on the tiny model (``--quick``) and
renders every part: the photo side by side, the gate's record of the path auto picked, the defaults' start-up, memory
and start-up per backend and precision, ``zsseg camera`` side by side on a clip made from the photo, and the two
targets. No timing is asserted: speed goals live in BENCHMARKS.md."""

from __future__ import annotations

import re

import pytest
from support import run_benchmark

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("cv2")


def test_quick_run_renders_every_part(tmp_path):
    proc = run_benchmark(tmp_path, "cpu_default", "--quick", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "## CPU default: `Engine(bundle)` (backend auto) vs c783dbf's default" in out
    # the photo side by side: both rows, each with the path it ran
    assert re.search(
        r"^\| c783dbf default: Engine\(bundle, backend='onnxruntime'\) fp32 \| onnxruntime fp32 \|", out, re.M
    )
    assert re.search(r"^\| Engine\(bundle\) \(backend auto\) \| \S+ \S+ \|", out, re.M)
    # the gate's record of the path auto picked, on its own line
    assert re.search(r"^- The gate's record of the path auto picked \(\S+ \S+\): \S", out, re.M), out
    # cold and warm start-up of the defaults
    for row in (
        "| c783dbf default |",
        "| Engine(bundle), cold (no record) |",
        "| Engine(bundle), warm (records cached) |",
    ):
        assert row in out, row
    # memory and start-up per backend and precision: ONNX Runtime fp32 measured, every other path measured or skipped
    assert "### Memory and start-up per backend and precision (a fresh process each)" in out
    table = out.split("### Memory and start-up per backend and precision")[1].split("###")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| backend")]
    assert re.search(r"^\| onnxruntime \| fp32 \| [\d.]+ \| [\d.]+ \| \d+ \|$", table, re.M), table
    assert all(re.search(r"\| [\d.]+ \| [\d.]+ \| \d+ \|$|\| skipped: .+ \| \| \|$", row) for row in rows), rows
    # zsseg camera side by side: a clip made from the photo, both rows with the path they ran, 2 frames each
    assert "### `zsseg camera` side by side" in out
    assert "frames made from 2011_000006.jpg" in out
    assert re.search(r"^\| c783dbf default: zsseg camera --backend onnxruntime \| onnxruntime fp32 \| 2 \|", out, re.M)
    assert re.search(r"^\| zsseg camera \(backend auto, records cached, --prepare none\) \| \S+ \S+ \| 2 \|", out, re.M)
    assert "- The camera's auto log line: backend='auto' runs " in out
    # the targets, one verdict each
    targets = out.split("### Targets")[1]
    assert re.search(r"`Engine\(bundle\)` >= 2x c783dbf default on the photo: [\d.]+x \*\*(PASS|MISS)\*\*", targets)
    assert re.search(r"`zsseg camera` >= 2x c783dbf default on the clip: [\d.]+x \*\*(PASS|MISS)\*\*", targets)
