"""checks/mutants.py's table stays applicable: every mutant's line is in its file exactly once and its tests exist
(the mutants themselves are run by hand: ``python -m checks mutants``; each must be killed)."""

from __future__ import annotations

import importlib
import sys

import pytest
from support import REPO


def _mutants():
    sys.path.append(str(REPO))
    try:
        return importlib.import_module("checks.mutants")
    finally:
        sys.path.remove(str(REPO))


@pytest.mark.parametrize("mutant", _mutants().MUTANTS, ids=lambda m: m.id)
def test_each_mutant_applies_once_and_names_existing_tests(mutant):
    assert (REPO / mutant.path).read_text(encoding="utf-8").count(mutant.old) == 1, mutant.id
    assert mutant.old != mutant.new
    for test in mutant.tests:
        path, _, name = test.partition("::")
        assert (REPO / path).is_file(), test
        assert not name or f"def {name.split('[')[0]}(" in (REPO / path).read_text(encoding="utf-8"), test
