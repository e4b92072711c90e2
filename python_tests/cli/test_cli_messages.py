"""Messages and help a new user meets (issue 37, rough edges): a command-line refusal names the flag that helps, or
says that no flag does, instead of an ``Engine(...)`` argument; ``set_classes(None)`` says what it expected;
a bundle without a checkpoint says so (not "meta.json records None"); ``zsseg profile`` does not present torch's
CUDA build as a device; help texts: the profile description once, ``export`` and ``demo`` described, defaults shown;
``convert`` and ``train`` answer ``--help`` without importing torch; ``zsseg segment --json`` calls the class areas
"areas", as ``Result.to_json()``, photo.json and the batch manifest do."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from zsseg_rt import cli
from zsseg_rt.console.errors import format_error


def _help(command: str) -> str:
    parser = next(a for a in cli.build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
    return parser.choices[command].format_help()


def test_a_limit_refusal_names_the_flag_or_says_there_is_none(tiny_bundle):
    pytest.importorskip("onnxruntime")
    from zsseg_rt import Engine
    from zsseg_rt.pipeline.limits import InputLimitError

    engine = Engine(tiny_bundle, classes="cat, dog", backend="onnxruntime", max_windows=1, max_pixels=15000)
    with pytest.raises(InputLimitError) as windows:
        engine(np.zeros((64, 200, 3), np.uint8))  # several windows
    line = format_error(windows.value)
    assert "Engine(..., max_windows=N)" in str(windows.value)  # the library's advice, for Python
    assert "no command-line flag sets max_windows" in line, line  # on the command line: said there is none
    with pytest.raises(InputLimitError) as pixels:
        engine(np.zeros((64, 256, 3), np.uint8))
    line = format_error(pixels.value)
    assert "--max-pixels N" in line and "Engine(" not in line, line  # the flag that raises it


def test_the_torch_backend_without_a_checkpoint_says_so_in_cli_words(tiny_bundle, tmp_path, capsys):
    from zsseg_rt.bundle import write_meta

    bundle = shutil.copytree(tiny_bundle, str(tmp_path / "bundle"))
    with open(os.path.join(bundle, "meta.json"), encoding="utf-8") as handle:
        raw = json.load(handle)
    raw["source_checkpoint"] = None  # exported from random weights / a CLIP tag: no checkpoint recorded
    write_meta(os.path.join(bundle, "meta.json"), raw)
    photo = str(tmp_path / "p.png")
    import cv2

    cv2.imwrite(photo, np.zeros((32, 32, 3), np.uint8))
    code = cli.main(
        ["segment", photo, "--bundle", bundle, "--classes", "a,b", "--backend", "torch", "-o", str(tmp_path / "o.png")]
    )
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1, lines
    assert "records no checkpoint" in lines[0] and "--backend onnxruntime" in lines[0], lines[0]
    assert "records None" not in lines[0] and "Pass model=" not in lines[0], lines[0]  # the old wording


def test_set_classes_none_says_what_it_expected(tiny_bundle):
    pytest.importorskip("onnxruntime")
    from zsseg_rt import Engine

    engine = Engine(tiny_bundle, backend="onnxruntime")
    for wrong, shown in ((None, "got None"), (3, "got int 3"), (b"cat", "got bytes b'cat'")):
        with pytest.raises(TypeError) as refused:
            engine.set_classes(wrong)
        message = str(refused.value)
        assert message.startswith("expected class names") and message.endswith(shown), message
        assert "named vocabulary" in message and "class file" in message, message  # was "'NoneType' object ..."


def test_profile_does_not_present_torch_cuda_as_a_device():
    from zsseg_rt.profiling import cuda_text

    no_gpu = cuda_text({"cuda": "13.0 (torch build)", "gpu": None})
    assert "no GPU" in no_gpu and "torch built for CUDA 13.0" in no_gpu and not no_gpu.startswith("CUDA 13"), no_gpu
    assert "toolkit" in cuda_text({"cuda": "13.0", "gpu": None})
    assert cuda_text({"cuda": "12.4", "gpu": [{"name": "H100"}]}) == "CUDA 12.4"


def test_profile_table_says_no_gpu(monkeypatch):
    import zsseg_rt.profiling as profiling

    report = {
        "system": {"cpu": "x", "cpu_count": 2, "gpu": None, "onnxruntime": "1", "tensorrt": None, "cuda": "13.0"},
        "settings": {"image_size": 64, "mode": "exact", "iters": 1, "warmup": 0},
        "results": [],
        "text_encoder": [],
        "comparison": [],
    }
    first = profiling.format_table(report).splitlines()[0]
    assert "CUDA 13.0," not in first + "," and "no GPU" in first, first  # was "..., CUDA 13.0" with no GPU


def test_profile_help_prints_its_description_once_with_the_defaults():
    pytest.importorskip("cv2")
    text = _help("profile")
    assert text.count("Per-stage latency profile of a zsseg_rt bundle") == 1, text
    parser = next(a for a in cli.build_parser("profile")._actions if isinstance(a, argparse._SubParsersAction))
    helps = {flag: action.help for action in parser.choices["profile"]._actions for flag in action.option_strings}
    for flag, default in (("--iters", "50"), ("--classes", "20"), ("--warmup", "5")):
        assert f"default {default}" in helps[flag], (flag, helps[flag])


@pytest.mark.parametrize("command", ["export", "demo"])
def test_export_and_demo_help_describe_the_command(command):
    text = _help(command)
    description = text.split("\n\n")[1]  # after the usage block
    assert not description.lstrip().startswith(("positional arguments", "options")), text
    assert len(description.split()) > 20, description


@pytest.mark.parametrize("command", ["convert", "train"])
def test_help_of_torch_commands_does_not_import_torch(command):
    code = (
        "import sys\nfrom zsseg_rt.cli import main\ntry:\n    main([sys.argv[1], '--help'])\nexcept SystemExit:\n"
        "    pass\nprint('TORCH LOADED' if 'torch' in sys.modules else 'NO TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: zsseg" in out.stdout and out.stdout.strip().endswith("NO TORCH"), out.stdout[-300:]


def test_segment_json_names_the_areas_as_every_other_output(tiny_bundle, tmp_path, capsys):
    import cv2

    photo = str(tmp_path / "p.png")
    cv2.imwrite(photo, np.full((40, 40, 3), 90, np.uint8))
    argv = ["segment", photo, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / "o"), "--json"]
    assert cli.main([*argv, "--backend", "onnxruntime"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert "classes" not in row and abs(sum(row["areas"].values()) - 1.0) < 1e-3, row  # Result.to_json()'s key
