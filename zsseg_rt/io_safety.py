"""Output files written whole or not at all: an output path only ever holds its old content or the complete new one.

Every file a command writes for the user (``zsseg segment``'s images, label maps and ``classes.json``, ``zsseg
camera``'s video, frame images and ``--stats-json``) goes through this module:

- A file written in one go (``atomic_write_bytes`` / ``atomic_write_text`` / ``atomic_write_json``) is written to a
  hidden temporary file beside it (``.NAME.<random>.tmp``, same folder, so same file system), flushed, fsynced, and
  renamed onto ``NAME`` (``os.replace``: atomic on POSIX and Windows), then the folder is fsynced. A process killed at
  any point leaves the old file (or none) under ``NAME``, never a truncated one; a failed write (a full disk) removes
  the temporary file and raises :class:`OutputWriteError` naming the path and how many bytes were written.
- A streamed file (a video, written frame by frame over minutes) is written under a name that says it is partial,
  :func:`partial_path` (``out.mp4`` -> ``out.partial.mp4``), and renamed onto its final name when complete
  (:class:`AtomicFile`). A killed run leaves the old ``out.mp4`` untouched and ``out.partial.mp4`` beside it (a
  fragmented MP4 the writer keeps playable up to its last complete fragment; ``zsseg_rt.outputs.sinks``).

Whether an existing output may be replaced at all is the caller's rule (the commands refuse without
``--overwrite``: :func:`existing_outputs`).
"""

from __future__ import annotations

import errno as errno_codes
import json
import os
import re
import secrets
from typing import Any, Iterable, List, Optional

from zsseg_rt.errors import ZssegError

__all__ = [
    "AtomicFile",
    "OutputWriteError",
    "PARTIAL_TAG",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "existing_outputs",
    "fsync_directory",
    "partial_path",
    "replace_with",
    "temporaries_of",
    "write_temporary",
]

PARTIAL_TAG = ".partial"  # out.mp4 -> out.partial.mp4: a streamed output until it is complete


class OutputWriteError(ZssegError, OSError):
    """Writing an output file failed (a full disk, a removed folder, an I/O error). The message names the path, the
    system's reason and what was written before the failure; ``path`` is that path and ``errno`` the system's error
    number when there was one (``errno.ENOSPC``: the disk is full)."""

    def __init__(self, message: str, path: str, error_number: Optional[int] = None):
        super().__init__(message)
        self.path = path
        self.errno = error_number  # type: ignore[misc]  # OSError's attribute, set without its (errno, text) form


def reason(exc: BaseException) -> str:
    """The system's words for ``exc`` ("No space left on device"), without the "[Errno 28]" prefix and file name."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return text or type(exc).__name__


def write_failure(path: str, exc: BaseException, written: str) -> OutputWriteError:
    """An :class:`OutputWriteError` for ``exc`` raised while writing ``path``: "cannot write PATH: REASON (WRITTEN)"."""
    number = exc.errno if isinstance(exc, OSError) else None
    return OutputWriteError(f"cannot write {path!r}: {reason(exc)} ({written})", path, number)


def partial_path(path: str) -> str:
    """Where a streamed output is written until complete: ``out.mp4`` -> ``out.partial.mp4`` (the extension kept, so
    that players and muxers still know the format), ``out`` -> ``out.partial``."""
    stem, ext = os.path.splitext(path)
    return f"{stem}{PARTIAL_TAG}{ext}"


def existing_outputs(paths: Iterable[str]) -> List[str]:
    """The paths of ``paths`` that exist already (what a command refuses to replace without ``--overwrite``)."""
    return [path for path in paths if os.path.lexists(path)]


def fsync_directory(path: str) -> None:
    """fsync the folder holding ``path`` (a rename into it is then on disk); a no-op where folders cannot be opened
    (Windows)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:  # some file systems refuse fsync on a folder; the rename itself is still atomic
        pass
    finally:
        os.close(handle)


