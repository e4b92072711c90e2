"""Safe replacement of an export destination (``zsseg export OUT --overwrite``), torch-free.

Only a directory that is recognisably a bundle written by ``export_bundle`` is ever replaced: a real directory
(not a symbolic link) whose ``meta.json`` carries the bundle format marker and its own ``meta_sha256`` (matching its
content: a meta.json written or edited by hand does not) and which holds nothing but files the bundle wrote: the files ``meta.json`` lists, each with the
sha256 it records (a hand-written meta.json listing a user's file, or a file changed since the export, does not
qualify), and under ``engines/`` only what ``zsseg build-engine`` writes there (``<key>/`` folders holding
``engine.json`` and the engine it records, with that engine's sha256, and ``timing-*.cache`` files). Anything
else (a file, a link, a directory with other files, the directory holding the checkpoint being exported) is refused
with a message, and nothing is deleted.
The new bundle is written beside the destination and swapped in (atomically on Linux), so the old bundle is
removed only after the new one is complete.

Staging folders: the new bundle is written into a hidden ``.zsseg-export-XXXXXXXX`` folder beside the destination
(:class:`ExportStaging`). Its owner lock, ``.zsseg-export-XXXXXXXX.lock`` beside it, is held (``flock``) by the
exporting process for as long as the export runs and records its pid and host; the operating system releases it
when the process ends, however it ends (``kill -9`` included). An export killed before it finished leaves its
staging folder behind (hundreds of MB); the next export into the same parent folder removes every staging folder
whose lock no live process holds, and says so (:func:`remove_stale_staging`). A staging folder whose lock is held
(a concurrent export) is never touched; one without a lock file (from a zsseg_rt before this rule) is reported, not
removed, as its owner cannot be told.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from typing import Callable, Iterable, List, Optional, Set, Tuple

from zsseg_rt.bundle import PIPELINE_GRAPH_FILES, Files, canonical_meta_sha256, sha256_file
from zsseg_rt.bundle.schema import META_HASH_FIELD
from zsseg_rt.errors import naming_path

__all__ = [
    "OverwriteRefused",
    "check_export_destination",
    "replace_directory",
    "ExportStaging",
    "remove_stale_staging",
    "STAGING_PREFIX",
]

STAGING_PREFIX = ".zsseg-export-"  # tempfile.mkdtemp prefix of an export's staging folder
LOCK_SUFFIX = ".lock"  # its owner lock: STAGING_PREFIX + XXXXXXXX + LOCK_SUFFIX, beside it (never inside the bundle)
_OLD_MARK = ".old-"  # replace_directory's fallback renames the old bundle to .NAME.old-<staging folder name>

_FORMAT_MARKER = "format_version"  # every meta.json written by export_bundle has it (int); see zsseg_rt.bundle


class OverwriteRefused(FileExistsError):
    """The export destination exists and is not something ``--overwrite`` may replace; nothing was changed."""


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _contains(parent: str, child: str) -> bool:
    """Whether ``child`` is ``parent`` or lies inside it (both real paths)."""
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _bundle_entries(out_dir: str) -> Optional[Set[str]]:
    """The entry names a bundle at ``out_dir`` may hold, or None when its meta.json is not ours (no format marker,
    no file table, or a ``meta_sha256`` that does not match its content: written or edited by hand)."""
    meta_path = os.path.join(out_dir, Files.META)
    if os.path.islink(meta_path) or not os.path.isfile(meta_path):
        return None
    try:
        with open(meta_path, "r", encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get(_FORMAT_MARKER), int):
        return None
    files = meta.get("files")
    if not isinstance(files, dict) or not all(isinstance(name, str) for name in files):
        return None
    if meta.get(META_HASH_FIELD) != canonical_meta_sha256(meta):  # no hash, or not its content: not an export's
        return None
    return {Files.META, Files.ENGINE_DIR} | {name for name in files if name and "/" not in name and os.sep not in name}


def _modified_files(out_dir: str, recorded: dict, names: Iterable[str]) -> List[str]:
    """Entries among ``names`` (listed in meta.json) that are not the file the bundle wrote: not a regular file, or
    content whose sha256 differs from the recorded one (a user's file that a meta.json names, or an edited graph)."""
    found = []
    for name in sorted(names):
        path = os.path.join(out_dir, name)
        if name in (Files.META, Files.ENGINE_DIR) or not os.path.lexists(path):
            continue
        if os.path.islink(path) or not os.path.isfile(path) or sha256_file(path) != recorded.get(name):
            found.append(name)
    return found


_ENGINE_STEMS = "|".join(
    sorted({re.escape(os.path.splitext(f)[0]) for table in PIPELINE_GRAPH_FILES.values() for f in table.values()})
)
_TMP = r"(\.tmp\d+-\d+)?"  # a leftover of an interrupted atomic write (runtime.engine_cache.atomic_write)
_ENGINE_FOLDER = re.compile(r"^[0-9a-f]{24}$")  # EngineKey.digest()
_ENGINE_FILE = re.compile(rf"^(engine\.json|({_ENGINE_STEMS})\.engine){_TMP}$")
_TIMING_CACHE = re.compile(rf"^timing-trt[0-9A-Za-z.]+-[0-9a-z-]+-sm\d+\.cache{_TMP}$")


def _foreign_engine_entries(engine_dir: str) -> List[str]:
    """What under ``engines/`` was not written by ``zsseg build-engine`` (as paths relative to the bundle): anything
    but ``<key>/`` folders of engines and their ``engine.json`` and ``timing-*.cache`` files; links; an engine whose
    sha256 differs from the one its ``engine.json`` records."""
    if os.path.islink(engine_dir) or not os.path.isdir(engine_dir):
        return [Files.ENGINE_DIR] if os.path.lexists(engine_dir) else []
    foreign = []
    for name in sorted(os.listdir(engine_dir)):
        path = os.path.join(engine_dir, name)
        rel = f"{Files.ENGINE_DIR}/{name}"
        if os.path.islink(path):
            foreign.append(rel)
        elif os.path.isfile(path):
            if not _TIMING_CACHE.match(name):
                foreign.append(rel)
        elif not _ENGINE_FOLDER.match(name):
            foreign.append(rel)
        else:
            foreign += [f"{rel}/{inner}" for inner in _foreign_in_engine_folder(path)]
    return foreign


def _foreign_in_engine_folder(folder: str) -> List[str]:
    record: dict = {}
    try:
        with open(os.path.join(folder, "engine.json"), "r", encoding="utf-8") as handle:
            loaded = json.load(handle)
        record = loaded if isinstance(loaded, dict) else {}
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        pass
    foreign = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.islink(path) or not os.path.isfile(path) or not _ENGINE_FILE.match(name):
            foreign.append(name)
        elif name == record.get("engine_file") and sha256_file(path) != record.get("engine_sha256"):
            foreign.append(name)  # not the engine the record describes
    return foreign


def check_export_destination(
    out_dir: str, overwrite: bool, sources: Iterable[Optional[str]] = (), flag: str = "overwrite=True"
) -> None:
    """Refuse an export destination that must not be written (before any work is done).

    Args:
        out_dir: the bundle directory to create or replace.
        overwrite: whether an existing bundle there may be replaced.
        sources: paths the export reads (checkpoint file or directory, images); None entries and strings that
            are not existing paths (e.g. an open_clip tag) are ignored. No source may lie inside ``out_dir``.
        flag: how the caller says ``overwrite`` in the messages: ``overwrite=True`` (Python) or ``--overwrite``
            (``zsseg export``), so that a refusal names the flag in the user's words.
    Raises:
        OverwriteRefused (a FileExistsError) with what was found and what to do; nothing is changed.
    """
    if os.path.islink(out_dir):
        raise OverwriteRefused(
            f"export destination {out_dir!r} is a symbolic link (to {os.readlink(out_dir)!r}); "
            "give a real directory path, or remove the link yourself"
        )
    if not os.path.lexists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise OverwriteRefused(
            f"export destination {out_dir!r} exists and is a file, not a bundle directory; choose another path"
        )
    real_out = _real(out_dir)
    for source in sources:
        if source and os.path.exists(source) and _contains(real_out, _real(source)):
            raise OverwriteRefused(
                f"export destination {out_dir!r} contains the source {source!r} being exported; "
                "write the bundle to another directory"
            )
    if not os.listdir(out_dir):
        return  # an empty directory: nothing can be lost
    if not overwrite:
        raise OverwriteRefused(
            f"{out_dir!r} exists already: pass {flag} to replace the bundle (only a bundle `zsseg export` wrote is "
            "replaced, once the new one is verified), or choose another output"
        )
    allowed = _bundle_entries(out_dir)
    if allowed is None:
        raise OverwriteRefused(
            f"{flag} refused: {out_dir!r} is not a zsseg_rt bundle (no meta.json with {_FORMAT_MARKER!r}, 'files' "
            f"and a matching {META_HASH_FIELD!r}); only a bundle written by `zsseg export` is replaced. Choose another "
            "path or empty it yourself"
        )
    foreign = sorted(name for name in os.listdir(out_dir) if name not in allowed)
    links = sorted(name for name in os.listdir(out_dir) if os.path.islink(os.path.join(out_dir, name)))
    if foreign or links:
        shown = ", ".join(repr(n) for n in (foreign or links)[:5])
        raise OverwriteRefused(
            f"{flag} refused: bundle {out_dir!r} also holds "
            f"{'files that are not part of the bundle' if foreign else 'symbolic links'} ({shown}); "
            "move them out first or choose another path"
        )
    with open(os.path.join(out_dir, Files.META), "r", encoding="utf-8") as handle:
        recorded = json.load(handle)["files"]
    modified = _modified_files(out_dir, recorded, allowed)
    if modified:
        shown = ", ".join(repr(n) for n in modified[:5])
        raise OverwriteRefused(
            f"{flag} refused: {out_dir!r} holds {shown}, which meta.json lists but with another sha256 than it "
            f"records (changed since the export, or not written by it): {flag} deletes only files the bundle "
            "wrote. Move them out first or choose another path"
        )
    engines = _foreign_engine_entries(os.path.join(out_dir, Files.ENGINE_DIR))
    if engines:
        shown = ", ".join(repr(n) for n in engines[:5])
        raise OverwriteRefused(
            f"{flag} refused: the engine cache of {out_dir!r} holds {shown}, which `zsseg build-engine` did not "
            "write (or which differ from what it recorded); move them out first or choose another path"
        )


def _exchange(path_a: str, path_b: str) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(path_a), at_fdcwd, os.fsencode(path_b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):  # file system without the flag
        return False
    raise OSError(code, os.strerror(code), path_b)


def replace_directory(new_dir: str, out_dir: str, atomic_exchange: bool = True) -> None:
    """Move the complete directory ``new_dir`` to ``out_dir`` (same parent), replacing an existing directory.

    On Linux the two are exchanged in one atomic step (``out_dir`` is never missing) and the old bundle, now at
    ``new_dir``, is deleted. Elsewhere (or when ``atomic_exchange`` is False, or the file system lacks the
    exchange) the old ``out_dir`` is renamed aside, the new one renamed in, and only then the old one deleted; if
    the second rename fails the old directory is put back. Call :func:`check_export_destination` first.
    """
    if not os.path.lexists(out_dir):
        os.replace(new_dir, out_dir)
        return
    if atomic_exchange and _exchange(new_dir, out_dir):
        shutil.rmtree(new_dir, ignore_errors=True)
        return
    old = os.path.join(os.path.dirname(out_dir), f".{os.path.basename(out_dir)}.old-{os.path.basename(new_dir)}")
    os.replace(out_dir, old)
    try:
        os.replace(new_dir, out_dir)
    except BaseException:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---- staging folders ---------------------------------------------------------------------------------------------
def _lock(fd: int, blocking: bool) -> Optional[bool]:
    """``flock`` an open file: True locked, False held by another process, None where file locks are unavailable."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False
    except OSError:  # e.g. ENOLCK on a network file system without locks
        return None


class ExportStaging:
    """A staging folder for one export, ``.zsseg-export-XXXXXXXX`` in ``parent``, owned by this process until
    :meth:`release`: its lock file beside it is ``flock``-ed and records ``{"pid", "host", "started", "destination"}``.

    Args:
        parent: the folder of the destination bundle (the staging folder is renamed into place, so it must be there).
        destination: the bundle being exported (recorded for the messages of a later cleanup).
    """

    def __init__(self, parent: str, destination: str = ""):
        # a disk full to the last block refuses the lock file's record, an OSError naming no file: name the folder
        with naming_path(parent, f"preparing the staging folder of the bundle {destination or parent}"):
            self.path = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent)
            self.lock_path = self.path + LOCK_SUFFIX
            self._fd: Optional[int] = None
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                self._fd = fd
                _lock(fd, blocking=True)  # blocking: a cleaner that opened the empty file first lets go at once
                record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
                record["destination"] = destination
                os.write(fd, json.dumps(record).encode())
            except BaseException:
                self.release()
                raise

    def release(self) -> None:
        """Remove the staging folder (if it is still there: after a successful export it has become the bundle, or
        holds the old one replace_directory deletes) and then the lock file; idempotent."""
        if os.path.isdir(self.path) and not os.path.islink(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            try:
                os.unlink(self.lock_path)
            except FileNotFoundError:
                pass
            os.close(self._fd)  # releases the lock
            self._fd = None

    def __enter__(self) -> "ExportStaging":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _owner_of(lock_path: str) -> Tuple[str, Optional[int], dict]:
    """``(state, fd, record)`` of a staging folder's owner: state "dead" (the lock was free: ``fd`` holds it now, for
    the caller to delete under it and close), "alive" (held by a running export), or "unknown" (no lock file, an
    owner still writing its record, or locks unavailable and the pid not on this host)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except OSError:
        return "unknown", None, {}
    locked = _lock(fd, blocking=False)
    record: dict = {}
    try:
        with open(lock_path, "r", encoding="utf-8") as handle:
            loaded = json.load(handle)
        record = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    if locked is True:
        if not record:  # an owner between creating the file and locking it: not dead
            os.close(fd)
            return "unknown", None, record
        return "dead", fd, record
    os.close(fd)
    if locked is False:
        return "alive", None, record
    # no file locks here: the pid on this host
    pid, host = record.get("pid"), record.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return "unknown", None, record
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead", None, record
    except OSError:  # exists, another user's
        pass
    return "alive", None, record


