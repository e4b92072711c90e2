"""One policy for every file a command writes: declared and checked before the first frame, written under a staged
name, and put in place only when the run has ended well (``zsseg camera``'s videos, frame and label folders and
``--stats-json``; the Python sinks ``LabelFolderSink`` / ``ImageFolderSink`` standing alone; ``zsseg segment``'s
checks). The writing itself is :mod:`zsseg_rt.io_safety`'s (whole files, renamed into place); the staged outputs (a
folder, a file, files written in place) are :mod:`zsseg_rt.outputs.staged`'s, re-exported here.

The rules, in :class:`OutputPlan`:

1. **Checked before anything runs** (:meth:`OutputPlan.check`, which writes nothing): two outputs naming the same file
   or folder (``-o out.mp4 -o out.mp4``, ``--stats-json out.mp4 -o out.mp4``, a file inside a folder output under a
   name that folder writes), an output that is an input or lies inside an input folder (:func:`refuse_an_input`), a
   folder output that is a file, a folder that cannot be written, a disk that is full already; an output that would
   replace an existing file without ``--overwrite``; a file in a folder output that zsseg_rt did not write (refused
   even with ``--overwrite``: it is never removed); the leftovers of an interrupted run (``out.partial.mp4``, a
   staging folder, a ``.NAME.xxxxxxxx.tmp``): refused without ``--overwrite`` and named, removed with it (a log line
   names each), never silently.
2. **A failed run replaces nothing.** A video is written as ``out.partial.mp4``, a folder's files into a staging
   folder inside it (``DIR/.zsseg-staging-XXXXXXXX``, locked by the writing process), a JSON file under a temporary
   name; :meth:`OutputPlan.commit` renames them all into place once every write has succeeded, and
   :meth:`OutputPlan.abort` (after a failure) removes what was staged (a partial video is kept and named: it plays up
   to its last fragment).
3. **A folder holds only this run's files of its kind.** The folder's manifest (``DIR/.zsseg-outputs.json``) names
   the files each kind of output (label maps, frame images) wrote there, with their sizes; the commit removes those
   of an earlier run that this run did not rewrite, and ``--overwrite`` replaces only files the manifest names
   unchanged. A user's files (``notes.txt``, or a ``000001.png`` of their own) are never removed.
4. **One file mode**: every file is created with 0666 less the umask, as other programs create theirs.
5. **One owner per output** (:mod:`zsseg_rt.outputs.owner`): :meth:`OutputPlan.check` claims every output declared
   (whatever its kind: a kind added later is declared here, so it is claimed too) with an owner lock held until
   :meth:`OutputPlan.commit` or :meth:`OutputPlan.abort` (or :meth:`OutputPlan.release`); a second run on one of them
   is refused at its start with the first run's process, ``--overwrite`` included, before any leftover is looked at
   (a running run's ``out.partial.mp4`` is not an interrupted run's). A killed run's lock is taken over, and said.

Files a command writes in place as it goes (``zsseg segment``'s views of each image: :class:`InPlaceFiles`) are not
staged (rule 2 does not apply: a stopped run keeps the images it finished); every other rule does.

Refusals name the path and the flag in the user's words: ``flag`` is ``--overwrite`` for the command line and
``overwrite=True`` for the Python sinks.
"""

from __future__ import annotations

import dataclasses
import errno as errno_codes
import logging
import os
import shutil
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from zsseg_rt.errors import ZssegError
from zsseg_rt.io_safety import (
    AtomicFile,
    partial_path,
    temporaries_of,
)
from zsseg_rt.outputs.owner import OutputBusy, OwnerLock
from zsseg_rt.outputs.staged import MANIFEST, STAGING_PREFIX, FolderKind, InPlaceFiles, StagedFile, StagedFolder

__all__ = [
    "CLI_FLAG",
    "FolderKind",
    "InPlaceFiles",
    "MANIFEST",
    "OutputPlan",
    "OutputRefused",
    "PYTHON_FLAG",
    "STAGING_PREFIX",
    "StagedFile",
    "StagedFolder",
    "check_free_space",
    "next_run_directory",
    "refuse_an_input",
]

log = logging.getLogger("zsseg_rt.outputs")

CLI_FLAG = "--overwrite"
PYTHON_FLAG = "overwrite=True"
MIN_FREE_BYTES = 4096  # less than one block free: the disk is full, refused before the first frame