def _temporary_path(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")


def temporaries_of(path: str) -> List[str]:
    """The temporary files of ``path`` that a killed write left beside it (``.NAME.<8 hex digits>.tmp``, what
    :func:`atomic_write_bytes` writes before its rename), in name order."""
    folder, name = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    pattern = re.compile(r"^\." + re.escape(name) + r"\.[0-9a-f]{8}\.tmp$")
    return [os.path.join(os.path.dirname(path), entry) for entry in sorted(names) if pattern.match(entry)]


def write_temporary(path: str, data: bytes, *, fsync: bool = True) -> str:
    """Write ``data`` into a new hidden temporary file beside ``path`` (``.NAME.<random>.tmp``, same folder, so the
    rename onto ``path`` is atomic) and return its path; ``path`` itself is not touched. The file gets the usual
    permissions (0666 less the umask), as every output does.

    Raises:
        OutputWriteError: the write failed (no temporary file is left); its message names ``path`` and the bytes
            written of the total.
    """
    view = memoryview(data).cast("B")
    temporary = _temporary_path(path)
    written = 0
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise write_failure(path, exc, f"no temporary file could be made in {os.path.dirname(temporary)!r}") from None
    try:
        try:
            while written < len(view):
                count = os.write(handle, view[written:])
                if count <= 0:  # a file system that accepts nothing without saying why
                    raise OSError(errno_codes.EIO, os.strerror(errno_codes.EIO))
                written += count
            if fsync:
                os.fsync(handle)  # a full disk may only show here (delayed allocation)
        finally:
            os.close(handle)
    except OSError as exc:
        raise _given_up(temporary, path, exc, f"{written} of {len(view)} bytes written") from None
    except BaseException:
        _remove_quietly(temporary)
        raise
    return temporary


def _given_up(temporary: str, path: str, exc: OSError, done: str) -> Exception:
    """The error of a write that failed (``done``: how far it got): the temporary file removed, the message saying
    whether ``path`` keeps its old content."""
    _remove_quietly(temporary)
    kept = "the old file is unchanged" if os.path.lexists(path) else "no file was written"
    return write_failure(path, exc, f"{done}; {kept}")


def replace_with(temporary: str, path: str, *, fsync: bool = True) -> None:
    """Rename ``temporary`` (written by :func:`write_temporary`) onto ``path``, then fsync the folder.

    Raises:
        OutputWriteError: the rename failed (``path`` keeps its old content; the temporary file is removed).
    """
    try:
        os.replace(temporary, path)
    except OSError as exc:
        raise _given_up(temporary, path, exc, "the complete file could not be renamed into place") from None
    if fsync:
        fsync_directory(path)


def atomic_write_bytes(path: str, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed onto it when complete (see the module).

    The new file gets the usual permissions (0666 less the umask). ``fsync=False`` skips the two fsyncs (a stream of
    frame images at camera rate): a killed process still never leaves a truncated file; a power loss might.

    Raises:
        OutputWriteError: the write failed (``path`` keeps its old content, or stays absent; no temporary file is
            left); its message names ``path`` and the bytes written of the total.
    """
    temporary = write_temporary(path, data, fsync=fsync)
    try:
        replace_with(temporary, path, fsync=fsync)
    except BaseException:
        _remove_quietly(temporary)
        raise


def atomic_write_text(path: str, text: str, *, encoding: str = "utf-8", fsync: bool = True) -> None:
    """``atomic_write_bytes`` of ``text`` encoded with ``encoding``."""
    atomic_write_bytes(path, text.encode(encoding), fsync=fsync)


def atomic_write_json(path: str, value: Any, *, indent: Optional[int] = 1, fsync: bool = True) -> None:
    """``atomic_write_bytes`` of ``value`` as JSON (UTF-8, ``indent``, a final newline). ``value`` is serialised before
    anything is written: a value JSON cannot hold raises TypeError / ValueError and leaves ``path`` as it was."""
    atomic_write_text(path, json.dumps(value, indent=indent) + "\n", fsync=fsync)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class AtomicFile:
    """A streamed output (a video written frame by frame): the writer writes ``partial`` (``out.partial.mp4``), and
    ``commit()`` renames it onto ``path`` once it is complete (fsynced first, then its folder). Until then ``path``
    keeps its old content; a killed run leaves ``path`` as it was and ``partial`` beside it.

    As a context manager: commits when the block ends normally; after an exception the partial file is kept (it
    holds what was written; ``discard()`` removes it instead) and ``path`` is not touched::

        with AtomicFile("out.mp4") as output:
            write_video(output.partial)   # out.partial.mp4
        # out.mp4 is the complete video now

    ``leftover``: a partial file of an earlier, interrupted run was there when this one was made (it is replaced).
    """

    def __init__(self, path: str):
        self.path = str(path)
        self.partial = partial_path(self.path)
        self.leftover = os.path.lexists(self.partial)
        self.committed = False

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, kind, _value, _traceback) -> None:
        if kind is None and not self.committed:
            self.commit()

    def size(self) -> int:
        """Bytes in the partial file now (0 when there is none): what was written so far."""
        try:
            return os.path.getsize(self.partial)
        except OSError:
            return 0

    def commit(self) -> None:
        """fsync the partial file, rename it onto ``path``, fsync the folder.

        Raises:
            OutputWriteError: the fsync or the rename failed (``path`` keeps its old content; ``partial`` is kept).
        """
        try:
            handle = os.open(self.partial, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                os.fsync(handle)  # a full disk can show here first (delayed allocation)
            finally:
                os.close(handle)
            os.replace(self.partial, self.path)
        except OSError as exc:
            raise write_failure(
                self.path,
                exc,
                f"{self.size()} bytes written to {self.partial!r}, which is kept; {self.path!r} is unchanged",
            ) from None
        self.committed = True
        fsync_directory(self.path)

    def discard(self) -> None:
        """Remove the partial file (``path`` is not touched)."""
        _remove_quietly(self.partial)
