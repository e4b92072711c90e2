"""Class names: the ONE rule for what counts as the same name, the check of a run-time vocabulary, its entries,
and the text of a class-list file. Shared by the Engine, the PyTorch models, the stream runner, the server and
evaluation; everything that would silently give garbage labels is refused with a message."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union, cast

import numpy as np

from .named import load_named, named_vocabularies
from .tokenizer import clean_text

__all__ = [
    "SYNONYM_SEPARATOR",
    "split_synonyms",
    "entry_text",
    "VocabularySpec",
    "named_vocabulary",
    "named_vocabulary_name",
    "name_key",
    "same_name",
    "prompt_key",
    "validate_class_names",
    "parse_class_text",
    "VocabularyEntry",
    "Vocabulary",
    "seen_mask",
]


def name_key(name: str) -> str:
    """The one rule for what counts as the same class name, everywhere (duplicates in a vocabulary, a bundle's seen
    classes for the calibration, the two-stage pipeline's seen mask, the PyTorch models' seen-class bias): the form
    in which the CLIP tokenizer sees the name (``tokenizer.clean_text``, open_clip's cleaning: ftfy fix, HTML
    unescape, whitespace collapsed, lower case). Two names with the same key get identical prompts, so identical
    text embeddings: ``"Cat"``, ``" cat"`` and ``"c&#97;t"`` are one name."""
    return clean_text(str(name))


prompt_key = name_key  # the former name of the rule


def same_name(a: str, b: str) -> bool:
    """Whether two class names are the same name (:func:`name_key`)."""
    return name_key(a) == name_key(b)


SYNONYM_SEPARATOR = ";"  # "person; man; woman": one class (entry) with three names


_HTML_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")


def split_synonyms(text: str) -> Tuple[str, ...]:
    """The names of one vocabulary entry written as text: ``"person; man; woman"`` -> ``("person", "man",
    "woman")`` (stripped; blanks kept, for the caller to refuse). The ``;`` closing an HTML entity (``"c&#97;t"``,
    which the CLIP tokenizer reads as ``"cat"``) does not separate names."""
    text = str(text)
    inside = {m.end() - 1 for m in _HTML_ENTITY.finditer(text)}
    cuts = [i for i, ch in enumerate(text) if ch == SYNONYM_SEPARATOR and i not in inside]
    bounds = [-1] + cuts + [len(text)]
    return tuple(text[bounds[k] + 1 : bounds[k + 1]].strip() for k in range(len(bounds) - 1))


def entry_text(names: Sequence[str]) -> str:
    """The canonical text of an entry's names (``"person; man; woman"``): what :func:`split_synonyms` reads back."""
    return f"{SYNONYM_SEPARATOR} ".join(names)


VOCABULARY_FORMS = (
    "class names (a list such as ['cat', 'sofa'], or one comma-separated string 'cat, sofa'), a named vocabulary "
    "such as 'voc21', or a zsseg_rt.vocabulary.Vocabulary (a class file: "
    "zsseg_rt.vocabulary.parse_class_text(open(path).read()))"
)


def _check_vocabulary_type(names: object) -> None:
    """Refuse what is no vocabulary at all (None, a number, bytes) with what is expected, rather than a bare
    ``TypeError: 'NoneType' object is not iterable`` from deep inside."""
    if isinstance(names, (str, Vocabulary)):
        return
    if names is None or isinstance(names, (bytes, bytearray)) or not isinstance(names, Iterable):
        raise TypeError(f"expected {VOCABULARY_FORMS}; got {_describe(names)}")