class OutputRefused(ZssegError, OSError):
    """An output may not be written as asked; nothing was written. ``path``: the file or folder refused;
    ``errno``: ``errno.ENOSPC`` when its disk is full (the CLI then adds what to do)."""

    def __init__(self, message: str, path: str, error_number: Optional[int] = None):
        super().__init__(message)
        self.path = path
        self.errno = error_number  # type: ignore[misc]  # OSError's attribute, set without its (errno, text) form


def _same(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def _existing_ancestor(path: str) -> str:
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def refuse_an_input(option: str, path: str, inputs: Iterable[str]) -> None:
    """Refuse (OutputRefused) an output that is one of the run's ``inputs`` (files and folders), or lies inside an
    input folder (at any depth): the plan's one rule of outputs and inputs, for every command (``zsseg
    segment ph/ -o ph`` and ``zsseg batch photos/ photos/out`` were accepted, and the next run segmented their own
    outputs). Paths are compared resolved (symbolic links followed, ``..`` removed)."""
    output = _same(path)
    for given in inputs:
        source = _same(given)
        if output == source:
            raise OutputRefused(f"{option} {path} is an input of this run: choose another output", path)
        if os.path.isdir(given) and output.startswith(source.rstrip(os.sep) + os.sep):
            raise OutputRefused(
                f"{option} {path} is inside {given}, an input of this run (a later run would read this run's outputs "
                "as its input): choose another output",
                path,
            )


def next_run_directory(root: str, name: str = "exp") -> str:
    """The first of ``root/exp``, ``root/exp2``, ``root/exp3``, ... that does not exist yet (``zsseg segment``'s
    ``runs/segment/expN``, as Ultralytics numbers its runs; ``Session(..., outputs=[f"views:{next_run_directory(
    'runs/segment')}"])`` writes there)."""
    candidate, number = os.path.join(root, name), 2
    while os.path.exists(candidate):
        candidate, number = os.path.join(root, f"{name}{number}"), number + 1
    return candidate


def check_free_space(path: str, option: str) -> None:
    """Refuse (OutputRefused, errno ENOSPC) an output whose disk is full already: less than one block free where it
    would be written. A disk that fills up while writing is each writer's error (``OutputWriteError``)."""
    where = _existing_ancestor(path)
    try:
        free = shutil.disk_usage(where if os.path.isdir(where) else os.path.dirname(where)).free
    except OSError:
        return
    if free < MIN_FREE_BYTES:
        raise OutputRefused(
            f"cannot write {option} {path!r}: its disk is full ({free} bytes free at {where!r}); nothing was written",
            path,
            errno_codes.ENOSPC,
        )


def _check_writable(path: str, option: str, folder: bool) -> None:
    """The output can be created: the nearest existing ancestor is a folder this process may write into; a folder
    output is not a file."""
    if folder and os.path.lexists(path) and not os.path.isdir(path):
        raise OutputRefused(f"{option} {path!r} is a file, not a folder: give a folder (or another name)", path)
    if not folder and os.path.isdir(path):
        raise OutputRefused(f"{option} {path!r} is a folder: give a file name", path)
    target = path if folder and os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    where = _existing_ancestor(target)
    if not os.path.isdir(where):
        raise OutputRefused(f"cannot create {option} {path!r}: {where!r} is a file, not a folder", path)
    if not os.access(where, os.W_OK | os.X_OK):
        reason = os.strerror(errno_codes.EROFS if _read_only(where) else errno_codes.EACCES)
        raise OutputRefused(f"cannot write {option} {path!r}: {where!r} is not writable ({reason})", path)


def _read_only(folder: str) -> bool:
    """``folder`` is on a file system mounted read-only (EROFS was said as "Permission denied")."""
    try:
        return bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 0))
    except (OSError, AttributeError):
        return False


@dataclasses.dataclass
class _Entry:
    option: str  # the user's words for it: "-o", "--labels-out", "--stats-json", "folder"
    path: str
    output: Any  # AtomicFile (a streamed file), StagedFile, StagedFolder or InPlaceFiles

    @property
    def is_folder(self) -> bool:
        return isinstance(self.output, StagedFolder)

    @property
    def in_place(self) -> bool:
        return isinstance(self.output, InPlaceFiles)

    @property
    def claims_folder(self) -> bool:
        """Its owner lock is a folder's (inside it) rather than a file's (beside it)."""
        return self.is_folder or (self.in_place and self.output.folder)

    @property
    def streamed(self) -> bool:
        return isinstance(self.output, AtomicFile)


