"""Every code snippet of README.md and docs/*.md runs as written after the two set-up commands, or says why not.

A snippet is a fenced block in python (py), bash (sh, shell) or console (its commands are the lines starting with
"$ "). A fence with no language is refused: name one (```text for output or prose). Each snippet either RUNS here,
or carries a marker: an HTML comment right before its fence (only blank lines between; invisible on GitHub):

  (no marker)                          run it: each block in a fresh bash (``-euxo pipefail``) or Python process,
                                       the blocks of one document in order, in that document's own working directory
  <!-- snippet: not run: REASONS -->   not run in CI. REASONS names one or more of CATEGORIES (below), each with its
                                       details in brackets; every command line of the block must match the pattern of
                                       one of the categories it names, so a line that could run cannot hide in a
                                       marked block (comment lines and Python imports aside)
  <!-- snippet: repeats: DOC, ... -->  not run here: every command line (comments aside, spacing normalised) also
                                       appears in a snippet of one of the named documents, where it runs or is marked
  <!-- snippet: xfail: REASON -->      blocked by a code defect (REASON names the issue): run, and expected to fail;
                                       once it passes the test fails until the marker is removed
  <!-- snippet: output -->             program output, not a command (never run)
  <!-- snippet: fragment: REASON -->   a part of a program that cannot run alone (an API signature, a module of a
                                       package that does not exist)

"After the two set-up commands" (README: ``bash tools/run_demo.sh``, ``bash tools/run_tests.sh``): CI runs only the
test command, so the session fixture ``set_up_root`` does what the demo does, once: ``zsseg demo
--allow-random-weights`` in a scratch mirror of the repository root (links to its entries, a fresh ``out/``),
offline (no checkpoint, no CLIP weights: the random-weights ViT-B/16 bundle ``DEMO_BUNDLE`` the docs name; about
600 MB and 1-2 minutes on 2 cores). Each document then runs in its own mirror whose ``out/bundles`` links to that
set-up's, so what one page writes (``runs/segment/exp``, ``out/photo``) never meets another's.
``ZSSEG_DOC_SNIPPETS_SET_UP=DIR`` names a directory where that demo ran already (it holds ``DEMO_BUNDLE``) and
skips the demo: for iterating on the docs by hand.

The documents in ``ON_TINY_BUNDLE`` run their blocks with the tiny test bundle (``tiny_bundle``, 64 px) in the
demo bundle's place (``out/bundles`` holds it under ``DEMO_BUNDLE``'s name), without waiting for the demo: what they
show (the API calls and commands as written, their options, their outputs) holds for any bundle, and the full-size
ViT-B/16 made their run 10 times costlier (docs/usage.md: 208 s CPU of full-size inference in its 20 commands,
against about 20 s on the tiny bundle). What only the full size shows stays on it: the demo itself (the set-up: its
export, verification and overlay of the photo), README.md's first block (the Engine on the demo's bundle, end to
end), docs/openvino.md (OpenVINO on the full-size graphs) and export/test_fullsize.py (ONNX Runtime against PyTorch
on the full-size tower).

Documents whose snippets a colleague still has to mark carry their markers in ``PENDING_MARKERS`` until the
document has them (then an entry is stale and refused). The vocabulary is described in docs/development.md too.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from support import console_script, require_backend, subprocess_env

REPO = Path(__file__).resolve().parent.parent
DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))]
DEMO_BUNDLE = "out/bundles/zegclip_vitb16_voc_inductive-random"  # what `zsseg demo` writes with no weights at all
SET_UP_ENV = "ZSSEG_DOC_SNIPPETS_SET_UP"
SET_UP_TIMEOUT_S = 1500  # the demo: export + verification of a ViT-B/16 (1-2 min on 2 idle cores)
SNIPPET_TIMEOUT_S = 600  # one block
LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash", "console": "console"}
# repository entries a document's working directory does not link (it gets fresh ones, or none)
NOT_LINKED = {".git", "out", "runs", "work_dirs"}

# Why a snippet is not run: the phrase a `not run:` marker names, and what each command line it excuses must show.
CATEGORIES: Dict[str, str] = {
    # the set-up commands themselves: the set_up_root fixture runs the demo; CI is tools/run_tests.sh
    "set-up": r"tools/run_(demo|tests)\.sh|\bzsseg demo\b",
    # changes the Python environment the tests run in
    "installs": r"\bpip install\b|tools/setup_\w+\.sh",
    # a test command tools/run_tests.sh runs
    "test suite": r"\bpytest\b|tools/(run_tests|build_emulated|lint|runtime_only_tests)\.sh",
    "needs a GPU": r"tools/gpu_check\.sh|--precision (fp16|bf16)|--backend torch|\bcuda\b|--nproc_per_node"
    r"|\bgpu_record add\b",
    "needs TensorRT": r"\bbuild-engine\b(?!.*--backend (onnxruntime|torch))|\btensorrt\b",
    "needs a camera": r"/dev/video|csi://|rtsp://|display://",
    # ros2 bag / ros2 topic: a ROS 2 install (not on PyPI), which CI has not; what it reads is checked by other readers
    "needs ROS 2": r"\bros2\b",
    # a dataset download or the user's own data folder
    "needs a dataset": r"--data-root\b|--data\b|\bdata/|dataset\.root=",
    # a trained checkpoint or stock CLIP weights (CI has neither: no network); out/bundles/voc is the docs' name
    # for a bundle exported with trained weights; int8 fails its accuracy gate on random weights
    "needs weights": r"--official\b|--native\b|--clip-weights\b|--text-weights\b|\.pth\b|\bint8\b|work_dirs/"
    r"|out/bundles/voc\b|\bopenai\b",
    "runs until stopped": r"\bzsseg serve\b|--preview\b|\bcurl\b",
    # minutes to days: profiling, training, a cluster
    "slow": r"\bzsseg (profile|train|batch)\b|\btorchrun\b|\bprecompute\b|tools/gpu_artifacts\.sh",
}

# Markers for snippets of documents other sessions own, until those documents carry them (keyed by the document
# and the block's first command line, comments aside). An entry whose block has a marker of its own is stale.
PENDING_MARKERS: Dict[Tuple[str, str], str] = {}

MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")


@dataclass
class Snippet:
    doc: str  # path relative to the repository root
    line: int  # 1-based line of the opening fence
    language: str  # python | bash | console
    code: str
    marker: Optional[str]  # the marker's body ("not run: ..."), None: run
    pending: bool = False  # the marker comes from PENDING_MARKERS

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def kind(self) -> str:
        if self.marker is None:
            return "run"
        return self.marker.split(":", 1)[0].strip()

    @property
    def reason(self) -> str:
        return self.marker.split(":", 1)[1].strip() if self.marker and ":" in self.marker else ""

    def script(self) -> str:
        """What runs: the code, or a console block's "$ " lines."""
        if self.language != "console":
            return self.code
        return "".join(line[2:] + "\n" for line in self.code.splitlines() if line.startswith("$ "))


