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
from zsseg_rt.assets import SAMPLES_DIR  # noqa: E402
from zsseg_rt.cli.segment_inputs import is_single_file, is_video, views_target  # noqa: E402
from zsseg_rt.console.errors import CliError  # noqa: E402


def _image(path, height, width, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))
    return str(path)


def _overlays(images, output):
    """The overlay file of each image, as segment names them: ``-o``'s target (a file, a folder, else a new
    runs/segment/expN, made), then the views output's names."""
    from types import SimpleNamespace

    from zsseg_rt.outputs.views import name_views, one_image_files

    target = views_target(SimpleNamespace(output=output), images)
    if is_single_file(output, len(images)):
        return [one_image_files(target, ["overlay"])[0]["overlay"]]
    return [files["overlay"] for files in name_views(images, target, ["overlay"], is_video)]


def test_output_names_are_unique_and_deterministic(tmp_path, monkeypatch):
    images = ["d1/img.png", "d2/img.png", "d1/img.jpg", "d3/img_2.png", "other.png"]
    out = str(tmp_path / "out")
    paths = _overlays(images, out)
    assert [os.path.basename(p) for p in paths] == [
        "img_overlay.png",
        "img_2_overlay.png",
        "img_3_overlay.png",
        "img_2_2_overlay.png",
        "other_overlay.png",
    ]
    assert len(set(paths)) == len(paths) and _overlays(images, out) == paths
    assert _overlays(["a.png", "A.png"], out)[1].endswith("A_2_overlay.png")  # case-insensitive file systems
    monkeypatch.chdir(tmp_path)
    assert _overlays(["x/a.png"], None) == [os.path.join("runs", "segment", "exp", "a_overlay.png")]
    assert _overlays(["a.png"], "res") == [os.path.join("res", "a_overlay.png")]  # no extension: a folder
    assert _overlays(["a.png"], "o.jpg") == ["o.jpg"]
    inputs = [str(tmp_path / "a.png"), str(tmp_path / "a_overlay.png")]  # an input: never overwritten
    assert [os.path.basename(p) for p in _overlays(inputs, str(tmp_path))] == [
        "a_2_overlay.png",
        "a_overlay_overlay.png",
    ]
    with pytest.raises(CliError, match="give a folder"):
        _overlays(["a.png", "b.png"], str(tmp_path / "o.png"))


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
    assert sorted(os.listdir(out)) == sorted(
        [".zsseg-meaning.json", "classes.json"]
        + [f"img{n}_{kind}.png" for n in ("", "_2") for kind in ("overlay", "mask", "labels")]
    )


def test_unreadable_images_are_reported_and_skipped(tmp_path, tiny_bundle, capsys):
    good = _image(tmp_path / "a.png", 20, 20)
    text = tmp_path / "b.png"
    text.write_text("not an image")
    huge = str(tmp_path / "c.png")
    write_bilevel_png(huge, 40000, 40000, complete=False)
    last = _image(tmp_path / "e.png", 12, 16, seed=3)
    out = tmp_path / "out"
    argv = ["segment", good, str(text), huge, last, "--bundle", tiny_bundle, "--classes", "cat,dog"]
    code = cli.main([*argv, "-o", str(out), "--json", "--backend", "onnxruntime"])
    captured = capsys.readouterr()
    assert code == 1  # something failed
    summary = json.loads(captured.out)
    assert [s["image"] for s in summary] == [good, str(text), huge, last]
    assert "overlay" in summary[0] and "overlay" in summary[3]
    assert "not an image" in summary[1]["error"]
    assert "40000x40000" in summary[2]["error"] and "--max-pixels" in summary[2]["error"]
    assert sorted(os.listdir(out)) == [".zsseg-meaning.json", "a_overlay.png", "classes.json", "e_overlay.png"]
    assert captured.err.count("skipped") == 2 and "2 of 4 images failed" in captured.err
    # a path that does not exist is refused before the model loads (F17; it was a skipped image after it):
    # python_tests/cli/test_cli_segment_inputs.py


def test_out_of_memory_on_one_image_skips_only_that_image(tmp_path, tiny_bundle, capsys, monkeypatch):
    from zsseg_rt.runtime import Engine

    small = _image(tmp_path / "small.png", 10, 10)
    big = _image(tmp_path / "big.png", 40, 40)
    real_call = Engine.__call__

    def call(self, image, *args, **kwargs):
        if getattr(image, "shape", (0,))[0] == 40:
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
try:  # the same check sees torch once something imports it (it can fail)
    import zsseg_rt.models.zegclip.model  # noqa: F401
    after = "torch" in sys.modules
