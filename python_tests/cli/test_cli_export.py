"""``zsseg export`` as a user meets it: stage lines while it works, a bundle that says which weights it holds (and a
banner when they are random), stock CLIP weights given up on quickly when there is no network (one plain line), and a
runtime-only install told what to install."""

import importlib.util
import json
import os
import time
import warnings

import pytest

from zsseg_rt import cli


def _one_error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_random_export_shows_progress_and_says_what_it_holds(tmp_path, capsys):
    pytest.importorskip("torch")
    out = str(tmp_path / "bundle")
    with warnings.catch_warnings(record=True) as caught:  # pytest keeps warnings off stderr: record them here
        warnings.simplefilter("always")
        assert cli.main(["export", out, "--config", "zegclip_tiny_test", "--max-classes", "8"]) == 0
    hidden_by_default = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, hidden_by_default)]
    assert shown == []  # what Python's default filters would print to a user's terminal
    captured = capsys.readouterr()
    for stage in ("building zegclip_tiny_test with random weights", "exporting the ONNX graphs", "verifying"):
        assert stage in captured.out, captured.out
    assert captured.out.count("done in") >= 3 and "RANDOM WEIGHTS" in captured.out and "--clip-weights" in captured.out
    bars = ("ONNX graphs:", "verifying against PyTorch:")  # the long stages' progress bars (issue 51, defect 6)
    others = [line for line in captured.err.splitlines() if line.strip() and not line.startswith(bars)]
    assert others == [] and all(bar in captured.err for bar in bars)  # the happy path: no warning, no traceback
    with open(os.path.join(out, "meta.json"), encoding="utf-8") as handle:
        weights = json.load(handle)["weights"]
    assert weights == {
        "source": None,
        "kind": "none",
        "random": True,
        "untrained": "every weight (random initialisation)",
    }


def test_offline_clip_weights_fail_fast_in_plain_words(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", hub_constants.HF_HUB_OFFLINE)  # restored afterwards
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # restored afterwards (the rule sets it)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    start = time.perf_counter()
    argv = ["export", str(tmp_path / "b"), "--config", "training_free_tiny_test", "--clip-weights", "openai"]
    assert cli.main(argv) != 0
    seconds = time.perf_counter() - start
    captured = capsys.readouterr()
    assert captured.out.count("no network") == 1 and "local cache only" in captured.out
    line = _one_error_line(captured.err)
    assert "could not get the CLIP weights 'openai'" in line and "--clip-weights /path/to/ViT-B-16.pt" in line
    assert "pretrained=" not in line and "Error" not in line and "(--debug" not in line  # plain words, not truncated
    assert seconds < 30, seconds  # one connection attempt (<= 1.5 s) and the local cache, no download retries
    assert not os.path.exists(tmp_path / "b")


def test_runtime_only_install_is_told_what_to_install(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    assert cli.main(["export", str(tmp_path / "b"), "--config", "zegclip_tiny_test"]) != 0
    line = _one_error_line(capsys.readouterr().err)
    assert 'pip install "zsseg_rt[torch,export]"' in line and "torch" in line and "No module named" not in line


def test_the_named_extras_exist_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "pyproject.toml"), "rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    named = cli.TORCH_SIDE_INSTALL.split("[", 1)[1].split("]", 1)[0].split(",")
    assert named and all(extra in extras for extra in named)
    assert any(req.startswith("torch") for req in extras["torch"]) and any(
        req.startswith("onnx") for req in extras["export"]
    )
