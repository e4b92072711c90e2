"""The help a user reads: ``zsseg --version``, a top-level summary for every command and every model family, an
explanation on every ``segment`` and ``camera`` option, and one meaning of ``--json`` across commands (a flag: JSON on
stdout), with the old ``zsseg eval --json PATH`` still working behind a deprecation note."""

import argparse
import json

import pytest

from zsseg_rt import cli


def _subparsers(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_version(capsys):
    import zsseg_rt

    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"zsseg_rt {zsseg_rt.__version__}"


def test_top_level_help_summarises_every_command_and_family():
    from zsseg_rt.contract.registry import families, get_family

    parser = cli.build_parser("")  # as `zsseg -h` builds it: the lazily imported commands by name and help only
    text = parser.format_help()
    for name in families():
        assert get_family(name).display_name in text
    for choice in _subparsers(parser)._choices_actions:
        assert choice.help and len(choice.help) > 15, f"`zsseg -h` shows no summary for {choice.dest}"
    assert {"batch", "serve", "profile", "segment", "camera"} <= {c.dest for c in _subparsers(parser)._choices_actions}


@pytest.mark.parametrize(
    "command",
    ["segment", "camera", "export", "build-engine", "eval", "batch", "serve", "profile", "demo", "train", "convert"],
)
def test_every_option_has_help(command):
    pytest.importorskip("cv2")
    if command in ("eval", "train", "export", "convert"):
        pytest.importorskip("torch")
    parser = _subparsers(cli.build_parser(command)).choices[command]
    missing = [
        action.option_strings or action.dest
        for action in parser._actions
        if not action.help and action.help is not argparse.SUPPRESS
    ]
    assert not missing, f"zsseg {command} options without help: {missing}"
    if command == "segment":
        text = parser.format_help()
        assert "slide|whole" in text and "exact" in text  # the two kinds of --mode told apart


def test_eval_json_is_a_flag_and_the_old_path_spelling_still_writes(tiny_bundle, tmp_path, capsys):
    pytest.importorskip("cv2")
    from zsseg_rt.assets import SAMPLES_DIR

    base = ["eval", tiny_bundle, "--dataset", "voc", "--data-root", str(SAMPLES_DIR), "--backend", "onnxruntime"]
    base += ["--no-progress", "--limit", "1"]
    assert cli.main([*base, "--json"]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)  # stdout is the JSON and nothing else, as `zsseg segment --json`
    assert metrics["images"] == 1 and "deprecated" not in captured.err
    old = tmp_path / "old.json"
    assert cli.main([*base, "--json", str(old)]) == 0
    captured = capsys.readouterr()
    assert "--json PATH is deprecated, use --save-json" in captured.err
    assert json.loads(old.read_text())["images"] == 1
    new = tmp_path / "new.json"
    assert cli.main([*base, "--save-json", str(new)]) == 0
    written = [json.loads(path.read_text()) for path in (new, old)]
    for metrics in written:
        metrics.pop("speed")  # each run's own ms per image (zsseg_rt.console.speed): a measurement, not a metric
    assert written[0] == written[1] and "deprecated" not in capsys.readouterr().err