except ImportError as exc:  # no torch here (the image twin's stand-in): the models' import says so
    after = f"ImportError: {exc}"
print(json.dumps({"code": code, "torch": torch_imported, "torch_after_models": after, "peak_mb": peak_mb}))
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
    assert os.path.isfile(tmp_path / "o" / "good_overlay.png")
    after = report["torch_after_models"]  # True where torch is installed; where not, the import names it
    assert report["torch"] is False and (after is True or "torch" in str(after) and after.startswith("Import")), report
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
        assert len(vocabulary.labels) == count and set(summary["areas"]) <= set(vocabulary.labels)
        assert abs(sum(summary["areas"].values()) - 1.0) < 1e-3  # every pixel has one of the classes
        written = cv2.imread(summary["labels"], cv2.IMREAD_UNCHANGED)
        direct = Engine(tiny_bundle, classes=vocabulary, backend="onnxruntime")(cv2.imread(image))
        np.testing.assert_array_equal(written, direct.labels)
    assert cli.main(
        ["segment", image, "--bundle", tiny_bundle, "--classes", "person;; man", "--backend", "onnxruntime"]
    )
    assert "empty synonym" in capsys.readouterr().err


def _segment(argv, capsys):
    code = cli.main(["segment", *argv, "--backend", "onnxruntime"])
    captured = capsys.readouterr()
    return code, captured


def test_folder_and_glob_go_to_numbered_run_folders(tmp_path, tiny_bundle, capsys, monkeypatch):
    photos = tmp_path / "photos"
    a, b = _image(photos / "a.jpg", 20, 30, seed=1), _image(photos / "b.png", 24, 16, seed=2)
    (photos / "notes.txt").write_text("not an image")
    monkeypatch.chdir(tmp_path)
    code, out = _segment([str(photos), "--bundle", tiny_bundle, "--classes", "cat,dog,", "--json"], capsys)
    assert code == 0, out.err
    summary = json.loads(out.out)
    assert [s["image"] for s in summary] == [a, b]  # the folder's images in name order; the .txt left out
    assert summary[0]["overlay"] == os.path.join("runs", "segment", "exp", "a_overlay.png")
    code, out = _segment([str(photos / "*.png"), "--bundle", tiny_bundle, "--classes", "cat,dog", "--json"], capsys)
    summary = json.loads(out.out)
    assert code == 0 and [s["image"] for s in summary] == [b]  # a quoted glob, expanded by zsseg
    assert sorted(os.listdir(tmp_path / "runs" / "segment")) == ["exp", "exp2"]  # a new folder per run
    assert _segment([str(tmp_path / "none*.png"), "--bundle", tiny_bundle, "--classes", "a"], capsys)[0] == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = _segment([str(empty), "--bundle", tiny_bundle, "--classes", "a"], capsys)
    assert code == 1 and "holds no images" in out.err
    code, out = _segment([a, "--bundle", str(tmp_path / "no_bundle"), "--classes", "a"], capsys)
    assert code == 1 and sorted(os.listdir(tmp_path / "runs" / "segment")) == ["exp", "exp2"]  # no empty exp3


def test_existing_outputs_are_never_replaced_silently(tmp_path, tiny_bundle, capsys):
    photo = _image(tmp_path / "p.png", 20, 20)
    argv = [photo, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(tmp_path / "out")]
    assert _segment(argv, capsys)[0] == 0
    overlay = tmp_path / "out" / "p_overlay.png"
    before = overlay.stat().st_mtime_ns
    code, out = _segment(argv, capsys)
    assert code == 1 and "--overwrite" in out.err and overlay.stat().st_mtime_ns == before
    # segment's own advice (it picks a new folder itself when -o is left out), not the plan's "choose another folder"
    assert out.err.rstrip().endswith("or leave out -o to write into a new numbered folder under runs/segment"), out.err
    assert _segment([*argv, "--overwrite"], capsys)[0] == 0
    single = str(tmp_path / "single.png")
    assert _segment([photo, "--bundle", tiny_bundle, "--classes", "a,b", "-o", single], capsys)[0] == 0
    code, out = _segment([photo, "--bundle", tiny_bundle, "--classes", "a,b", "-o", single], capsys)
    assert code == 1 and "exists already" in out.err
    code, out = _segment(
        [photo, "--bundle", tiny_bundle, "--classes", "x,y,z", "-o", str(tmp_path / "out"), "--visualize", "mask"],
        capsys,
    )
    assert code == 1 and "label values would mean different things in one folder" in out.err  # classes.json stays


