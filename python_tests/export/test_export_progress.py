"""`zsseg export` shows progress on its long stages (issue 51, defect 6): the verification against PyTorch ran
30-60 s (ViT-B/16, 2 cores) after one line and nothing else. The graphs' export and the verification draw tqdm bars
on stderr ("ONNX graphs", "verifying against PyTorch": cli/test_cli_export.py checks them in a real `zsseg export`),
only while an export says its stages (``export_bundle(progress=...)``: the CLI, the demo); a library call draws none.
Only whether a bar is drawn is checked, never its redraws or timing."""

from __future__ import annotations

import pytest

pytest.importorskip("tqdm")


def test_bars_are_drawn_only_inside_shown(capsys):
    from zsseg_rt.console.progress import shown, stage_bar

    with stage_bar(2, "outside") as bar:
        bar.update(2)
    with shown():
        with stage_bar(2, "inside") as bar:
            bar.update(2)
        with shown(False), stage_bar(2, "switched off") as bar:
            bar.update(2)
    err = capsys.readouterr().err
    assert "inside:" in err and "outside" not in err and "switched off" not in err, err
