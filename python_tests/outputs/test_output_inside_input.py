"""One refusal for an output that is, or lies inside, an input (issue 87, M8): ``zsseg segment ph/ -o ph`` and ``zsseg
batch photos/ photos/out`` were accepted, and the next run segmented the first run's outputs (``X_overlay_overlay.png``;
batch's "4 segmented, 4 already done" of its own label PNGs), while ``zsseg camera`` refused only an output equal to
an input. The rule is the output plan's (``refuse_an_input``), for every command: each refusal is one line naming the
output and the input, before the model loads, and nothing is written in the input folder."""

from __future__ import annotations

import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.outputs.plan import OutputRefused, refuse_an_input  # noqa: E402


@pytest.fixture()
def photos(tmp_path):
    """A folder ``ph`` of two small photos, a sub-folder inside it; the listing of the tree."""
    folder = tmp_path / "ph"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    return folder


def _tree(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names
    )


def test_the_rule(tmp_path, photos):
    """An input itself, a path inside an input folder at any depth (through a link too) are refused; a sibling whose
    name starts like the input's (``ph2`` beside ``ph``) and a path inside an input *file*'s folder are not."""
    inputs = [str(photos), str(tmp_path / "clip.avi")]
    with pytest.raises(OutputRefused, match=r"^-o .*/ph/ is an input of this run: choose another output$"):
        refuse_an_input("-o", str(photos) + "/", inputs)
    for inside in (photos / "out", photos / "sub" / "deep" / "x.mp4", tmp_path / "ph" / ".." / "ph" / "o"):
        with pytest.raises(OutputRefused) as refused:
            refuse_an_input("--labels-out", str(inside), inputs)
        assert str(refused.value) == (
            f"--labels-out {inside} is inside {photos}, an input of this run (a later run would read this run's "
            "outputs as its input): choose another output"
        )
    os.symlink(photos, tmp_path / "link")
    with pytest.raises(OutputRefused, match="is inside"):
        refuse_an_input("-o", str(tmp_path / "link" / "out"), inputs)
    refuse_an_input("-o", str(tmp_path / "ph2"), inputs)
    refuse_an_input("-o", str(tmp_path / "out.mp4"), inputs)  # beside clip.avi: a file is no folder


def _refused(capsys, argv, expect):
    code = cli.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "WARN:" not in line]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == f"zsseg {argv[0]}: error: {expect}", lines[0]


def test_segment_refuses_an_output_that_is_or_lies_in_its_input_folder(tmp_path, photos, tiny_bundle, capsys):
    """G53: ``segment ph/ -o ph`` (and ``--overwrite``), ``-o ph/out``, ``--save-json ph/m.json``: one line each,
    before the model; ``ph`` unchanged. Control: ``-o out`` beside it runs and writes there."""
    before = _tree(photos)
    run = ["segment", str(photos), "--bundle", tiny_bundle, "--classes", "a,b", "--backend", "onnxruntime"]
    _refused(capsys, [*run, "-o", str(photos)], f"-o {photos} is an input of this run: choose another output")
    _refused(
        capsys, [*run, "-o", str(photos), "--overwrite"], f"-o {photos} is an input of this run: choose another output"
    )
    inside = f"is inside {photos}, an input of this run (a later run would read this run's outputs as its input)"
    _refused(capsys, [*run, "-o", str(photos / "out")], f"-o {photos / 'out'} {inside}: choose another output")
    masks = photos / "m.json"
    _refused(
        capsys,
        [*run, "-o", str(tmp_path / "o"), "--save-json", str(masks)],
        f"--save-json {masks} {inside}: choose another output",
    )
    assert _tree(photos) == before
    assert cli.main([*run, "-o", str(tmp_path / "out")]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == [
        ".zsseg-meaning.json",
        "a_overlay.png",
        "b_overlay.png",
        "classes.json",
    ]


def test_batch_refuses_an_output_inside_its_input_before_ray(tmp_path, photos, tiny_bundle, capsys):
    """G79: ``batch ph/ ph/out`` (its resume segmented its own label PNGs): refused in one line before Ray, nothing
    made inside ``ph``; ``batch ph/ ph`` alike."""
    before = _tree(photos)
    run = ["--bundle", tiny_bundle, "--classes", "a,b", "--num-cpus", "2"]
    out = photos / "out"
    _refused(
        capsys,
        ["batch", str(photos), str(out), *run],
        f"OUTPUT {out} is inside {photos}, an input of this run (a later run would read this run's outputs as its "
        "input): choose another output",
    )
    _refused(
        capsys,
        ["batch", str(photos), str(photos), *run],
        f"OUTPUT {photos} is an input of this run: choose another output",
    )
    assert _tree(photos) == before and not out.exists()


def test_camera_refuses_an_output_inside_its_input_folder(tmp_path, photos, tiny_bundle, capsys):
    """``camera ph/ -o ph/frames/`` and ``--labels-out ph/labels`` (camera refused only ``-o ph/``): one line each."""
    before = _tree(photos)
    run = ["camera", str(photos), "--bundle", tiny_bundle, "--classes", "a,b", "--max-frames", "2"]
    inside = f"is inside {photos}, an input of this run (a later run would read this run's outputs as its input)"
    frames = str(photos / "frames") + "/"
    _refused(capsys, [*run, "-o", frames], f"-o {frames} {inside}: choose another output")
    labels = photos / "labels"
    _refused(
        capsys,
        [*run, "-o", str(tmp_path / "x.mp4"), "--labels-out", str(labels)],
        f"--labels-out {labels} {inside}: choose another output",
    )
    assert _tree(photos) == before


def test_segment_dot_keeps_its_own_numbered_folder(tmp_path, monkeypatch, capsys, tiny_bundle):
    """`zsseg segment .` in a folder of photos: the numbered folder segment picks itself (runs/segment/exp1, inside
    the input folder) is written, and the next run reads the photos only (a folder input is read without its
    subfolders), so it does not segment its own outputs; an -o inside the input is still refused (the control)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(2):
        cv2.imwrite(str(folder / f"p{k}.png"), np.full((16, 20, 3), 40 * k, np.uint8))
    monkeypatch.chdir(folder)
    argv = ["segment", ".", "--bundle", tiny_bundle, "--classes", "a,b"]
    assert cli.main(argv) == 0 and cli.main(argv) == 0, capsys.readouterr().err
    first, second = (folder / "runs" / "segment" / name for name in ("exp", "exp2"))
    assert sorted(p.name for p in first.glob("*_overlay.png")) == ["p0_overlay.png", "p1_overlay.png"]
    assert sorted(p.name for p in second.glob("*_overlay.png")) == ["p0_overlay.png", "p1_overlay.png"]
    capsys.readouterr()
    assert cli.main(argv + ["-o", "mine"]) == 1
    assert "is inside ., an input of this run" in capsys.readouterr().err
