"""Safe replacement of an export destination (``zsseg export OUT --overwrite``), torch-free.

Only a directory that is recognisably a bundle written by ``export_bundle`` is ever replaced: a real directory
(not a symbolic link) whose ``meta.json`` carries the bundle format marker and which holds nothing but the files
that ``meta.json`` lists and the TensorRT engine cache. Anything else (a file, a link, a directory with other
files, the directory holding the checkpoint being exported) is refused with a message, and nothing is deleted.
The new bundle is written beside the destination and swapped in (atomically on Linux), so the old bundle is
removed only after the new one is complete.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
from typing import Iterable, Optional, Set

from zsseg_rt.bundle import Files

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
    """The entry names a bundle at ``out_dir`` may hold, or None when its meta.json is not ours."""
    meta_path = os.path.join(out_dir, Files.META)
    if os.path.islink(meta_path) or not os.path.isfile(meta_path):
        return None
    try:
        with open(meta_path, "r", encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get(_FORMAT_MARKER), int):
        return None
    files = meta.get("files")
    if not isinstance(files, dict) or not all(isinstance(name, str) for name in files):
        return None
    return {Files.META, Files.ENGINE_DIR} | {name for name in files if name and os.sep not in name}


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
            f"--overwrite refused: {out_dir!r} is not a zsseg_rt bundle (no meta.json with {_FORMAT_MARKER!r} and "
            "'files'); only a bundle written by `zsseg export` is replaced. Choose another path or empty it yourself"
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
