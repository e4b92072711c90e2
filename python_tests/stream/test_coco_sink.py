"""``zsseg camera --save-json FILE`` on files (issue 75 item 5; ``zsseg_rt/outputs/coco_sink.py``): every frame of every
source as COCO masks that pycocotools reads back equal to the ``--labels-out`` maps of the same run, put in place with
the other outputs when the run has ended well (refused without ``--overwrite``; a live source refused in one line);
and the camera's speed summary (item 4): ``--stats-json``'s "speed" and the closing "Speed: ..." line."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
coco_api = pytest.importorskip("pycocotools.coco")
from stream_fakes import write_band_clip  # noqa: E402

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.outputs.labels import read_labels  # noqa: E402

ENGINE = ["--classes", "a,b", "--no-progress", "--backend", "onnxruntime"]


def _camera(capsys, *argv):
    code = cli.main(["camera", *[str(a) for a in argv]])
    return code, capsys.readouterr().err


def test_the_coco_file_holds_every_frame_of_every_source_as_its_label_map(tmp_path, tiny_bundle, capsys, caplog):
    """Two clips (8 and 5 frames), `--labels-out out/{source}` and `--save-json masks.json`: the COCO file has one
    image per frame, named SOURCE/frame_NNNNNN.png, each decoded by pycocotools equal to that frame's 16-bit label PNG; the
    stats hold the speed per frame (backend, precision, every stage, within the total) and the run ends with the
    Speed line."""
    clips = [write_band_clip(tmp_path / f"clip{i}.avi", frames=8 - 3 * i) for i in range(2)]
    masks, stats = tmp_path / "masks.json", tmp_path / "stats.json"
    labels = tmp_path / "labels" / "{source}"
    argv = [*clips, "--bundle", tiny_bundle, *ENGINE, "--labels-out", labels, "--save-json", masks]
    with caplog.at_level(logging.INFO, logger="zsseg_rt.stream"):
        code, err = _camera(capsys, *argv, "--stats-json", stats)
    assert code == 0, err
    coco = coco_api.COCO(str(masks))
    images = coco.loadImgs(coco.getImgIds())
    assert len(images) == 13 and {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"a", "b"}
    for image in images:
        source, name = image["file_name"].split("/")
        frame = name[len("frame_") : -len(".png")]  # CVAT's name of a video's frame (F18): frame_000042.png
        assert (image["source"], image["frame"], name) == (source, int(frame), f"frame_{int(frame):06d}.png")
        painted = np.full((image["height"], image["width"]), -1, np.int64)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            painted[coco.annToMask(annotation).astype(bool)] = annotation["category_id"]
        expected = read_labels(str(tmp_path / "labels" / source), int(frame))
        np.testing.assert_array_equal(painted, expected)
    speed = json.loads(stats.read_text())["speed"]
    assert speed["images"] == 13 and (speed["backend"], speed["precision"]) == ("onnxruntime", "fp32")
    per_frame = speed["ms_per_image"]
    assert {"preprocess", "image_encoder", "postprocess", "total"} <= set(per_frame)
    assert 0 < sum(v for k, v in per_frame.items() if k != "total") <= per_frame["total"] + 0.01  # within the call
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Speed: ")]
    assert len(lines) == 1 and lines[0].endswith("per frame (onnxruntime fp32, 64x48)"), lines
    (described,) = [o for o in json.loads(stats.read_text())["outputs"] if o.get("kind") == "coco"]
    assert described["frames"] == 13


def test_the_coco_file_follows_the_output_plan_and_refuses_a_live_source(tmp_path, tiny_bundle, capsys, monkeypatch):
    """An existing file: refused before the model loads without --overwrite (kept as it was), replaced with it; a
    run that fails (a sink's error) leaves it as it was and no temporary file; a live source: one line."""
    clip = write_band_clip(tmp_path / "clip.avi", frames=3)
    masks = tmp_path / "masks.json"
    masks.write_text("old\n")
    code, err = _camera(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "--save-json", masks)
    assert code != 0 and "exists already: pass --overwrite" in err and masks.read_text() == "old\n"

    from zsseg_rt.outputs import coco_sink

    def broken(self, frame, result):
        raise OSError("the sink broke")

    with monkeypatch.context() as patched:
        patched.setattr(coco_sink.CocoSink, "write_result", broken)
        code, err = _camera(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "--save-json", masks, "--overwrite")
    assert code != 0 and masks.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "masks.json"]

    code, err = _camera(capsys, clip, "--bundle", tiny_bundle, *ENGINE, "--save-json", masks, "--overwrite")
    assert code == 0, err
    assert len(json.loads(masks.read_text())["images"]) == 3

    from zsseg_rt.stream.loop import session

    monkeypatch.setattr(session, "open_inputs", lambda sources, options, max_pixels: [_live()])
    code, err = _camera(capsys, "0", "--bundle", tiny_bundle, *ENGINE, "--save-json", tmp_path / "live.json")
    assert code != 0 and "--save-json" in err and "is a live source" in err and not (tmp_path / "live.json").exists()


def _live():
    from zsseg_rt.stream.loop.session import SessionInput

    class Live:
        live, name, fps, frame_count = True, "camera:0", 30.0, None

        def close(self):
            pass

    return SessionInput("cam", Live(), True)
