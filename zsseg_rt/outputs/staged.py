"""The staged outputs of the output plan (:mod:`zsseg_rt.outputs.plan`, rules 2 and 3): a folder output written into
a staging folder and put in place whole (:class:`StagedFolder`, with the folder's manifest of what each kind of output
wrote there, :class:`FolderKind`), a file written under a temporary name (:class:`StagedFile`), and the files a
command writes in place as it goes (:class:`InPlaceFiles`). The plan declares, checks and commits them; the
writing itself is :mod:`zsseg_rt.io_safety`'s. ``zsseg_rt.outputs.plan`` re-exports every name."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from zsseg_rt.io_safety import (
    OutputWriteError,
    atomic_write_bytes,
    fsync_directory,
    replace_with,
    temporaries_of,
    write_failure,
    write_temporary,
)
from zsseg_rt.outputs.owner import try_flock

__all__ = [
    "FolderKind",
    "InPlaceFiles",
    "MANIFEST",
    "STAGING_PREFIX",
    "StagedFile",
    "StagedFolder",
]

log = logging.getLogger("zsseg_rt.outputs")

MANIFEST = ".zsseg-outputs.json"  # in a folder output: which files each kind of output wrote there
STAGING_PREFIX = ".zsseg-staging-"  # a folder output's files until the run has ended well
_LOCK = ".lock"  # in a staging folder: flock-ed by the writing process, its pid inside


@dataclasses.dataclass(frozen=True)
class FolderKind:
    """What a folder output writes: ``name`` (its key in the manifest: "labels", "frames"), ``what`` (words for
    messages: "label maps") and ``pattern`` (the file names it writes, e.g. ``000042.png`` and ``classes.json``)."""

    name: str
    what: str
    pattern: "re.Pattern[str]"

    def owns(self, name: str) -> bool:
        return bool(self.pattern.match(name))


# ---- a folder's staging folders: owned (flock) by the process that writes them ---------------------------------------
def _staging_owner(staging: str) -> Tuple[bool, str]:
    """``(running, who)`` of a staging folder: running while its writer holds the lock; ``who`` names the process."""
    lock = os.path.join(staging, _LOCK)
    try:
        with open(lock, encoding="utf-8") as handle:
            pid = handle.read().strip()
    except OSError:
        pid = ""
    who = f"process {pid}" if pid.isdigit() else "an unknown process"
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False, who
    try:
        return try_flock(fd) is False, who  # no locks here (None): no owner can be told, taken as left over
    finally:
        os.close(fd)  # releases a lock taken here


class StagedFolder:
    """A folder output written whole at the end (rule 2 and 3 of the module): ``write_bytes(name, data)`` writes into
    ``DIR/.zsseg-staging-XXXXXXXX`` (made at the first write, locked by this process); :meth:`commit` moves the files
    into ``DIR``, removes the files of ``kind`` an earlier run wrote there that this run did not rewrite (as the
    manifest names them) and records this run's in the manifest; :meth:`abort` removes the staging folder (and ``DIR``
    when this run made it and it is empty)."""

    def __init__(self, folder: str, kind: FolderKind, option: str = "folder"):
        self.folder = str(folder)
        self.kind = kind
        self.option = option
        self.staging: Optional[str] = None
        self.written: Dict[str, int] = {}  # name -> size, this run's files
        self._lock_fd: Optional[int] = None
        self._made_folder = False

    # ---- what is there (nothing written) ----------------------------------------------------------------------------
    def _manifest_document(self) -> Dict[str, Any]:
        try:
            with open(os.path.join(self.folder, MANIFEST), encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, ValueError):
            return {}
        return document if isinstance(document, dict) and isinstance(document.get("outputs"), dict) else {}

    def manifest(self) -> Dict[str, int]:
        """The files of this folder's kind that the last run recorded (name -> size); {} when none."""
        files = self._manifest_document().get("outputs", {}).get(self.kind.name, {})
        if not isinstance(files, dict):
            return {}
        return {str(name): int(size) for name, size in files.items() if isinstance(size, int)}

    def existing(self) -> List[str]:
        """Names of the files of this kind the folder holds now (what this run would replace or remove)."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        return sorted(name for name in names if self.kind.owns(name))

    def foreign(self) -> List[str]:
        """Files of this kind in the folder that zsseg_rt did not write there (not in the manifest, or with another
        size since): never replaced nor removed."""
        recorded = self.manifest()
        foreign = []
        for name in self.existing():
            path = os.path.join(self.folder, name)
            if not os.path.isfile(path) or os.path.islink(path) or recorded.get(name) != os.path.getsize(path):
                foreign.append(name)
        return foreign

    def leftovers(self) -> Tuple[List[str], List[Tuple[str, str]]]:
        """``(left, running)``: staging folders and temporary files an interrupted run left in the folder, and the
        staging folders of runs writing into it now (with the process)."""
        try:
            names = sorted(os.listdir(self.folder))
        except OSError:
            return [], []
        left: List[str] = []
        running: List[Tuple[str, str]] = []
        for name in names:
            path = os.path.join(self.folder, name)
            if name.startswith(STAGING_PREFIX) and os.path.isdir(path) and not os.path.islink(path):
                alive, who = _staging_owner(path)
                (running.append((path, who)) if alive else left.append(path))
        left += temporaries_of(os.path.join(self.folder, MANIFEST))
        return left, running

    # ---- writing ----------------------------------------------------------------------------------------------------
    def _open(self) -> str:
        if self.staging is not None:
            return self.staging
        try:
            if not os.path.isdir(self.folder):
                os.makedirs(self.folder, exist_ok=True)
                self._made_folder = True
            staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.folder)
            fd = os.open(os.path.join(staging, _LOCK), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise write_failure(self.folder, exc, f"the {self.option} folder could not be prepared") from None
        self.staging, self._lock_fd = staging, fd
        try_flock(fd)
        try:
            os.write(fd, str(os.getpid()).encode())
        except OSError as exc:
            self.abort()
            raise write_failure(self.folder, exc, "its staging folder could not be prepared") from None
        return staging

    def write_bytes(self, name: str, data: bytes, *, fsync: bool = False) -> None:
        """``data`` as the folder's file ``name``, staged until :meth:`commit`.

        Raises:
            OutputWriteError: naming ``DIR/name``, the files written before it, and that nothing in DIR was replaced.
        """
        staging = self._open()
        try:
            atomic_write_bytes(os.path.join(staging, name), data, fsync=fsync)
        except OutputWriteError as exc:
            final = os.path.join(self.folder, name)
            detail = str(exc).split(": ", 1)[-1]  # "No space left on device (5 of 10 bytes written; ...)"
            reason = detail.split(" (", 1)[0]
            raise OutputWriteError(
                f"cannot write {final!r}: {reason} ({len(self.written)} files staged before it; nothing in "
                f"{self.folder!r} was replaced)",
                final,
                exc.errno,
            ) from None
        self.written[name] = len(data)

    def _write_manifest(self, files: Dict[str, int]) -> None:
        document = self._manifest_document() or {"written_by": "zsseg_rt", "outputs": {}}
        document["outputs"][self.kind.name] = dict(sorted(files.items()))
        atomic_write_bytes(os.path.join(self.folder, MANIFEST), (json.dumps(document, indent=1) + "\n").encode())

    def commit(self) -> List[str]:
        """Move this run's files into the folder and remove the earlier run's files of this kind that this run did
        not rewrite (only those the manifest names, unchanged). Nothing to do when nothing was written. Returns the
        names removed.

        The manifest names the union of both runs' files while the files move, so a run killed meanwhile leaves
        nothing that the next ``--overwrite`` would take for a user's file.

        Raises:
            OutputWriteError: a rename or the manifest failed (the staging folder is kept and named).
        """
        if self.staging is None:
            return []
        earlier = self.manifest()
        stale = [name for name in earlier if name not in self.written and self._unchanged(name, earlier[name])]
        try:
            self._write_manifest({**earlier, **self.written})
            for name in sorted(self.written):
                os.replace(os.path.join(self.staging, name), os.path.join(self.folder, name))
            for name in stale:
                os.unlink(os.path.join(self.folder, name))
            self._write_manifest(self.written)
        except OSError as exc:
            raise write_failure(
                self.folder, exc, f"moving the {self.kind.what} into place; what is left is in {self.staging!r}"
            ) from None
        fsync_directory(os.path.join(self.folder, MANIFEST))
        self._remove_staging()
        if stale:
            log.info(
                "removed %d %s of an earlier run from %s (%s ...)", len(stale), self.kind.what, self.folder, stale[0]
            )
        return stale

    def _unchanged(self, name: str, size: int) -> bool:
        path = os.path.join(self.folder, name)
        return os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) == size

    def _remove_staging(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def abort(self) -> None:
        """Remove what was staged; the folder keeps what it held (and goes when this run made it and it is empty)."""
        self._remove_staging()
        self.written = {}
        if self._made_folder:
            try:
                os.rmdir(self.folder)
            except OSError:
                pass


class StagedFile:
    """A file written in one go at the end (``--stats-json``): :meth:`write_bytes` writes a temporary file beside it,
    :meth:`commit` renames it into place, :meth:`abort` removes it."""

    def __init__(self, path: str):
        self.path = str(path)
        self.temporary: Optional[str] = None

    def write_bytes(self, data: bytes) -> None:
        self.abort()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.temporary = write_temporary(self.path, data)

    def write_json(self, value: Any) -> None:
        """``value`` as JSON (serialised first: a value JSON cannot hold raises before anything is written)."""
        self.write_bytes((json.dumps(value, indent=1) + "\n").encode())

    def commit(self) -> None:
        if self.temporary is not None:
            temporary, self.temporary = self.temporary, None
            replace_with(temporary, self.path)

    def abort(self) -> None:
        if self.temporary is not None:
            try:
                os.unlink(self.temporary)
            except OSError:
                pass
            self.temporary = None


class InPlaceFiles:
    """Files written in place while the run goes, each whole (``zsseg segment``'s views of each image:
    :mod:`zsseg_rt.outputs.image_files`), not staged: a run stopped at its 700th image keeps the 699 before it. The
    plan checks them as every output (rule 1: an input, a folder, an existing file without the flag, one that cannot
    be replaced, an interrupted run's temporaries) and claims the folder or file they are written to (rule 5), unless
    the command holds its owner lock already (``owner``: it took it to pick a new numbered folder). :meth:`commit` and
    :meth:`abort` have nothing to do.

    Args:
        paths: the files the run writes there. found: files there the run may replace besides (an earlier run's
        frames of a video of the same name). others: files the run writes under checks of its own (the class map),
        whose interrupted temporaries count too. instead: what to do instead of the flag, in the refusal of an
        existing file ("choose another -o" by default). folder: the claimed path is a folder.
    """

    def __init__(self, paths, *, found=(), others=(), instead: str = "", folder: bool = True, owner: Any = None):
        self.paths = [str(path) for path in paths]
        self.found = [str(path) for path in found]
        self.others = [str(path) for path in others]
        self.instead = instead
        self.folder = bool(folder)
        self.owner = owner

    def existing(self) -> List[str]:
        return [path for path in self.paths if os.path.lexists(path)] + self.found

    def temporaries(self) -> List[str]:
        return [temporary for path in self.paths + self.others for temporary in temporaries_of(path)]

    def commit(self) -> None:
        """Nothing to put in place: every file was written whole where it goes."""

    def abort(self) -> None:
        """Nothing to take back: the files of the images done stay (the documented behaviour)."""
