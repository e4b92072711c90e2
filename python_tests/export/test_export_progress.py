"""`zsseg export` shows progress on its long stages (issue 51, defect 6): the verification against PyTorch ran
30-60 s (ViT-B/16, 2 cores) after one line and nothing else. The graphs' export and the verification now draw tqdm
bars on stderr, named "ONNX graphs" and "verifying against PyTorch"; a library call without ``progress`` draws none.
Only the bars' names are checked (they are written when a bar starts), never their redraws or timing."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("torch", reason="exporting needs torch")


def _native(tiny_bundle: str) -> str:
    with open(os.path.join(tiny_bundle, "meta.json"), encoding="utf-8") as handle:
        native = json.load(handle).get("source_checkpoint")
    if not native or not os.path.isdir(native):
        pytest.skip("the tiny bundle was prebuilt elsewhere: its native checkpoint is not here")
    return native


def test_the_export_command_draws_bars_on_its_long_stages(tiny_bundle, tmp_path, capsys):
    from zsseg_rt import cli

    code = cli.main(["export", str(tmp_path / "b"), "--native", _native(tiny_bundle), "--max-classes", "4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "verifying the bundle against PyTorch with ONNX Runtime ..." in captured.out  # the stage line (stdout)
    assert "ONNX graphs:" in captured.err and "verifying against PyTorch:" in captured.err, captured.err[-2000:]


def test_a_library_export_draws_no_bar(tmp_path, capsys):
    from support import golden_tiny_model

    from zsseg_rt.export.onnx_export import export_bundle

    export_bundle(golden_tiny_model("zegclip"), str(tmp_path / "b"), max_classes=4)
    captured = capsys.readouterr()
    assert "ONNX graphs" not in captured.err and "verifying against PyTorch" not in captured.err, captured.err[-2000:]
