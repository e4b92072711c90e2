"""The contract's old import paths (``zsseg_rt.models.family`` / ``.registry`` / ``.common.*``, before the contract
got its own package) still import, warn once, and are the very module objects of the new paths: one registry,
one set of classes (a copy would split the registry's state and fail ``isinstance``)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from support import subprocess_env

MOVED = {
    "zsseg_rt.models.family": "zsseg_rt.contract.family",
    "zsseg_rt.models.registry": "zsseg_rt.contract.registry",
    "zsseg_rt.models.common": "zsseg_rt.contract.common",
    "zsseg_rt.models.common.text": "zsseg_rt.contract.common.text",
    "zsseg_rt.models.common.official": "zsseg_rt.contract.common.official",
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_new_module_and_warns(old):
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({MOVED[old]!r})\n"
        "assert old is new, (old, new)\n"
        "assert new.__spec__.name == new.__name__ == %r, new.__spec__\n"
        "assert any(issubclass(w.category, DeprecationWarning) and 'removed in 0.2.0' in str(w.message)\n"
        "           for w in caught), [str(w.message) for w in caught]\n"
    ) % MOVED[old]
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert run.returncode == 0, run.stderr


def test_old_registry_path_shares_the_registry_state():
    with pytest.warns(DeprecationWarning):
        old = importlib.import_module("zsseg_rt.models.registry")
    from zsseg_rt.contract import registry

    assert old is registry and old.get_family("zegclip") is registry.get_family("zegclip")


def test_an_unknown_old_submodule_is_still_an_import_error():
    with pytest.warns(DeprecationWarning):
        importlib.import_module("zsseg_rt.models.common")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("zsseg_rt.models.common.no_such_module")
