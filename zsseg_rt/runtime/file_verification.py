"""sha256 of bundle and engine files, remembered across restarts so a restart does not rehash ~600 MB.

A verified file is remembered in a small JSON file (``verified_files.json`` in the zsseg_rt cache directory:
``$ZSSEG_RT_CACHE_DIR``, else ``$XDG_CACHE_HOME/zsseg_rt``, else ``~/.cache/zsseg_rt``) by its real path together
with its size, ``st_mtime_ns``, ``st_ctime_ns`` and inode. The remembered hash is reused only while all of them
are unchanged; any write to the file changes its mtime and ctime (and restoring the mtime with ``touch``/``utime``
changes the ctime), so a modified file is hashed again and caught. The cache is an optimisation only: when it
cannot be read or written (read-only home, corrupted JSON) files are simply hashed every time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any, Callable, Dict, Optional, Sequence

from zsseg_rt.bundle import BundleError, BundleMeta, bundle_file, check_bundle_integrity, sha256_file

LOG = logging.getLogger("zsseg_rt.verify")
CACHE_FILE = "verified_files.json"
MAX_ENTRIES = 512  # oldest entries are dropped beyond this
_LOCK = threading.Lock()


def cache_dir() -> str:
    """The zsseg_rt cache directory (see the module docstring)."""
    explicit = os.environ.get("ZSSEG_RT_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "zsseg_rt")


def _cache_path() -> str:
    return os.path.join(cache_dir(), CACHE_FILE)


def _fingerprint(path: str) -> Dict[str, int]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def _load() -> Dict[str, Dict]:
    try:
        with open(_cache_path(), "r", encoding="utf-8") as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(entries: Dict[str, Dict]) -> None:
    path = _cache_path()
    if len(entries) > MAX_ENTRIES:
        entries = dict(list(entries.items())[-MAX_ENTRIES:])
    tmp = f"{path}.tmp{os.getpid()}-{threading.get_ident()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(entries, handle)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache directory costs a rehash next time, nothing else
        LOG.debug("cannot write the verified-files cache %s: %s", path, exc)
        try:
            os.remove(tmp)
        except OSError:
            pass


def cached_sha256(path: str) -> str:
    """sha256 of ``path``, from the verified-files cache when the file's size, mtime, ctime and inode are those
    recorded with the hash, else computed (and remembered).

    Returns:
        the hex sha256 of the file's current content.
    Raises:
        OSError when the file cannot be read.
    """
    real = os.path.realpath(path)
    before = _fingerprint(real)
    with _LOCK:
        entry = _load().get(real)
    if entry is not None and {k: entry.get(k) for k in before} == before and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = sha256_file(real)
    if _fingerprint(real) != before:  # modified while being hashed: report it, remember nothing
        return digest
    with _LOCK:
        entries = _load()
        entries.pop(real, None)
        entries[real] = dict(before, sha256=digest)
        _store(entries)
    return digest


def check_recorded_file(
    path: str, sha256: Any, check_hash: bool, error: Callable[[str], Exception], missing: str, modified: str
) -> None:
    """The check of a file a record names (an engine, a prepared precision's artefact): ``error(missing)`` when it is
    not there, ``error(modified)`` when ``check_hash`` and its sha256 is not the recorded ``sha256``."""
    if not os.path.isfile(path):
        raise error(missing)
    if check_hash and cached_sha256(path) != sha256:
        raise error(modified)


def forget(path: Optional[str] = None) -> None:
    """Drop one file (or, with None, every file) from the verified-files cache."""
    with _LOCK:
        entries: Dict[str, Dict] = {}
        if path is not None:
            entries = _load()
            entries.pop(os.path.realpath(path), None)
        _store(entries)


def verify_bundle_files(meta: BundleMeta, names: Sequence[str]) -> None:
    """Check that bundle files ``names`` exist and match the sha256 recorded in ``meta.json`` (hashes remembered
    as described in the module docstring).

    Raises:
        BundleError naming the file, the expected and the actual hash.
    """
    check_bundle_integrity(meta)  # meta.json's own hash recorded, no unhashed file anywhere in the bundle
    for name in names:
        expected = meta.files.get(name)
        if expected is None:
            raise BundleError(f"meta.json of {meta.path!r} records no sha256 for {name!r}; re-export the bundle")
        path = bundle_file(meta.path, name, must_exist=True)  # inside the bundle, a regular file
        actual = cached_sha256(path)
        if actual != expected:
            raise BundleError(
                f"bundle file {path!r} is corrupted or was modified: sha256 {actual} != recorded {expected}; "
                "re-run `zsseg export`"
            )


def unreadable_graph_error(path: str, reader: str, exc: BaseException) -> BundleError:
    """The error for a bundle graph a runtime library refused to open, to raise ``from None``: the file named, the
    library's own (untyped) error on one line, and what to do. ``reader``: "ONNX Runtime can load", "OpenVINO can
    read"."""
    detail = " ".join(str(exc).split())[:300]
    return BundleError(
        f"bundle file {path!r} is not an ONNX graph {reader} ({type(exc).__name__}: {detail}); the bundle is damaged "
        "or was not written by `zsseg export`: re-export it"
    )
