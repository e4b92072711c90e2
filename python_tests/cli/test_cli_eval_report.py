"""``zsseg eval``'s human report says what ran (issue 75, E7 and N4): a bundle of random weights prints the RANDOM
WEIGHTS banner before its meaningless mIoU, and every bundle's report names the backend and precision that ran (it
was only in ``--json``, which now holds the banner too)."""

from __future__ import annotations

import json

import pytest


def _eval(capsys, bundle, *extra):
    from zsseg_rt import cli

    argv = ["eval", bundle, "--dataset", "synthetic", "--limit", "2", "--no-progress", "--backend", "onnxruntime"]
    code = cli.main([*argv, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.time_bound(300)
def test_eval_on_random_weights_shows_the_banner_and_the_backend(random_bundle, tiny_bundle, capsys):
    """E7 (B9): mIoU printed with no RANDOM WEIGHTS banner; N4: no backend in the human output. Control: a bundle of
    trained weights has no banner, and names its backend too."""
    code, out, err = _eval(capsys, random_bundle)
    assert code == 0, err
    lines = out.splitlines()
    banner = [line for line in lines if "RANDOM WEIGHTS" in line]
    assert banner and lines.index(banner[0]) < next(i for i, line in enumerate(lines) if "mIoU" in line), out
    assert "backend onnxruntime fp32" in out, out
    code, out, err = _eval(capsys, tiny_bundle)
    assert code == 0 and "RANDOM WEIGHTS" not in out + err and "backend onnxruntime fp32" in out, out
    code, out, _ = _eval(capsys, random_bundle, "--json")
    metrics = json.loads(out)
    assert metrics["backend"] == "onnxruntime" and metrics["precision"] == "fp32"
    assert metrics["banner"].startswith("RANDOM WEIGHTS"), metrics.get("banner")


@pytest.mark.time_bound(120)
def test_every_commands_help_has_a_description_and_build_engine_says_what_auto_costs(capsys):
    """E15 (B80): `zsseg build-engine --help` had no description, and nothing on what `--backend auto` costs. Every
    command's --help now opens with one (the control: the other ten had theirs already)."""
    from zsseg_rt.cli import build_parser

    parser = build_parser()
    (commands,) = [action for action in parser._actions if action.__class__.__name__ == "_SubParsersAction"]
    missing = [name for name, command in commands.choices.items() if not (command.description or "").strip()]
    assert missing == [], missing
    with pytest.raises(SystemExit):
        parser.parse_args(["build-engine", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--backend auto" in text and "minutes of CPU" in text and "announced" in text, text
