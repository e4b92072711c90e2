"""ONNX Runtime int8 on the CPU (prepare/onnxruntime.py, runtime/backends/onnxruntime/precision.py, runtime/precision_records.py):
the quantised graph, the accuracy gate that decides whether it runs, the record kept beside the bundle and the
refusals (failed gate, modified artefact, another setup's record, nothing prepared and prepare=False).

The tiny golden model FAILS the int8 gate (about 97 % of labels agree with fp32: its random weights leave many
near-ties), which is what the refusal tests need; the accepted path is tested through the explicit override."""

import json
import logging
import os
import shutil

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from zsseg_rt.bundle import load_meta  # noqa: E402
from zsseg_rt.prepare.gate import EngineAccuracyError  # noqa: E402
from zsseg_rt.prepare.onnxruntime import INT8_FILE, prepare_onnxruntime_precision  # noqa: E402
from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.backends import open_backend  # noqa: E402
from zsseg_rt.runtime.backends.onnxruntime import precision as ort_precision  # noqa: E402
from zsseg_rt.runtime.precision_records import (  # noqa: E402
    PrecisionGateRefused,
    PrecisionRecordError,
    find_record,
    record_dir,
)

CLASSES = ["person", "bottle", "chair", "sofa", "tv", "cat"]


@pytest.fixture(scope="module")
def prepared(tiny_bundle, tmp_path_factory):
    """(meta, records root, the refused first attempt's error, the accepted record): one quantisation + two gates."""
    meta = load_meta(tiny_bundle)
    root = str(tmp_path_factory.mktemp("int8_records"))
    with pytest.raises(EngineAccuracyError) as refused:
        prepare_onnxruntime_precision(tiny_bundle, "int8", cache_dir=root, threads=1)
    refused_record = json.load(
        open(os.path.join(record_dir(root, ort_precision.precision_key(meta, "int8")), "engine.json"))
    )
    accepted = prepare_onnxruntime_precision(tiny_bundle, "int8", cache_dir=root, force=True, accept_below_gate=True)
    return meta, root, (refused.value, refused_record), accepted


