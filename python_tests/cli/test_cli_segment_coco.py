"""``zsseg segment --save-json FILE`` (issue 75 item 5; the coco row, ``zsseg_rt/outputs/coco_sink.py``): the labels
as COCO masks that pycocotools reads back equal to the label maps, under the output policy of the other outputs
(refused when it
exists without ``--overwrite``, claimed by the run, staged, put in place only when the run has ended), and the speed
summary at the end of the run (item 4)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
coco_api = pytest.importorskip("pycocotools.coco")

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.assets import sample_images  # noqa: E402

CLASSES = "cat,dog,sky"


def _photos():
    return [str(path) for path in sample_images()[:2]]


def _segment(capsys, *argv):
    code = cli.main(["segment", *map(str, argv), "--backend", "onnxruntime"])
    return code, capsys.readouterr()


def _painted(path):
    """Each image's label map painted from the file by pycocotools (file name -> [H, W] int)."""
    coco = coco_api.COCO(str(path))
    maps = {}
    for image in coco.loadImgs(coco.getImgIds()):
        painted = np.full((image["height"], image["width"]), -1, np.int64)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            painted[coco.annToMask(annotation).astype(bool)] = annotation["category_id"]
        maps[image["file_name"]] = painted
    return coco, maps


def test_save_json_holds_every_images_label_map_as_pycocotools_reads_it(tmp_path, tiny_bundle, capsys):
    """Two photos with --save-labels and the unknown threshold on: the COCO file decoded by pycocotools equals each
    photo's label PNG (255 = unknown included), its categories are classes.json's, and the run ends with the speed
    summary (backend, precision, ms per stage)."""
    out, masks = tmp_path / "out", tmp_path / "masks.json"
    photos = _photos()
    code, said = _segment(
        capsys, *photos, "--bundle", tiny_bundle, "--classes", CLASSES, "--save-labels", "-o", out,
        "--save-json", masks, "--unknown-below", "0.5",
    )  # fmt: skip
    assert code == 0, said.err
    coco, maps = _painted(masks)
    class_map = json.loads((out / "classes.json").read_text())
    assert {str(c["id"]): c["name"] for c in coco.loadCats(coco.getCatIds())} == class_map
    assert class_map["255"] == "unknown"
    unknown = 0
    for photo in photos:
        stem = os.path.splitext(os.path.basename(photo))[0]
        labels = cv2.imread(str(out / f"{stem}_labels.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(maps[photo], labels)
        unknown += int((labels == 255).sum())
    assert unknown > 0, "control: the threshold left some pixels unknown"
    # one image entry per photo: its path, height and width (not the Session's source name "images" and its number)
    assert [sorted(image) for image in coco.dataset["images"]] == [["file_name", "height", "id", "width"]] * 2
    speed = [line for line in said.out.splitlines() if line.startswith("Speed: ")]
    assert (
        len(speed) == 1
        and " ms encoder, " in speed[0]
        and speed[0].endswith("(onnxruntime fp32, 500x338 and 1 other size)")
    )
    assert f"zsseg segment: wrote the COCO masks of 2 images to {masks}" in said.err  # the coco row's line


def test_save_json_is_refused_when_it_exists_kept_when_the_run_stops_and_replaced_with_overwrite(
    tmp_path, tiny_bundle, capsys, monkeypatch
):
    """An existing file: refused before the bundle loads (one line naming it and --overwrite), kept as it was; a run
    stopped by a failed write (a full disk) leaves it as it was and no temporary file; --overwrite replaces it once
    the run ends; another run holding it now is named; a file this run writes with -o is refused."""
    from zsseg_rt.io_safety import OutputWriteError
    from zsseg_rt.outputs import image_files
    from zsseg_rt.outputs.owner import OwnerLock

    masks = tmp_path / "masks.json"
    masks.write_text("old\n")
    photo = _photos()[0]
    base = [photo, "--bundle", tiny_bundle, "--classes", CLASSES, "-o", tmp_path / "out", "--save-json", masks]
    code, said = _segment(capsys, *base)
    assert code != 0 and masks.read_text() == "old\n"
    assert (
        said.err.strip()
        .splitlines()[-1]
        .startswith(f"zsseg segment: error: '{masks}' exists already: pass --overwrite")
    )

    def full_disk(path, data, **kwargs):
        raise OutputWriteError(f"cannot write {path!r}: No space left on device", path, 28)

    with monkeypatch.context() as patched:
        patched.setattr(image_files, "write_image_file", full_disk)  # every file of an image goes through it
        code, said = _segment(capsys, *base, "--overwrite")
    assert code != 0 and "No space left on device" in said.err
    assert masks.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["masks.json", "out"]

    owner = OwnerLock(str(masks), "--save-json")
    owner.acquire()
    try:
        code, said = _segment(capsys, *base, "--overwrite")
        assert code != 0 and str(os.getpid()) in said.err and masks.read_text() == "old\n"
    finally:
        owner.release()

    code, said = _segment(capsys, *base, "--overwrite")
    assert code == 0, said.err
    document = json.loads(masks.read_text())
    assert [image["file_name"] for image in document["images"]] == [photo]
    assert {c["name"] for c in document["categories"]} == set(CLASSES.split(","))  # off: no unknown category

    code, said = _segment(capsys, photo, "--bundle", tiny_bundle, "--classes", CLASSES, "-o", tmp_path / "o2",
                          "--save-json", tmp_path / "o2" / "classes.json")  # fmt: skip
    assert code != 0 and "is a file this run writes already" in said.err
    code, said = _segment(
        capsys, photo, "--bundle", tiny_bundle, "--classes", CLASSES, "--save-json", tmp_path / "m.txt"
    )
    assert code != 0 and "expected a .json file name, got '.txt'" in said.err


def test_a_run_whose_every_image_failed_writes_no_file(tmp_path, tiny_bundle, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    masks = tmp_path / "masks.json"
    code, said = _segment(capsys, bad, "--bundle", tiny_bundle, "--classes", CLASSES, "-o", tmp_path / "out",
                          "--save-json", masks)  # fmt: skip
    assert code == 1 and not masks.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert "Speed: " not in said.out
