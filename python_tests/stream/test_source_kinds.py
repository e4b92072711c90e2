"""The frame sources as one table (issue 80, item 1): ``zsseg_rt.stream.sources.SOURCE_KINDS``. Every user string
goes to the kind of the first row that recognises it; a new kind is one module and one row: the toy kind below
(``toy://N``, N synthetic frames) is a module written by the test and a row put into the table, and then ``zsseg
camera`` and a ``Session`` read it like any other source."""

from __future__ import annotations

import os
import sys
import textwrap

import numpy as np
import pytest

from zsseg_rt.stream import sources
from zsseg_rt.stream.sources import SourceError, SourceSpec, parse_source, source_label

pytest.importorskip("cv2")


@pytest.mark.parametrize(
    "text, kind, target, live",
    [
        ("0", "v4l2", "0", True),
        ("/dev/video3", "v4l2", "/dev/video3", True),
        ("v4l2:///dev/video1", "v4l2", "/dev/video1", True),
        ("csi://", "csi", "0", True),
        ("CSI://2", "csi", "2", True),
        ("rtsp://cam/live", "network", "rtsp://cam/live", True),
        ("HTTPS://host:8080/x", "network", "HTTPS://host:8080/x", True),
        ("videotestsrc ! videoconvert ! appsink", "gstreamer", "videotestsrc ! videoconvert ! appsink", True),
    ],
)
def test_each_string_goes_to_its_row(text, kind, target, live):
    assert parse_source(text) == SourceSpec(kind, target, live)


def test_files_and_folders_with_and_without_the_file_scheme(tmp_path):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"x")
    assert parse_source(str(clip)) == SourceSpec("file", str(clip), False)
    assert parse_source(f"file://{clip}") == SourceSpec("file", str(clip), False)
    assert parse_source(f"FILE://{tmp_path}") == SourceSpec("folder", str(tmp_path), False)
    assert source_label(parse_source(str(clip))) == "clip"
    assert source_label(parse_source(str(tmp_path) + os.sep)) == os.path.basename(str(tmp_path))
    assert source_label(parse_source("rtsp://cam1.local/live/main")) == "cam1.local_live_main"
    assert source_label(parse_source("/dev/video2")) == "video2" and source_label(parse_source("csi://1")) == "csi1"


def test_what_no_row_recognises_is_refused_in_one_line(tmp_path):
    with pytest.raises(SourceError, match="neither a camera"):
        parse_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="the source is empty"):
        parse_source("  ")
    with pytest.raises(SourceError, match="sensor id"):
        parse_source("csi://front")


def test_the_table_names_its_kinds_once_each_and_every_row_can_open():
    names = [row.name for row in sources.SOURCE_KINDS]
    assert names == ["v4l2", "csi", "network", "gstreamer", "folder", "images", "file"]
    for row in sources.SOURCE_KINDS:
        assert row.build is not None or row.capture is not None, row.name
        assert sources.source_kind(row.name) is row
    with pytest.raises(SourceError, match=r"^unknown source kind 'toy': expected one of v4l2, csi, network, gstreamer"):
        sources.source_kind("toy")
    with pytest.raises(SourceError, match=r"^unknown source kind 'fodler': did you mean 'folder'\?$"):
        sources.source_kind("fodler")
    assert sources.SOURCE_KINDS.names() == names


TOY_MODULE = '''
"""A toy source kind: toy://N gives N frames of one grey level (a test's)."""
import numpy as np

from zsseg_rt.stream.sources.base import SourceKind, SourceSpec
from zsseg_rt.stream.sources.callable import CallableSource


def _parse(text):
    return SourceSpec("toy", text[len("toy://"):], False) if text.startswith("toy://") else None


def _build(spec, options):
    count = int(spec.target)
    return CallableSource(lambda: (np.full((48, 64, 3), 40 * i, np.uint8) for i in range(count)), live=False,
                          name=f"toy:{count}")


ROW = SourceKind(name="toy", example="toy://3", parse=_parse, label=lambda spec: f"toy{spec.target}", build=_build)
'''


@pytest.fixture()
def toy_kind(tmp_path, monkeypatch):
    """File 1: the kind's module; file 2: its row in the table (here put in by the test)."""
    (tmp_path / "toy_source_kind.py").write_text(textwrap.dedent(TOY_MODULE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SourceError, match="neither a camera"):  # the control: no row, no kind
        parse_source("toy://3")
    import toy_source_kind

    with sources.SOURCE_KINDS.adding(toy_source_kind.ROW):  # the table's own idiom: the row for the test, then gone
        yield toy_source_kind
    sys.modules.pop("toy_source_kind", None)
    assert "toy" not in sources.SOURCE_KINDS.names()


def test_a_new_kind_is_a_module_and_a_row(toy_kind, tmp_path, tiny_bundle, capsys):
    from zsseg_rt import cli
    from zsseg_rt.outputs.labels import read_labels
    from zsseg_rt.stream import Session

    assert parse_source("toy://3") == SourceSpec("toy", "3", False)
    assert source_label(parse_source("toy://3")) == "toy3"
    seen = []
    with Session(["toy://3"], tiny_bundle, "a,b", labels_out=str(tmp_path / "labels")) as session:
        for item in session:
            seen.append(item.result.labels.copy())
    assert len(seen) == 3 and session.exit_code == 0
    for index, labels in enumerate(seen):
        assert np.array_equal(read_labels(str(tmp_path / "labels"), index), labels)
    code = cli.main(
        ["camera", "toy://2", "--bundle", tiny_bundle, "--classes", "a,b", "--no-progress"]
        + ["--labels-out", str(tmp_path / "cli_labels")]
    )
    assert code == 0, capsys.readouterr().err
    written = sorted(name for name in os.listdir(tmp_path / "cli_labels") if not name.startswith("."))
    assert written == ["000000.png", "000001.png", "classes.json"]