def parse(doc: str, text: str) -> Tuple[List[Snippet], List[str]]:
    """The snippets of one Markdown document and the problems of its markers and fences."""
    snippets: List[Snippet] = []
    errors: List[str] = []
    lines = text.splitlines()
    marker: Optional[Tuple[int, str]] = None
    i = 0
    while i < len(lines):
        line = lines[i]
        found = MARKER.match(line)
        fence = FENCE.match(line)
        if found:
            if marker is not None:
                errors.append(f"{doc}:{marker[0]}: a snippet marker with no code block after it (another follows)")
            marker = (i + 1, found.group("body"))
        elif line.lstrip().startswith("<!-- snippet"):
            errors.append(f"{doc}:{i + 1}: a snippet marker must be one line: <!-- snippet: KIND[: REASON] -->")
        elif fence:
            marks = fence.group("fence")
            close = re.compile(r"^\s*" + re.escape(marks[0]) + "{" + str(len(marks)) + r",}\s*$")
            end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), len(lines))
            indent = len(fence.group("indent"))  # a fence inside a list item: its lines are indented as much
            body = "".join(re.sub(r"^ {0,%d}" % indent, "", code) + "\n" for code in lines[i + 1 : end])
            info = fence.group("info").lower()
            if not info:
                errors.append(
                    f"{doc}:{i + 1}: a code block with no language: name one (```bash, ```python, or "
                    "```text for output)"
                )
            elif info in LANGUAGES:
                snippets.append(Snippet(doc, i + 1, LANGUAGES[info], body, marker[1] if marker else None))
            elif marker is not None:
                errors.append(
                    f"{doc}:{marker[0]}: a snippet marker before a ```{info} block (only python, bash, "
                    "sh, shell and console blocks are snippets)"
                )
            marker = None
            i = end + 1
            continue
        elif line.strip() and marker is not None:
            errors.append(
                f"{doc}:{marker[0]}: a snippet marker must come right before a code block (only blank lines between)"
            )
            marker = None
        i += 1
    if marker is not None:
        errors.append(f"{doc}:{marker[0]}: a snippet marker with no code block after it")
    return snippets, errors


