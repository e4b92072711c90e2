"""What a committed GPU run record is checked against besides itself (checks/gpu_record.py): its logs tarball and git.

- The tarball ``<record>.logs.tar.gz`` beside the record: the record holds its SHA-256, and the tarball holds the
  record as written (``record.json``: every field but ``logs``), so neither can be swapped or edited alone; the
  status is recomputed from the tarball's step list, JUnit reports and verdict files.
- git at the record's ``artifacts.commit`` (``git ls-tree`` / ``git cat-file``, no checkout): the stage definition
  as it was there (``checks/gpu_stages.py`` of that commit: its must-run list) and the stage's coverage hash over that
  commit's files, which the record's must equal.
- The records committed before their tarballs were (``UNVERIFIED``): their logs were never committed and are lost.
  They are pinned by content, shown as history and never count as a pass; any other record without its tarball is
  refused.

Standard library only; nothing here imports gpu_record (it imports this).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

RECORD_IN_LOGS = "record.json"  # the record as written, less its ``logs`` field, inside its tarball
LOGS_SUFFIX = ".logs.tar.gz"
STAGES_FILE = "checks/gpu_stages.py"
NOT_SENT = ("gpu_artifacts", "out", ".git")  # as checks/gpu_artifacts.py: what the device tool's copy lacks
SKIPPED_PARTS = ("__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache")
LOG_KEEP_BYTES = 2 * 1024 * 1024  # per log in the tarball (its end): the device tool brings back 16 MiB a file
KEPT_WHOLE = (".xml", ".tsv", ".txt")  # never cut: the status is recomputed from them

# The 16 records committed without their logs tarballs (the H200's two runs and the H100's of 2026-11-26: the
# tarballs came back with them and were never committed; they are lost). File -> SHA-256 of its bytes: an edit makes
# it a record without its tarball, which is refused. They render as history, "unverified (no logs)", and never count.
UNVERIFIED: Dict[str, str] = {
    "2026-11-26T075054_nvidia-h200_engine.json": "120a6f098bc47bc3da1e096a68341bf2da6785cf19d9049e773b48e6697f1398",
    "2026-11-26T075344_nvidia-h200_ops.json": "51ac11e50aa688007527e4fc6fa9753be40e02d52f012541e3dc137e253bbe73",
    "2026-11-26T075754_nvidia-h200_models.json": "00b366469e38410478bc574fe702617935d4e1f30eee115b2765c4704812672d",
    "2026-11-26T080115_nvidia-h200_suite.json": "f6d6ade56b61ba01af47fc3c567aa72dd4900ecfe3cf105ba442f11e7343d26f",
    "2026-11-26T080335_nvidia-h200_sanitizers.json": "e7c24116b6d659e594c247b5761d9ac0efbdde68788a8ca03f1f3c2afd9b444d",
    "2026-11-26T081843_nvidia-h200_ops.json": "d45e9e9c23c1fd918f13fa6c8349ee82a467c3754c9121da1860b1cd533a1347",
    "2026-11-26T082223_nvidia-h200_models.json": "c03a1cfc5a0a898a79d313a97967e737282a0664661cb297ed38951d05050768",
    "2026-11-26T082542_nvidia-h200_suite.json": "2eb9ee1868f1b77f8c1926e2a5f1e27c22cade2f8cefe8e2f3fd0b2675bed27e",
    "2026-11-26T082808_nvidia-h200_sanitizers.json": "7e1feb6880002d26dd9ec1aa5963c6d9ae1def8e6f865f6cde187f25ffdce570",
    "2026-11-26T082932_nvidia-h200_engine.json": "8cc7976723508bc3b10204c90547ba6fd6c96960b98fd409972b90bd9b0ce645",
    "2026-11-26T174205_nvidia-h100-80gb-hbm3_engine.json": "5139144782be6ab7b28901c3c02b09ba7d918ceccea1808a83099d280e87d506",
    "2026-11-26T174347_nvidia-h100-80gb-hbm3_ops.json": "8177cd75715695e7cd59d726b0460484d7490ebad23cc9f7caa5a4d3288b4ac4",
    "2026-11-26T174613_nvidia-h100-80gb-hbm3_probe.json": "86116a17a77a3e441dc864bf9a292d9201b4a6377f01ddf1c47fa716f17b3c28",
    "2026-11-26T174830_nvidia-h100-80gb-hbm3_models.json": "37decc7f039b3039f5c12b2bb86001d9e93ee1f54bda6d0879fe19ff7e73e2fb",
    "2026-11-26T175003_nvidia-h100-80gb-hbm3_suite.json": "7b68e79feffc3ed61a5e98b71e526bfd1ebfeeb742f8547a43408720e71c1f4d",
    "2026-11-26T175143_nvidia-h100-80gb-hbm3_sanitizers.json": "62838b8a819e5924c538e214ac7d99d0c7373187a4436b48fc4abd4b9a85330f",
}


class Unverifiable(Exception):
    """git cannot give what a record must be checked against: the message says what and why."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unverified(path: Path) -> bool:
    """A record committed before the tarballs were, byte for byte as committed then."""
    pinned = UNVERIFIED.get(path.name)
    return bool(pinned) and path.is_file() and sha256_bytes(path.read_bytes()) == pinned


