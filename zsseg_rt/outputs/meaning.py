"""What a label value means, recorded once: :class:`LabelMeaning` (the class names the ids index, the unknown label's
id and threshold, the bundle that made them), the files each command keeps it in, and the one check of a folder's
earlier record against a run's (one list of differences, one refusal).

The files (each command's documented name and content; every one is read back, as earlier versions wrote it too):

* ``zsseg segment``: ``classes.json``, label id -> class name (``{"0": "person", ..., "255": "unknown"}``, the class
  map of :func:`zsseg_rt.runtime.result.class_map`), and in an output folder the whole record beside it,
  ``.zsseg-meaning.json`` (:data:`SEGMENT_RECORD`: ``classes``, ``class_map``, ``unknown_id``, ``unknown_below``,
  ``bundle_digest``), so that a run with another bundle, threshold or vocabulary is refused before it writes a
  label map beside those of another meaning (:class:`SegmentRecord`). A folder written before has no such file: its
  ``classes.json`` is its record, without a threshold or bundle (not compared: not written down).
* ``zsseg camera --labels-out DIR``: ``classes.json``, ``{"classes", "class_map", "vocabularies"}`` (the current
  vocabulary, and which frames each one labels when it changed while streaming) and ``unknown_id`` /
  ``unknown_below`` (:class:`LabelHistory`).
* ``zsseg batch``: ``vocabulary.json``, ``{"class_names", "unknown_id", "unknown_below", "bundle_digest"}``
  (:meth:`LabelMeaning.batch_document`; the threshold's two keys only with ``--unknown-below``).

:func:`read_record` reads any of them; :meth:`LabelMeaning.changes` lists what differs (a field the earlier file
does not record is not compared); :func:`mixed_meanings` is the refusal when label maps of the earlier meaning would
stay beside the run's. Light at import (the CLI's ``--help``): the runtime's class map is imported when used.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from zsseg_rt.errors import ZssegError

__all__ = [
    "CLASS_MAP",
    "SEGMENT_RECORD",
    "VOCABULARY",
    "LabelHistory",
    "LabelMeaning",
    "MeaningRefused",
    "SegmentRecord",
    "describe",
    "mixed_meanings",
    "read_record",
]

CLASS_MAP = "classes.json"  # zsseg segment's and --labels-out's
VOCABULARY = "vocabulary.json"  # zsseg batch's
SEGMENT_RECORD = ".zsseg-meaning.json"  # beside zsseg segment's classes.json in its output folder: the whole record

Change = Tuple[str, Any, Any]  # (field, what the folder was made with, what this run has)


class MeaningRefused(ZssegError, ValueError):
    """A run whose label values would mean something else than those a folder holds (one line: what it was made
    with, what this run has, what to do)."""


@dataclass(frozen=True)
class LabelMeaning:
    """What the label values of a run (or of a folder, as its record says) mean.

    Attributes:
        classes: the class names the ids ``0..n-1`` index; None: a record that cannot be read.
        unknown_id: the unknown label's reserved id (``--unknown-below``), None when off.
        unknown_below: its threshold, None when off.
        bundle_digest: the bundle that made them (``sha256:...``, :func:`zsseg_rt.bundle.bundle_digest`); None: unknown.
        unrecorded: the fields an earlier file does not write down (``unknown_below``, ``bundle_digest``): not compared.
    """

    classes: Optional[Tuple[str, ...]]
    unknown_id: Optional[int] = None
    unknown_below: Optional[float] = None
    bundle_digest: Optional[str] = None
    unrecorded: FrozenSet[str] = frozenset()

    @classmethod
    def of(
        cls, classes: Sequence[str], unknown_below: Optional[float] = None, bundle_digest: Optional[str] = None
    ) -> "LabelMeaning":
        """A run's: its class names, its threshold (the unknown id follows: :func:`unknown_label`), its bundle."""
        from zsseg_rt.runtime.result import unknown_label

        names = tuple(str(name) for name in classes)
        below = None if unknown_below is None else float(unknown_below)
        unknown = unknown_label(len(names)) if below is not None else None
        return cls(names, unknown, below, bundle_digest)

    @classmethod
    def of_engine(cls, engine: Any) -> "LabelMeaning":
        """An Engine's: its vocabulary, ``unknown_below`` and bundle (``engine.meta.digest``)."""
        below = getattr(getattr(engine, "options", None), "unknown_below", None)
        digest = getattr(getattr(engine, "meta", None), "digest", None) or None
        return cls.of(engine.class_names, below, digest)

    @classmethod
    def of_result(cls, result: Any, bundle_digest: Optional[str] = None) -> "LabelMeaning":
        """A Result's (``class_names``, ``unknown_below``)."""
        return cls.of(result.class_names, getattr(result, "unknown_below", None), bundle_digest)

    def class_map(self) -> Dict[str, str]:
        """Label id -> class name, the unknown label's id -> "unknown" (the one class map every file uses)."""
        from zsseg_rt.runtime.result import class_map

        return class_map(list(self.classes or ()), self.unknown_id)

    def changes(self, given: "LabelMeaning") -> List[Change]:
        """``(field, what this record says, what ``given`` has)`` for each difference in what label values mean
        (fields ``class_names``, ``unknown`` (id, threshold), ``bundle``); what this record does not write down, or
        ``given`` does not know (a bundle), is not compared."""
        found: List[Change] = []
        if self.classes is None or self.classes != given.classes:
            found.append(("class_names", _listed(self.classes), _listed(given.classes)))
        made, now = (self.unknown_id, self.unknown_below), (given.unknown_id, given.unknown_below)
        threshold = made[0] is not None and "unknown_below" not in self.unrecorded and made[1] != now[1]
        if made[0] != now[0] or threshold:
            found.append(("unknown", made, now))
        recorded = "bundle_digest" not in self.unrecorded and self.bundle_digest is not None
        if recorded and given.bundle_digest is not None and self.bundle_digest != given.bundle_digest:
            found.append(("bundle", self.bundle_digest, given.bundle_digest))
        return found

    # ---- the documents ----------------------------------------------------------------------------------------------
    def batch_document(self) -> Dict[str, Any]:
        """``zsseg batch``'s ``vocabulary.json``."""
        document: Dict[str, Any] = {"class_names": list(self.classes or ())}
        if self.unknown_id is not None:
            document.update(unknown_id=self.unknown_id, unknown_below=self.unknown_below)
        document["bundle_digest"] = self.bundle_digest
        return document

    def record_document(self) -> Dict[str, Any]:
        """The whole record (``.zsseg-meaning.json``; the head of ``--labels-out``'s classes.json)."""
        document: Dict[str, Any] = {"classes": list(self.classes or ()), "class_map": self.class_map()}
        document.update(unknown_id=self.unknown_id, unknown_below=self.unknown_below)
        if self.bundle_digest is not None:
            document["bundle_digest"] = self.bundle_digest
        return document

    @classmethod
    def from_document(cls, document: Any) -> "LabelMeaning":
        """The record of any file above (an unreadable one: ``classes`` None)."""
        if not isinstance(document, dict):
            return cls(None, unrecorded=frozenset({"unknown_below", "bundle_digest"}))
        unrecorded = {name for name in ("unknown_below", "bundle_digest") if name not in document}
        if "class_names" in document:  # zsseg batch's vocabulary.json
            meaning = cls(_names(document.get("class_names")), document.get("unknown_id"))
        elif "classes" in document:  # the whole record, or --labels-out's classes.json
            meaning = cls(_names(document.get("classes")), document.get("unknown_id"))
            history = document.get("vocabularies")
            if "unknown_id" not in document and isinstance(history, list) and history:  # --labels-out's, before
                last = history[-1] if isinstance(history[-1], dict) else {}
                meaning = cls(meaning.classes, last.get("unknown"))
                document = {**document, "unknown_below": last.get("unknown_below")}
                unrecorded.discard("unknown_below")  # --labels-out said the threshold with the unknown id
        else:  # zsseg segment's classes.json: label id -> class name
            return _from_class_map(document)
        below = document.get("unknown_below")
        valid = isinstance(meaning.unknown_id, (int, type(None))) and not isinstance(meaning.unknown_id, bool)
        valid = valid and (below is None or (isinstance(below, (int, float)) and math.isfinite(below)))
        digest = document.get("bundle_digest")
        if not valid or not isinstance(digest, (str, type(None))):
            return cls(None, unrecorded=frozenset(unrecorded))
        below = None if below is None else float(below)
        return cls(meaning.classes, meaning.unknown_id, below, digest, frozenset(unrecorded))