def _size_text(path: str) -> str:
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return f"{total / 1e6:.0f} MB" if total >= 1e6 else f"{total / 1e3:.0f} KB"


def remove_stale_staging(parent: str, say: Optional[Callable[[str], None]] = None) -> List[str]:
    """Remove the staging folders in ``parent`` that exports killed before they finished left behind: those whose
    owner lock no live process holds (see the module docstring). A running export's staging folder is kept; one
    without a lock file is kept and reported. ``replace_directory``'s fallback ``.NAME.old-<staging>`` folder of a
    dead export is removed when NAME exists again, else renamed back to NAME (it is then the only copy of the bundle).

    Args:
        parent: the folder holding the destination bundle.
        say: called with one line per folder removed, restored or kept without an owner (e.g. ``print``).
    Returns:
        the paths removed or restored.
    """
    report = say or (lambda line: None)
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return []
    done: List[str] = []
    unknown: List[str] = []
    for name in names:
        path = os.path.join(parent, name)
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        if name.startswith(STAGING_PREFIX):
            staging, bundle_name = name, None
        elif name.startswith(".") and _OLD_MARK + STAGING_PREFIX in name:
            cut = name.index(_OLD_MARK + STAGING_PREFIX)
            staging, bundle_name = name[cut + len(_OLD_MARK) :], name[1:cut]
        else:
            continue
        lock_path = os.path.join(parent, staging + LOCK_SUFFIX)
        state, fd, record = _owner_of(lock_path)
        if state == "alive":
            continue
        if state == "unknown":
            if not os.path.exists(lock_path):
                unknown.append(path)
            continue
        try:
            if not os.path.isdir(path):  # another export's cleanup was first
                continue
            owner = f"process {record.get('pid')} on {record.get('host')}, no longer running"
            if bundle_name is not None and not os.path.lexists(os.path.join(parent, bundle_name)):
                os.replace(path, os.path.join(parent, bundle_name))
                report(
                    f"restored {os.path.join(parent, bundle_name)} from {path}: an interrupted export ({owner}) had "
                    "moved the bundle aside and not finished"
                )
            else:
                size = _size_text(path)
                shutil.rmtree(path, ignore_errors=True)
                report(f"removed {path} ({size}), the staging folder of an interrupted export ({owner})")
            done.append(path)
            if not os.path.lexists(os.path.join(parent, staging)):  # the lock's folder is gone: the lock too
                try:
                    os.unlink(lock_path)
                except OSError:
                    pass
        finally:
            if fd is not None:
                os.close(fd)
    if unknown:
        shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        report(
            f"kept {shown}: export staging folder(s) without an owner lock (left by an older zsseg_rt, or in use by "
            "one), so whether an export still writes them cannot be told; delete them yourself when no export runs"
        )
    for name in names:  # lock files whose folder is gone (an export killed while deleting it)
        if name.startswith(STAGING_PREFIX) and name.endswith(LOCK_SUFFIX):
            if not os.path.lexists(os.path.join(parent, name[: -len(LOCK_SUFFIX)])):
                state, fd, _record = _owner_of(os.path.join(parent, name))
                if state == "dead":
                    try:
                        os.unlink(os.path.join(parent, name))
                    except OSError:
                        pass
                if fd is not None:
                    os.close(fd)
    return done