def _describe(value: object) -> str:
    if value is None:
        return "None"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def validate_class_names(names: Union[str, Sequence[str]], max_classes: Optional[int] = None) -> List[str]:
    """Check and clean a vocabulary; returns one text per class (entry), stripped, in the given order.

    The rule (what a user typing class names expects):

    - a single string is a comma-separated list: ``"cat, sofa, floor"`` == ``["cat", "sofa", "floor"]``; one
      trailing comma is ignored (``"cat, sofa,"``), an empty name elsewhere is an error;
    - a class may have several names (synonyms) separated by ``;``: ``"person; man; woman, cat"`` is two classes,
      the first with three names (returned as ``"person; man; woman"``; how a model combines them is its
      family's official rule: see :class:`Vocabulary`);
    - every name must be a string and non-blank;
    - names are compared as the CLIP tokenizer sees them (``name_key``: case, repeated whitespace, HTML
      entities and ftfy-fixed mojibake do not matter): ``"Cat"``, ``" cat"`` and ``"c&#97;t"`` are duplicates
      (they would get the same text embedding, so the later class could never win), across all names of all
      classes;
    - at least one class, and at most ``max_classes`` classes when given (a bundle's limit).

    Raises:
        TypeError: a name is not a string.
        ValueError: empty list, blank name, duplicates, or more than ``max_classes`` classes (the message says
            which positions/names and what is allowed).
    """
    _check_vocabulary_type(names)
    if isinstance(names, str):
        names = names.split(",")
        if len(names) > 1 and not names[-1].strip():
            names = names[:-1]  # "cat, sofa," as typed on a command line
    entries: List[Tuple[str, ...]] = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"class name #{i + 1} is {type(name).__name__}, expected str")
        entries.append(split_synonyms(name))
    if not entries:
        raise ValueError("the class list is empty: give at least one class name, e.g. classes=['cat', 'floor']")
    empty = [i for i, parts in enumerate(entries, 1) if not all(parts)]  # counted from 1, as a person counts
    if empty:
        raise ValueError(
            f"class names at positions {empty} are empty strings (or hold an empty synonym between "
            f"'{SYNONYM_SEPARATOR}')"
        )
    _check_distinct_names(entries)
    if max_classes is not None and len(entries) > max_classes:
        raise ValueError(
            f"{len(entries)} classes given but this bundle supports at most {max_classes} "
            "(re-export with a larger --max-classes)"
        )
    return [entry_text(parts) for parts in entries]


def _check_distinct_names(entries: Sequence[Sequence[str]]) -> None:
    """Refuse a name that appears twice (by :func:`name_key`), within one class or across classes."""
    seen: Dict[str, int] = {}
    for i, parts in enumerate(entries, 1):  # positions counted from 1, as a person counts
        for name in parts:
            key = name_key(name)
            if not key:
                raise ValueError(f"class name {name!r} (position {i}) is empty once normalised like the CLIP tokenizer")
            if key in seen:
                where = f"positions {seen[key]} and {i}" if seen[key] != i else f"twice in position {i}"
                raise ValueError(
                    f"duplicate class name {name!r} ({where}; names are compared as the CLIP "
                    f"tokenizer sees them: case, spacing and HTML entities do not matter, both read {key!r}): every "
                    "name must appear once"
                )
            seen[key] = i