def command_lines(snippet: Snippet) -> List[Tuple[int, str]]:
    """(line in the document, command) for each command of a block: continuation lines joined, comments and blank
    lines dropped, spacing normalised; Python imports are not commands."""
    result: List[Tuple[int, str]] = []
    pending = ""
    start = 0
    for offset, raw in enumerate(snippet.script().splitlines()):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            start = snippet.line + 1 + offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        command = " ".join((pending + line).split())
        pending = ""
        if not command:
            continue
        if snippet.language == "python" and re.match(r"(import|from)\s+\S+(\s+import\b.*)?$", command):
            continue
        result.append((start, command))
    if pending.strip():
        result.append((start, " ".join(pending.split())))
    return result


def categories_in(reason: str) -> List[str]:
    return [name for name in CATEGORIES if name in reason]


def load_docs(root: Path = REPO, docs: Optional[List[str]] = None) -> Tuple[Dict[str, List[Snippet]], List[str]]:
    """Every document's snippets (pending markers applied) and every problem of parsing them."""
    by_doc: Dict[str, List[Snippet]] = {}
    errors: List[str] = []
    for doc in docs if docs is not None else DOCS:
        snippets, problems = parse(doc, (root / doc).read_text(encoding="utf-8"))
        by_doc[doc] = snippets
        errors += problems
    return by_doc, errors


def apply_pending(by_doc: Dict[str, List[Snippet]], pending: Dict[Tuple[str, str], str]) -> List[str]:
    errors = []
    for (doc, first), marker in pending.items():
        block = next((s for s in by_doc.get(doc, []) if command_lines(s)[:1] and command_lines(s)[0][1] == first), None)
        if block is None:
            errors.append(f"PENDING_MARKERS: no block of {doc} starts with {first!r}: update or delete the entry")
        elif block.marker is not None:
            errors.append(f"PENDING_MARKERS: {block.where} carries its own marker now: delete the entry for it")
        else:
            block.marker, block.pending = marker, True
    return errors


def check_markers(by_doc: Dict[str, List[Snippet]]) -> List[str]:
    """The problems of the markers: unknown kinds, reasons naming no category, command lines their categories do
    not explain, repeated lines found nowhere else."""
    errors = []
    for doc, snippets in by_doc.items():
        for snippet in snippets:
            kind, reason = snippet.kind, snippet.reason
            if kind == "run":
                continue
            if kind == "not run":
                named = categories_in(reason)
                if not named:
                    errors.append(f"{snippet.where}: 'not run' names no reason of {list(CATEGORIES)}: {reason!r}")
                    continue
                for line, command in command_lines(snippet):
                    if not any(re.search(CATEGORIES[name], command) for name in named):
                        errors.append(
                            f"{doc}:{line}: {command!r} is in a block marked 'not run: {', '.join(named)}' but "
                            "shows none of those reasons: run it (move it to a block without a marker) or name "
                            "its real reason"
                        )
            elif kind == "repeats":
                targets = [name.strip() for name in reason.split(",") if name.strip()]
                missing = [name for name in targets if name not in by_doc]
                if not targets or missing:
                    errors.append(f"{snippet.where}: 'repeats' names documents that are not checked: {missing or '-'}")
                    continue
                elsewhere = {
                    command
                    for name in targets
                    for other in by_doc[name]
                    for _, command in command_lines(other)
                    if other.kind not in ("output", "fragment")
                }
                for line, command in command_lines(snippet):
                    if command not in elsewhere:
                        errors.append(
                            f"{doc}:{line}: {command!r} is marked as repeating {', '.join(targets)}, "
                            "where no snippet has this line: copy it there verbatim, or run it here"
                        )
            elif kind in ("xfail", "fragment"):
                if not reason:
                    errors.append(f"{snippet.where}: '{kind}' needs a reason: <!-- snippet: {kind}: WHY -->")
            elif kind != "output" or reason:
                errors.append(
                    f"{snippet.where}: unknown snippet marker {snippet.marker!r} (kinds: not run, repeats, "
                    "xfail, output, fragment)"
                )
    return errors


