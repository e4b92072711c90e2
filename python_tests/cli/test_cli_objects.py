"""Objects on the commands (issue 81, items 1-3): ``zsseg segment --objects`` (``--json``'s "objects", COCO instance
annotations in ``--save-json``), ``zsseg camera --objects --save-json`` and ``Session(objects=True)``, each equal to
the objects computed independently (``objects_reference``: scipy.ndimage.label, 8-connectivity) on the label maps the
same run wrote, every instance mask decoded by pycocotools equal to its region. Controls: without ``--objects`` the
files hold no instance annotations and the results carry no objects (the comparisons then fail)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from objects_reference import min_pixels, reference

cv2 = pytest.importorskip("cv2")
coco_api = pytest.importorskip("pycocotools.coco")
coco_mask = pytest.importorskip("pycocotools.mask")
from stream_fakes import write_band_clip  # noqa: E402

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.assets import sample_images  # noqa: E402
from zsseg_rt.outputs.labels import read_labels  # noqa: E402

CLASSES = "cat,dog,sky"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode under NumPy 2


def _instances_equal_the_reference(coco, image, labels, names, min_area, unknown_id=None):
    """The image's ``iscrowd`` 0 annotations equal the reference objects of its label map, in order; its other
    annotations are one per class present (``iscrowd`` 1). Returns the instances."""
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
    crowd = [a for a in annotations if a["iscrowd"] == 1]
    instances = [a for a in annotations if a["iscrowd"] == 0]
    assert len(crowd) == len(np.unique(labels)), "one per-class annotation per label present"
    want, dropped = reference(labels, names, None, unknown_id, min_pixels(min_area, labels.size))
    assert dropped == 0
    assert [a["category_id"] for a in instances] == [w["class_id"] for w in want]
    for annotation, expected in zip(instances, want):
        assert annotation["bbox"] == list(expected["box"]) and annotation["area"] == expected["area"]
        assert np.array_equal(coco.annToMask(annotation).astype(bool), expected["mask"])
        assert isinstance(annotation["score"], float) and np.isfinite(annotation["score"])
    return instances


def test_segment_objects_in_json_and_as_coco_instances(tmp_path, tiny_bundle, capsys):
    """Two photos, --objects --save-json --json --save-labels, --object-min-area 0.002 and the unknown threshold on:
    each image's instance annotations (after its per-class ones, every id unique) and its --json objects equal the
    reference on the label PNG the run wrote; the categories and images are there for CVAT."""
    out, masks = tmp_path / "out", tmp_path / "masks.json"
    photos = [str(path) for path in sample_images()[:2]]
    argv = [*photos, "--bundle", tiny_bundle, "--classes", CLASSES, "--save-labels", "-o", str(out), "--json"]
    argv += ["--save-json", str(masks), "--objects", "--object-min-area", "0.002", "--unknown-below", "0.5"]
    assert cli.main(["segment", *argv, "--backend", "onnxruntime"]) == 0
    printed = json.loads(capsys.readouterr().out)
    document = json.loads(masks.read_text())
    ids = [a["id"] for a in document["annotations"]]
    assert len(ids) == len(set(ids)) and {"images", "categories", "annotations"} <= set(document)
    coco = coco_api.COCO(str(masks))
    names = CLASSES.split(",")
    total = 0
    for photo, summary in zip(photos, printed):
        stem = os.path.splitext(os.path.basename(photo))[0]
        labels = cv2.imread(str(out / f"{stem}_labels.png"), cv2.IMREAD_UNCHANGED).astype(np.int32)
        (image,) = [i for i in coco.loadImgs(coco.getImgIds()) if i["file_name"] == photo]
        instances = _instances_equal_the_reference(coco, image, labels, names, 0.002, unknown_id=255)
        total += len(instances)
        shown = summary["objects"]
        assert shown["dropped"] == 0
        assert [(o["class_id"], o["box"], o["area"]) for o in shown["objects"]] == [
            (a["category_id"], a["bbox"], a["area"]) for a in instances
        ]
        assert [o["rle"]["counts"] for o in shown["objects"]] == [a["segmentation"]["counts"] for a in instances]
    assert total > 2, "control: the photos give objects"


def test_segment_without_objects_writes_no_instances(tmp_path, tiny_bundle, capsys):
    masks = tmp_path / "masks.json"
    photo = str(sample_images()[0])
    argv = [photo, "--bundle", tiny_bundle, "--classes", CLASSES, "-o", str(tmp_path / "out"), "--json"]
    assert cli.main(["segment", *argv, "--save-json", str(masks), "--backend", "onnxruntime"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert "objects" not in summary
    assert {a["iscrowd"] for a in json.loads(masks.read_text())["annotations"]} == {1}


def test_camera_objects_as_coco_instances_of_every_frame(tmp_path, tiny_bundle, capsys):
    """Two clips, --objects --save-json --labels-out: every frame's instance annotations equal the reference on the
    frame's label PNG; without --objects (the control) none."""
    clips = [write_band_clip(tmp_path / f"clip{i}.avi", frames=5 - 2 * i) for i in range(2)]
    labels_out = tmp_path / "labels" / "{source}"
    engine = ["--classes", "a,b", "--no-progress", "--backend", "onnxruntime", "--object-min-area", "0"]
    for objects in (True, False):
        masks = tmp_path / f"masks_{objects}.json"
        argv = [*clips, "--bundle", tiny_bundle, *engine, "--labels-out", str(labels_out), "--save-json", str(masks)]
        code = cli.main(["camera", *argv, "--overwrite", *(["--objects"] if objects else [])])
        assert code == 0, capsys.readouterr().err
        coco = coco_api.COCO(str(masks))
        found = 0
        for image in coco.loadImgs(coco.getImgIds()):
            labels = read_labels(str(tmp_path / "labels" / image["source"]), int(image["frame"])).astype(np.int32)
            if objects:
                found += len(_instances_equal_the_reference(coco, image, labels, ["a", "b"], 0.0))
            else:
                assert {a["iscrowd"] for a in coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))} == {1}
        assert found >= 8 or not objects  # the band clips (8 frames): at least one region a frame


