"""The sanitizers stage's selection and bounds (issue 86 item 1; python_tests/stage_order.py): every
``not_sanitized`` mark gives its reason, no must-run test carries one, every CUDA test of a file that starts child
processes carries one, the sanitized run deselects them, its must-runs go first and a deadline skips what has not
started. The H200 run of 7f842ed: memcheck's pytest ran past 139 s and 205 s with 256 of 257 tests done (the two
tests that start four CUDA children each under ``--target-processes all``), and the bound lost every result."""

from __future__ import annotations

import ast
import time
from pathlib import Path
from types import SimpleNamespace
from typing import List

import pytest
import stage_order

from checks import gpu_stages

TESTS = Path(__file__).resolve().parent
CHILD_PROCESS_MODULES = ("subprocess", "multiprocessing")
# what starts child processes without an import of those in the test file: the candidates' program (one check
# process per candidate: checks/postprocess_variants.py checked_apart)
CHILD_PROCESS_CALLS = ("checked_apart", "pv.main", "postprocess_variants.main")


def _mark(node: ast.expr, name: str):
    """``node`` if it is ``pytest.mark.NAME`` or a call of it, else None."""
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute) and target.attr == name:
        inner = target.value
        if isinstance(inner, ast.Attribute) and inner.attr == "mark":
            return node
    return None


def _module_marks(tree: ast.Module) -> List[ast.expr]:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets):
            value = stmt.value
            return list(value.elts) if isinstance(value, (ast.List, ast.Tuple)) else [value]
    return []


def _starts_processes(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in CHILD_PROCESS_MODULES for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in CHILD_PROCESS_MODULES:
            return True
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in CHILD_PROCESS_CALLS or name.rsplit(".", 1)[-1] in CHILD_PROCESS_CALLS:
                return True
    return False


def problems(source: str, path: str) -> List[str]:
    """What breaks the rules in one test file's source."""
    tree = ast.parse(source)
    found = []
    module = _module_marks(tree)
    module_cuda = any(_mark(m, "cuda") is not None for m in module)
    module_unsanitized = [m for m in module if _mark(m, stage_order.NOT_SANITIZED) is not None]
    spawns = _starts_processes(tree)
    for node in ast.walk(tree):
        marks = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            marks = [m for m in node.decorator_list if _mark(m, stage_order.NOT_SANITIZED) is not None]
        for mark in marks + (module_unsanitized if node is tree else []):
            args = mark.args if isinstance(mark, ast.Call) else []
            reason = args[0].value if args and isinstance(args[0], ast.Constant) else None
            if not (isinstance(reason, str) and reason.strip()):
                found.append(f"{path}:{mark.lineno}: not_sanitized without its reason (a non-empty string)")
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.name.startswith("test"):
            continue
        cuda = module_cuda or any(_mark(m, "cuda") is not None for m in node.decorator_list)
        if cuda and spawns and not (marks or module_unsanitized):
            found.append(
                f"{path}::{node.name}: a CUDA test in a file that starts child processes, without "
                "@pytest.mark.not_sanitized(reason)"
            )
    return found


def _unsanitized_tests(source: str) -> List[str]:
    tree = ast.parse(source)
    whole = any(_mark(m, stage_order.NOT_SANITIZED) is not None for m in _module_marks(tree))
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and (whole or any(_mark(m, stage_order.NOT_SANITIZED) is not None for m in node.decorator_list))
    ]


def test_every_test_file_keeps_the_rules():
    found = []
    for path in sorted(TESTS.rglob("test_*.py")):
        found += problems(path.read_text(encoding="utf-8"), str(path.relative_to(TESTS.parent)))
    assert not found, "\n".join(found)


