"""ONNX Runtime's CPU sessions do not spin: the export checks' (zsseg_rt.export.ort_jobs) and the Engine's. A spinning
idle thread only burns a core that another process could use (the check beside other work, a Jetson's post-
processing); the kernels and thread counts are ONNX Runtime's own, so the outputs are the same."""

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

SPIN_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def _graph(path) -> str:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    node = helper.make_node("Relu", ["x"], ["y"])
    model = helper.make_model(helper.make_graph([node], "relu", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def _spinning(options) -> list:
    return [key for key in SPIN_KEYS if options.get_session_config_entry(key) != "0"]


def test_the_export_checks_sessions_do_not_spin_and_compute_the_same(tmp_path, monkeypatch):
    from zsseg_rt.export import ort_jobs

    path = _graph(tmp_path / "relu.onnx")
    made = []
    original = ort_jobs.cpu_session
    monkeypatch.setattr(ort_jobs, "cpu_session", lambda p: made.append(original(p)) or made[-1])
    x = np.array([[-1.0, 0.5, 2.0], [3.0, -4.0, 0.0]], np.float32)
    (out,) = ort_jobs.run_in_process([(path, {"x": x})])
    assert len(made) == 1, "run_in_process makes its sessions with cpu_session"
    assert _spinning(made[0].get_session_options()) == []
    np.testing.assert_array_equal(out[0], np.maximum(x, 0))
    default = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(out[0], default.run(None, {"x": x})[0])


def test_the_engines_session_options_do_not_spin():
    from zsseg_rt.runtime.backends.onnxruntime.runner import session_options

    assert _spinning(session_options()) == []
    assert _spinning(session_options(2, {"session.disable_prepacking": "1"})) == []
