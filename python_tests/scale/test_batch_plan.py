"""Batch planning and outputs without Ray: input listing, output names, resume bookkeeping, 8/16-bit label PNGs."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from zsseg_rt.scale.batch import (
    MANIFEST,
    check_pool_fits,
    label_png_bytes,
    labels_name,
    output_key,
    plan_batch,
    pool_size,
    prepare_batch,
)


def test_label_png_is_16_bit_above_256_classes():
    labels = np.array([[0, 255], [256, 299]], np.int32)
    wide = cv2.imdecode(np.frombuffer(label_png_bytes(labels, 300), np.uint8), cv2.IMREAD_UNCHANGED)
    assert wide.dtype == np.uint16 and wide.tolist() == labels.tolist()
    narrow = cv2.imdecode(np.frombuffer(label_png_bytes(labels[:1], 256), np.uint8), cv2.IMREAD_UNCHANGED)
    assert narrow.dtype == np.uint8 and narrow.tolist() == [[0, 255]]


def test_plan_lists_folders_and_skips_done_images(tmp_path):
    for rel in ("a/x.jpg", "a/y.png", "b/x.jpg", "notes.txt"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / rel).write_bytes(b"x")
    out = tmp_path / "out"
    plan = plan_batch(str(tmp_path / "in"), str(out))
    assert plan.total == 3 and [output_key(p, plan.root) for p in plan.sources] == ["a/x.jpg", "a/y.png", "b/x.jpg"]
    (out / "a").mkdir(parents=True)
    (out / "a" / "x.jpg.png").write_bytes(b"png")  # done: PNG + ok row
    (out / "b").mkdir()
    (out / "b" / "x.jpg.png").write_bytes(b"png")  # PNG without a manifest row (killed before the row): redone
    rows = [
        {"image": str(tmp_path / "in" / "a" / "x.jpg"), "key": "a/x.jpg", "labels": "a/x.jpg.png", "status": "ok"},
        {"image": str(tmp_path / "in" / "a" / "y.png"), "key": "a/y.png", "labels": "a/y.png.png", "status": "error"},
    ]
    (out / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"key": "trunc')  # torn last line
    plan = plan_batch(str(tmp_path / "in"), str(out))
    assert [output_key(p, plan.root) for p in plan.sources] == ["a/y.png", "b/x.jpg"] and plan.done_keys == {"a/x.jpg"}
    assert len(plan_batch(str(tmp_path / "in"), str(out), resume=False).sources) == 3
    glob_plan = plan_batch(str(tmp_path / "in" / "**" / "*.jpg"), str(out))
    assert [output_key(p, glob_plan.root) for p in glob_plan.sources] == ["b/x.jpg"] and glob_plan.total == 2


def test_images_differing_only_in_extension_get_their_own_outputs(tmp_path):
    """`twin.jpg` and `twin.png` in one folder: two output names, two label maps (both went to `twin.png` under the
    key "twin": one result was lost and the manifest said ok twice)."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("twin.jpg", "twin.png", "sub/twin.jpeg", "twin"):
        (folder / name).write_bytes(b"x")
    plan = plan_batch(str(folder), str(tmp_path / "out"))
    keys = [output_key(p, plan.root) for p in plan.sources]
    assert keys == ["sub/twin.jpeg", "twin.jpg", "twin.png"]  # ("twin" has no image extension: not listed)
    assert [labels_name(k) for k in keys] == ["sub/twin.jpeg.png", "twin.jpg.png", "twin.png.png"]


