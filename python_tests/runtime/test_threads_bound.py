"""``Engine(threads=10**9)`` was reported as a damaged bundle (issue 87, L4: "bundle file '.../image_encoder.onnx' is
not an ONNX graph ONNX Runtime can load (MemoryError: std::bad_alloc); the bundle is damaged ...: re-export it"):
ONNX Runtime's thread pool could not be made. The option's row bounds it (``maximum``), so the value is refused in
one line before anything is opened (a Python-only option: no flag sets it)."""

from __future__ import annotations

import pytest

from zsseg_rt.options import ENGINE_OPTIONS

SAID = "expected a whole number in [0, 1024], got"


def test_the_engine_refuses_threads_over_the_bound(tiny_bundle, monkeypatch):
    import zsseg_rt.runtime.backends.onnxruntime.runner as runner
    from zsseg_rt.runtime import Engine

    def never(*args, **kwargs):
        raise AssertionError("a session was opened with the value")

    monkeypatch.setattr(runner, "open_ort_session", never)
    for value in (10**9, 1025):
        with pytest.raises(ValueError) as refused:
            Engine(tiny_bundle, "a,b", backend="onnxruntime", prepare=None, threads=value)
        assert str(refused.value) == f"threads: {SAID} {value}"
    assert ENGINE_OPTIONS["threads"].problem(1024) is None and ENGINE_OPTIONS["threads"].problem(0) is None