def all_problems() -> Tuple[Dict[str, List[Snippet]], List[str]]:
    by_doc, errors = load_docs()
    errors += apply_pending(by_doc, PENDING_MARKERS)
    errors += check_markers(by_doc)
    return by_doc, errors


SNIPPETS, PROBLEMS = all_problems()


def test_every_snippet_runs_or_says_why():
    assert not PROBLEMS, "snippets of README.md and docs/*.md:\n  " + "\n  ".join(PROBLEMS)
    assert sum(len(s) for s in SNIPPETS.values()) >= 10  # the docs were found and read


def test_the_marker_checks_can_fail(tmp_path):
    """The checks above refuse what they should (a gate that cannot fail proves nothing)."""
    (tmp_path / "a.md").write_text(
        "<!-- snippet: not run: needs a camera -->\n```bash\nzsseg camera /dev/video0 -o x/\nzsseg segment a.jpg\n```\n"
        "<!-- snippet: not run: because -->\n```bash\nls\n```\n"
        "<!-- snippet: repeats: b.md -->\n```bash\nzsseg --version   # here\nzsseg nowhere\n```\n"
        "<!-- snippet: maybe -->\n```python\nprint(1)\n```\n"
        "```\nno language\n```\n"
        "<!-- snippet: output -->\ntext between\n```console\n$ ls\n```\n"
        "<!-- snippet: xfail -->\n```sh\nfalse\n```\n<!-- snippet: output -->\n",
        encoding="utf-8",
    )
    (tmp_path / "b.md").write_text("```bash\nzsseg  --version\n```\n", encoding="utf-8")
    by_doc, errors = load_docs(tmp_path, ["a.md", "b.md"])
    errors += check_markers(by_doc)
    errors += apply_pending(by_doc, {("b.md", "zsseg --version"): "not run: slow", ("b.md", "nothing"): "output"})
    text = "\n".join(errors)
    expected = [
        "a.md:4: 'zsseg segment a.jpg' is in a block marked 'not run: needs a camera'",
        "a.md:7: 'not run' names no reason",
        "a.md:13: 'zsseg nowhere' is marked as repeating b.md",
        "a.md:16: unknown snippet marker 'maybe'",
        "a.md:19: a code block with no language",
        "a.md:22: a snippet marker must come right before a code block",
        "a.md:28: 'xfail' needs a reason",
        "a.md:31: a snippet marker with no code block after it",
        "no block of b.md starts with 'nothing'",
    ]
    for piece in expected:
        assert piece in text, f"{piece!r} not reported; reported:\n{text}"
    assert "a.md:3:" not in text and "zsseg --version" not in text.split("PENDING_MARKERS")[0]  # matched lines pass
    assert by_doc["b.md"][0].marker == "not run: slow" and by_doc["b.md"][0].pending
    console = next(s for s in by_doc["a.md"] if s.language == "console")
    assert console.script() == "ls\n"


def test_the_marker_vocabulary_is_documented():
    text = (REPO / "docs" / "development.md").read_text(encoding="utf-8")
    for piece in (
        "<!-- snippet: not run:",
        "<!-- snippet: repeats:",
        "<!-- snippet: xfail:",
        "<!-- snippet: output",
        "<!-- snippet: fragment:",
        "test_doc_snippets.py",
        *CATEGORIES,
    ):
        assert piece in text, f"docs/development.md does not describe the snippet marker {piece!r}"