def test_overwrite_with_another_vocabulary_leaves_no_label_maps_of_the_earlier_one(tmp_path, tiny_bundle, capsys):
    """Issue 79, F4's probe: `-o V --overwrite` with another vocabulary kept the earlier run's p001_labels.png ...
    beside a classes.json naming the new classes. Refused now before the first image, naming the files, V unchanged;
    a run that writes over every earlier file (the same images) goes on."""
    first = [_image(tmp_path / f"p00{k}.jpg", 20, 24, seed=k) for k in (1, 2)]
    out = tmp_path / "V"
    base = ["--bundle", tiny_bundle, "--save-labels", "-o", str(out)]
    assert _segment([*first, "--classes", "a,b", *base], capsys)[0] == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    photos = tmp_path / "photos"
    _image(photos / "q.png", 20, 24, seed=3)
    code, captured = _segment([str(photos), "--classes", "x,y,z", *base, "--overwrite"], capsys)
    assert code == 1, captured
    assert (
        f"-o {str(out)!r} holds label maps or views made with the classes ['a', 'b'], but this run has the classes "
        "['x', 'y', 'z']: label values would mean different things in one folder (its classes.json describes the "
        "earlier ones: 'p001_labels.png' and 5 more). Use another -o, or move them away first (--overwrite replaces "
        "this run's own files only)"
    ) in captured.err, captured.err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # nothing written, nothing removed
    assert _segment([*first, "--classes", "x,y,z", *base, "--overwrite"], capsys)[0] == 0
    assert json.loads((out / "classes.json").read_text()) == {"0": "x", "1": "y", "2": "z"}
    assert sorted(path.name for path in out.iterdir()) == sorted(before)


def test_overwrite_with_another_bundle_and_the_same_classes_is_refused(tmp_path, tiny_bundle, random_bundle, capsys):
    """Issue 87, L6 (G49): `-o V --overwrite` with another bundle and the same classes, over one of two images, was
    accepted: V held b_labels.png of one model beside a_labels.png of the other, without a word. The bundle's digest
    is recorded with the classes (V/.zsseg-meaning.json, beside classes.json) and the mix refused in batch's words,
    V unchanged; a run that writes over every earlier file goes on and records its bundle."""
    from zsseg_rt.bundle import bundle_digest

    images = [_image(tmp_path / f"{name}.png", 20, 24, seed=k) for k, name in enumerate("ab")]
    out = tmp_path / "V"
    base = ["--bundle", tiny_bundle, "--classes", "a,b", "--save-labels", "-o", str(out)]
    assert _segment([*images, *base], capsys)[0] == 0
    first, other = bundle_digest(tiny_bundle), bundle_digest(random_bundle)
    assert json.loads((out / ".zsseg-meaning.json").read_text())["bundle_digest"] == first
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    other_argv = [*base[:1], random_bundle, *base[2:], "--overwrite"]
    code, captured = _segment([images[0], *other_argv], capsys)
    assert code == 1, captured
    assert [line for line in captured.err.splitlines() if "RANDOM WEIGHTS" not in line] == [  # (its banner's note)
        f"zsseg segment: error: -o {str(out)!r} holds label maps or views made with the bundle {first}, but this run "
        f"has the bundle {other}: label values would mean different things in one folder (its classes.json describes "
        "the earlier ones: 'b_labels.png' and 2 more). Use another -o, or move them away first (--overwrite "
        "replaces this run's own files only)"
    ]
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # nothing written, nothing removed
    assert _segment([*images, *other_argv], capsys)[0] == 0  # every earlier file written over: one model's maps
    assert json.loads((out / ".zsseg-meaning.json").read_text())["bundle_digest"] == other
    assert json.loads((out / "classes.json").read_text()) == {"0": "a", "1": "b"}  # the documented class map


