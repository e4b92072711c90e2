"""The one check of a run-time vocabulary (class names, prompt templates, per-class bias), shared by the runtime
Engine and the PyTorch models. Everything that would silently give garbage labels is refused with a message."""

from __future__ import annotations

import string
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["validate_class_names", "validate_templates", "validate_class_bias", "prompt_key"]


def prompt_key(name: str) -> str:
    """The form in which the CLIP tokenizer sees a class name: ftfy fix, HTML unescape, whitespace collapsed,
    lower case (``zsseg_rt.vocabulary.tokenizer.clean_text``, open_clip's cleaning). Two names with the same key get
    identical prompts, so identical text embeddings: the later class could never win a pixel."""
    from zsseg_rt.vocabulary.tokenizer import clean_text  # torch-free; ftfy is a runtime dependency

    return clean_text(name)


def validate_class_names(names: Union[str, Sequence[str]], max_classes: Optional[int] = None) -> List[str]:
    """Check and clean a vocabulary; returns the names stripped of surrounding spaces, in the given order.

    The rule (what a user typing class names expects):

    - a single string is a comma-separated list: ``"cat, sofa, floor"`` == ``["cat", "sofa", "floor"]``;
    - every name must be a string and non-blank;
    - names are compared as the CLIP tokenizer sees them (``prompt_key``: case, repeated whitespace, HTML
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
        key = prompt_key(name)
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


def validate_templates(templates: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """Check prompt templates; returns them as a tuple.

    A plain string is ONE template (not one per character). Every template must be a string with exactly one
    empty replacement field ``{}`` (where the class name goes) and no other field: ``"a photo of a {}."`` is
    valid; ``"a photo"`` (no ``{}``: every class would get the same prompt), ``"{0}"``, ``"{x}"``, ``"{} {}"``,
    ``"{:>5}"`` and unbalanced braces are refused. Literal braces are written ``{{`` / ``}}``.

    Raises:
        TypeError: not a string or a sequence of strings.
        ValueError: empty, or a template that is not exactly one ``{}`` (the message names it).
    """
    if isinstance(templates, str):
        templates = (templates,)
    if not isinstance(templates, Sequence):
        raise TypeError(f"templates must be a string or a list of strings, got {type(templates).__name__}")
    checked = tuple(templates)
    if not checked:
        raise ValueError("templates is empty: give at least one prompt template such as 'a photo of a {}.'")
    for i, template in enumerate(checked):
        if not isinstance(template, str):
            raise TypeError(f"template #{i} is {type(template).__name__}, expected str such as 'a photo of a {{}}.'")
        try:
            fields = [item[1:] for item in string.Formatter().parse(template) if item[1] is not None]
        except ValueError as exc:
            raise ValueError(
                f"template #{i} {template!r} is not a valid format string ({exc}); write literal "
                "braces as '{{' and '}}'"
            ) from None
        if fields != [("", "", None)]:
            raise ValueError(
                f"template #{i} {template!r} must contain exactly one empty '{{}}' where the class name goes and no "
                f"other field (found {len(fields)} field(s): "
                f"{['{' + (n or '') + ('!' + c if c else '') + (':' + f if f else '') + '}' for n, f, c in fields]})"
            )
    return checked


def validate_class_bias(class_bias: Any, num_classes: int) -> np.ndarray:
    """Check a per-class calibration bias before it is used; returns it as ``[C]`` float32.

    Raises:
        TypeError: not numeric (strings, objects, booleans).
        ValueError: not one value per class (a 1-D ``[C]`` sequence), or NaN / infinite / beyond float32.
    """
    try:
        values = np.asarray(class_bias)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"class_bias must be {num_classes} numbers, got {type(class_bias).__name__} ({exc})") from None
    if values.dtype.kind not in "iuf":
        raise TypeError(
            f"class_bias must be {num_classes} numbers (one per class), got dtype {values.dtype} "
            f"from {type(class_bias).__name__}"
        )
    if values.shape != (num_classes,):
        raise ValueError(f"class_bias must have shape [{num_classes}] (one value per class), got {list(values.shape)}")
    with np.errstate(over="ignore"):
        bias = values.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(bias))
    if bad.size:
        raise ValueError(
            f"class_bias must be finite float32 values; classes {bad[:10].tolist()} have {values[bad[:10]].tolist()}"
        )
    return np.ascontiguousarray(bias)
