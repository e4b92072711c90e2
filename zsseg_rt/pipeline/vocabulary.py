"""The one check of a run-time vocabulary (class names), shared by the runtime Engine and the PyTorch models."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

__all__ = ["validate_class_names"]


def validate_class_names(names: Union[str, Sequence[str]], max_classes: Optional[int] = None) -> List[str]:
    """Check and clean a vocabulary; returns the names stripped of surrounding spaces, in the given order.

    The rule (what a user typing class names expects):

    - a single string is a comma-separated list: ``"cat, sofa, floor"`` == ``["cat", "sofa", "floor"]``;
    - every name must be a string and non-blank;
    - names are compared case- and space-insensitively: ``"Cat"`` and ``" cat"`` are duplicates (CLIP's
      tokenizer lowercases and collapses whitespace, so they would get the same text embedding);
    - at least one name, and at most ``max_classes`` when given (a bundle's limit).

    Raises:
        TypeError: a name is not a string.
        ValueError: empty list, blank name, duplicates, or more than ``max_classes`` names (the message says
            which positions/names and what is allowed).
    """
    if isinstance(names, str):
        names = names.split(",")
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
        key = " ".join(name.split()).lower()
        if key in seen:
            raise ValueError(
                f"duplicate class name {name!r} (positions {seen[key]} and {i}; names are compared "
                "case- and space-insensitively): every class must appear once"
            )
        seen[key] = i
    if max_classes is not None and len(cleaned) > max_classes:
        raise ValueError(
            f"{len(cleaned)} classes given but this bundle supports at most {max_classes} "
            "(re-export with a larger --max-classes)"
        )
    return cleaned
