"""``python -m benchmarks video`` without running it: its random-weight bundle is one draw (seeded), so its table can
be regenerated; and its flicker verdict says, with the vote oracle's number, whether a miss is the filter's fault
(short-lived flicker a vote removes) or the clip's (label changes that last, which a faithful filter follows)."""

import argparse
import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
torch = pytest.importorskip("torch")
from video_fakes import texture  # noqa: E402

from benchmarks import video as bench  # noqa: E402


def _rows(per_frame: float, stabilized: float, unmoved=(0.4, 0.1), vote: float = 0.1):
    row = dict(fps_end_to_end=1.0, agreement=100.0, flicker=per_frame, unmoved=None, vote_unmoved=None)
    return [
        dict(row, mode="per frame", unmoved=unmoved[0], vote_unmoved=vote),
        dict(row, mode="--stabilize", flicker=stabilized, unmoved=unmoved[1], agreement=99.4),
        dict(row, mode="--keyframe-every 4", fps_end_to_end=3.0, agreement=99.0),
    ]


def test_the_flicker_verdict_says_why_it_is_missed():
    """Met: nothing more. Missed: by how much, the ratio where the flow moves nothing and the vote oracle's there,
    and which of three causes it is (motion; changes that last; changes a few frames long that a vote removes)."""
    assert (
        bench.verdicts(_rows(0.5, 0.15))[0] == "- `--stabilize` flicker / per-frame flicker: 0.30 (target <= 0.33): met"
    )
    motion = bench.verdicts(_rows(0.5, 0.3, (0.4, 0.1), 0.1), moved_share=2.0)[0]
    assert motion.startswith(
        "- `--stabilize` flicker / per-frame flicker: 0.60 (target <= 0.33): **missed** by 0.27. Where the flow moves "
        "nothing (all still pixels but the 2 % that the flow moves) the ratio is 0.25, and 0.25 for the per-frame "
        "labels voted over 9 frames (`voted`, an oracle that sees 4 frames ahead): the target is met where nothing moves"
    )
    lasting = bench.verdicts(_rows(0.5, 0.3, (0.4, 0.3), 0.2))[0]
    assert "the ratio is 0.75, and 0.50 for the per-frame labels" in lasting
    assert (
        "even the oracle misses there: over a third of that flicker is label changes that last about 5 frames"
        in lasting
    )
    assert "(agreement 99.40 %)" in lasting and lasting.endswith('(docs/video.md, "When the flicker target is missed")')
    short = bench.verdicts(_rows(0.5, 0.3, (0.4, 0.3), 0.1))[0]
    assert "the oracle meets it there: the filter keeps changes of a few frames that the vote removes" in short
    cut = bench.verdicts(_rows(0.5, 0.3, (0.4, 0.3), 0.2), moved_share=29.4, cuts=1)[0]
    assert (
        "Where the flow moves nothing (all still pixels but the 29 % that the flow moves), the pair across a scene "
        in cut
    )
    assert "cut left out, the ratio is 0.75" in cut
    unmeasured = bench.verdicts(_rows(0.5, 0.3, (None, None), None))[0]
    assert unmeasured.endswith("(target <= 0.33): **missed**")


def test_a_missed_keyframe_agreement_gets_the_keyframe_oracles():
    """A missed ``--keyframe-every 4`` agreement also gets the keyframe oracle's (``carried``: the per-frame keyframe
    labels moved by the metric's flow), and when that misses too, why: out of any propagation's reach."""
    rows = _rows(0.5, 0.15)
    rows[2]["agreement"] = 92.31
    rows[0]["carried_agreement"] = 92.36
    line = bench.verdicts(rows)[1]
    assert "agreement 92.31 % (target >= 95.0 %): **missed**; the keyframe oracle" in line
    assert "agrees 92.36 %: the per-frame labels change between keyframes more than motion explains" in line
    rows[0]["carried_agreement"] = 97.0
    assert bench.verdicts(rows)[1].endswith("`carried`) agrees 97.00 %")
    rows[2]["agreement"] = 99.0
    assert bench.verdicts(rows)[1].endswith("(target >= 95.0 %): met")