def test_a_session_with_objects_hands_each_result_its_objects(tmp_path, tiny_bundle):
    """``Session(objects=True)``: each item's objects are its result's (``result.frame_objects``), equal to the
    reference on its labels with the Engine's limits; without, None."""
    from zsseg_rt.runtime import Engine
    from zsseg_rt.stream import Session

    clip = write_band_clip(tmp_path / "clip.avi", frames=3)
    with Engine(tiny_bundle, classes="a,b", backend="onnxruntime", object_min_area=0.01, max_objects=3) as engine:
        seen = []
        for objects in (True, False):
            out = str(tmp_path / f"labels_{objects}")
            for item in Session([str(clip)], engine, labels_out=out, objects=objects):
                if not objects:
                    assert item.objects is None and item.result.frame_objects is None
                    continue
                labels = np.asarray(item.result.labels)
                want, dropped = reference(
                    labels, ["a", "b"], item.result.scores, None, min_pixels(0.01, labels.size), 3
                )
                assert item.objects is item.result.frame_objects and item.objects.dropped == dropped
                assert [(o.class_id, o.box, o.area) for o in item.objects] == [
                    (w["class_id"], w["box"], w["area"]) for w in want
                ]
                assert [o.score for o in item.objects] == pytest.approx([w["score"] for w in want], rel=1e-5)
                for found, expected in zip(item.objects, want):
                    decoded = coco_mask.decode({"size": found.rle["size"], "counts": found.rle["counts"].encode()})
                    assert np.array_equal(decoded.astype(bool), expected["mask"])
                seen.append(len(item.objects))
        assert len(seen) == 3 and sum(seen) > 0
