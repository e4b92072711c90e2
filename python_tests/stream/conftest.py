"""Fixtures for the stream tests."""

from __future__ import annotations

import threading
import time

import pytest
from stream_fakes import FakeEngine


@pytest.fixture
def fake_engine():
    return FakeEngine()


@pytest.fixture
def thread_guard():
    """Asserts that a test leaves no new threads running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked:
            return
        time.sleep(0.05)
    raise AssertionError(f"threads leaked: {[t.name for t in leaked]}")
