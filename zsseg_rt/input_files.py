"""The files a user names as inputs: globs that never follow a symbolic-link loop, and the kinds of
file that are no image or video (a FIFO, a device, a socket: reading one waits for a writer, or forever).

- :func:`expand_glob` is ``glob.glob(pattern, recursive=True)`` whose ``**`` enters each real folder once: a link back
  up (``up -> ..``) or to a sibling (``self -> ../loop``) is followed to a folder not seen yet, never round a loop
  (``glob.glob`` followed it until the path was too long: minutes, and 7 MB/s of memory, for one loop of two links).
- :func:`special_file` names a path that exists but is no regular file or folder ("a FIFO (named pipe)", "a
  character device", ...); the readers refuse it with one line instead of blocking on it.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from typing import Iterator, List, Optional, Set, Tuple

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "expand_glob", "sequence_of", "special_file"]

# the files a folder or a glob of inputs is read for, by their extension (zsseg camera's sources, its outputs'
# checks of what a path names)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def sequence_of(path: str) -> str:
    """The sequence of frames an input is part of (``track``: one tracker each; ``zsseg segment --tracks-out FILE``:
    one only): a video file its own; an image its folder's, resolved, whether it came from a folder, a glob or was
    named alone (``a.jpg`` and ``../here/b.jpg`` in one folder are one sequence, in the order given)."""
    video = os.path.splitext(str(path))[1].lower() in VIDEO_EXTENSIONS
    return os.path.realpath(path if video else os.path.dirname(os.path.abspath(path)))


def special_file(path: str) -> Optional[str]:
    """What ``path`` is when it is a FIFO, a device or a socket (a symbolic link: what it points to), else None (a
    regular file, a folder, or nothing there)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    for test, words in _SPECIAL:
        if test(mode):
            return words
    return None


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _key(path: str) -> Optional[Tuple[int, int]]:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _subfolders(folder: str) -> List[str]:
    try:
        with os.scandir(folder or ".") as entries:
            names = [entry.name for entry in entries if not _hidden(entry.name) and entry.is_dir()]
    except OSError:
        return []
    return sorted(names)


def _everything(folder: str, seen: Set[Tuple[int, int]]) -> Iterator[str]:
    try:
        names = sorted(name for name in os.listdir(folder or ".") if not _hidden(name))
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        yield path
        if os.path.isdir(path):
            key = _key(path)
            if key is not None and key not in seen:
                seen.add(key)
                yield from _everything(path, seen)


def _match(folder: str, parts: List[str], seen: Set[Tuple[int, int]]) -> Iterator[str]:
    """The paths under ``folder`` that the pattern's components ``parts`` match (glob's rules; ``**``: any folders,
    each real folder entered once)."""
    if not parts:
        yield folder
        return
    head, rest = parts[0], parts[1:]
    if head == "**" and not rest:  # everything below: files and folders
        if folder:
            yield os.path.join(folder, "")  # "a/", as glob says it
        yield from _everything(folder, seen)
        return
    if head == "**":
        yield from _match(folder, rest, seen)
        for name in _subfolders(folder):
            path = os.path.join(folder, name)
            key = _key(path)
            if key is None or key in seen:  # a link round a loop, or a folder entered already
                continue
            seen.add(key)
            yield from _match(path, parts, seen)
        return
    if not glob.has_magic(head):
        path = os.path.join(folder, head)
        if rest:
            if os.path.isdir(path):
                yield from _match(path, rest, seen)
        elif os.path.lexists(path):
            yield path
        return
    try:
        names = sorted(os.listdir(folder or "."))
    except OSError:
        return
    for name in names:
        if _hidden(name) and not _hidden(head):
            continue
        if not fnmatch.fnmatchcase(name, head):
            continue
        path = os.path.join(folder, name)
        if not rest:
            yield path
        elif os.path.isdir(path):
            yield from _match(path, rest, seen)


def expand_glob(pattern: str) -> List[str]:
    """The paths ``pattern`` matches, as ``glob.glob(pattern, recursive=True)`` (hidden names only when the pattern
    names them), in name order, each real folder entered once under ``**``: a symbolic-link loop is never followed
    round."""
    if "**" not in pattern:
        return sorted(glob.glob(pattern))  # no recursion: a loop cannot be followed
    drive, rest = os.path.splitdrive(pattern)
    absolute = rest.startswith(os.sep)
    parts = [part for part in rest.split(os.sep) if part]
    first_magic = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    root = os.path.join(drive + (os.sep if absolute else ""), *parts[:first_magic]) if first_magic else ""
    root = root or (drive + os.sep if absolute else "")
    start = _key(root or ".")
    if root and start is None:
        return []
    seen: Set[Tuple[int, int]] = {start} if start is not None else set()
    found = dict.fromkeys(_match(root, parts[first_magic:], seen))  # in order, once each
    return sorted(found)