def test_a_folder_of_an_earlier_version_keeps_its_class_map(tmp_path, tiny_bundle, random_bundle, capsys):
    """A folder written before the whole record existed (classes.json only): its class map is its record, the bundle
    and threshold unrecorded (not compared); another vocabulary is still refused."""
    images = [_image(tmp_path / f"{name}.png", 20, 24, seed=k) for k, name in enumerate("ab")]
    out = tmp_path / "V"
    base = ["--classes", "a,b", "--save-labels", "-o", str(out)]
    assert _segment([*images, "--bundle", tiny_bundle, *base], capsys)[0] == 0
    os.unlink(out / ".zsseg-meaning.json")
    argv = [images[0], "--bundle", random_bundle, *base, "--overwrite"]
    assert _segment(argv, capsys)[0] == 0
    assert not (out / ".zsseg-meaning.json").exists()  # the older record stays as it was: never made to disagree
    code, captured = _segment(
        [images[0], "--bundle", tiny_bundle, "--classes", "a,c", *base[2:], "--overwrite"], capsys
    )
    assert code == 1 and "made with the classes ['a', 'b'], but this run has the classes ['a', 'c']" in captured.err


def test_labels_masks_class_map_and_views(tmp_path, tiny_bundle, capsys):
    photo = str(SAMPLES_DIR / "JPEGImages" / "2011_000003.jpg")
    classes = "person,cat,dog,car,chair,sofa,table,plant,bottle,tv"
    out = tmp_path / "out"
    argv = [photo, "--bundle", tiny_bundle, "--classes", classes, "-o", str(out), "--json"]
    code, captured = _segment([*argv, "--save-labels", "--visualize", "overlay,mask"], capsys)
    row = json.loads(captured.out)[0]
    assert code == 0 and {"overlay", "mask", "labels"} <= set(row)
    labels = cv2.imread(row["labels"], cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint8 and len(np.unique(labels)) >= 2  # 8-bit ids, a real segmentation
    with open(out / "classes.json", encoding="utf-8") as handle:
        class_map = json.load(handle)
    assert class_map == {str(i): name for i, name in enumerate(classes.split(","))}
    shares = {class_map[str(i)]: float((labels == i).mean()) for i in np.unique(labels)}
    assert shares == pytest.approx(row["areas"], abs=1e-4)  # the JSON's areas are the label map's
    mask = cv2.imread(row["mask"])
    colours = {tuple(c) for c in mask[labels == labels.flat[0]][:50]}
    assert len(colours) <= 3  # one flat colour per class (the legend aside)
    code, captured = _segment([*argv, "--visualize", "mask", "--overwrite"], capsys)
    assert code == 0 and set(json.loads(captured.out)[0]) & {"overlay", "labels"} == set()
    legend = cv2.imread(row["overlay"])
    code, captured = _segment([*argv, "--no-legend", "--alpha", "0", "--overwrite"], capsys)
    plain = cv2.imread(json.loads(captured.out)[0]["overlay"])
    assert np.array_equal(plain, cv2.imread(photo)) and not np.array_equal(plain, legend)  # alpha 0, no legend
    code, captured = _segment([*argv, "--visualize", "outline"], capsys)
    assert code == 1 and "--visualize takes overlay and/or mask" in captured.err


def test_random_weight_bundle_is_said_in_overlay_and_json(tmp_path, random_bundle, capsys):
    photo = _image(tmp_path / "p.png", 60, 80)
    code, captured = _segment(
        [photo, "--bundle", random_bundle, "--classes", "a,b", "-o", str(tmp_path / "o"), "--json"], capsys
    )
    row = json.loads(captured.out)[0]
    assert code == 0 and "RANDOM WEIGHTS" in row["banner"] and "RANDOM WEIGHTS" in captured.err
    bottom = cv2.imread(row["overlay"])[-2].astype(int)
    assert (bottom[:, 2] > bottom[:, 0] + 100).mean() > 0.5  # the red banner strip


def test_photo_over_the_limit_is_resized_with_a_note(tmp_path, tiny_bundle, capsys, monkeypatch):
    import zsseg_rt.image_io as image_io

    monkeypatch.delenv("ZSSEG_MAX_PIXELS", raising=False)
    monkeypatch.setattr(image_io, "DEFAULT_MAX_PIXELS", 4000)  # a small default limit stands for 40 MP
    jpeg = _image(tmp_path / "big.jpg", 60, 100, seed=4)  # 6000 px: 1.5x over
    argv = [jpeg, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / "o"), "--json"]
    code, captured = _segment(argv, capsys)
    row = json.loads(captured.out)[0]
    assert code == 0 and "resized" in captured.err and row["resized"]["from"] == [100, 60]
    width, height = row["resized"]["to"]
    assert width * height <= 4000 and abs(width / height - 100 / 60) < 0.05
    assert cv2.imread(row["overlay"]).shape[:2] == (height, width)
    code, captured = _segment([*argv, "--max-pixels", "4000", "--overwrite"], capsys)
    assert code == 1 and "over the 0.004 MP limit" in captured.err  # a limit given on purpose refuses


