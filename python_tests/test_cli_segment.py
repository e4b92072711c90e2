"""``zsseg segment`` with several inputs: distinct outputs, bad images reported and skipped, the JSON summary, no
torch import with the onnxruntime backend, and hostile images refused within a memory budget (issue 16.2/3/6)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from test_image_limits import write_bilevel_png  # noqa: E402

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.cli_errors import CliError  # noqa: E402
from zsseg_rt.cli_segment import plan_output_paths  # noqa: E402


def _image(path, height, width, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))
    return str(path)


def test_output_names_are_unique_and_deterministic(tmp_path):
    images = ["d1/img.png", "d2/img.png", "d1/img.jpg", "d3/img_seg_2.png", "other.png"]
    out = str(tmp_path / "out")
    paths = plan_output_paths(images, out)
    assert [os.path.basename(p) for p in paths] == [
        "img_seg.png",
        "img_seg_2.png",
        "img_seg_3.png",
        "img_seg_2_seg.png",
        "other_seg.png",
    ]
    assert len(set(paths)) == len(paths) and plan_output_paths(images, out) == paths
    assert plan_output_paths(["a.png", "A.png"], out)[1].endswith("A_seg_2.png")  # case-insensitive file systems
    assert plan_output_paths(["x/a.png"], None) == [os.path.join(".", "a_seg.png")]
    assert plan_output_paths(["a.png"], "res") == [os.path.join("res", "a_seg.png")]  # no extension: a directory
    assert plan_output_paths(["a.png"], "o.jpg") == ["o.jpg"]
    inputs = [str(tmp_path / "a.png"), str(tmp_path / "a_seg.png")]  # a_seg.png is an input: never overwritten
    assert [os.path.basename(p) for p in plan_output_paths(inputs, str(tmp_path))] == ["a_seg_2.png", "a_seg_seg.png"]
    with pytest.raises(CliError, match="give a directory"):
        plan_output_paths(["a.png", "b.png"], str(tmp_path / "o.png"))


def test_same_names_in_two_folders_give_two_overlays(tmp_path, tiny_bundle, capsys):
    first = _image(tmp_path / "d1" / "img.png", 20, 30, seed=1)
    second = _image(tmp_path / "d2" / "img.png", 26, 18, seed=2)
    out = tmp_path / "out"
    argv = ["segment", first, second, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(out)]
    assert cli.main([*argv, "--json", "--save-labels", "--backend", "onnxruntime"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [s["image"] for s in summary] == [first, second]
    assert summary[0]["overlay"] != summary[1]["overlay"]
    assert cv2.imread(summary[0]["overlay"]).shape == (20, 30, 3)  # each overlay is its own image's
    assert cv2.imread(summary[1]["overlay"]).shape == (26, 18, 3)
    assert sorted(os.listdir(out)) == ["img_seg.png", "img_seg_2.png", "img_seg_2_labels.png", "img_seg_labels.png"]


def test_unreadable_images_are_reported_and_skipped(tmp_path, tiny_bundle, capsys):
    good = _image(tmp_path / "a.png", 20, 20)
    text = tmp_path / "b.png"
    text.write_text("not an image")
    huge = str(tmp_path / "c.png")
    write_bilevel_png(huge, 40000, 40000, complete=False)
    missing = str(tmp_path / "d.png")
    last = _image(tmp_path / "e.png", 12, 16, seed=3)
    out = tmp_path / "out"
    argv = ["segment", good, str(text), huge, missing, last, "--bundle", tiny_bundle, "--classes", "cat,dog"]
    code = cli.main([*argv, "-o", str(out), "--json", "--backend", "onnxruntime"])
    captured = capsys.readouterr()
    assert code == 1  # something failed
    summary = json.loads(captured.out)
    assert [s["image"] for s in summary] == [good, str(text), huge, missing, last]
    assert "overlay" in summary[0] and "overlay" in summary[4]
    assert "not an image" in summary[1]["error"]
    assert "40000x40000" in summary[2]["error"] and "--max-pixels" in summary[2]["error"]
    assert "does not exist" in summary[3]["error"]
    assert sorted(os.listdir(out)) == ["a_seg.png", "e_seg.png"]
    assert captured.err.count("skipped") == 3 and "3 of 5 images failed" in captured.err


def test_out_of_memory_on_one_image_skips_only_that_image(tmp_path, tiny_bundle, capsys, monkeypatch):
    from zsseg_rt.runtime import Engine

    small = _image(tmp_path / "small.png", 10, 10)
    big = _image(tmp_path / "big.png", 40, 40)
    real_call = Engine.__call__

    def call(self, image, *args, **kwargs):
        if image.shape[0] == 40:
            raise MemoryError()
        return real_call(self, image, *args, **kwargs)

    monkeypatch.setattr(Engine, "__call__", call)
    argv = ["segment", big, small, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / "o")]
    assert cli.main([*argv, "--json", "--backend", "onnxruntime"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert "not enough memory" in summary[0]["error"] and "overlay" in summary[1]


SEGMENT_DRIVER = r"""
import json, sys
from zsseg_rt import cli
code = cli.main(sys.argv[1:])
torch_imported = "torch" in sys.modules
with open("/proc/self/status") as handle:
    peak_mb = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:")) / 1024.0