def test_an_output_folder_of_the_old_naming_resumes(tmp_path):
    """OUTPUT written when label maps dropped the extension (`a/x.png` for `a/x.jpg`, key "a/x"): its ok rows still
    count (their label maps stay where the rows say); the two images that shared one label map (`twin.jpg` and
    `twin.png` -> `twin.png`) are both redone, and so is an old row whose label map is an image's new name
    (`y.jpg.png` for the image `y.jpg.png`, now the name of `y.jpg`'s label map)."""
    folder = tmp_path / "in"
    (folder / "a").mkdir(parents=True)
    names = ("a/x.jpg", "twin.jpg", "twin.png", "y.jpg", "y.jpg.png")
    for name in names:
        (folder / name).write_bytes(b"x")
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    old = {"a/x.jpg": "a/x", "twin.jpg": "twin", "twin.png": "twin", "y.jpg.png": "y.jpg"}
    rows = [
        {"image": str(folder / name), "key": key, "labels": key + ".png", "status": "ok"} for name, key in old.items()
    ]
    (out / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in rows))
    for key in set(old.values()):
        (out / (key + ".png")).write_bytes(b"png")
    plan = plan_batch(str(folder), str(out))
    assert plan.done_keys == {"a/x.jpg"}
    assert sorted(output_key(p, plan.root) for p in plan.sources) == ["twin.jpg", "twin.png", "y.jpg", "y.jpg.png"]
    assert plan.total == len(names)


