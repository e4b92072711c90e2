"""The README's main job resolves weights in the documented order and says plainly when there are none."""

import types

import pytest

pytest.importorskip("torch")

from zsseg_rt import demo  # noqa: E402


def _args(**over):
    base = dict(
        official=None,
        native=None,
        clip_weights=None,
        method="scclip-vitb16",
        config="zegclip_tiny_test",
        allow_random_weights=False,
    )
    base.update(over)
    return types.SimpleNamespace(**base)


def test_no_weights_says_so_and_refuses_without_the_random_flag(monkeypatch, capsys):
    monkeypatch.delenv("ZSSEG_CHECKPOINT", raising=False)

    def offline(name, pretrained=None, **_):
        if pretrained:
            raise RuntimeError("Failed to download weights for tag 'openai'")
        raise AssertionError("random weights must not be used without --allow-random-weights")

    monkeypatch.setattr("zsseg_rt.models.create_model", offline)
    with pytest.raises(SystemExit) as exit_info:
        demo._resolve_model(_args())
    assert exit_info.value.code == 2
    out = capsys.readouterr().out
    assert "No model weights are available" in out and "--official" in out and "--clip-weights" in out


def test_a_long_reason_is_cut_at_a_sentence_end_not_mid_word():
    """The offline reason is one long line ending in advice the message repeats: it used to be cut at 200
    characters, mid-word ("Give a local file instead: --clip-weigh")."""
    reason = (
        "could not get the CLIP weights 'openai' of ViT-B-16: they are not in the local Hugging Face cache and "
        "downloading is off (no network, or HF_HUB_OFFLINE is set). Give a local file instead: --clip-weights "
        "/path/to/ViT-B-16.pt (an OpenAI archive, an open_clip state_dict or a .safetensors file)"
    )
    assert demo._first_sentence(RuntimeError(reason)) == reason.split(". ")[0]
    assert demo._first_sentence(RuntimeError("short reason\nsecond line")) == "short reason"
    words = demo._first_sentence(RuntimeError("word " * 100))
    assert words.endswith("word ...") and len(words) <= 244


def test_random_weights_are_labelled(monkeypatch, capsys):
    monkeypatch.delenv("ZSSEG_CHECKPOINT", raising=False)
    calls = []

    def offline(name, pretrained=None, **_):
        calls.append((name, pretrained))
        if pretrained:
            raise RuntimeError("offline")
        return "random-model"

    monkeypatch.setattr("zsseg_rt.models.create_model", offline)
    model, source, title, bundle = demo._resolve_model(_args(allow_random_weights=True))
    assert model == "random-model" and source is None and bundle.endswith("-random")
    assert "RANDOM WEIGHTS" in title and "RANDOM WEIGHTS" in capsys.readouterr().out
    assert calls == [("scclip-vitb16", "openai"), ("zegclip_tiny_test", None)]


def test_explicit_clip_file_that_fails_is_an_error_not_a_fallback(monkeypatch, tmp_path):
    monkeypatch.delenv("ZSSEG_CHECKPOINT", raising=False)

    def broken(name, pretrained=None, **_):
        raise ValueError(f"cannot read {pretrained}")

    monkeypatch.setattr("zsseg_rt.models.create_model", broken)
    with pytest.raises(ValueError, match="cannot read"):
        demo._resolve_model(_args(clip_weights=str(tmp_path / "ViT-B-16.pt"), allow_random_weights=True))


def test_no_network_is_detected_quickly_and_said_once(monkeypatch, capsys):
    import time

    from zsseg_rt.models.common import weights

    monkeypatch.delenv("ZSSEG_CHECKPOINT", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens, refused at once
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", hub_constants.HF_HUB_OFFLINE)  # restored afterwards
    start = time.perf_counter()
    assert weights.hub_reachable(timeout=1.5) is False
    assert time.perf_counter() - start < 2.0
    seen = {}

    def offline_create(name, pretrained=None, **_):
        seen["offline"] = weights.hub_offline_requested()
        if pretrained:
            raise RuntimeError("cannot find the requested files in the local cache")
        return "random-model"

    monkeypatch.setattr("zsseg_rt.models.create_model", offline_create)
    demo._resolve_model(_args(allow_random_weights=True))
    out = capsys.readouterr().out
    assert seen["offline"] is True  # open_clip was told to use the local cache only: no download retries
    assert out.count("no network") == 1 and "RANDOM WEIGHTS" in out


def test_hub_offline_variable_short_circuits(monkeypatch):
    from zsseg_rt.models.common import weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights.hub_reachable() is False


def test_the_stock_clip_fallback_is_sc_clip():
    """The demo's default training-free method is the best published one the project implements (SC-CLIP)."""
    from zsseg_rt.cli import build_parser

    args = build_parser().parse_args(["demo"])
    assert args.method == "scclip-vitb16"
