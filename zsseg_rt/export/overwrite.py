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
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import sys
from typing import Iterable, List, Optional, Set

from zsseg_rt.bundle import PIPELINE_GRAPH_FILES, Files, canonical_meta_sha256, sha256_file
from zsseg_rt.bundle.schema import META_HASH_FIELD

__all__ = ["OverwriteRefused", "check_export_destination", "replace_directory"]

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
_TMP = r"(\.tmp\d+-\d+)?"  # a leftover of an interrupted atomic write (runtime.engine_cache._atomic_write)
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


def check_export_destination(out_dir: str, overwrite: bool, sources: Iterable[Optional[str]] = ()) -> None:
    """Refuse an export destination that must not be written (before any work is done).

    Args:
        out_dir: the bundle directory to create or replace.
        overwrite: whether an existing bundle there may be replaced.
        sources: paths the export reads (checkpoint file or directory, images); None entries and strings that
            are not existing paths (e.g. an open_clip tag) are ignored. No source may lie inside ``out_dir``.
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
        raise OverwriteRefused(f"{out_dir!r} exists; pass overwrite=True (CLI: --overwrite) to replace the bundle")
    allowed = _bundle_entries(out_dir)
    if allowed is None:
        raise OverwriteRefused(
            f"--overwrite refused: {out_dir!r} is not a zsseg_rt bundle (no meta.json with {_FORMAT_MARKER!r}, 'files' "
            f"and a matching {META_HASH_FIELD!r}); only a bundle written by `zsseg export` is replaced. Choose another "
            "path or empty it yourself"
        )
    foreign = sorted(name for name in os.listdir(out_dir) if name not in allowed)
    links = sorted(name for name in os.listdir(out_dir) if os.path.islink(os.path.join(out_dir, name)))
    if foreign or links:
        shown = ", ".join(repr(n) for n in (foreign or links)[:5])
        raise OverwriteRefused(
            f"--overwrite refused: bundle {out_dir!r} also holds "
            f"{'files that are not part of the bundle' if foreign else 'symbolic links'} ({shown}); "
            "move them out first or choose another path"
        )
    with open(os.path.join(out_dir, Files.META), "r", encoding="utf-8") as handle:
        recorded = json.load(handle)["files"]
    modified = _modified_files(out_dir, recorded, allowed)
    if modified:
        shown = ", ".join(repr(n) for n in modified[:5])
        raise OverwriteRefused(
            f"--overwrite refused: {out_dir!r} holds {shown}, which meta.json lists but with another sha256 than it "
            "records (changed since the export, or not written by it): --overwrite deletes only files the bundle "
            "wrote. Move them out first or choose another path"
        )
    engines = _foreign_engine_entries(os.path.join(out_dir, Files.ENGINE_DIR))
    if engines:
        shown = ", ".join(repr(n) for n in engines[:5])
        raise OverwriteRefused(
            f"--overwrite refused: the engine cache of {out_dir!r} holds {shown}, which `zsseg build-engine` did not "
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