def _listed(classes: Optional[Tuple[str, ...]]) -> Optional[List[str]]:
    return None if classes is None else list(classes)


def _names(value: Any) -> Optional[Tuple[str, ...]]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        return None
    return tuple(value)


def _from_class_map(document: Dict[str, Any]) -> LabelMeaning:
    """``{"0": "a", "1": "b", "255": "unknown"}``: the ids 0..n-1 are the classes, an id beyond them named "unknown"
    the unknown label's (its threshold and the bundle were not written down)."""
    from zsseg_rt.runtime.result import UNKNOWN_NAME, unknown_label

    unrecorded = frozenset({"unknown_below", "bundle_digest"})
    try:
        ids = {int(key): value for key, value in document.items()}
    except (TypeError, ValueError):
        return LabelMeaning(None, unrecorded=unrecorded)
    count = 0
    while count in ids:
        count += 1
    rest = {key: value for key, value in ids.items() if key >= count}
    unknown = None
    if rest:
        unknown = next(iter(rest))
        if len(rest) > 1 or rest[unknown] != UNKNOWN_NAME or unknown != unknown_label(count):
            return LabelMeaning(None, unrecorded=unrecorded)
    names = [ids[index] for index in range(count)]
    if not all(isinstance(name, str) for name in names):
        return LabelMeaning(None, unrecorded=unrecorded)
    return LabelMeaning(tuple(names), unknown, None, None, unrecorded)


