"""Refusals in the words of who reads them (issue 87, L3): on the command line, advice worded for Python
(``use device='cpu'``, ``use inference='windows'``, ``Use precision='fp32'``) or naming a flag the command lacks
(a first failed gate on ``zsseg segment --precision bf16``: "accept it with accept_below_gate=True
(`--accept-below-gate`)", a flag ``zsseg segment`` refuses, and no argument the Engine has). The library words its
advice ``Engine(..., name=value)`` (Python words for a script) and the CLI turns each into the flag of the command
being run, or, where that command has none, says so; accepting a precision below its gate is ``zsseg build-engine``'s
own command line in both."""

from __future__ import annotations

import re

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.console.errors import command_line_advice, format_error  # noqa: E402

PYTHON_WORDS = re.compile(r"(?<![.\w])(device|inference|precision|accept_below_gate)=")  # name=value outside Engine(


def _flags(command):
    return cli._engine_flags(command)


def _outside_backticks(text):
    return re.sub(r"`[^`]*`", "", text)


def _refused(capsys, argv):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "WARN:" not in line]
    assert len(lines) == 1 and lines[0].startswith(f"zsseg {argv[0]}: error: "), err
    return lines[0]


def _no_python_words_nor_foreign_flags(line, command):
    """The advice (what follows "use") holds no ``name=value`` of Python outside an ``Engine(...)`` note, and every
    flag named outside a quoted command line is one ``zsseg command`` has."""
    shown = _outside_backticks(line)
    advice = re.split(r"\b[Uu]se ", shown, maxsplit=1)[-1]
    assert not PYTHON_WORDS.search(advice.replace("Engine(..., ", "Engine(")), line
    parser = cli.build_parser(command)
    known = {
        flag
        for action in parser._subparsers._group_actions[0].choices[command]._actions
        for flag in action.option_strings
    }
    for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", shown):
        assert flag in known, (flag, line)


@pytest.fixture()
def photo(tmp_path):
    path = str(tmp_path / "photo.png")
    cv2.imwrite(path, np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8))
    return path


def test_advice_names_only_the_commands_own_flags():
    segment, batch = _flags("segment"), _flags("batch")
    assert "--prepare" in segment and "--prepare" not in batch
    assert command_line_advice("use Engine(..., prepare=None)", "segment", segment) == "use --prepare none"
    assert command_line_advice("use Engine(..., prepare=None)", "batch", batch) == (
        "use the Python argument Engine(..., prepare=None) (zsseg batch has no --prepare)"
    )
    assert command_line_advice("use Engine(..., device='cpu')", "batch", batch) == "use --device cpu"
    assert command_line_advice("use Engine(..., device='cpu')") == "use --device cpu"  # no command: any's flag


def test_a_failed_gate_says_build_engine_and_the_flag_segment_has(tmp_path, tiny_bundle, monkeypatch):
    """G95: the refusal of a gate that failed, in Python (the Engine's argument, build-engine's command line to
    accept it) and on ``zsseg segment`` (``--precision fp32``, build-engine's command line; no
    ``accept_below_gate=True``, no bare ``--accept-below-gate``)."""
    import zsseg_rt.prepare.onnxruntime as ort_prepare
    from zsseg_rt.prepare.gate import EngineAccuracyError

    monkeypatch.setattr(ort_prepare, "validate_ort_precision", lambda precision: None)  # any CPU
    monkeypatch.setattr(ort_prepare, "_gate", lambda *args: {"accepted": False, "summary": "labels 91.0 % equal"})
    with pytest.raises(EngineAccuracyError) as refused:
        ort_prepare.prepare_onnxruntime_precision(tiny_bundle, "bf16", cache_dir=str(tmp_path / "engines"))
    python = str(refused.value)
    command = "`zsseg build-engine BUNDLE --backend onnxruntime --precision bf16 --force --accept-below-gate`"
    assert python.endswith(f"use Engine(..., precision='fp32'), or accept it explicitly: {command}"), python
    assert "accept_below_gate=True" not in python
    line = format_error(refused.value, "segment", _flags("segment"))
    assert line.endswith(f"use --precision fp32, or accept it explicitly: {command}"), line
    _no_python_words_nor_foreign_flags(line, "segment")


def test_device_and_inference_refusals_name_the_flags(photo, tiny_bundle, capsys):
    """G65: ``--device cuda`` where ONNX Runtime has no CUDA said "use device='cpu'", ``--inference whole`` on a
    bundle with a fixed image graph "use inference='windows'": now ``--device cpu`` and ``--inference windows``; the
    Engine says ``Engine(..., device='cpu')`` to a script."""
    import onnxruntime

    from zsseg_rt.runtime import Engine

    run = ["segment", photo, "--bundle", tiny_bundle, "--classes", "a,b", "--backend", "onnxruntime"]
    line = _refused(capsys, [*run, "--inference", "whole"])
    assert "use --inference windows, or re-export the bundle" in line, line
    _no_python_words_nor_foreign_flags(line, "segment")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return  # CUDA is there: --device cuda is not refused
    line = _refused(capsys, [*run, "--device", "cuda"])
    assert "install onnxruntime-gpu or use --device cpu" in line, line
    _no_python_words_nor_foreign_flags(line, "segment")
    with pytest.raises(RuntimeError, match=re.escape("install onnxruntime-gpu or use Engine(..., device='cpu')")):
        Engine(tiny_bundle, "a,b", backend="onnxruntime", device="cuda", prepare=None)
