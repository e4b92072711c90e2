"""The root conftest's ``--dist loadgroup`` hook (python_tests/conftest.py ``_xdist_groups_in_test_ids``) without
pytest's private modules (issue 78): the GPU image's pytest 9.1.1 has no ``_pytest.nodeid`` (new in 9.2), and the
hook's import of it stopped every xdist worker of the H200 run (INTERNALERROR at collection, every pytest stage).

Run here with ``_pytest.nodeid`` made unimportable (``sys.modules`` entry None), in a stand-in xdist worker
(``PYTEST_XDIST_WORKER`` set, ``--dist loadgroup``), on the running pytest's own items and on stand-ins of both id
layouts (pytest >= 9.2: a structured ``_id``; earlier: the string ``_nodeid``, which xdist 3.8 suffixes itself).
The control: under the same patch the old hook's first statement, ``from _pytest.nodeid import coerce_node_id``,
raises (the hook at b235fde fails these tests with ModuleNotFoundError)."""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"


@pytest.fixture
def hook(request, monkeypatch):
    """The root conftest's hook function, run as in an xdist worker with --dist loadgroup and no _pytest.nodeid."""
    module = next(
        (m for m in request.config.pluginmanager.get_plugins() if Path(getattr(m, "__file__", "") or "") == CONFTEST),
        None,
    )
    assert module is not None, f"{CONFTEST} is not among pytest's plugins"
    monkeypatch.setitem(sys.modules, "_pytest.nodeid", None)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    config = types.SimpleNamespace(option=types.SimpleNamespace(loadgroup=True))
    return lambda items: module._xdist_groups_in_test_ids(config, items)


def test_the_control_the_private_module_is_unimportable(hook):
    """What the old hook did first (conftest.py:84 at b235fde) fails under the patch as on pytest 9.1.1."""
    with pytest.raises(ModuleNotFoundError, match="_pytest.nodeid"):
        from _pytest.nodeid import coerce_node_id  # noqa: F401


def test_a_real_item_gets_its_group_without_the_private_module(hook, request):
    item = copy.copy(request.node)  # the running pytest's own item kind (the original keeps its id)
    item.own_markers = [pytest.mark.xdist_group("sass").mark, pytest.mark.xdist_group(name="big").mark]
    before = request.node.nodeid
    hook([item])
    assert item.nodeid == before + "@big_sass"
    assert request.node.nodeid == before
    hook([item])  # already there: unchanged
    assert item.nodeid == before + "@big_sass"


class _OldItem:
    """pytest < 9.2 (the image's 9.1.1): the id is the string ``_nodeid``."""

    def __init__(self, nodeid, groups):
        self._nodeid = nodeid
        self.marks = [pytest.mark.xdist_group(g).mark for g in groups]

    @property
    def nodeid(self):
        return self._nodeid

    def iter_markers(self, name):
        return iter(self.marks if name == "xdist_group" else [])


class _StructuredId:
    """pytest >= 9.2's NodeId as far as the hook uses it: a class that parses the string form."""

    def __init__(self, text):
        self.text = text

    @classmethod
    def parse(cls, text):
        return cls(text)

    def __str__(self):
        return self.text


class _NewItem(_OldItem):
    def __init__(self, nodeid, groups, id_type=_StructuredId):
        super().__init__(nodeid, groups)
        del self._nodeid
        self._id = id_type(nodeid)

    @property
    def nodeid(self):
        return str(self._id)


def test_both_id_layouts_get_the_group(hook):
    suffixed = _OldItem("python_tests/test_a.py::test_x@sass", ["sass"])  # xdist 3.8 did it (pytest < 9.2)
    old = _OldItem("python_tests/test_a.py::test_y", ["sass"])  # marked after xdist's hook
    new = _NewItem("python_tests/test_b.py::test_z[1]", ["ray_cluster"])
    plain = _NewItem("python_tests/test_b.py::test_w", [])
    hook([suffixed, old, new, plain])
    assert suffixed.nodeid == "python_tests/test_a.py::test_x@sass"
    assert old.nodeid == "python_tests/test_a.py::test_y@sass"
    assert new.nodeid == "python_tests/test_b.py::test_z[1]@ray_cluster" and isinstance(new._id, _StructuredId)
    assert plain.nodeid == "python_tests/test_b.py::test_w"


def test_outside_an_xdist_loadgroup_worker_nothing_changes(hook, monkeypatch):
    item = _NewItem("python_tests/test_b.py::test_z", ["sass"])
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    hook([item])
    assert item.nodeid == "python_tests/test_b.py::test_z"


def test_an_id_it_cannot_set_is_said_not_fatal(hook):
    """A pytest that keeps its ids a third way (an id class without ``parse``): a warning naming the count and a
    test, and the run goes on (the groups only save work)."""

    class Opaque(_StructuredId):
        parse = None

    item = _NewItem("python_tests/test_b.py::test_z", ["sass"], id_type=Opaque)
    with pytest.warns(pytest.PytestWarning, match=r"kept no xdist group in 1 test ids \(e\.g\. python_tests/test_b"):
        hook([item])
    assert item.nodeid == "python_tests/test_b.py::test_z"