# ---- running them ----


def _snippet_env(root: Path) -> dict:
    env = subprocess_env(
        checkout=True,  # `python -m checks ...` where cwd is not on sys.path (PYTHONSAFEPATH, as gpu_check runs)
        HF_HUB_OFFLINE="1",  # no weights download: the demo takes its random-weights path, as in CI
        HF_HOME=str(root / ".hf-home"),  # ... even where a local cache holds the CLIP weights
        ZSSEG_RT_CACHE_DIR=str(
            root / ".zsseg-rt-cache"
        ),  # verified-file hashes: shared by the snippets, not the user's
        MPLBACKEND="Agg",
        PYTHONDONTWRITEBYTECODE="1",
    )
    # zsseg and python: the venv's (the console script's folder first where pip put it elsewhere: --target)
    env["PATH"] = os.pathsep.join(
        dict.fromkeys([os.path.dirname(console_script()), os.path.dirname(sys.executable), env.get("PATH", "")])
    )
    for name in ("ZSSEG_CHECKPOINT", "ZSSEG_MAX_PIXELS"):
        env.pop(name, None)
    return env


def _mirror(target: Path) -> Path:
    """A working directory that looks like the repository root: links to its entries but fresh out/ and runs/."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        if entry.name not in NOT_LINKED and not (target / entry.name).exists():
            (target / entry.name).symlink_to(entry)
    return target


def _tail(text: str, most: int = 4000) -> str:
    return text if len(text) <= most else "...\n" + text[-most:]


@pytest.fixture(scope="session")
def set_up_root(tmp_path_factory) -> Path:
    """A repository mirror in which `zsseg demo --allow-random-weights` ran (tools/run_demo.sh, offline): once per
    session, shared by pytest-xdist workers through a lock."""
    given = os.environ.get(SET_UP_ENV)
    if given:
        if not (Path(given) / DEMO_BUNDLE / "meta.json").is_file():
            raise FileNotFoundError(f"${SET_UP_ENV}={given!r} holds no {DEMO_BUNDLE}/meta.json")
        return Path(given)
    pytest.importorskip("torch", reason="the set-up's demo exports a bundle: that needs torch")
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the directory every worker's basetemp is in
    root = base / "doc-snippets-set-up"
    with FileLock(str(base / "doc-snippets-set-up.lock")):
        if not (root / ".done").exists():
            shutil.rmtree(root, ignore_errors=True)
            _mirror(root)
            start, cpu = time.perf_counter(), _children_cpu()
            proc = subprocess.run(
                [console_script(), "demo", "--allow-random-weights"],
                cwd=root,
                env=_snippet_env(root),
                capture_output=True,
                text=True,
                timeout=SET_UP_TIMEOUT_S,
            )
            seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
            assert proc.returncode == 0, (
                f"the set-up (zsseg demo --allow-random-weights, as tools/run_demo.sh) failed after {seconds:.0f} s:\n"
                + _tail(proc.stdout + proc.stderr)
            )
            assert (root / DEMO_BUNDLE / "meta.json").is_file(), (
                f"the demo did not write {DEMO_BUNDLE}, the bundle README.md and docs/ name: update them (and "
                f"DEMO_BUNDLE) to what it writes now:\n{_tail(proc.stdout)}"
            )
            (root / ".done").write_text(f"{seconds:.1f}\n", encoding="utf-8")
            print(f"[doc snippets] set-up (zsseg demo --allow-random-weights): {seconds:.1f} s ({cpu:.1f} s CPU)")
    return root


def _workdir(set_up: Path, target: Path) -> Path:
    """One document's working directory: the repository mirror, out/bundles from the set-up, no runs/."""
    _mirror(target)
    (target / "out").mkdir(exist_ok=True)
    (target / "out" / "bundles").symlink_to(set_up / "out" / "bundles", target_is_directory=True)
    overlay = set_up / "out" / "demo_overlay.png"
    if overlay.is_file():
        shutil.copy(overlay, target / "out" / "demo_overlay.png")
    return target