def test_happy_path_prints_no_warning(tmp_path, tiny_bundle):
    """`zsseg segment` with the default backend (auto: no TensorRT here is the normal case) on a trained bundle:
    stdout has the results, stderr nothing at all (no RuntimeWarning recommending TensorRT, no traceback)."""
    photo = _image(tmp_path / "p.jpg", 40, 60)
    out = subprocess.run(
        [sys.executable, "-m", "zsseg_rt.cli", "segment", photo, "--bundle", tiny_bundle, "--classes", "cat,dog"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(tmp_path),
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert "p_overlay.png" in out.stdout and os.path.isfile(tmp_path / "runs" / "segment" / "exp" / "p_overlay.png")


# ---- issue 51, defect 7: nothing claimed when nothing was segmented; no truncated file on a full disk ----------------
def test_nothing_is_written_or_claimed_when_every_image_fails(tmp_path, tiny_bundle, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = []
    for name in ("a.jpg", "b.png"):
        (tmp_path / name).write_bytes(b"not an image")
        bad.append(name)
    code, out = _segment([*bad, "--bundle", tiny_bundle, "--classes", "cat,dog"], capsys)
    assert code == 1 and "results in" not in out.out, out  # was: classes.json written and "results in runs/..."
    assert out.err.strip().splitlines()[-1] == (
        "zsseg segment: error: all 2 images failed (see above): no results, no classes.json"
    )
    assert os.listdir(tmp_path / "runs" / "segment") == []  # no empty exp folder
    code, out = _segment([bad[0], "--bundle", tiny_bundle, "--classes", "cat", "-o", "out", "--json"], capsys)
    assert code == 1 and json.loads(out.out)[0]["image"] == "a.jpg" and "error" in json.loads(out.out)[0]
    assert "the image failed" in out.err and not os.path.exists("out")


def test_a_full_disk_leaves_no_truncated_class_map(tmp_path, tiny_bundle, capsys):
    from disk_faults import fill, small_tmpfs

    photo = _image(tmp_path / "p.png", 40, 40)
    with small_tmpfs(tmp_path / "disk", size_kib=64) as disk:
        fill(disk)
        out_dir = os.path.join(disk, "out")
        code, out = _segment([photo, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", out_dir], capsys)
        assert code == 1, out
        # refused before the model loads (issue 64, N17): was, after segmenting it, "cannot write 'p_overlay.png'"
        assert out.err.startswith(f"zsseg segment: error: cannot write -o {out_dir!r}: its disk is full ("), out.err
        assert not os.path.exists(out_dir)  # was: a 0-byte classes.json in it (its new folder goes too)


def test_a_class_map_that_cannot_be_written_is_an_error_naming_it(tmp_path, tiny_bundle, capsys, monkeypatch):
    """Without a mountable tmpfs too: the file system says ENOSPC for classes.json only, which is written before the
    first label map it describes (issue 75, E6): the run stops there, no view without its class map."""
    from disk_faults import FullDiskOs

    from zsseg_rt import io_safety

    monkeypatch.setattr(io_safety, "os", FullDiskOs(budget=0, matches=lambda path: "classes.json" in path))
    photo = _image(tmp_path / "p.png", 20, 20)
    out_dir = tmp_path / "out"
    code, out = _segment([photo, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(out_dir)], capsys)
    class_map = str(out_dir / "classes.json")
    assert code == 1 and "results in" not in out.out, out
    assert (
        out.err.strip()
        .splitlines()[-1]
        .startswith(f"zsseg segment: error: cannot write {class_map!r}: No space left on device (0 of ")
    ), out.err
    assert not out_dir.exists()  # no classes.json at all, no temporary file, no view (its new folder went too)