def parse_class_text(text: str) -> List[str]:
    """Class names from the text of a class-list file: one per line and/or comma-separated; ``#`` starts a comment;
    blanks skipped (``zsseg camera --class-file``)."""
    names: List[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        names.extend(part.strip() for part in line.split(",") if part.strip())
    return names


@dataclass(frozen=True)
class VocabularyEntry:
    """One class of a vocabulary.

    ``label`` is what results call the class; ``names`` are the names whose prompts are encoded for it (synonyms:
    ``("person", "man", "woman")``). Every name of an entry counts when classes are compared (seen classes).
    """

    label: str
    names: Tuple[str, ...]

    @classmethod
    def of(cls, label: str) -> "VocabularyEntry":
        return cls(label, (label,))

    @classmethod
    def parse(cls, text: str) -> "VocabularyEntry":
        """``"person; man; woman"`` -> label ``"person"`` (the first name), names all three (not checked here)."""
        names = split_synonyms(text)
        return cls(names[0], names)

    @property
    def keys(self) -> Tuple[str, ...]:
        """The :func:`name_key` of every name of the entry."""
        return tuple(name_key(name) for name in self.names)

    @property
    def text(self) -> str:
        """The names as one text (``"person; man; woman"``; the label when it is the only name)."""
        return entry_text(self.names)

    def matches(self, keys: Iterable[str]) -> bool:
        """Whether one of the entry's names has one of ``keys`` (a set of :func:`name_key` values)."""
        wanted = keys if isinstance(keys, (set, frozenset, dict)) else set(keys)
        return any(key in wanted for key in self.keys)


VocabularySpec = Union[str, Sequence[Union[str, VocabularyEntry]], "Vocabulary"]


class Vocabulary:
    """A checked, ordered, immutable vocabulary: one :class:`VocabularyEntry` per class.

    ``Vocabulary.parse("cat, sofa, floor", max_classes)``, ``Vocabulary.parse(["person; man; woman", "sofa"])``, or a
    named vocabulary: ``Vocabulary.parse("voc21")`` (the standard benchmarks' official class files,
    :mod:`.named`). ``labels`` are the class names in order (label ``i`` of a segmentation is ``labels[i]``).

    Synonyms: a class with several names gets one label; how its score is formed is its model family's official
    rule, recorded in the bundle (``postprocess.synonyms``): ``"max"`` (training-free methods: softmax over every
    name, a class's probability is the max over its names') or ``"mean"`` (every prompt of every name averaged into
    one embedding: ZegFormer's rule, and the prompt-ensemble rule of the other families).

    Args:
        entries: the classes.
        background: index of the background class (named vocabularies of datasets that have one: 0), or None.
            Pixels under a bundle's background (probability) threshold get this label.
        name: the named vocabulary's name (``"voc21"``), or None.
        source: where a named vocabulary's names come from (repository@commit:file).
    """

    def __init__(
        self,
        entries: Sequence[VocabularyEntry],
        background: Optional[int] = None,
        name: Optional[str] = None,
        source: str = "",
    ):
        self.entries: Tuple[VocabularyEntry, ...] = tuple(entries)
        if background is not None and not 0 <= int(background) < len(self.entries):
            raise ValueError(f"background must index one of the {len(self.entries)} classes, got {background}")
        self.background = None if background is None else int(background)
        self.name = name
        self.source = source

    @classmethod
    def parse(cls, names: VocabularySpec, max_classes: Optional[int] = None) -> "Vocabulary":
        """A checked vocabulary from a :class:`Vocabulary` (checked again), a named vocabulary's name (a string
        without commas or ``;`` naming one, e.g. ``"voc21"``), a comma-separated string, or a list of class texts
        (``"person; man"``) and/or :class:`VocabularyEntry` objects (:func:`validate_class_names`).

        Raises:
            TypeError: ``names`` is none of these (None, a number, bytes, a mapping...), or a name is not a string.
            ValueError: as :func:`validate_class_names`."""
        _check_vocabulary_type(names)
        named = named_vocabulary_name(names)
        if named is not None:
            names = named_vocabulary(named)
        elif isinstance(names, str):
            _refuse_near_named(names)
        if isinstance(names, Vocabulary):
            vocabulary = names
        else:
            items = names.split(",") if isinstance(names, str) else list(names)
            if isinstance(names, str) and len(items) > 1 and not items[-1].strip():
                items = items[:-1]  # "cat, sofa," as typed on a command line (as validate_class_names)
            if any(isinstance(item, VocabularyEntry) for item in items):
                entries = [item if isinstance(item, VocabularyEntry) else VocabularyEntry.parse(item) for item in items]
                validate_class_names([entry.text for entry in entries])
                return cls.checked(entries, max_classes=max_classes)
            texts = cast(List[str], items)  # no VocabularyEntry among them (just checked); the rest is checked here
            return cls([VocabularyEntry.parse(text) for text in validate_class_names(texts, max_classes)])
        official = _is_shipped(vocabulary)  # kept as the official file is, duplicate names included
        return cls.checked(
            vocabulary.entries,
            vocabulary.background,
            vocabulary.name,
            vocabulary.source,
            max_classes=max_classes,
            distinct_names=not official,
        )

    @classmethod
    def checked(
        cls, *args: Any, max_classes: Optional[int] = None, distinct_names: bool = True, **kwargs: Any
    ) -> "Vocabulary":
        """``Vocabulary(*args, **kwargs)`` (the constructor's arguments) after the checks of
        :func:`validate_class_names` (names; ``distinct_names=False`` keeps names that repeat, as an official class
        file may) and distinct labels."""
        vocabulary = cls(*args, **kwargs)
        entries = vocabulary.entries
        for i, entry in enumerate(entries, 1):  # counted from 1 in the messages, as a person counts
            if not isinstance(entry, VocabularyEntry):
                raise TypeError(f"vocabulary entry #{i} is {type(entry).__name__}, expected VocabularyEntry")
            if not isinstance(entry.label, str) or not entry.label.strip():
                raise ValueError(f"vocabulary entry #{i} has no label")
            if not entry.names or not all(isinstance(n, str) and n.strip() for n in entry.names):
                raise ValueError(f"vocabulary entry #{i} ({entry.label!r}) needs one or more non-blank names")
        if distinct_names:
            validate_class_names([entry.text for entry in entries], max_classes)
        elif max_classes is not None and len(entries) > max_classes:
            validate_class_names([str(i) for i in range(len(entries))], max_classes)  # its message
        labels: Dict[str, int] = {}
        for i, entry in enumerate(entries, 1):
            key = name_key(entry.label)
            if key in labels:
                raise ValueError(f"classes {labels[key]} and {i} have the same label {entry.label!r}")
            labels[key] = i
        return vocabulary

    @property
    def labels(self) -> List[str]:
        return [entry.label for entry in self.entries]

    @property
    def names(self) -> List[str]:
        """Every name of every class, class by class (the rows of the ``"max"`` rule)."""
        return [name for entry in self.entries for name in entry.names]

    @property
    def texts(self) -> List[str]:
        """One text per class (its names joined by ``"; "``; the name itself for one name)."""
        return [entry.text for entry in self.entries]

    @property
    def has_synonyms(self) -> bool:
        return any(len(entry.names) > 1 for entry in self.entries)

    def class_of(self) -> np.ndarray:
        """``[N]`` int32: the class of every name of :attr:`names` (grouped by class, in class order)."""
        return np.repeat(np.arange(len(self.entries), dtype=np.int32), [len(e.names) for e in self.entries])

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[VocabularyEntry]:
        return iter(self.entries)

    def __getitem__(self, index: int) -> VocabularyEntry:
        return self.entries[index]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Vocabulary)
            and self.entries == other.entries
            and (self.background, self.name) == (other.background, other.name)
        )

    def __hash__(self) -> int:
        return hash((self.entries, self.background, self.name))

    def __repr__(self) -> str:
        named = f", name={self.name!r}" if self.name else ""
        background = f", background={self.background}" if self.background is not None else ""
        return f"Vocabulary({self.labels!r}{named}{background})"

    def seen_mask(self, seen_names: Iterable[str]) -> np.ndarray:
        """``[C]`` bool: which entries are one of ``seen_names`` (a model's seen training classes), by :func:`name_key`."""
        keys = {name_key(name) for name in seen_names}
        return np.array([entry.matches(keys) for entry in self.entries], dtype=bool)