import zsseg_rt.models.zegclip.model  # noqa: the same check sees torch once something imports it (it can fail)
print(json.dumps({"code": code, "torch": torch_imported, "torch_after_models": "torch" in sys.modules,
                  "peak_mb": peak_mb}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS is read from /proc/self (Linux)")
def test_segment_is_torch_free_and_refuses_hostile_images_within_a_memory_budget(tmp_path, tiny_bundle):
    good = _image(tmp_path / "good.png", 32, 48)
    hostile = []
    for side, complete in ((8000, True), (20000, True), (40000, False)):
        hostile.append(str(tmp_path / f"black_{side}.png"))
        write_bilevel_png(hostile[-1], side, side, complete)
    argv = ["segment", good, *hostile, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(tmp_path / "o")]
    env = dict(os.environ)
    env.pop("ZSSEG_MAX_PIXELS", None)
    out = subprocess.run(
        [sys.executable, "-c", SEGMENT_DRIVER, *argv, "--backend", "onnxruntime"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["code"] == 1 and out.stderr.count("over the 40 MP limit") == 3, out.stderr
    assert os.path.isfile(tmp_path / "o" / "good_seg.png")
    assert report["torch"] is False and report["torch_after_models"] is True, report
    # ~175 MB measured for the whole process (Python, OpenCV, ONNX Runtime, the tiny bundle) with or without the
    # hostile files; decoding just the 8000x8000 one would add 192 MB, the 20000x20000 one 1.2 GB (8.5 GB peak
    # measured for `zsseg segment` on it with --max-pixels 0).
    assert report["peak_mb"] < 400, report


def test_classes_with_synonyms_and_named_vocabularies(tmp_path, tiny_bundle, capsys):
    """``--classes "person; man, dog"``: two classes, the first with two names (labels index classes, the summary
    names them by their first name); ``--classes voc21``: the official VOC class file (21 classes, background
    first). The labels written are the Engine's for the same vocabulary; a bad synonym list is one error line."""
    from zsseg_rt import Engine
    from zsseg_rt.vocabulary import Vocabulary

    image = _image(tmp_path / "img.png", 40, 52, seed=3)
    for classes, count in (("person; man, dog", 2), ("voc21", 21)):
        out = tmp_path / classes.replace(";", "").replace(",", "").replace(" ", "_")
        argv = ["segment", image, "--bundle", tiny_bundle, "--classes", classes, "-o", str(out), "--json"]
        assert cli.main([*argv, "--save-labels", "--backend", "onnxruntime"]) == 0
        summary = json.loads(capsys.readouterr().out)[0]
        vocabulary = Vocabulary.parse(classes)
        assert len(vocabulary.labels) == count and set(summary["classes"]) <= set(vocabulary.labels)
        assert abs(sum(summary["classes"].values()) - 1.0) < 1e-3  # every pixel has one of the classes
        written = cv2.imread(str(out / "img_seg_labels.png"), cv2.IMREAD_UNCHANGED)
        direct = Engine(tiny_bundle, classes=vocabulary, backend="onnxruntime")(cv2.imread(image))
        np.testing.assert_array_equal(written, direct.labels)
    assert cli.main(
        ["segment", image, "--bundle", tiny_bundle, "--classes", "person;; man", "--backend", "onnxruntime"]
    )
    assert "empty synonym" in capsys.readouterr().err
