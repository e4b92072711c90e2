"""A new output kind with an option of its own is its module and its row (issue 80, item 2): the toy kind of
python_tests/toy_output_kind.py (``-o out.count``, ``--count-every N``), put in the table as one row, is taken by
``zsseg camera -o`` with its flag (from the row: in ``--help`` too), written through the output plan, named in the
"wrote ..." line (the row's), held to the per-source rule of its row, and reached from Python by the Session's
``output_options``. Control: on the table before the kinds had options (no ``options``/``wrote`` fields), ``ROW``
cannot be made and every test here fails."""

from __future__ import annotations

import logging
import re
import sys

import pytest

pytest.importorskip("cv2")
from stream_fakes import write_band_clip  # noqa: E402
from toy_output_kind import ROW  # noqa: E402

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.console.errors import CliError  # noqa: E402
from zsseg_rt.outputs import kinds  # noqa: E402

ENGINE = ["--classes", "a,b", "--no-progress"]
SEGMENT = ["--classes", "a,b", "--backend", "onnxruntime"]


@pytest.fixture
def toy_kind():
    with kinds.OUTPUT_KINDS.adding(ROW, first=True):  # the table's own idiom: the toy row for the test, then gone
        yield ROW


@pytest.fixture
def clip(tmp_path):
    return write_band_clip(tmp_path / "clip.avi", frames=8, fps=10.0)