def read_record(path: str) -> Optional[LabelMeaning]:
    """The record ``path`` holds (any of the module's files); None when there is none; ``classes`` None when it
    cannot be read (its differences are then said as "classes its FILE does not say")."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        document = None
    return LabelMeaning.from_document(document)


def describe(field_name: str, value: Any, record: str = VOCABULARY) -> str:
    """Words for what a folder was made with, or what a run has (one field of :meth:`LabelMeaning.changes`)."""
    if field_name == "class_names":
        return f"the classes {value}" if value is not None else f"classes its {record} does not say (unreadable)"
    if field_name == "bundle":
        return f"the bundle {value}"
    unknown_id, below = value
    if unknown_id is None:
        return "no --unknown-below"
    # exactly as recorded and given (repr): rounded, 0.5 and 0.50000001 read as one value
    threshold = f"--unknown-below {below!r}" if below is not None else "an unknown threshold"
    return f"{threshold} (label {unknown_id} = unknown)"


def _made_and_given(changes: Sequence[Change], record: str) -> Tuple[str, str]:
    made = ", ".join(describe(name, old, record) for name, old, _ in changes)
    given = ", ".join(describe(name, new, record) for name, _, new in changes)
    return made, given


def mixed_meanings(
    where: str, changes: Sequence[Change], record: str, advice: str, left: Sequence[str] = (), what: str = "label maps"
) -> str:
    """The one refusal of a run whose label values would mean something else than those ``where`` holds: what it was
    made with, what this run has, which files would stay (``left``, the first named; ``what`` they are), what to do
    (``advice``)."""
    made, given = _made_and_given(changes, record)
    named = ""
    if left:
        more = f" and {len(left) - 1} more" if len(left) > 1 else ""
        named = f": {left[0]!r}{more}"
    return (
        f"{where} holds {what} made with {made}, but this run has {given}: label values would mean different "
        f"things in one folder (its {record} describes the earlier ones{named}). {advice}"
    )


def check_earlier(
    earlier: Optional[LabelMeaning],
    meaning: LabelMeaning,
    left: Callable[[], Sequence[str]],
    *,
    where: str,
    record: str,
    advice: str,
    what: str = "label maps",
) -> Optional[List[Change]]:
    """Refuse (:class:`MeaningRefused`) a run whose label values mean something else than the folder's record
    ``earlier`` says, when label maps that record describes would stay (``left()``: their names; asked only when
    the meanings differ). Returns None when the folder has no record, else the differences (empty: the same)."""
    if earlier is None:
        return None
    changes = earlier.changes(meaning)
    if changes:
        remaining = list(left())
        if remaining:
            raise MeaningRefused(mixed_meanings(where, changes, record, advice, remaining, what))
    return changes


class SegmentRecord:
    """``zsseg segment``'s record: ``classes.json`` (label id -> class name, as documented) and, in an output folder,
    the whole record beside it (:data:`SEGMENT_RECORD`); ``-o out.png`` writes ``out_classes.json`` only (one image's
    files, all replaced together).

    Args:
        path: the class map's path (the plan's ``class_map``).
        meaning: this run's (:meth:`LabelMeaning.of_engine`).
    """

    ADVICE = "Use another -o, or move them away first (--overwrite replaces this run's own files only)"

    def __init__(self, path: str, meaning: LabelMeaning):
        self.path = path
        self.meaning = meaning
        self.whole = self.beside(path)
        self.due = True  # to be written before the first label map

    @staticmethod
    def beside(path: str) -> Optional[str]:
        """The whole record's path beside the class map ``path`` (None: a single file's class map)."""
        if os.path.basename(path) != CLASS_MAP:
            return None
        return os.path.join(os.path.dirname(path), SEGMENT_RECORD)

    @classmethod
    def files(cls, path: str) -> List[str]:
        """The files the record is written to (the output plan checks them)."""
        whole = cls.beside(path)
        return [path] + ([whole] if whole else [])

    def earlier(self) -> Optional[LabelMeaning]:
        """The folder's record: the whole one where it describes the same class map, else ``classes.json``'s (a run
        of an earlier version; or the file was replaced since)."""
        flat = read_record(self.path)
        if flat is None or self.whole is None:
            return flat
        whole = read_record(self.whole)
        if whole is None or whole.classes is None or flat.classes is None:
            return flat
        return whole if whole.class_map() == flat.class_map() else flat

    def check(self, overwrite: bool, left: Callable[[], Sequence[str]], where: str) -> None:
        """Before any image: refuse a run whose label maps would stay beside those of another meaning (``left()``:
        the view files of the folder this run does not write over), or that would replace a record of another
        meaning without ``overwrite``; an identical record is not written again.

        Raises:
            MeaningRefused: one line (:func:`mixed_meanings`, or what to pass).
        """
        changes = check_earlier(
            self.earlier(),
            self.meaning,
            left if self.whole else list,
            where=where,
            record=CLASS_MAP,
            advice=self.ADVICE,
            what="label maps or views",
        )
        if changes is None:
            return
        if not changes:
            self.due = False  # recorded already (what an older file did not record stays unsaid)
            return
        if not overwrite:
            made, given = _made_and_given(changes, CLASS_MAP)
            raise MeaningRefused(
                f"{self.path!r} exists with another vocabulary (its label maps were made with {made}; this run has "
                f"{given}): pass --overwrite, or another -o"
            )

    def write(self) -> None:
        """Write the record (before the first label map it describes), once: the earlier whole record removed, then
        the class map, then the whole record, so that a run stopped (or a disk full) between them leaves the class
        map alone, a record of an earlier version (its threshold and bundle not compared), never a whole record of
        another run beside it."""
        from zsseg_rt.io_safety import atomic_write_json

        if not self.due:
            return
        if self.whole is not None and os.path.lexists(self.whole):
            os.unlink(self.whole)
        atomic_write_json(self.path, self.meaning.class_map())
        if self.whole is not None:
            atomic_write_json(self.whole, self.meaning.record_document())
        self.due = False


class LabelHistory:
    """``--labels-out``'s ``classes.json``: the current meaning and, in ``vocabularies``, which frames each one
    labels (a frame uses the last entry whose ``first_frame`` is not after it)."""

    def __init__(self) -> None:
        self.entries: List[Tuple[int, LabelMeaning]] = []

    def add(self, first_frame: int, meaning: LabelMeaning) -> bool:
        """Frame ``first_frame`` on has ``meaning``; True when it is a new one (the file is to be written)."""
        if self.entries and self.entries[-1][1] == meaning:
            return False
        self.entries.append((int(first_frame), meaning))
        return True

    def vocabularies(self) -> List[Dict[str, Any]]:
        listed = []
        for first, meaning in self.entries:
            entry: Dict[str, Any] = {"first_frame": first, "classes": list(meaning.classes or ())}
            if meaning.unknown_id is not None:
                entry.update(unknown=meaning.unknown_id, unknown_below=meaning.unknown_below)
            listed.append(entry)
        return listed

    def document(self) -> Dict[str, Any]:
        """``{"classes", "class_map", "unknown_id", "unknown_below", ["bundle_digest"], "vocabularies"}``."""
        return {**self.entries[-1][1].record_document(), "vocabularies": self.vocabularies()}