def test_the_live_verdicts_judge_rate_and_flow_share():
    """``--live`` rows (issue 65): >= 5 fps end to end and the flow <= 10 % of the frame time (ms a frame over
    1000 / fps), each judged; the every-frame row says what the resolution and precision cost in agreement."""
    live = dict(live=True, path="openvino int8", agreement=91.5)
    rows = [
        *_rows(0.5, 0.15),
        dict(live, mode="--live", fps_end_to_end=6.3, flow_ms_mean=7.6),
        dict(live, mode="--live --stabilize", fps_end_to_end=4.0, flow_ms_mean=30.0),
        dict(live, mode="--live --keyframe-every 1", fps_end_to_end=2.0, flow_ms_mean=None, agreement=91.6),
    ]
    lines = bench.live_verdicts(rows)
    assert lines[0] == (
        "- `--live` (openvino int8): 6.30 fps end to end (target >= 5): met; the flow 7.6 ms a frame = 4.8 % of the "
        "frame time (target <= 10 %): met; labels agree 91.50 % with the full-size per-frame labels"
    )
    assert "4.00 fps end to end (target >= 5): **missed**" in lines[1]
    assert "30.0 ms a frame = 12.0 % of the frame time (target <= 10 %): **missed**" in lines[1]
    assert lines[2].startswith("- `--live --keyframe-every 1` (the encoder on every frame, one window, openvino int8)")
    assert "agree 91.60 %" in lines[2] and "the resolution and the precision make together" in lines[2]
    assert len(lines) == 3
    assert bench.live_verdicts(_rows(0.5, 0.15)) == []  # no --live rows: no lines


def test_the_random_weights_are_one_draw(tmp_path, monkeypatch):
    """The bundle is exported after ``torch.manual_seed(SEED)`` into a folder named by the seed: two fresh exports
    hold the same weights (here: the first values the model draws), and an unseeded bundle left in
    out/bench_video/<config> is not reused."""
    import zsseg_rt.export.onnx_export as onnx_export
    import zsseg_rt.models as models

    draws = []
    monkeypatch.setattr(models, "create_model", lambda config: torch.nn.Linear(4, 4))

    def export(model, path, **kwargs):
        draws.append(model.weight.detach().clone())
        (tmp_path / path).mkdir(parents=True)
        (tmp_path / path / "meta.json").write_text(json.dumps({}))

    monkeypatch.setattr(onnx_export, "export_bundle", export)
    args = argparse.Namespace(bundle=None, config="zegclip_vitb16_voc_inductive")
    paths = []
    for repo in ("a", "b"):
        monkeypatch.setattr(bench, "REPO", tmp_path / repo)
        (tmp_path / repo / "out" / "bench_video" / args.config).mkdir(parents=True)
        (tmp_path / repo / "out" / "bench_video" / args.config / "meta.json").write_text("{}")  # an unseeded one
        torch.rand(7)  # whatever ran before
        paths.append(bench.bundle_path(args))
    assert [p.split("/")[-1] for p in paths] == [f"zegclip_vitb16_voc_inductive-seed{bench.SEED}"] * 2
    assert len(draws) == 2 and torch.equal(draws[0], draws[1])
    assert bench.bundle_path(args) == paths[1] and len(draws) == 2  # exported once, then reused


