"""The one registry idiom (issue 88 item 4; zsseg_rt/options/registry.py): register, names, get with did-you-mean,
``adding`` for a block, ``kept``, an optional entry-point group; and the five tables that are registries of it (the
Engine's and the run's options, the output kinds, the sources, the backends, the model families)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from zsseg_rt.options.registry import Registry


@dataclass(frozen=True)
class Row:
    name: str
    value: int = 0


def test_register_names_get_and_the_one_line_refusal():
    table = Registry("toy kind", [Row("video"), Row("frames")])
    assert table.names() == ["video", "frames"] and [row.name for row in table] == ["video", "frames"]
    assert table.get("video") == Row("video") and table["frames"] == Row("frames") and "video" in table
    assert table.find("nope") is None and len(table) == 2
    with pytest.raises(KeyError, match=r"unknown toy kind 'vidoe': did you mean 'video'\?"):
        table.get("vidoe")
    with pytest.raises(KeyError, match=r"unknown toy kind 'zzz': expected one of video, frames"):
        table.get("zzz")
    with pytest.raises(ValueError, match=r"^toy kind 'video' is already registered$"):
        table.register(Row("video", 1))
    table.register(Row("video"))  # the same row again: no change
    table.register(Row("video", 2), replace=True)
    assert table.get("video").value == 2 and table.names() == ["video", "frames"]
    table.register(Row("null"), first=True)
    assert table.names() == ["null", "video", "frames"]
    assert table.unregister("null") == Row("null") and table.unregister("null") is None


def test_adding_holds_a_row_for_the_block_only_and_kept_undoes_registrations():
    table = Registry("toy kind", [Row("a"), Row("b")], error=ValueError)
    with table.adding(Row("c"), first=True) as row:
        assert row == Row("c") and table.names() == ["c", "a", "b"]
    assert table.names() == ["a", "b"]
    with pytest.raises(RuntimeError):
        with table.adding(Row("d")):
            raise RuntimeError("the block failed")
    assert table.names() == ["a", "b"]  # gone after a failed block too
    with pytest.raises(ValueError, match="'a' is already registered"):
        with table.adding(Row("a", 1)):
            pass
    with table.kept():
        table.register(Row("e"))
        table.unregister("a")
    assert table.names() == ["a", "b"]
    with pytest.raises(ValueError, match=r"^unknown toy kind 'e': expected one of a, b$"):
        table.get("e")


@pytest.fixture
def toy_dist(tmp_path, monkeypatch):
    """A distribution on the path whose entry point of the group ``zsseg_rt.test_registry`` names a row."""
    (tmp_path / "toy_registry_rows.py").write_text(
        "import types\nROW = types.SimpleNamespace(name='plugged', value=7)\n", encoding="utf-8"
    )
    info = tmp_path / "toy_registry_rows-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-registry-rows\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[zsseg_rt.test_registry]\nplugged = toy_registry_rows:ROW\nmissing = no_such_module_here:ROW\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("toy_registry_rows", None)


def test_an_entry_point_group_is_listed_by_name_and_loaded_when_asked_for(toy_dist):
    table = Registry("toy kind", [Row("a")], group="zsseg_rt.test_registry")
    assert table.names()[0] == "a" and sorted(table.names()[1:]) == ["missing", "plugged"]
    assert "toy_registry_rows" not in sys.modules  # listed by name, nothing imported
    assert table.get("plugged").value == 7 and "plugged" in table
    with pytest.raises(ImportError):
        table.get("missing")
    table.load_all(skip=(ImportError,))
    assert [row.name for row in table] == ["a", "plugged"]
    control = Registry("toy kind", [Row("a")])  # no group: no plugin
    with pytest.raises(KeyError, match="unknown toy kind 'plugged'"):
        control.get("plugged")


def test_a_plugin_installed_or_removed_while_the_process_runs_is_seen(tmp_path, monkeypatch):
    """The group's entry points are read once per state of the path (every Engine() reads the backends' group three
    times: 8.5 ms each to scan the installed distributions): a distribution put into a folder already on the path
    (as pip installs one), a folder put on the path, and the distribution removed again are each seen by the next
    names(); nothing else re-reads them."""
    import importlib
    import os
    import shutil
    import time

    table = Registry("toy kind", [Row("a")], group="zsseg_rt.test_registry_later")
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    assert table.names() == ["a"]
    info = site / "later_rows-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: later-rows\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[zsseg_rt.test_registry_later]\nlater = later_rows:ROW\n")
    os.utime(site, ns=(time.time_ns(), time.time_ns() + 10**9))  # (a coarse clock: the folder's time moves on)
    importlib.invalidate_caches()
    assert table.names() == ["a", "later"]  # installed into a folder on the path
    other = tmp_path / "other" / "elsewhere_rows-0.1.dist-info"
    other.mkdir(parents=True)
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: elsewhere-rows\nVersion: 0.1\n")
    (other / "entry_points.txt").write_text("[zsseg_rt.test_registry_later]\nelsewhere = x:ROW\n")
    monkeypatch.syspath_prepend(str(other.parent))
    assert sorted(table.names()) == ["a", "elsewhere", "later"]  # a folder put on the path
    shutil.rmtree(info)
    os.utime(site, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    importlib.invalidate_caches()
    assert sorted(table.names()) == ["a", "elsewhere"]  # removed


def test_the_tables_of_the_package_are_registries():
    from zsseg_rt.contract import registry as families
    from zsseg_rt.options import ENGINE_OPTIONS, RUN_OPTIONS
    from zsseg_rt.outputs.kinds import OUTPUT_KINDS
    from zsseg_rt.runtime.backends.table import BACKENDS
    from zsseg_rt.stream.sources import SOURCE_KINDS, SourceError, source_kind

    for table in (ENGINE_OPTIONS, RUN_OPTIONS, OUTPUT_KINDS, SOURCE_KINDS, BACKENDS, families.FAMILIES):
        assert isinstance(table, Registry), type(table)
    with pytest.raises(KeyError, match=r"unknown output kind 'vidoe': did you mean 'video'\?"):
        OUTPUT_KINDS.get("vidoe")
    with pytest.raises(SourceError, match=r"unknown source kind 'netwrok': did you mean 'network'\?"):
        source_kind("netwrok")
    with pytest.raises(ValueError, match=r"unknown backend 'onnxruntme': did you mean 'onnxruntime'\?"):
        BACKENDS.get("onnxruntme")
    with pytest.raises(ValueError, match=r"unknown model family 'zegclp': did you mean 'zegclip'\?"):
        families.get_family("zegclp")
    with pytest.raises(KeyError, match=r"unknown Engine option 'precison': did you mean 'precision'\?"):
        ENGINE_OPTIONS["precison"]


def test_the_families_found_first_inside_a_kept_block_stay_after_it():
    """The built-in families register themselves when their packages are first imported (``discover()``, once a
    process). A test's ``FAMILIES.kept()`` (or ``adding``) that happened to be the first to look them up forgot them
    at its end, and no import registered them again: every later test of that pytest worker found no family (seen
    with ``pytest -n 2 python_tests/eval/``). ``kept()`` now discovers them before it takes its copy. A fresh
    interpreter: discovery happens once a process."""
    code = (
        "from zsseg_rt.contract import registry as r\n"
        "with r.FAMILIES.kept():\n"
        "    inside = r.families()\n"
        "print(inside, r.families())\n"
        "assert len(inside) >= 5 and r.families() == inside\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
