"""The root conftest's early finish of the session fixtures that cost CPU while idle (python_tests/conftest.py
``FINISHED_WHEN_LEFT``: the scale tests' Ray cluster): finished in the tear-down of the last test of their folder,
whether or not that test asks for the fixture. The scale folder's last test (test_serve_vocabularies.py's, a replica
run without Ray) does not: the cluster then stayed up for the rest of the session and was reaped in the worker's last
test (CI: 54.7 CPU-s charged to vocabulary/test_vocabulary_unit.py::test_vocabulary_entries, 4.4 s wall).

Run on stand-ins of pytest's item and fixture definition (the hook only reads their ids and the fixture's state)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"


class _FixtureDef:
    def __init__(self, baseid: str, active: bool = True):
        self.baseid = baseid
        self.cached_result = ("the cluster", None, None) if active else None
        self.finished: list = []

    def finish(self, request) -> None:
        self.finished.append(request)
        self.cached_result = None


def _item(nodeid: str, fixturedef: _FixtureDef, asks: bool):
    manager = types.SimpleNamespace(getfixturedefs=lambda name, node: [fixturedef] if name == "ray_cluster" else None)
    return types.SimpleNamespace(
        nodeid=nodeid,
        fixturenames=["ray_cluster"] if asks else ["replica"],
        session=types.SimpleNamespace(_fixturemanager=manager),
        _request=f"request of {nodeid}",
    )


@pytest.fixture
def teardown(request):
    """The root conftest's ``pytest_runtest_teardown`` (a hook wrapper): runs it around an empty tear-down."""
    module = next(
        (m for m in request.config.pluginmanager.get_plugins() if Path(getattr(m, "__file__", "") or "") == CONFTEST),
        None,
    )
    assert module is not None, f"{CONFTEST} is not among pytest's plugins"
    assert module.FINISHED_WHEN_LEFT == ("ray_cluster",)

    def run(item, nextitem) -> None:
        wrapper = module.pytest_runtest_teardown(item, nextitem)
        next(wrapper)
        with pytest.raises(StopIteration):
            wrapper.send(None)

    return run


LAST = "python_tests/scale/test_serve_vocabularies.py::test_an_image_run_again_alone_keeps_its_vocabulary@ray_cluster"
NEXT_INSIDE = "python_tests/scale/test_serve_vocabularies.py::test_each_request_of_a_batch_gets_its_own_vocabulary"
OUTSIDE = "python_tests/vocabulary/test_vocabulary_unit.py::test_vocabulary_entries"


@pytest.mark.parametrize("asks", [True, False], ids=["asks-for-it", "does-not-ask"])
def test_the_folders_last_test_finishes_the_cluster(teardown, asks):
    cluster = _FixtureDef("python_tests/scale")
    item = _item(LAST, cluster, asks)
    teardown(item, types.SimpleNamespace(nodeid=OUTSIDE))
    assert cluster.finished == [item._request]


def test_nothing_is_finished_inside_the_folder_at_the_sessions_end_or_twice(teardown):
    cluster = _FixtureDef("python_tests/scale")
    teardown(_item(LAST, cluster, False), types.SimpleNamespace(nodeid=NEXT_INSIDE + "@ray_cluster"))
    teardown(_item(LAST, cluster, True), None)  # the session's end finishes it anyway
    assert cluster.finished == []
    idle = _FixtureDef("python_tests/scale", active=False)  # never set up in this worker, or finished already
    teardown(_item(LAST, idle, False), types.SimpleNamespace(nodeid=OUTSIDE))
    assert idle.finished == []