def _refuse_found(found: Sequence[Tuple[_Entry, str]], says: Callable[[_Entry], str]) -> None:
    """Refuse the paths ``found`` (each with its entry), if any: the first named, the others counted, then what
    ``says`` of the first's entry."""
    if found:
        entry, first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise OutputRefused(f"{first!r}{more} {says(entry)}", first)


class OutputPlan:
    """Every output of one run (see the module): declare them (:meth:`stream`, :meth:`file`, :meth:`folder`), then
    :meth:`check` (refuses; writes nothing) and :meth:`prepare` (removes the leftovers ``overwrite`` allows), run,
    and :meth:`commit` or, after a failure, :meth:`abort`.

    Args:
        overwrite: whether existing outputs and an interrupted run's leftovers may be replaced.
        flag: how the user says so, for the messages: ``--overwrite`` (the CLI) or ``overwrite=True`` (Python).
        inputs: the run's input files and folders (an output may not be one of them).
        sources: what each source of the run reads, in order, for outputs that name files per source (the views:
            :func:`zsseg_rt.outputs.views.source_reads`); empty: only ``inputs`` are known.
    """

    def __init__(self, overwrite: bool, flag: str = CLI_FLAG, inputs: Iterable[str] = (), sources: Sequence[Any] = ()):
        self.overwrite = bool(overwrite)
        self.flag = flag
        self.inputs = [str(path) for path in inputs if path]
        self.sources = list(sources)
        self.entries: List[_Entry] = []
        self._leftovers: List[str] = []
        self.owners: List[OwnerLock] = []  # rule 5: this run's claim on each output, from check() to its end

    def stream(self, option: str, path: str) -> AtomicFile:
        """A file written as it goes (a video): ``out.partial.mp4`` until the commit."""
        output = AtomicFile(path)
        self.entries.append(_Entry(option, str(path), output))
        return output

    def file(self, option: str, path: str) -> StagedFile:
        """A file written in one go at the end (``--stats-json``)."""
        output = StagedFile(path)
        self.entries.append(_Entry(option, str(path), output))
        return output

    def folder(self, option: str, path: str, kind: FolderKind) -> StagedFolder:
        """A folder of files of ``kind`` (label maps, frame images)."""
        output = StagedFolder(path, kind, option)
        self.entries.append(_Entry(option, str(path), output))
        return output

    def in_place(self, option: str, path: str, paths: Sequence[str], **details: Any) -> InPlaceFiles:
        """Files written in place as the run goes, into the folder (or as the one file) ``path``
        (:class:`InPlaceFiles`: ``details`` are its keywords)."""
        output = InPlaceFiles(paths, **details)
        self.entries.append(_Entry(option, str(path), output))
        return output

    @classmethod
    def standing_alone(cls, overwrite: bool, path: str, kind: FolderKind) -> Tuple["OutputPlan", StagedFolder]:
        """A Python folder sink standing alone (no plan of a command around it): the policy of its one output, in
        Python's words (option ``folder``, flag ``overwrite=True``), checked and prepared; the plan and the folder."""
        plan = cls(overwrite, flag=PYTHON_FLAG)
        staged = plan.folder("folder", path, kind)
        plan.check()
        plan.prepare()
        return plan, staged

    # ---- the checks ---------------------------------------------------------------------------------------------
    def check(self, say: Optional[Callable[[str], None]] = None) -> None:
        """Refuse, before anything is written, what may not or cannot be written (the module's rule 1), and claim
        every output for this run (rule 5; ``say`` names a killed run's lock taken over, default a log warning): the
        claim holds until :meth:`commit`, :meth:`abort` or :meth:`release`, and is given up when a check refuses.

        Raises:
            OutputRefused: one line naming the path, and the flag or option that changes it (another run writing an
                output now: its process).
        """
        self._check_collisions()
        for entry in self.entries:
            _check_writable(entry.path, entry.option, entry.claims_folder)
            for path in entry.output.paths if entry.in_place else ():
                _check_writable(path, entry.option, False)
        self.claim(say)
        try:
            self._check_all()
        except BaseException:
            self.release()
            raise

    def claim(self, say: Optional[Callable[[str], None]] = None) -> None:
        """Take the owner lock of every output declared (rule 5; :mod:`zsseg_rt.outputs.owner`), all or none; a no-op
        for the outputs claimed already.

        Raises:
            OutputRefused: another run holds one now (named with its process), or its lock file cannot be made.
        """
        claimed = {owner.lock_path for owner in self.owners}
        for entry in self.entries:
            if entry.in_place and entry.output.owner is not None:  # the command holds it (and releases it)
                continue
            lock = OwnerLock(entry.path, entry.option, entry.claims_folder)
            if lock.lock_path in claimed:
                continue
            try:
                lock.acquire(say)
            except OutputBusy as exc:
                self.release()
                raise OutputRefused(str(exc), entry.path) from None
            except OSError as exc:
                self.release()
                if exc.errno == errno_codes.ENOSPC:
                    check_free_space(entry.path, entry.option)  # the usual line, when the disk says so
                    raise OutputRefused(
                        f"cannot write {entry.option} {entry.path!r}: its disk is full; nothing was written",
                        entry.path,
                        errno_codes.ENOSPC,
                    ) from None
                raise OutputRefused(
                    f"cannot write {entry.option} {entry.path!r}: {exc.strerror or exc} ({lock.lock_path!r})",
                    entry.path,
                    exc.errno,
                ) from None
            claimed.add(lock.lock_path)
            self.owners.append(lock)

    def release(self) -> None:
        """Give up this run's claim on its outputs (rule 5): :meth:`commit` and :meth:`abort` do, at their end."""
        owners, self.owners = self.owners, []
        for owner in reversed(owners):
            owner.release()

    def _check_all(self) -> None:
        self._check_running()
        if self.overwrite:
            self._check_foreign()
            self._check_replaceable()
        else:
            self._check_existing()
        leftovers = self._find_leftovers()
        self._leftovers = [path for _, path in leftovers]
        if not self.overwrite:
            _refuse_found(
                leftovers,
                lambda owner: (
                    f"is left by an interrupted run writing {owner.option} {owner.path}: pass {self.flag} to "
                    "remove it and write anew, or move it away"
                ),
            )
        for entry in self.entries:
            check_free_space(entry.path, entry.option)

    def _check_collisions(self) -> None:
        seen: Dict[str, _Entry] = {}
        for entry in self.entries:
            names = [entry.path] + ([partial_path(entry.path)] if entry.streamed else [])
            for name in names:
                key = _same(name)
                other = seen.get(key)
                if other is not None:
                    if other.option == entry.option and other.path == entry.path:
                        raise OutputRefused(f"{entry.option} {entry.path} is given twice: give it once", entry.path)
                    raise OutputRefused(
                        f"{other.option} {other.path} and {entry.option} {entry.path} name the same "
                        f"{'folder' if entry.is_folder else 'file'}: give each output its own path",
                        entry.path,
                    )
                seen[key] = entry
        written = {_same(path): entry for entry in self.entries if entry.in_place for path in entry.output.paths}
        written.update({_same(path): entry for entry in self.entries if entry.in_place for path in entry.output.others})
        for entry in self.entries:  # a file an in-place output writes (a view, its class map) named by another
            writer = written.get(_same(entry.path))
            if writer is not None and writer is not entry:
                raise OutputRefused(
                    f"{entry.option} {entry.path!r} is a file this run writes already ({writer.option} "
                    f"{writer.path!r}): choose another name",
                    entry.path,
                )
        folders = [entry for entry in self.entries if entry.is_folder]
        for entry in self.entries:
            for folder in folders:
                inside = _same(os.path.dirname(os.path.abspath(entry.path))) == _same(folder.path)
                name = os.path.basename(entry.path)
                if entry is not folder and inside and (folder.output.kind.owns(name) or name == MANIFEST):
                    raise OutputRefused(
                        f"{entry.option} {entry.path} is a file that {folder.option} {folder.path} writes: choose "
                        "another path for it",
                        entry.path,
                    )
        for entry in self.entries:
            for path in [entry.path] + (entry.output.paths if entry.in_place else []):
                refuse_an_input(entry.option, path, self.inputs)

    def _check_running(self) -> None:
        for entry in self.entries:
            if entry.is_folder:
                _, running = entry.output.leftovers()
                if running:
                    path, who = running[0]
                    raise OutputRefused(
                        f"{entry.option} {entry.path!r} is being written by another run now ({who}, staging in "
                        f"{path!r}): wait for it to end, or choose another {entry.option}",
                        entry.path,
                    )

    def _replaced(self, entry: _Entry) -> List[str]:
        if entry.is_folder:
            return [os.path.join(entry.path, name) for name in entry.output.existing()]
        if entry.in_place:
            return entry.output.existing()
        return [entry.path] if os.path.lexists(entry.path) else []

    def _check_existing(self) -> None:
        def says(entry: _Entry) -> str:
            if entry.in_place:  # written in place: replaced as each image is done
                instead = entry.output.instead or f"choose another {entry.option}"
                return f"exists already: pass {self.flag} to replace it, or {instead}"
            return (
                f"exists already: pass {self.flag} to replace it (outputs are replaced only once the run has "
                f"ended well), or choose another {entry.option}"
            )

        _refuse_found([(entry, path) for entry in self.entries for path in self._replaced(entry)], says)

    def _check_replaceable(self) -> None:
        """With the flag: an in-place file that exists must be one this process may replace (a file is replaced
        where it is, not staged)."""
        for entry in self.entries:
            for path in self._replaced(entry) if entry.in_place else ():
                if os.path.isfile(path) and not os.access(path, os.W_OK):
                    raise OutputRefused(f"{entry.option} {path!r} exists and is not writable", path)

    def _check_foreign(self) -> None:
        for entry in self.entries:
            if entry.is_folder:
                foreign = entry.output.foreign()
                if foreign:
                    first = os.path.join(entry.path, foreign[0])
                    more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
                    raise OutputRefused(
                        f"{first!r}{more} was not written there by zsseg_rt (not in {MANIFEST}, or changed since): "
                        f"{self.flag} replaces only the {entry.output.kind.what} an earlier run wrote; move it away, "
                        f"or choose another {entry.option}",
                        first,
                    )

    def _find_leftovers(self) -> List[Tuple[_Entry, str]]:
        found: List[Tuple[_Entry, str]] = []
        for entry in self.entries:
            if entry.is_folder:
                found += [(entry, path) for path in entry.output.leftovers()[0]]
                continue
            if entry.in_place:
                found += [(entry, path) for path in entry.output.temporaries()]
                continue
            if entry.streamed and os.path.lexists(entry.output.partial):
                found.append((entry, entry.output.partial))
            found += [(entry, path) for path in temporaries_of(entry.path)]
        return found

    # ---- the run ------------------------------------------------------------------------------------------------
    def prepare(self, say: Optional[Callable[[str], None]] = None) -> None:
        """Remove the leftovers of an interrupted run that :meth:`check` found (only with ``overwrite``: without it
        ``check`` refused them), each named by ``say`` (default: a log line)."""
        say = say or log.warning
        for path in self._leftovers:
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.release()
                message = f"cannot remove {path!r}, left by an interrupted run: {exc.strerror or exc}"
                raise OutputRefused(message, path) from None
            say(f"removed {path}, left by an interrupted run ({self.flag})")
        self._leftovers = []

    def commit(self) -> None:
        """Put every staged output in place (after every write succeeded): folders, then files; a streamed file that
        received nothing is not written (its old content stays).

        Raises:
            OutputWriteError: a rename failed (the outputs not yet committed keep their old content).
        """
        for entry in sorted(self.entries, key=lambda e: not e.is_folder):
            if entry.streamed:
                if os.path.lexists(entry.output.partial) and not entry.output.committed:
                    entry.output.commit()
            else:
                entry.output.commit()
        self.release()

    def abort(self) -> None:
        """After a failure: remove what was staged, replace nothing (a partial video is kept: it plays); the claim on
        the outputs ends."""
        try:
            for entry in self.entries:
                if not entry.streamed:
                    entry.output.abort()
        finally:
            self.release()

    def outputs(self, option: Optional[str] = None) -> Sequence[Any]:
        """The staged outputs declared (of ``option`` only, when given), in order."""
        return [entry.output for entry in self.entries if option is None or entry.option == option]