def test_the_per_frame_run_is_measured_with_its_oracle(tmp_path):
    """``measure`` on label maps as the camera loop writes them (16-bit PNGs): a still scene whose labels blip for one
    frame flickers per frame, its vote does not; a shaded square that moves while its grey levels hardly change is
    left out of the flicker within unmoved pixels, where a boundary that moves with it flickers; a run measured
    against a reference gets its agreement and no oracle; a scene cut is found and left out of the diagnostics."""
    background = texture(96, 128, seed=5)
    ramp = (60 + 1.2 * np.arange(40)).astype(np.uint8)
    frames = []
    for index in range(9):
        frame = background.copy()
        frame[20:70, 30 + 4 * index : 70 + 4 * index] = ramp[None, :, None]
        frames.append(frame)
        labels = np.zeros((96, 128), np.uint16)
        labels[:, :16] = 1 if index == 4 else 0  # a blip in frame 4 on the static background
        labels[30:60, 40 + 4 * index : 100] = 2  # a boundary inside the moving square, moving with it
        cv2.imwrite(str(tmp_path / f"{index:06d}.png"), labels)
    motion = bench.ClipMotion(frames)
    assert 0 < motion.moved_share < 50 and motion.cuts == []
    measured = bench.measure(frames, tmp_path, None, motion)
    assert measured["flicker"] > measured["unmoved"] > 0  # the blip, and the moving boundary on top
    assert measured["vote_unmoved"] == 0.0  # the vote removes the blip, and keeps the moving boundary: not counted
    against = bench.measure(frames, tmp_path, tmp_path, motion)
    assert against["agreement"] == 100.0 and against["vote_unmoved"] is None
    # a scene cut after the last frame: another scene, other labels; the pair across it is left out of the diagnostics
    frames.append(texture(96, 128, seed=9))
    cv2.imwrite(str(tmp_path / "000009.png"), np.full((96, 128), 3, np.uint16))
    with_cut = bench.ClipMotion(frames)
    assert with_cut.cuts == [9] and with_cut.moved_share == motion.moved_share
    after = bench.measure(frames, tmp_path, None, with_cut)
    assert after["flicker"] > measured["flicker"] and after["unmoved"] == measured["unmoved"]


def test_the_trained_scores_proxy_replays_the_filters(tmp_path):
    """``benchmarks video_proxy``'s replay of one clip's scores as its MediaPipe step writes them (a still scene whose
    person probability hesitates along a band): a row per mode, the per-frame row at 1.00, the filters' own ratios
    below it (the hysteresis doing its share on such scores), the verdict lines; without scores or MediaPipe,
    ``--no-install`` stops in one line before creating anything."""
    from benchmarks import video_proxy

    rng = np.random.default_rng(0)
    frame = texture(96, 128, seed=1)
    frames = np.stack([np.clip(frame + rng.integers(-2, 3, frame.shape), 0, 255).astype(np.uint8) for _ in range(8)])
    person = np.zeros((8, 96, 128), np.float32)
    person[:, :, 64:] = 1.0
    person[:, :, 56:72] = rng.uniform(0.2, 0.8, (8, 96, 16))  # a hesitating boundary
    np.savez_compressed(tmp_path / "vtest.npz", frames=frames, person=person)
    rows, verdicts = video_proxy.measure("vtest", tmp_path / "vtest.npz")
    assert verdicts and all(line.startswith("- vtest") or "vtest" in line for line in verdicts), verdicts
    names = [row.split(" | ")[1] for row in rows]
    assert names[: len(video_proxy.MODES) + 1] == ["per frame"] + [mode for mode, _ in video_proxy.MODES]
    assert [name.split(":")[0] for name in names[len(video_proxy.MODES) + 1 :]] == ["oracle"] * len(
        video_proxy.VOTE_RADII
    )
    ratios = {row.split(" | ")[1]: float(row.split(" | ")[3]) for row in rows}
    assert ratios["per frame"] == 1.0 and ratios["--stabilize"] < 1.0
    assert ratios["--stabilize"] < ratios["--stabilize, hysteresis 0 (the blend alone)"] / 2  # measured 0.04, 0.32
    # no scene cut in this scene: the column that leaves the pairs across one out is the flicker ratio
    assert all(row.split(" | ")[3] == row.split(" | ")[4] for row in rows)
    # no scores of these clips and no MediaPipe: --no-install stops before making an environment, in one line
    with pytest.raises(SystemExit, match=r"need MediaPipe in a virtual environment .* --no-install refuses"):
        video_proxy.main(["--scores", str(tmp_path), "--env", str(tmp_path / "env"), "--no-install"])
    assert not (tmp_path / "env").exists()


