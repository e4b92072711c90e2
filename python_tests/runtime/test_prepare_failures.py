"""An opt-in background preparation that cannot succeed is said and not retried at every start (issue 75, N14's
remainder: `zsseg camera --prepare background`, twice, on a bundle whose disk is full: each start announced the
preparation and its log, the log stayed at 0 bytes, rc 0, and no failure was ever reported).

Two ways: a disk without the room a preparation takes is refused before anything starts, with the room it needs;
a preparation that fails without leaving its record (its disk full, or the process gone) gets one written by the
Engine that ran it, beside the records or, where that cannot be written, in zsseg_rt's cache folder."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
from support import VOCAB10, require_backend

from zsseg_rt.bundle import load_meta
from zsseg_rt.runtime import Engine, upgrade


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    require_backend("openvino")
    path = shutil.copytree(tiny_bundle, str(tmp_path / "bundle"))
    # nothing prepared (the torch-free job's shared bundle may hold other tests' records: then its engines folder
    # exists and is where the disk is read, not the bundle)
    shutil.rmtree(os.path.join(path, "engines"), ignore_errors=True)
    if not Engine(path, device="cpu", prepare=None).plan.missing:
        pytest.skip("this CPU has no faster path to prepare for the tiny bundle")
    return path


@pytest.mark.time_bound(300)
def test_a_full_disk_is_refused_before_a_preparation_starts(bundle, monkeypatch, caplog):
    """The bundle's disk has no room for what preparing takes while it runs: nothing starts (was: a preparation
    that failed silently at every start), and one warning says how much it needs and has. Control: with room, it
    starts."""
    started = []
    monkeypatch.setattr(upgrade, "run_preparation", lambda meta, stop: started.append(1) or 0)
    monkeypatch.setattr(upgrade, "_said", set())
    real = shutil.disk_usage
    root = os.path.join(bundle, "engines")
    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: real(p)._replace(free=0) if str(p).startswith(bundle) else real(p)
    )
    with caplog.at_level(logging.WARNING, logger="zsseg_rt"):
        engine = Engine(bundle, classes=VOCAB10, device="cpu", prepare="background")
    assert engine._upgrade is None and not started
    (line,) = [r.getMessage() for r in caplog.records if "not prepared" in r.getMessage()]
    assert f"its disk has 0 MB free at {bundle!r}" in line and "MB while it runs" in line, line
    assert f"`zsseg build-engine {load_meta(bundle).path} --backend auto`" in line, line
    monkeypatch.setattr(shutil, "disk_usage", real)
    with Engine(bundle, classes=VOCAB10, device="cpu", prepare="background") as engine:
        assert engine._upgrade is not None
        assert engine._upgrade.wait(120)
    assert started == [1] and not os.path.exists(os.path.join(root, upgrade.PREPARE_FAILED))


@pytest.mark.time_bound(300)
@pytest.mark.parametrize("writable", [True, False])
def test_a_preparation_that_fails_without_a_record_is_recorded_and_not_retried(
    bundle, monkeypatch, caplog, tmp_path, writable
):
    """The preparation process ends with a failure and writes nothing (its disk filled up, or it was killed): the
    Engine says so and writes the record itself, beside the records or, that folder refusing it, in the cache; the
    next Engine(prepare="background") starts nothing and says why, once. Control: build-engine's success clears it."""
    meta = load_meta(bundle)
    monkeypatch.setattr(upgrade, "_said", set())
    monkeypatch.setenv("ZSSEG_RT_CACHE_DIR", str(tmp_path / "cache"))
    if not writable:
        real_open = open

        def refusing(path, *args, **kwargs):  # the bundle's disk is full now: no record can be written there
            if str(path).startswith(os.path.join(bundle, "engines")) and args and "w" in args[0]:
                raise OSError(28, "No space left on device")
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr("builtins.open", refusing)
    with caplog.at_level(logging.WARNING, logger="zsseg_rt"):
        plan = Engine(bundle, classes=VOCAB10, device="cpu", prepare=None).plan
        held = upgrade.BackgroundUpgrade(meta, plan, lambda stop: 1)
        assert held.wait(120)
    monkeypatch.setattr("builtins.open", open)
    failed = upgrade.last_failure(meta)
    assert failed is not None and failed["reason"].startswith("the preparation process ended with exit status 1")
    in_cache = failed["where"].startswith(str(tmp_path / "cache"))
    assert in_cache != writable, failed
    assert f"the background preparation failed ({failed['reason']}" in caplog.text
    started = []
    monkeypatch.setattr(upgrade, "run_preparation", lambda meta_, stop: started.append(1) or 0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zsseg_rt"):
        again = Engine(bundle, classes=VOCAB10, device="cpu", prepare="background")
    assert again._upgrade is None and not started
    assert "not tried again at each start" in caplog.text
    upgrade.clear_failure(meta)  # what `zsseg build-engine BUNDLE --backend auto` does when it ends well
    assert upgrade.last_failure(meta) is None