def tarball_of(path: Path) -> Path:
    """Where a record's logs tarball must lie: beside it, named after it."""
    return path.with_name(path.name[: -len(".json")] + LOGS_SUFFIX)


def record_in_logs(record: dict) -> dict:
    """What of a record its tarball holds: every field but ``logs`` (the tarball's own hash) and the reader's."""
    return {k: v for k, v in record.items() if k != "logs" and not k.startswith("_")}


def unpack(tarball: Path, folder: Path) -> None:
    """The tarball's regular files into ``folder`` (names that leave it are skipped)."""
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and not m.name.startswith(("/", ".."))]
        members = [m for m in members if ".." not in Path(m.name).parts]
        try:
            tar.extractall(folder, members=members, filter="data")
        except TypeError:  # a Python without extraction filters (before 3.12 and its backports)
            tar.extractall(folder, members=members)  # noqa: S202 - names checked above


def unpacked(tarball: Path) -> "tempfile.TemporaryDirectory[str]":
    """A temporary folder holding the tarball's files (``with unpacked(t) as tmp``)."""
    holder = tempfile.TemporaryDirectory()
    try:
        unpack(tarball, Path(holder.name))
    except Exception:
        holder.cleanup()
        raise
    return holder


def read_json(path: Path) -> Optional[dict]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# ---- the logs tarball -----------------------------------------------------------------------------------------------
def pack_logs(work: Path, target: Path, extra: Optional[Dict[str, Path]] = None, record: Optional[dict] = None) -> None:
    """Every log, report and step list of the stage into one tarball (each log's last LOG_KEEP_BYTES; the reports and
    lists whole), ``extra`` (name in the tarball -> file: the probe's files) whole, and ``record`` as record.json
    (all of it but ``logs``, which holds the tarball's SHA-256): the record and its logs tie each other."""
    with tarfile.open(target, "w:gz") as tar:
        if record is not None:
            data = json.dumps(record_in_logs(record), indent=1).encode() + b"\n"
            info = tarfile.TarInfo(RECORD_IN_LOGS)
            info.size, info.mtime, info.mode = len(data), int(datetime.datetime.now().timestamp()), 0o644
            tar.addfile(info, io.BytesIO(data))
        for path in sorted(work.rglob("*")):
            rel = path.relative_to(work)
            wanted = (".log", ".xml", ".json", ".tsv", ".txt")
            if not path.is_file() or rel.parts[0] in ("site", "bin") or path.suffix not in wanted:
                continue
            if rel.as_posix() == RECORD_IN_LOGS:  # the record's own copy is the one above
                continue
            if path.stat().st_size > LOG_KEEP_BYTES and path.suffix not in KEPT_WHOLE:
                cut = work / "logs" / f"{path.name}.end"
                with open(path, "rb") as src:
                    src.seek(-LOG_KEEP_BYTES, os.SEEK_END)
                    cut.write_bytes(b"[... cut: its last bytes only ...]\n" + src.read())
                tar.add(cut, arcname=str(rel))
                cut.unlink()
            else:
                tar.add(path, arcname=str(rel))
        for name, path in (extra or {}).items():
            tar.add(path, arcname=name)


def same_json(one: object, other: object) -> bool:
    """Equal as JSON (a NaN in a report equals itself)."""
    return json.dumps(one, sort_keys=True) == json.dumps(other, sort_keys=True)


def differing_fields(one: dict, other: dict) -> List[str]:
    return sorted(k for k in set(one) | set(other) if not same_json(one.get(k), other.get(k)))


