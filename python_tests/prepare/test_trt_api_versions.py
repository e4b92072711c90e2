"""The TensorRT Python API that zsseg_rt and its test fakes use, held to EVERY minor version the package accepts
(issue 40, item 6), without TensorRT: ``zsseg_rt.runtime.backends.tensorrt.engines`` accepts 10.0 <= version < 11.0, and
``test_trt_static_checks.py`` checks 10.3 (JetPack 6) only.

``python_tests/data/trt_reference/python_api_used_by_version.json`` is generated data (``trt_api_versions.py`` says how;
names only, per version its release tag and commit in NVIDIA/TensorRT): per minor version 10.0 ... 10.16, the part of
the pybind11 bindings that the names the package and the fakes use can reach. Every version is checked with the same
``check_source`` / ``check_fake`` passes as 10.3.

What the versions found: the surface used is the same in every 10.x (later versions only add overloads and members),
except that TensorRT 10.0 has no ``UnaryOperation.ISNAN`` (added in 10.1), which only the fake ONNX importer names
(``fake_onnx_importer.UNARY``: IsNaN as 10.1+ lowers it); the package names no UnaryOperation but SQRT. That one
finding is listed below (``KNOWN``), so a new gap fails the test and so does this one's disappearance.

Each check is shown to fail: a member removed from one version's table, a changed signature, a fake class that a
version lacks, and a name the package starts to use that the table does not have.
"""

from __future__ import annotations

import copy
import json
import os
import re

import pytest
import trt_api_surface as surface
import trt_api_versions as versions

from zsseg_rt.runtime.backends.tensorrt.engines import MAX_TENSORRT, MIN_TENSORRT, check_tensorrt_version

TABLE = versions.load_table()
ROOT = versions.ROOT
KNOWN = {  # version -> the findings that are understood (see the module docstring)
    "10.0": {"fake UnaryOperation: enum member 'ISNAN' is not in TensorRT 10.0"},
}


def _known_classes(table) -> set:
    return {name.split(".", 1)[0] for name in table["names"]}


def _findings(table, version: str) -> set:
    problems = surface.check_everything(ROOT, versions.version_api(table, version), known=_known_classes(table))
    return {str(p) for p in problems}


def test_the_table_is_generated_data_with_its_source():
    source = TABLE["source"]
    assert source["repository"] == "https://github.com/NVIDIA/TensorRT"
    assert "trt_api_versions.py" in source["generated_by"] and "python/src/infer/pyCore.cpp" in source["files"]
    for minor, entry in TABLE["versions"].items():
        assert re.fullmatch(rf"v{re.escape(minor)}(\.\d+)*", entry["ref"]) and re.fullmatch(
            r"[0-9a-f]{40}", entry["commit"]
        )
        assert entry["api"] in TABLE["apis"]
    assert os.path.getsize(versions.TABLE_PATH) < 64_000  # names only


def test_the_table_covers_every_minor_version_the_package_accepts():
    minors = list(TABLE["versions"])
    assert minors == [f"10.{i}" for i in range(len(minors))] and len(minors) >= 17  # 10.0 ... 10.16, none skipped
    assert MIN_TENSORRT == (10, 0) and MAX_TENSORRT == (11, 0), "the accepted range changed: regenerate the table"
    for minor in minors:
        check_tensorrt_version(f"{minor}.0")  # every version in the table is accepted ...
    for outside in ("9.9.0", "11.0.0"):  # ... and what the table leaves out is not
        with pytest.raises(ImportError):
            check_tensorrt_version(outside)


def test_the_table_has_every_name_the_package_and_fakes_use_now():
    used = versions.used_names(surface.Api(surface.load_api()))
    missing = sorted(used - set(TABLE["names"]))
    assert not missing, (
        f"names used now but not in the per-version table ({missing}): regenerate it: {versions.GENERATED_BY}"
    )


