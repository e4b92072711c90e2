"""``zsseg batch --objects`` on the local Ray cluster: each image's objects beside its label map
(``OUTPUT/KEY.objects.json``, named in its manifest row) equal what ``zsseg segment --objects --json`` gives the same
image; the decision is ``objects_needed``'s, as for every command. Resume: a folder done without ``--objects`` is
redone for them, one done with them is skipped."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from support import VOCAB10 as VOCAB

from zsseg_rt import cli
from zsseg_rt.scale.batch import read_manifest

pytestmark = pytest.mark.slow  # a Ray cluster (python_tests/scale/conftest.py)


def test_batch_objects_equal_segments_and_resume(ray_cluster, tiny_bundle, image_folder, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    chosen = sorted(os.path.join(d, f) for d, _, files in os.walk(image_folder) for f in files)[:3]
    for path in chosen:
        shutil.copy(path, photos / os.path.basename(path))
    keys = sorted(os.path.basename(path) for path in chosen)
    labels = tmp_path / "labels"
    argv = ["batch", str(photos), str(labels), "--bundle", tiny_bundle, "--classes", ",".join(VOCAB)]
    argv += ["--workers", "1", "--cpus-per-worker", "0.5", "--backend", "onnxruntime", "--no-progress"]
    argv += ["--object-min-area", "0.002"]

    assert cli.main(argv) == 0  # without --objects: none written
    assert "3 segmented, 0 already done" in capsys.readouterr().out
    assert not list(labels.glob("*.objects.json")) and all("objects" not in row for row in read_manifest(labels))

    assert cli.main([*argv, "--objects"]) == 0  # resumed with --objects: the images done without them are redone
    assert "3 segmented, 0 already done" in capsys.readouterr().out
    rows = {row["key"]: row for row in read_manifest(labels)}
    assert sorted(rows) == keys and all(rows[key]["objects"] == f"{key}.objects.json" for key in keys)

    assert cli.main([*argv, "--objects"]) == 0  # resumed again: done with their objects, skipped
    assert "0 segmented, 3 already done" in capsys.readouterr().out

    views = tmp_path / "views"
    given = [str(photos / key) for key in keys]
    segment = [*given, "--bundle", tiny_bundle, "--classes", ",".join(VOCAB), "-o", str(views), "--json"]
    segment += ["--objects", "--object-min-area", "0.002", "--backend", "onnxruntime"]
    assert cli.main(["segment", *segment]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [summary["image"] for summary in printed] == given
    found = 0
    for key, summary in zip(keys, printed):
        written = json.loads((labels / f"{key}.objects.json").read_text())
        assert written == summary["objects"], key
        found += len(written["objects"])
    assert found > 0, "control: the images give objects"