def _never_prepare(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("prepared again although a record exists")

    from zsseg_rt.runtime import precision_records

    monkeypatch.setattr(precision_records, "load_preparer", lambda spec, hint: fail)  # the row's preparer, by name


def test_a_failed_gate_is_recorded_refused_and_not_prepared_again(prepared, tmp_path, monkeypatch):
    meta, _, (error, record), _ = prepared
    # the way to accept it: build-engine's command line (issue 87 L3: the Engine, which met this refusal, has no
    # accept_below_gate argument; python_tests/cli/test_cli_advice_words.py holds the words)
    assert "accuracy gate FAILED" in str(error) and "--force --accept-below-gate`" in str(error)
    gate = record["accuracy_gate"]
    assert not gate["passed"] and not gate["accepted"] and gate["label_agreement"] < 0.995
    assert gate["precision"] == "int8" and gate["reference"] == "onnxruntime fp32 (CPU)"
    root = str(tmp_path / "refused")  # a copy of the refused record, on its own
    key = ort_precision.precision_key(meta, "int8")
    os.makedirs(record_dir(root, key))
    with open(os.path.join(record_dir(root, key), "engine.json"), "w") as handle:
        json.dump(record, handle)
    _never_prepare(monkeypatch)
    with pytest.raises(PrecisionGateRefused, match="failed the accuracy gate.*--accept-below-gate"):
        open_backend(meta, "onnxruntime", threads=1, precision="int8", cache_dir=root)


def test_the_int8_graph_quantises_the_weight_matmuls_only(prepared):
    import onnx

    meta, root, _, record = prepared
    _, artefact = find_record(root, ort_precision.precision_key(meta, "int8"))
    assert os.path.basename(artefact) == INT8_FILE and record["artefact_bytes"] == os.path.getsize(artefact)
    ops = [node.op_type for node in onnx.load(artefact).graph.node]
    fp32_ops = [node.op_type for node in onnx.load(meta.file("image_encoder.onnx")).graph.node]
    quantised = record["quantisation"]["quantised_matmuls"]
    assert quantised > 0 and ops.count("MatMulInteger") == quantised and ops.count("DynamicQuantizeLinear") > 0
    # float where the recipe says: attention MatMuls, Softmax and LayerNormalization untouched
    assert ops.count("MatMul") == fp32_ops.count("MatMul") + fp32_ops.count("Gemm") - quantised
    for op in ("Softmax", "LayerNormalization"):
        assert ops.count(op) == fp32_ops.count(op)
    assert record["key"]["device"].startswith("cpu ") and record["accuracy_gate"]["accepted"]


def test_the_engine_runs_the_accepted_int8_encoder_without_preparing_again(prepared, monkeypatch):
    meta, root, _, record = prepared
    _never_prepare(monkeypatch)
    int8 = Engine(
        meta.path,
        classes=CLASSES,
        backend=open_backend(meta, "onnxruntime", threads=1, precision="int8", cache_dir=root),
    )
    fp32 = Engine(meta.path, classes=CLASSES, backend="onnxruntime", device="cpu")
    assert int8.backend.precision_record["digest"] == record["digest"]
    image = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    got, want = (e.backend.encode_image(image) for e in (int8, fp32))
    assert got.keys() == want.keys()
    for name in want:
        a, b = np.asarray(got[name], np.float64), np.asarray(want[name], np.float64)
        assert not np.array_equal(a, b), name  # the int8 graph really runs
        # 8-bit activations and weights keep each feature vector's direction: cos >= 0.98 (a quantisation error of
        # a few % of each vector's norm after the blocks; a wrong graph or scale gives cos ~ 0)
        cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        assert cos.min() >= 0.98, (name, cos.min())
    frame = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    assert int8(frame).labels.shape == fp32(frame).labels.shape == (48, 80)


def test_a_modified_int8_graph_is_refused(prepared, tmp_path):
    meta, root, _, _ = prepared
    copy = str(tmp_path / "records")
    shutil.copytree(root, copy)
    _, artefact = find_record(copy, ort_precision.precision_key(meta, "int8"))
    with open(artefact, "r+b") as handle:
        handle.seek(os.path.getsize(artefact) // 2)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(PrecisionRecordError, match="does not match the sha256"):  # prepare=True: made again
        open_backend(meta, "onnxruntime", threads=1, precision="int8", cache_dir=copy, prepare=False)


def test_a_record_of_another_setup_is_refused(prepared, tmp_path):
    meta, root, _, _ = prepared
    copy = str(tmp_path / "records")
    shutil.copytree(root, copy)
    key = ort_precision.precision_key(meta, "int8")
    path = os.path.join(record_dir(copy, key), "engine.json")
    record = json.load(open(path))
    record["key"]["library"] = "onnxruntime 0.0.1"
    json.dump(record, open(path, "w"))
    with pytest.raises(PrecisionRecordError, match="(?s)for another setup.*library"):
        find_record(copy, key)


def test_nothing_prepared_and_prepare_false_is_refused(tiny_bundle, tmp_path):
    with pytest.raises(PrecisionRecordError, match="no onnxruntime int8 record"):
        open_backend(
            load_meta(tiny_bundle), "onnxruntime", threads=1, precision="int8", cache_dir=str(tmp_path), prepare=False
        )
    assert os.listdir(tmp_path) == []


def test_the_key_follows_the_cpu_and_the_bundle(tiny_bundle, tmp_path):
    from zsseg_rt.runtime.cpu_features import CpuFeatures

    meta = load_meta(tiny_bundle)
    vnni = CpuFeatures("x86_64", frozenset({"avx2", "avx512_vnni"}))
    avx2 = CpuFeatures("x86_64", frozenset({"avx2"}))
    a, b = (ort_precision.precision_key(meta, "int8", f, "1.0") for f in (vnni, avx2))
    assert a.digest() != b.digest() and '"reduce_range":true' in b.recipe and '"reduce_range":false' in a.recipe
    assert a.source_sha256 == meta.files["image_encoder.onnx"]


def test_fp32_stays_the_default_and_needs_no_record(tiny_bundle):
    engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device="cpu")
    assert engine.backend.precision == "fp32" and engine.backend.precision_record is None
    with pytest.raises(ValueError, match="nothing to prepare"):
        prepare_onnxruntime_precision(tiny_bundle, "fp32")


def test_the_cli_prepares_int8_ahead_and_segment_runs_it(tiny_bundle, tmp_path, capsys):
    from zsseg_rt import cli

    bundle = shutil.copytree(tiny_bundle, str(tmp_path / "bundle"))  # the record goes into <bundle>/engines
    assert cli.main(["build-engine", bundle, "--backend", "onnxruntime", "--precision", "fp16"]) == 2
    assert (
        "--precision fp16 is not one the onnxruntime backend prepares; it prepares int8, bf16"
        in capsys.readouterr().err
    )
    assert cli.main(["build-engine", bundle, "--backend", "onnxruntime", "--accept-below-gate"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("onnxruntime int8: ") and "accuracy gate FAILED" in out  # accepted explicitly, said
    # progress on the long stages (issue 51, defect 6): the bars' names, written when each bar starts (no timing)
    assert "int8 quantisation of the image encoder:" in err and "accuracy gate (int8):" in err, err[-2000:]
    assert len(os.listdir(os.path.join(bundle, "engines"))) == 1
    photo = str(tmp_path / "frame.png")
    import cv2

    cv2.imwrite(photo, np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    argv = ["segment", photo, "--bundle", bundle, "--classes", "cat,dog", "--backend", "onnxruntime"]
    assert cli.main([*argv, "--device", "cpu", "--precision", "int8", "--json", "-o", str(tmp_path / "o.png")]) == 0
    assert '"precision": "int8"' in capsys.readouterr().out
    # auto takes the record build-engine made (accepted below the gate by the user) and says what it runs
    assert cli.main([*argv, "--device", "cpu", "--precision", "auto", "--json", "-o", str(tmp_path / "a.png")]) == 0
    assert '"precision": "int8"' in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ precision="auto"
def test_auto_runs_fp32_where_int8_was_refused_and_int8_where_it_was_accepted(prepared, tmp_path, monkeypatch, caplog):
    """``precision="auto"`` on ONNX Runtime (the CPU path without OpenVINO) takes a reduced precision only under a
    gate record that passed or that the user accepted below the gate (``--accept-below-gate``, as on OpenVINO): a
    refused record leaves auto at fp32, saying why; the accepted one runs int8 and the log line carries the gate's
    FAILED summary; nothing is prepared again."""
    meta, root, (_, refused_record), _ = prepared
    _never_prepare(monkeypatch)
    only_refused = str(tmp_path / "refused")
    key = ort_precision.precision_key(meta, "int8")
    os.makedirs(record_dir(only_refused, key))
    with open(os.path.join(record_dir(only_refused, key), "engine.json"), "w") as handle:
        json.dump(refused_record, handle)
    with caplog.at_level(logging.INFO, logger="zsseg_rt.precision"):
        backend = open_backend(meta, "onnxruntime", threads=1, precision="auto", cache_dir=only_refused)
    assert backend.precision == "fp32" and backend.requested_precision == "auto"
    assert backend.precision_record is None
    assert "ONNX Runtime precision='auto' runs fp32" in caplog.text and "failed the accuracy gate" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zsseg_rt.precision"):
        accepted = open_backend(meta, "onnxruntime", threads=1, precision="auto", cache_dir=root)
    assert accepted.precision == "int8" and accepted.precision_record["accuracy_gate"]["accepted"]
    assert "ONNX Runtime precision='auto' runs int8" in caplog.text and "FAILED" in caplog.text


def test_auto_runs_int8_once_its_gate_passed(tiny_bundle, tmp_path, monkeypatch, caplog):
    """With the int8 bound lowered below the tiny model's agreement, ``auto`` gates int8 on first use and runs it
    (the quantised encoder graph, its passing record), says so, and equals an explicit ``precision="int8"`` Engine;
    a second backend takes the record without preparing again."""
    from zsseg_rt.prepare import gate as accuracy_gate

    monkeypatch.setitem(accuracy_gate.MIN_LABEL_AGREEMENT, "int8", 0.5)
    meta = load_meta(tiny_bundle)
    root = str(tmp_path / "records")
    with caplog.at_level(logging.INFO, logger="zsseg_rt.precision"):
        backend = open_backend(meta, "onnxruntime", threads=1, precision="auto", cache_dir=root)
    assert backend.precision == "int8" and backend.requested_precision == "auto"
    assert backend.precision_record["accuracy_gate"]["passed"]
    assert "ONNX Runtime precision='auto' runs int8" in caplog.text
    _never_prepare(monkeypatch)
    explicit = open_backend(meta, "onnxruntime", threads=1, precision="int8", cache_dir=root)
    image = np.random.default_rng(3).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    auto_result = Engine(tiny_bundle, classes=CLASSES, backend=backend)(image)
    int8_result = Engine(tiny_bundle, classes=CLASSES, backend=explicit)(image)
    assert np.array_equal(auto_result.labels, int8_result.labels)
    assert np.array_equal(auto_result.scores, int8_result.scores)


def test_auto_is_not_something_to_prepare(tiny_bundle, tmp_path):
    with pytest.raises(ValueError, match="'auto': nothing to prepare.*prepare 'int8'"):
        prepare_onnxruntime_precision(tiny_bundle, "auto", cache_dir=str(tmp_path))