def test_plan_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plan_batch(str(tmp_path / "missing"), str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        plan_batch(str(tmp_path / "empty"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="workers"):
        pool_size(0)
    with pytest.raises(ValueError, match="min <= max"):
        pool_size((3, 2))
    assert pool_size((1, 4)) == {"min_size": 1, "max_size": 4}


def test_empty_and_oversized_files_are_refused_unread(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "ok.png").write_bytes(b"x" * 100)
    with open(folder / "long.tif", "wb") as handle:
        handle.truncate(3 * 1000 + (1 << 20) + 1)  # one byte more than an image of 1000 pixels may take
    plan = plan_batch(str(folder), str(tmp_path / "out"), max_pixels=1000)
    assert [os.path.basename(p) for p in plan.sources] == ["ok.png"] and plan.total == 3
    reasons = {os.path.basename(path): why for path, why in plan.rejected}
    assert "is empty (0 bytes)" in reasons["empty.png"]
    assert "has 1051577 bytes, more than an image of the pixel limit can take (1051576)" in reasons["long.tif"]
    assert len(plan_batch(str(folder), str(tmp_path / "out"), max_pixels=0).sources) == 2  # 0: no limit


def test_arguments_are_checked_before_ray(tmp_path, tiny_bundle):
    """prepare_batch needs no Ray: a missing bundle, too many classes, a bad pool or output are refused at once."""
    from zsseg_rt.bundle import BundleError

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"x")
    with pytest.raises(BundleError, match="bundle directory not found"):
        prepare_batch(str(folder), str(tmp_path / "out"), str(tmp_path / "nowhere"), "cat")
    with pytest.raises(ValueError, match="at most 32"):
        prepare_batch(str(folder), str(tmp_path / "out"), tiny_bundle, [f"class {i}" for i in range(40)])
    with pytest.raises(ValueError, match="batch_size"):
        prepare_batch(str(folder), str(tmp_path / "out"), tiny_bundle, "cat", batch_size=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        prepare_batch(str(folder), str(tmp_path / "file"), tiny_bundle, "cat")
    with pytest.raises(BundleError, match="not the pinned one"):
        prepare_batch(str(folder), str(tmp_path / "out"), tiny_bundle, "cat", expected_digest="sha256:" + "0" * 64)
    job = prepare_batch(str(folder), str(tmp_path / "out"), tiny_bundle, "cat", workers=2, cpus_per_worker=1.5)
    check_pool_fits(job, cpus=3)
    with pytest.raises(ValueError, match="needs 2 workers x 1.5 CPUs = 3 CPUs but the cluster has 2"):
        check_pool_fits(job, cpus=2)


def test_a_named_vocabulary_is_its_official_classes(tmp_path, tiny_bundle):
    """`--classes voc21` is the named vocabulary (as in `zsseg segment` and `zsseg serve`): the workers load it by
    name and vocabulary.json records its 21 labels, background first; it was taken as one class called "voc21"."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"x")
    job = prepare_batch(str(folder), str(tmp_path / "out"), tiny_bundle, "voc21")
    assert job.vocabulary == "voc21" and len(job.names) == 21 and job.names[0] == "background", job.names
    assert json.loads((tmp_path / "out" / "vocabulary.json").read_text())["class_names"] == job.names
    plain = prepare_batch(str(folder), str(tmp_path / "out2"), tiny_bundle, "cat; kitty, dog")
    assert plain.vocabulary is None and plain.names == ["cat; kitty", "dog"]


def _first_run(tmp_path, bundle, classes="cat,sofa,floor", **options):
    """An input folder and an OUTPUT as a finished first run leaves it: vocabulary.json, one label map and its ok row
    (what run_batch writes); returns (input folder, OUTPUT, vocabulary.json's text)."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), 90, np.uint8))
    prepare_batch(str(folder), str(out), bundle, classes, **options)
    (out / "a.png.png").write_bytes(label_png_bytes(np.full((8, 8), 255, np.int32), 4))
    row = {"image": str(folder / "a.png"), "key": "a.png", "labels": "a.png.png", "status": "ok"}
    (out / MANIFEST).write_text(json.dumps(row) + "\n")
    return str(folder), str(out), (out / "vocabulary.json").read_text()


def test_a_resume_that_would_mix_label_meanings_is_refused(tmp_path, tiny_bundle, random_bundle):
    """Issue 79, F2: a resume with another --unknown-below (or none: the probe's case) kept the first run's maps
    (255 = unknown), segmented the rest with the new setting and rewrote vocabulary.json without unknown_id; only
    another --classes was refused. Now every change of what a label value means is refused in one line (what OUTPUT
    was made with, what this run has, what to do), and vocabulary.json is left as it was."""
    from zsseg_rt.bundle import load_meta

    folder, out, recorded = _first_run(tmp_path, tiny_bundle, unknown_below=0.5)
    digest = load_meta(tiny_bundle).digest
    made = f"'{out}' holds label maps made with "
    for bundle, classes, options, expected in (
        (tiny_bundle, "cat,sofa,floor", {}, made + "--unknown-below 0.5 (label 255 = unknown), but this run has no "),
        (tiny_bundle, "cat,sofa,floor", {"unknown_below": 0.6}, "but this run has --unknown-below 0.6 (label 255 "),
        (tiny_bundle, "cat,sofa", {"unknown_below": 0.5}, made + "the classes ['cat', 'sofa', 'floor'], but this "),
        (random_bundle, "cat,sofa,floor", {"unknown_below": 0.5}, f"{made}the bundle {digest}, but this run has the "),
    ):
        with pytest.raises(ValueError) as refused:
            prepare_batch(folder, out, bundle, classes, **options)
        message = str(refused.value)
        assert expected in message and "\n" not in message, message
        assert "label values would mean different things in one folder" in message, message
        assert message.endswith(
            "Use another output folder (or empty this one), or the settings it was made with to resume"
        ), message
        assert (tmp_path / "out" / "vocabulary.json").read_text() == recorded
        with pytest.raises(ValueError, match="label values would mean different things"):  # nor redone in part
            prepare_batch(folder, out, bundle, classes, resume=False, **options)
    assert json.loads(recorded) == {
        "class_names": ["cat", "sofa", "floor"],
        "unknown_id": 255,
        "unknown_below": 0.5,
        "bundle_digest": digest,
    }
    job = prepare_batch(folder, out, tiny_bundle, "cat,sofa,floor", unknown_below=0.5)  # the same: resumed
    assert job.plan.done_keys == {"a.png"} and (tmp_path / "out" / "vocabulary.json").read_text() == recorded


def test_a_folder_without_label_maps_takes_new_settings(tmp_path, tiny_bundle):
    """Nothing to mix (the first run wrote no label map: it stopped before its first image) or an older
    vocabulary.json without a threshold or bundle (not compared: not written down): not refused."""
    folder, out, _ = _first_run(tmp_path, tiny_bundle, unknown_below=0.5)
    os.unlink(os.path.join(out, "a.png.png"))
    prepare_batch(folder, out, tiny_bundle, "cat,sofa,floor")
    assert json.loads((tmp_path / "out" / "vocabulary.json").read_text())["class_names"] == ["cat", "sofa", "floor"]
    assert "unknown_id" not in json.loads((tmp_path / "out" / "vocabulary.json").read_text())
    older = json.dumps({"class_names": ["cat", "sofa", "floor"], "unknown_id": 255})
    (tmp_path / "out" / "vocabulary.json").write_text(older)
    (tmp_path / "out" / "a.png.png").write_bytes(b"a label map")
    prepare_batch(folder, out, tiny_bundle, "cat,sofa,floor", unknown_below=0.7)
    assert (tmp_path / "out" / "vocabulary.json").read_text() == older  # resumed, the file untouched


def test_the_threshold_refusal_says_both_values_exactly(tmp_path, tiny_bundle):
    """Issue 87, L7 (G76): a resume with ``--unknown-below 0.50000001`` over a folder made with 0.5 was refused as
    "made with --unknown-below 0.5 ..., but this run has --unknown-below 0.5" (both rounded by ``:g``): each value
    is said as given."""
    folder, out, recorded = _first_run(tmp_path, tiny_bundle, unknown_below=0.5)
    with pytest.raises(ValueError) as refused:
        prepare_batch(folder, out, tiny_bundle, "cat,sofa,floor", unknown_below=0.50000001)
    assert (
        f"'{out}' holds label maps made with --unknown-below 0.5 (label 255 = unknown), but this run has "
        "--unknown-below 0.50000001 (label 255 = unknown): label values would mean"
    ) in str(refused.value)
    assert (tmp_path / "out" / "vocabulary.json").read_text() == recorded


def test_an_image_a_list_names_twice_is_read_once(tmp_path):
    """Issue 87, L8 (G78): a list naming ``a/cat.jpg``, ``b/cat.jpg`` and ``./a/cat.jpg`` was segmented three times
    ("3 segmented", 3 rows for 2 images): the plan reads each output name once, its first path, and names the
    repeated ones (``repeated``: the command's note)."""
    for rel in ("a/cat.jpg", "b/cat.jpg"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("a/cat.jpg\nb/cat.jpg\n./a/cat.jpg\n")
    plan = plan_batch(str(listing), str(tmp_path / "out"))
    assert [output_key(p, plan.root) for p in plan.sources] == ["a/cat.jpg", "b/cat.jpg"]
    assert plan.sources[0] == str(tmp_path / "a" / "cat.jpg") and plan.total == 2 and plan.repeated == ["a/cat.jpg"]
    listing.write_text("a/cat.jpg\nb/cat.jpg\n")
    assert plan_batch(str(listing), str(tmp_path / "out")).repeated == []  # control


def test_the_manifest_keeps_one_row_per_image(tmp_path):
    """Issue 87, L8 (G80): ``--no-resume`` appended a second row for every image. Before a run appends, the rows of
    the images it writes again are dropped (the file written whole), and a torn last line with them; the others
    stay as they were, and a manifest with nothing to drop is not written."""
    from zsseg_rt.scale.batch_manifest import keep_one_row_per_key, read_manifest

    rows = [{"image": f"/in/{k}", "key": k, "labels": f"{k}.png", "status": "ok"} for k in ("a.jpg", "b.jpg", "c.jpg")]
    path = tmp_path / MANIFEST
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = os.stat(path).st_mtime_ns, path.read_text()
    assert keep_one_row_per_key(str(tmp_path), ["d.jpg"]) == 0
    assert (os.stat(path).st_mtime_ns, path.read_text()) == before
    assert keep_one_row_per_key(str(tmp_path), ["a.jpg", "c.jpg"]) == 2
    assert read_manifest(str(tmp_path)) == [rows[1]]
    path.write_text(path.read_text() + '{"key": "tr')  # a run killed while appending
    assert keep_one_row_per_key(str(tmp_path), []) == 0
    assert path.read_text() == json.dumps(rows[1]) + "\n"  # the next row starts a line of its own