def _camera(capsys, *argv):
    code = cli.main(["camera", *[str(a) for a in argv]])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_the_flag_and_the_help_come_from_the_row(toy_kind, capsys):
    with pytest.raises(SystemExit):
        cli.main(["camera", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "out.count (a frame count)" in text  # the -o help: the rows' words
    assert "--count-every N count one frame in N (out.count)" in text  # the row's option, in the kind's group


def test_camera_writes_through_the_toy_kind_with_its_option(toy_kind, tmp_path, tiny_bundle, clip, capsys, caplog):
    caplog.set_level(logging.INFO, logger="zsseg_rt.stream")
    out = tmp_path / "out.count"
    code, err = _camera(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", out, "--count-every", "3")
    assert code == 0, err
    assert out.read_text() == "3\n" and not (tmp_path / "out.partial.count").exists()  # frames 0, 3, 6
    assert f"wrote a count of 3 of 8 frames to {out}" in caplog.messages
    code, err = _camera(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", out)  # the output plan's policy
    assert code == 1 and "exists already: pass --overwrite" in err[-1] and out.read_text() == "3\n", err
    code, err = _camera(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", out, "--overwrite")
    assert code == 0 and out.read_text() == "8\n", err  # the row's default: every frame
    with pytest.raises(SystemExit) as stopped:  # the row's type refuses it, as argparse does
        _camera(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "-o", out, "--count-every", "0")
    assert stopped.value.code == 2
    assert "argument --count-every: expected a whole number >= 1, got '0'" in capsys.readouterr().err


def test_the_rows_per_source_rule(toy_kind, tmp_path, tiny_bundle, clip, capsys):
    other = write_band_clip(tmp_path / "other.avi", frames=4, fps=10.0)
    argv = [f"a={clip}", f"b={other}", "--bundle", tiny_bundle, *ENGINE]
    code, err = _camera(capsys, *argv, "-o", tmp_path / "out.count")
    assert code == 1 and "names one output, but 2 sources are given (a, b)" in err[-1], err  # NAMED: a placeholder
    code, err = _camera(capsys, *argv, "-o", tmp_path / "out_{source}.count", "--count-every", "2")
    assert code == 0, err
    assert (tmp_path / "out_a.count").read_text() == "4\n" and (tmp_path / "out_b.count").read_text() == "2\n"


def test_a_python_app_gives_the_kinds_option_by_name(toy_kind, tmp_path, tiny_bundle, clip):
    from zsseg_rt.stream import Session

    out = tmp_path / "app.count"
    session = Session(clip, tiny_bundle, "a,b", outputs=[str(out)], output_options={"count_every": 4})
    assert session.run() == 0 and out.read_text() == "2\n"
    with pytest.raises(TypeError, match="no output kind has the option 'count_evry'; did you mean 'count_every'"):
        Session(clip, tiny_bundle, "a,b", outputs=[str(tmp_path / "x.count")], output_options={"count_evry": 4}).run()


# ---- the same row on zsseg segment and zsseg batch (their results: zsseg_rt.outputs.result_outputs) -------------------
@pytest.fixture
def photos(tmp_path):
    import cv2
    import numpy as np

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(5):
        cv2.imwrite(str(folder / f"p{index}.png"), rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    return folder


def _segment(capsys, *argv):
    code = cli.main(["segment", *[str(a) for a in argv]])
    said = capsys.readouterr()
    return code, said.out, [line for line in said.err.splitlines() if line.strip()]


def test_segment_writes_through_the_toy_kind_with_its_option(toy_kind, tmp_path, tiny_bundle, photos, capsys):
    out, views = tmp_path / "out.count", tmp_path / "views"
    argv = [photos, "--bundle", tiny_bundle, *SEGMENT, "-o", views, "-o", out]
    code, printed, err = _segment(capsys, *argv, "--count-every", "2")
    assert code == 0, err
    assert out.read_text() == "3\n" and not (tmp_path / "out.partial.count").exists()  # images 0, 2, 4 of 5
    assert f"zsseg segment: wrote a count of 3 of 5 frames to {out}" in err
    assert f"results in {views}" in printed and (views / "p0_overlay.png").is_file()  # -o DIR: still the views'
    code, _, err = _segment(capsys, *argv, "--overwrite")  # the views' policy: --overwrite; the count's: the plan's
    assert code == 0 and out.read_text() == "5\n", err  # the row's default: every image
    fresh = tmp_path / "fresh"
    code, _, err = _segment(capsys, *argv[:-4], "-o", fresh, "-o", out)  # only the count exists: the output plan's
    assert code == 1 and f"{str(out)!r} exists already: pass --overwrite" in err[-1], err  # refusal, before the model
    assert out.read_text() == "5\n" and not fresh.exists()


def test_segment_takes_the_kinds_flag_and_help_from_the_row(toy_kind, capsys):
    with pytest.raises(SystemExit):
        cli.main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "also (repeatable): out.count (a frame count)" in text  # -o's help: the rows segment takes
    assert "--count-every N count one frame in N (out.count)" in text
    assert "--frame-id" not in text  # a row segment does not take: not its flag


def test_batch_takes_the_toy_kind_and_checks_it_before_ray(toy_kind, tmp_path, tiny_bundle, photos, capsys):
    with pytest.raises(SystemExit):
        cli.main(["batch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "-o SPEC also write the results as out.count (a frame count)" in text
    assert "--count-every N count one frame in N (out.count)" in text
    out = tmp_path / "taken.count"
    out.write_text("7\n")
    argv = ["batch", photos, tmp_path / "labels", "--bundle", tiny_bundle, *ENGINE, "-o", out]
    # the command itself, past cli.main's install check (batch needs Ray, which the GPU image lacks): refused by the
    # output plan before Ray starts (no cluster needed, nor Ray installed)
    args = cli.build_parser("batch").parse_args([str(a) for a in argv])
    with pytest.raises(CliError, match=re.escape(f"{str(out)!r} exists already: pass --overwrite")):
        args.func(args)
    assert out.read_text() == "7\n"
    with pytest.raises(SystemExit) as stopped:  # a spec of no kind batch takes: argparse's refusal
        cli.main([str(a) for a in argv[:-1]] + ["out.mp4"])
    assert stopped.value.code == 2 and "argument -o: expected one of out.count (a frame count), got 'out.mp4'" in (
        capsys.readouterr().err
    )


def test_batch_without_ray_says_so_before_anything_else(toy_kind, monkeypatch, tmp_path, capsys):
    """The control of the test above: where Ray is not installed (the GPU image), ``zsseg batch`` refuses first, in
    one line with the install line, before its arguments, the bundle or the output plan are looked at."""
    monkeypatch.setitem(sys.modules, "ray", None)  # importlib.util.find_spec("ray") is None: not installed
    out = tmp_path / "taken.count"
    out.write_text("7\n")
    argv = ["batch", tmp_path / "no photos", tmp_path / "labels", "--bundle", tmp_path / "no bundle", *ENGINE]
    code = cli.main([str(a) for a in argv + ["-o", out]])
    err = capsys.readouterr().err
    assert code == 1 and "zsseg batch needs Ray" in err and "ray not installed" in err, err
    assert "no photos" not in err and "no bundle" not in err  # nothing of the arguments was checked first
    assert out.read_text() == "7\n" and not (tmp_path / "labels").exists()


def test_without_the_row_segment_and_batch_have_no_count(capsys):
    """Control: the flags come from the row (the table without it: no --count-every on either command)."""
    for command in ("segment", "batch"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert "--count-every" not in capsys.readouterr().out
