"""One record of what a label value means (issue 88, item 3): zsseg_rt.outputs.meaning reads the three files earlier
versions wrote (zsseg segment's classes.json, --labels-out's classes.json, zsseg batch's vocabulary.json) as one
record, lists the differences with a run's, and says the one refusal."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from zsseg_rt.outputs.labels import LabelFolderSink
from zsseg_rt.outputs.meaning import (
    LabelMeaning,
    MeaningRefused,
    SegmentRecord,
    check_earlier,
    mixed_meanings,
    read_record,
)

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def _written(tmp_path, name, document):
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def test_the_three_formats_of_earlier_versions_read_as_one_record(tmp_path):
    run = LabelMeaning.of(["cat", "sofa"], 0.5, DIGEST)
    segment = _written(tmp_path, "classes.json", {"0": "cat", "1": "sofa", "255": "unknown"})
    labels_out = _written(
        tmp_path,
        "labels.json",
        {
            "classes": ["cat", "sofa"],
            "class_map": {"0": "cat", "1": "sofa", "255": "unknown"},
            "vocabularies": [{"first_frame": 0, "classes": ["cat", "sofa"], "unknown": 255, "unknown_below": 0.5}],
        },
    )
    batch = _written(
        tmp_path,
        "vocabulary.json",
        {"class_names": ["cat", "sofa"], "unknown_id": 255, "unknown_below": 0.5, "bundle_digest": DIGEST},
    )
    for path in (segment, labels_out, batch):
        record = read_record(path)
        assert record is not None and record.classes == ("cat", "sofa") and record.unknown_id == 255, path
        assert record.changes(run) == [], path  # what each recorded agrees with the run
    assert read_record(segment).unrecorded == {"unknown_below", "bundle_digest"}  # not written down: not compared
    assert read_record(labels_out).unrecorded == {"bundle_digest"}
    assert read_record(batch).bundle_digest == DIGEST and not read_record(batch).unrecorded
    assert read_record(str(tmp_path / "none.json")) is None


def test_each_difference_is_listed_with_both_values():
    made = LabelMeaning.of(["cat", "sofa"], 0.5, DIGEST)
    assert made.changes(LabelMeaning.of(["cat", "sofa"], 0.5, OTHER)) == [("bundle", DIGEST, OTHER)]
    assert made.changes(LabelMeaning.of(["sofa", "cat"], None, DIGEST)) == [
        ("class_names", ["cat", "sofa"], ["sofa", "cat"]),
        ("unknown", (255, 0.5), (None, None)),
    ]
    assert made.changes(LabelMeaning.of(["cat", "sofa"], 0.50000001, DIGEST)) == [
        ("unknown", (255, 0.5), (255, 0.50000001))
    ]
    assert made.changes(LabelMeaning.of(["cat", "sofa"], 0.5)) == []  # a run that does not know its bundle


def test_an_unreadable_record_differs_and_says_so(tmp_path):
    broken = _written(tmp_path, "classes.json", {"0": "cat", "2": "sofa"})
    record = read_record(broken)
    assert record.classes is None
    changes = record.changes(LabelMeaning.of(["cat"]))
    message = mixed_meanings("-o 'V'", changes, "classes.json", "Do X.", ["a_labels.png"])
    assert message == (
        "-o 'V' holds label maps made with classes its classes.json does not say (unreadable), but this run has the "
        "classes ['cat']: label values would mean different things in one folder (its classes.json describes the "
        "earlier ones: 'a_labels.png'). Do X."
    )


def test_the_refusal_only_when_maps_of_the_earlier_meaning_would_stay():
    made, run = LabelMeaning.of(["a"], None, DIGEST), LabelMeaning.of(["a"], None, OTHER)
    assert check_earlier(None, run, list, where="'out'", record="vocabulary.json", advice="x") is None
    assert check_earlier(made, run, list, where="'out'", record="vocabulary.json", advice="x") == [
        ("bundle", DIGEST, OTHER)
    ]
    with pytest.raises(MeaningRefused, match=f"made with the bundle {DIGEST}, but this run has the bundle {OTHER}"):
        check_earlier(made, run, lambda: ["a.png.png"], where="'out'", record="vocabulary.json", advice="x")


def test_segment_writes_the_documented_class_map_and_the_whole_record_beside_it(tmp_path):
    path = str(tmp_path / "classes.json")
    record = SegmentRecord(path, LabelMeaning.of(["cat", "sofa"], 0.25, DIGEST))
    record.check(False, list, "-o 'V'")
    record.write()
    assert json.loads((tmp_path / "classes.json").read_text()) == {"0": "cat", "1": "sofa", "255": "unknown"}
    assert json.loads((tmp_path / ".zsseg-meaning.json").read_text()) == {
        "classes": ["cat", "sofa"],
        "class_map": {"0": "cat", "1": "sofa", "255": "unknown"},
        "unknown_id": 255,
        "unknown_below": 0.25,
        "bundle_digest": DIGEST,
    }
    again = SegmentRecord(path, LabelMeaning.of(["cat", "sofa"], 0.25, DIGEST))
    again.check(False, list, "-o 'V'")
    assert not again.due  # recorded already
    other = SegmentRecord(path, LabelMeaning.of(["cat", "sofa"], 0.25, OTHER))
    with pytest.raises(MeaningRefused, match="pass --overwrite, or another -o"):
        other.check(False, list, "-o 'V'")
    (tmp_path / "classes.json").write_text(json.dumps({"0": "dog"}))  # replaced since: the whole record is ignored
    assert SegmentRecord(path, LabelMeaning.of(["dog"])).earlier() == read_record(path)
    single = SegmentRecord(str(tmp_path / "out_classes.json"), LabelMeaning.of(["dog"], None, DIGEST))
    single.write()  # -o out.png: its class map only
    assert sorted(p.name for p in tmp_path.iterdir()) == [".zsseg-meaning.json", "classes.json", "out_classes.json"]


def test_labels_out_keeps_its_keys_and_adds_the_unknown_label(tmp_path):
    sink = LabelFolderSink(str(tmp_path / "labels"))
    for index, names, below in ((0, ["a", "b"], None), (4, ["a", "b"], 0.3), (6, ["c"], 0.3)):
        result = SimpleNamespace(labels=np.zeros((2, 2), np.int32), class_names=names, unknown_below=below)
        sink.write_result(SimpleNamespace(index=index), result)
    sink.close()
    document = json.loads((tmp_path / "labels" / "classes.json").read_text())
    assert document == {
        "classes": ["c"],
        "class_map": {"0": "c", "255": "unknown"},
        "unknown_id": 255,
        "unknown_below": 0.3,
        "vocabularies": [
            {"first_frame": 0, "classes": ["a", "b"]},
            {"first_frame": 4, "classes": ["a", "b"], "unknown": 255, "unknown_below": 0.3},
            {"first_frame": 6, "classes": ["c"], "unknown": 255, "unknown_below": 0.3},
        ],
    }
    assert read_record(str(tmp_path / "labels" / "classes.json")) == LabelMeaning(
        ("c",), 255, 0.3, None, frozenset({"bundle_digest"})
    )