def test_the_rules_catch_a_spawning_cuda_test_and_a_mark_without_reason():  # the controls
    spawning = "import subprocess\nimport pytest\n\n@pytest.mark.cuda\ndef test_x():\n    subprocess.run(['true'])\n"
    assert problems(spawning, "t.py") == [
        "t.py::test_x: a CUDA test in a file that starts child processes, without @pytest.mark.not_sanitized(reason)"
    ]
    bare = spawning.replace("@pytest.mark.cuda\n", "@pytest.mark.cuda\n@pytest.mark.not_sanitized\n")
    assert problems(bare, "t.py") == ["t.py:5: not_sanitized without its reason (a non-empty string)"]
    marked = spawning.replace("@pytest.mark.cuda\n", '@pytest.mark.cuda\n@pytest.mark.not_sanitized("a child")\n')
    assert problems(marked, "t.py") == []
    whole = "import multiprocessing\nimport pytest\npytestmark = [pytest.mark.cuda]\n\ndef test_y():\n    pass\n"
    assert len(problems(whole, "t.py")) == 1
    assert (
        problems(whole.replace("[pytest.mark.cuda]", '[pytest.mark.cuda, pytest.mark.not_sanitized("x")]'), "t.py")
        == []
    )
    assert problems(spawning.replace("import subprocess\n", ""), "t.py") == []  # no child process: no mark needed
    program = "import pytest\nfrom checks import postprocess_variants as pv\n\n@pytest.mark.cuda\ndef test_z():\n    pv.main([])\n"
    assert len(problems(program, "t.py")) == 1  # the candidates' program starts a check process per candidate
    assert problems(program.replace("pv.main([])", "pv._windows(8)"), "t.py") == []  # its helpers start none


def test_no_must_run_test_is_deselected_under_the_sanitizer():
    for nodeid, _why in gpu_stages.SANITIZERS_MUST_RUN:
        path, name = nodeid.split("::")
        source = (TESTS.parent / path).read_text(encoding="utf-8")
        assert name not in _unsanitized_tests(source), nodeid


def test_the_sanitized_run_deselects_the_marked_tests():
    options = gpu_stages.pytest_options(sanitized=True)
    assert options[options.index("-m") + 1] == f"cuda and not {stage_order.NOT_SANITIZED}"
    assert gpu_stages.pytest_options()[1] != options[1]  # the other stages run them


def test_the_must_runs_go_first_in_the_order_given(monkeypatch):
    monkeypatch.setenv(stage_order.FIRST_ENV, "ops/test_b.py::test_late\npython_tests/ops/test_a.py::\n")
    ids = [
        "python_tests/ops/test_a.py::test_1",
        "python_tests/test_doc_snippets.py::test_snippets_run_as_written[docs/usage.md]",  # LONGEST_FIRST's first
        "python_tests/ops/test_b.py::test_early",
        "python_tests/ops/test_b.py::test_late",
        "python_tests/ops/test_a.py::test_2",
    ]
    items = [SimpleNamespace(nodeid=i) for i in ids]
    stage_order.longest_first(items)
    assert [i.nodeid for i in items] == [ids[3], ids[0], ids[4], ids[1], ids[2]]
    monkeypatch.delenv(stage_order.FIRST_ENV)
    items = [SimpleNamespace(nodeid=i) for i in ids]
    stage_order.longest_first(items)
    assert [i.nodeid for i in items] == [ids[1], ids[0], ids[2], ids[3], ids[4]]  # unset: as before


def test_a_test_not_started_by_the_deadline_is_skipped_and_says_why(monkeypatch):
    monkeypatch.setenv(stage_order.DEADLINE_ENV, str(time.time() + 3600))
    stage_order.pytest_runtest_setup(None)  # before it: runs
    monkeypatch.setenv(stage_order.DEADLINE_ENV, str(time.time() - 1))
    with pytest.raises(pytest.skip.Exception, match="the stage's deadline .* came first"):
        stage_order.pytest_runtest_setup(None)
    monkeypatch.setenv(stage_order.DEADLINE_ENV, "soon")
    with pytest.raises(pytest.UsageError, match="expected seconds since the epoch, got 'soon'"):
        stage_order.pytest_runtest_setup(None)