def named_vocabulary(name: str) -> Vocabulary:
    """The shipped named vocabulary ``name`` (``"voc21"``, ``"context60"``, ...: :mod:`.named`): the official class
    file's classes with their synonyms, labels, background class and source.

    Raises:
        KeyError: no such vocabulary (the message lists them).
    """
    data = load_named(name)
    entries = [VocabularyEntry(str(label), tuple(str(n).strip() for n in names)) for label, names in data["entries"]]
    source = data["source"]
    return Vocabulary(
        entries,
        background=data["background"],
        name=name,
        source=f"{source['file']} of {', '.join(source['repositories'])}",
    )


def _is_shipped(vocabulary: "Vocabulary") -> bool:
    """Whether ``vocabulary`` is one of the shipped named vocabularies, unchanged."""
    return vocabulary.name in named_vocabularies() and vocabulary == named_vocabulary(str(vocabulary.name))


def named_vocabulary_name(text: object) -> Optional[str]:
    """The shipped named vocabulary that ``text`` names (``"voc21"`` for ``"voc21"``, ``" VOC21 "``, ``"Voc21"``:
    compared case-insensitively, spaces around aside; ``--classes VOC21`` ran as one class named so), or
    None: ``text`` is no string, holds a comma or a ``;`` (class names), or names none. The one test of whether a
    vocabulary given as text is a named one (the Engine, ``zsseg batch``, ``zsseg serve``'s ``?classes=``)."""
    if not isinstance(text, str):
        return None
    stripped = text.strip()
    if "," in stripped or SYNONYM_SEPARATOR in stripped:
        return None
    return {name.lower(): name for name in named_vocabularies()}.get(stripped.lower())


def _refuse_near_named(text: str) -> None:
    """Refuse one name that is close to a named vocabulary's but is none (``--classes voc2l`` ran silently as a
    vocabulary of one class named "voc2l"); a trailing comma says one class is meant (``"voc2l,"``). Close: a typo
    (difflib's ratio 0.8 or more: ``voc2l``, ``cityscape``, ``context``), not a word a vocabulary's name holds
    (``object``, ``stuff``, ``voc``: a class of one's own)."""
    import difflib

    stripped = text.strip()
    if "," in stripped or SYNONYM_SEPARATOR in stripped:
        return
    close = difflib.get_close_matches(stripped.lower(), named_vocabularies(), n=1, cutoff=0.8)
    if close:
        raise ValueError(
            f"classes {stripped!r}: no named vocabulary of that name (did you mean {close[0]!r}?); for one class "
            f"named so, end it with a comma: {stripped + ','!r}"
        )


def seen_mask(class_names: Sequence[str], seen_names: Iterable[str]) -> np.ndarray:
    """``[C]`` bool: which of ``class_names`` (class texts, not checked again; a class with synonyms ``"a; b"`` is
    seen when one of its names is) are one of ``seen_names``, by :func:`name_key`."""
    return Vocabulary([VocabularyEntry.parse(str(name)) for name in class_names]).seen_mask(seen_names)