# ---- git at a commit: the stage definition and the coverage hash ----------------------------------------------------
def _git(repo: Path, *args: str, data: Optional[bytes] = None) -> bytes:
    try:
        run = subprocess.run(["git", *args], cwd=repo, input=data, capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unverifiable(f"git is not usable here ({type(exc).__name__})") from exc
    if run.returncode != 0:
        raise Unverifiable(f"git {args[0]} failed: {run.stderr.decode(errors='replace').strip()[:200]}")
    return run.stdout


class Commit:
    """A commit's files as the device tool would send its checkout (no .git, no carried folder, no caches), read with
    git alone: ``files`` (repository-relative paths), ``read(path)`` (bytes), ``sha(path)`` (SHA-256)."""

    def __init__(self, repo: Path, commit: str):
        self.repo, self.commit = repo, commit
        if not commit or _git(repo, "cat-file", "-t", f"{commit}^{{commit}}").strip() != b"commit":
            raise Unverifiable(f"no commit {commit!r}")
        self.blobs: Dict[str, str] = {}
        for entry in _git(repo, "ls-tree", "-r", "-z", "--full-tree", commit).split(b"\0"):
            if not entry:
                continue
            meta, path = entry.decode().split("\t", 1)
            mode, kind, oid = meta.split()
            parts = path.split("/")
            if kind != "blob" or mode == "160000" or parts[0] in NOT_SENT or path.endswith(".pyc"):
                continue
            if not any(part in SKIPPED_PARTS for part in parts):
                self.blobs[path] = oid
        self.files = sorted(self.blobs)
        self._bytes: Dict[str, bytes] = {}

    def prefetch(self, paths: List[str]) -> None:
        """Read many blobs in one git call (``git cat-file --batch``)."""
        wanted = sorted({self.blobs[p] for p in paths if p in self.blobs and self.blobs[p] not in self._bytes})
        if not wanted:
            return
        out = _git(self.repo, "cat-file", "--batch", data="".join(f"{oid}\n" for oid in wanted).encode())
        at = 0
        for oid in wanted:
            end = out.index(b"\n", at)
            header = out[at:end].split()
            if len(header) != 3 or header[0].decode() != oid:
                raise Unverifiable(f"git cat-file answered {out[at:end][:80]!r} for {oid}")
            size = int(header[2])
            self._bytes[oid] = out[end + 1 : end + 1 + size]
            at = end + 1 + size + 1

    def read(self, path: str) -> bytes:
        if path not in self.blobs:
            raise Unverifiable(f"{path} is not in {self.commit[:12]}")
        oid = self.blobs[path]
        if oid not in self._bytes:
            self.prefetch([path])
        return self._bytes[oid]

    def sha(self, path: str) -> str:
        return sha256_bytes(self.read(path))


_COMMITS: Dict[Tuple[str, str], Commit] = {}
_STAGES: Dict[Tuple[str, str], types.ModuleType] = {}


def commit_files(repo: Path, commit: str) -> Commit:
    key = (str(repo), commit)
    if key not in _COMMITS:
        _COMMITS[key] = Commit(repo, commit)
    return _COMMITS[key]


def stages_at(repo: Path, commit: str) -> types.ModuleType:
    """checks/gpu_stages.py as it was at ``commit`` (standard library only, and pure where the coverage hash and the
    stage definitions are concerned): the definitions a record made there ran under."""
    key = (str(repo), commit)
    if key not in _STAGES:
        tree = commit_files(repo, commit)
        if STAGES_FILE not in tree.blobs:
            raise Unverifiable(f"{commit[:12]} has no {STAGES_FILE}")
        name = f"_gpu_stages_at_{commit[:12]}"
        module = types.ModuleType(name)
        module.__file__ = str(repo / STAGES_FILE)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        try:
            exec(compile(tree.read(STAGES_FILE), f"{commit[:12]}:{STAGES_FILE}", "exec"), module.__dict__)
        except Exception as exc:
            raise Unverifiable(f"{commit[:12]}:{STAGES_FILE} does not load ({type(exc).__name__}: {exc})") from exc
        finally:
            sys.modules.pop(name, None)
        _STAGES[key] = module
    return _STAGES[key]


def definition_at(repo: Path, commit: str, stage: str):
    """The stage as ``commit`` defined it (its Stage object), or Unverifiable."""
    module = stages_at(repo, commit)
    try:
        return module.stage(stage)
    except KeyError as exc:
        raise Unverifiable(f"{commit[:12]} defines no stage {stage!r}") from exc


def coverage_at(repo: Path, commit: str, stage: str) -> dict:
    """The stage's coverage hash over ``commit``'s files, computed by that commit's checks/gpu_stages.py: what
    tools/gpu_check.sh computed on a checkout of that commit (checks/gpu_artifacts.py coverage)."""
    module, tree = stages_at(repo, commit), commit_files(repo, commit)
    found = definition_at(repo, commit, stage)
    tree.prefetch([p for p in tree.files if p.startswith("python_tests/") and p.endswith(".py")])
    read: Callable[[str], bytes] = tree.read
    tree.prefetch(list(module.covered(found, tree.files, read)))  # one git call for the files it hashes
    return dict(module.coverage(found, tree.files, read, tree.sha))
