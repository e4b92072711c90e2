"""Class names: the ONE rule for what counts as the same name, the check of a run-time vocabulary, its entries,
and the text of a class-list file. Shared by the Engine, the PyTorch models, the stream runner, the server and
evaluation; everything that would silently give garbage labels is refused with a message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .tokenizer import clean_text

__all__ = [
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


def validate_class_names(names: Union[str, Sequence[str]], max_classes: Optional[int] = None) -> List[str]:
    """Check and clean a vocabulary; returns the names stripped of surrounding spaces, in the given order.

    The rule (what a user typing class names expects):

    - a single string is a comma-separated list: ``"cat, sofa, floor"`` == ``["cat", "sofa", "floor"]``; one
      trailing comma is ignored (``"cat, sofa,"``), an empty name elsewhere is an error;
    - every name must be a string and non-blank;
    - names are compared as the CLIP tokenizer sees them (``name_key``: case, repeated whitespace, HTML
      entities and ftfy-fixed mojibake do not matter): ``"Cat"``, ``" cat"`` and ``"c&#97;t"`` are duplicates
      (they would get the same text embedding, so the later class could never win);
    - at least one name, and at most ``max_classes`` when given (a bundle's limit).

    Raises:
        TypeError: a name is not a string.
        ValueError: empty list, blank name, duplicates, or more than ``max_classes`` names (the message says
            which positions/names and what is allowed).
    """
    if isinstance(names, str):
        names = names.split(",")
        if len(names) > 1 and not names[-1].strip():
            names = names[:-1]  # "cat, sofa," as typed on a command line
    cleaned: List[str] = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"class name #{i} is {type(name).__name__}, expected str")
        cleaned.append(name.strip())
    if not cleaned:
        raise ValueError("the class list is empty: give at least one class name, e.g. classes=['cat', 'floor']")
    empty = [i for i, name in enumerate(cleaned) if not name]
    if empty:
        raise ValueError(f"class names at positions {empty} are empty strings")
    seen: Dict[str, int] = {}
    for i, name in enumerate(cleaned):
        key = name_key(name)
        if not key:
            raise ValueError(f"class name {name!r} (position {i}) is empty once normalised like the CLIP tokenizer")
        if key in seen:
            raise ValueError(
                f"duplicate class name {name!r} (positions {seen[key]} and {i}; names are compared as the CLIP "
                f"tokenizer sees them: case, spacing and HTML entities do not matter, both read {key!r}): every "
                "class must appear once"
            )
        seen[key] = i
    if max_classes is not None and len(cleaned) > max_classes:
        raise ValueError(
            f"{len(cleaned)} classes given but this bundle supports at most {max_classes} "
            "(re-export with a larger --max-classes)"
        )
    return cleaned


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

    ``label`` is the name as given (what results call the class); ``names`` are the names whose prompts are encoded
    and averaged into the class's text embedding, today exactly ``(label,)``. An entry is the place where several
    names of one class (synonyms) can live; every name of an entry counts when classes are compared.
    """

    label: str
    names: Tuple[str, ...]

    @classmethod
    def of(cls, label: str) -> "VocabularyEntry":
        return cls(label, (label,))

    @property
    def keys(self) -> Tuple[str, ...]:
        """The :func:`name_key` of every name of the entry."""
        return tuple(name_key(name) for name in self.names)

    def matches(self, keys: Iterable[str]) -> bool:
        """Whether one of the entry's names has one of ``keys`` (a set of :func:`name_key` values)."""
        wanted = keys if isinstance(keys, (set, frozenset, dict)) else set(keys)
        return any(key in wanted for key in self.keys)


class Vocabulary:
    """A checked, ordered, immutable vocabulary: the entries of :func:`validate_class_names`.

    ``Vocabulary.parse("cat, sofa, floor", max_classes)`` or ``Vocabulary.parse(["cat", "sofa"])``; ``labels`` are the
    class names in order (label ``i`` of a segmentation is ``labels[i]``).
    """

    def __init__(self, entries: Sequence[VocabularyEntry]):
        self.entries: Tuple[VocabularyEntry, ...] = tuple(entries)

    @classmethod
    def parse(cls, names: Union[str, Sequence[str]], max_classes: Optional[int] = None) -> "Vocabulary":
        """Check ``names`` (:func:`validate_class_names`) and make one entry per name."""
        return cls([VocabularyEntry.of(name) for name in validate_class_names(names, max_classes)])

    @property
    def labels(self) -> List[str]:
        return [entry.label for entry in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[VocabularyEntry]:
        return iter(self.entries)

    def __getitem__(self, index: int) -> VocabularyEntry:
        return self.entries[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.entries == other.entries

    def __hash__(self) -> int:
        return hash(self.entries)

    def __repr__(self) -> str:
        return f"Vocabulary({self.labels!r})"

    def seen_mask(self, seen_names: Iterable[str]) -> np.ndarray:
        """``[C]`` bool: which entries are one of ``seen_names`` (a model's seen training classes), by :func:`name_key`."""
        keys = {name_key(name) for name in seen_names}
        return np.array([entry.matches(keys) for entry in self.entries], dtype=bool)


def seen_mask(class_names: Sequence[str], seen_names: Iterable[str]) -> np.ndarray:
    """``[C]`` bool: which of ``class_names`` (not checked again) are one of ``seen_names``, by :func:`name_key`."""
    return Vocabulary([VocabularyEntry.of(str(name)) for name in class_names]).seen_mask(seen_names)