def test_the_10_3_entry_is_the_checked_in_10_3_list_pruned():
    """The generator's extraction and pruning agree with python_api_10.3.json (made by the extractor alone)."""
    full = surface.load_api()
    entry = TABLE["versions"]["10.3"]
    assert entry["commit"] == full["source"]["commit"] and entry["ref"] == full["source"]["ref"]
    assert versions.prune(full, TABLE["names"]) == TABLE["apis"][entry["api"]]


@pytest.mark.parametrize("version", list(TABLE["versions"]))
def test_every_name_used_exists_in(version):
    assert _findings(TABLE, version) == KNOWN.get(version, set())


def test_the_known_gap_is_tensorrt_10_0s():
    def unary(version):
        return versions.version_api(TABLE, version).classes["UnaryOperation"]["members"]

    assert "ISNAN" not in unary("10.0") and all("ISNAN" in unary(v) for v in list(TABLE["versions"])[1:])
    pytest.importorskip("onnx", reason="the fake importer reads graphs with onnx (not in a runtime-only install)")
    from fake_onnx_importer import UNARY

    assert UNARY["IsNaN"] == "ISNAN"  # only the fake importer names it


# ---------------------------------------------------------------------------------------------- the controls
def _edited(version: str, edit):
    """A copy of the table where ``version`` has an API of its own, changed by ``edit(classes)``."""
    table = copy.deepcopy(TABLE)
    api = copy.deepcopy(table["apis"][table["versions"][version]["api"]])
    edit(api["classes"])
    table["apis"]["edited"] = api
    table["versions"][version]["api"] = "edited"
    return table


def test_a_member_missing_from_one_version_is_caught():
    table = _edited("10.5", lambda classes: classes["IBuilderConfig"]["methods"].pop("set_memory_pool_limit"))
    found = _findings(table, "10.5")
    assert any("IBuilderConfig (or a subclass) has no 'set_memory_pool_limit' in TensorRT 10.5" in f for f in found)
    assert any("fake IBuilderConfig: member 'set_memory_pool_limit' is not in TensorRT 10.5" in f for f in found)
    assert _findings(table, "10.4") == set()  # the other versions are untouched


def test_a_changed_signature_is_caught():
    def edit(classes):  # as if 10.9 had taken the pool size away
        classes["IBuilderConfig"]["methods"]["set_memory_pool_limit"] = [["pool"]]

    found = _findings(_edited("10.9", edit), "10.9")
    assert any("IBuilderConfig.set_memory_pool_limit(...) does not fit TensorRT 10.9's signatures" in f for f in found)
    assert any("fake IBuilderConfig.set_memory_pool_limit: parameters ['pool', 'pool_size'] differ" in f for f in found)


def test_a_fake_class_a_version_lacks_is_caught():
    found = _findings(_edited("10.12", lambda classes: classes.pop("EngineInspector")), "10.12")
    assert "fake EngineInspector: class 'EngineInspector' is not in TensorRT 10.12" in found


def test_a_name_the_table_lacks_is_caught(tmp_path, monkeypatch):
    planted = tmp_path / "zsseg_rt" / "export"
    planted.mkdir(parents=True)
    (planted / "planted.py").write_text(
        "def f(trt, config):\n    config.set_preview_feature(trt.PreviewFeature.X, True)\n"
    )
    files = surface.package_files(ROOT) + [str(planted / "planted.py")]
    monkeypatch.setattr(surface, "package_files", lambda root: files)
    used = versions.used_names(surface.Api(surface.load_api()))
    assert {"IBuilderConfig.set_preview_feature", "PreviewFeature.X"} <= used - set(TABLE["names"])
    assert any("PreviewFeature" in f for f in _findings(TABLE, "10.16"))


def test_the_table_file_is_what_the_generator_writes():
    """The file is ``trt_api_versions.dumps`` of its own content (one line per version and class)."""
    with open(versions.TABLE_PATH, encoding="utf-8") as handle:
        text = handle.read()
    assert versions.dumps(json.loads(text)) == text