def _tiny_workdir(bundle: str, target: Path) -> Path:
    """A document's working directory for ``ON_TINY_BUNDLE``: the repository mirror, the tiny bundle (this test's own
    copy: a block may write into its bundle) under ``DEMO_BUNDLE``'s name, no runs/."""
    _mirror(target)
    shutil.copytree(bundle, target / DEMO_BUNDLE)
    return target


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_snippet(snippet: Snippet, cwd: Path, scripts: Path, env: dict) -> Tuple[int, str, float, float]:
    """Runs one block as written: (exit status, output, seconds, CPU seconds of its processes)."""
    stem = f"{snippet.doc.replace('/', '_')}_{snippet.line}"
    if snippet.language == "python":
        path = scripts / f"{stem}.py"  # outside cwd: `import zsseg_rt` finds the installed package, as it would
        path.write_text(snippet.script(), encoding="utf-8")
        command = [sys.executable, str(path)]
    else:
        path = scripts / f"{stem}.sh"
        path.write_text(snippet.script(), encoding="utf-8")
        command = ["bash", "-euxo", "pipefail", str(path)]
    start, cpu = time.perf_counter(), _children_cpu()
    try:
        proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S)
        return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start, _children_cpu() - cpu
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return -9, f"{out}{err}\n[timed out after {SNIPPET_TIMEOUT_S} s]", time.perf_counter() - start, 0.0


RUN_DOCS = [doc for doc, snippets in SNIPPETS.items() if any(s.kind in ("run", "xfail") for s in snippets)]
# Documents run with the tiny test bundle in the demo bundle's place (see the module's docstring): their claims are the
# API and the commands, not the model; each entry says why the tiny bundle shows the same.
ON_TINY_BUNDLE: Dict[str, str] = {
    "docs/usage.md": "the Engine API, VideoSegmenter and the segment/camera commands with their options: the same "
    "code for a 64 px and a 512 px bundle (the full-size Engine runs in README.md, export/test_fullsize.py, the demo)",
}
# A document about an optional backend runs where its library is installed (CI's environment; the GPU image has no
# OpenVINO)
DOC_NEEDS = {"docs/openvino.md": "openvino"}


@pytest.mark.slow
@pytest.mark.parametrize("doc", RUN_DOCS)
def test_snippets_run_as_written(doc, request, tmp_path):
    """The document's snippets, in order, in a fresh working directory after the set-up (or, ``ON_TINY_BUNDLE``,
    with the tiny bundle in the demo bundle's place): each runs (exit status 0) or, marked xfail, fails."""
    if PROBLEMS:
        pytest.fail("fix the markers first (test_every_snippet_runs_or_says_why)")
    if doc in DOC_NEEDS:
        require_backend(DOC_NEEDS[doc])  # a skip naming why; CI (ZSSEG_REQUIRE_OPENVINO=1) fails instead
    if doc in ON_TINY_BUNDLE and not os.environ.get(SET_UP_ENV):  # a given set-up: its bundle, as before
        cwd = _tiny_workdir(request.getfixturevalue("tiny_bundle"), tmp_path / "root")
        env = _snippet_env(tmp_path / "root")
    else:
        set_up_root = request.getfixturevalue("set_up_root")
        cwd = _workdir(set_up_root, tmp_path / "root")
        env = _snippet_env(set_up_root)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    failures, times = [], []
    for snippet in SNIPPETS[doc]:
        if snippet.kind not in ("run", "xfail"):
            continue
        status, output, seconds, cpu = run_snippet(snippet, cwd, scripts, env)
        times.append(f"{snippet.where} {seconds:.1f} s ({cpu:.1f} s CPU)")
        if snippet.kind == "run" and status != 0:
            failures.append(
                f"{snippet.where}: the ```{snippet.language} block failed (exit {status}, {seconds:.0f} s; run in "
                f"{cwd})\n--- the block ---\n{snippet.code}--- its output ---\n{_tail(output)}"
            )
        elif snippet.kind == "xfail" and status == 0:
            failures.append(f"{snippet.where}: the block marked 'xfail: {snippet.reason}' runs now: remove its marker")
    print("[doc snippets] " + ", ".join(times))
    assert not failures, "\n\n".join(failures)