def test_the_proxy_never_clears_a_folder_it_did_not_make(tmp_path, monkeypatch):
    """``--env DIR`` names an environment to reuse: a folder without MediaPipe that the benchmark did not make (a
    project's own .venv, say) is refused and left as it is, never cleared to install MediaPipe into. Control: an
    empty folder is accepted (the environment's creation, stubbed, is reached)."""
    from benchmarks import video_proxy

    own = tmp_path / "own-venv"
    (own / "bin").mkdir(parents=True)
    (own / "bin" / "python").symlink_to("/bin/false")  # a Python without MediaPipe, as far as the check can tell
    (own / "pyvenv.cfg").write_text("the user's own\n")
    with pytest.raises(SystemExit, match="is not an environment this benchmark made"):
        video_proxy.ensure_scores(tmp_path / "scores", own, install=True)
    assert (own / "pyvenv.cfg").read_text() == "the user's own\n" and (own / "bin" / "python").is_symlink()
    made = []
    monkeypatch.setattr(video_proxy.venv, "EnvBuilder", lambda **kw: made.append(kw) or pytest.fail("created"))
    with pytest.raises(pytest.fail.Exception, match="created"):
        video_proxy.ensure_scores(tmp_path / "scores", tmp_path / "new-env", install=True)
    assert made == [{"with_pip": True, "clear": False}]


def test_the_exact_path_rows_say_the_window_chosen_and_its_trade():
    """``--exact-live`` (issue 90): each clip's rows (per frame, the full window pinned, the window --live chose) with
    the chosen window's rate judged against 5 fps and its agreement beside the full window's; the warm-up's line and
    each window's expected rate in the header; the CPU's vector extensions named."""
    from benchmarks import _video_window as exact
    from zsseg_rt.stream.video_filter.live_window import WindowChoice

    choice = WindowChoice(320, 5.4, 512, 1.9, {512: 1.9, 448: 2.6, 384: 3.7, 320: 5.4}, True, 4, "onnxruntime fp32")
    row = dict(keyframes=8, flow_ms_mean=9.0)
    rows = [
        dict(row, mode="per frame", window=None, fps_end_to_end=0.35, agreement=100.0, flow_ms_mean=None),
        dict(row, mode="--live --window-size 512", window=512, fps_end_to_end=1.9, agreement=91.5, turns=[1.9, 1.8]),
        dict(row, mode="--live", window=320, fps_end_to_end=5.2, agreement=88.25, turns=[5.1, 5.2]),
    ]
    result = dict(clips=[dict(name="vtest", size=(576, 768), frames=30, rows=rows)], choice=choice, warmup=21.0,
                  size=512, load=(0.5, 1.0), seconds=300.0)  # fmt: skip
    text = exact.render_exact(result, "zegclip (seed 0)")
    assert "512: 1.90 fps, 448: 2.60 fps, 384: 3.70 fps, 320: 5.40 fps expected at a keyframe every 4 frames" in text
    assert f"its line: `{choice.line}`" in text and exact.cpu_features() in text
    assert "| --live | 320x320 | 8 | 5.200 | 5.100 / 5.200 | 2.74 | 9 | 88.25 |" in text
    assert (
        "- `--live` (320x320, the window it ran): 5.20 fps end to end (target >= 5): met; the full window 1.90 fps; labels agree "
        "88.25 % with the per-frame labels (91.50 % at the full window)"
    ) in text
    assert "the loop's own rate" not in text
    rows[-1]["fps_end_to_end"] = 4.5
    assert "4.50 fps end to end (target >= 5): **missed**" in exact.render_exact(result, "zegclip (seed 0)")
    import dataclasses

    result["final"] = dataclasses.replace(choice, size=256, loop_fps=4.2, stepped_from=320)
    text = exact.render_exact(result, "zegclip (seed 0)")
    assert "- Then the loop's own rate (`LoopCheck`" in text and "the loop ran 4.2 fps at 320x320" in text
