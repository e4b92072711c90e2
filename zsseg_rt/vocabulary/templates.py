"""Prompt templates: the check of a template (exactly one ``{}``), the bundled template sets and the prompts of a
vocabulary (every template filled with every name)."""

from __future__ import annotations

import json
import string
from typing import Iterable, List, Sequence, Tuple, Union

from .class_lists import VOCAB_DIR

__all__ = ["validate_templates", "expand_templates", "load_templates", "template_sets"]


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
    for i, template in enumerate(checked, 1):  # template #1 is the first: counted as a person counts
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


def expand_templates(class_names: Iterable[str], templates: Sequence[str]) -> List[str]:
    """``[c0 t0, c0 t1, ..., c1 t0, ...]``: every template filled with every class name (class-major).

    Templates hold exactly one ``{}`` (checked by :func:`validate_templates`)."""
    return [template.format(name) for name in class_names for template in templates]


def template_sets() -> dict:
    """The bundled template sets by name (``lists/templates.json``: ``"single"``, ``"coco_multi"``, ...)."""
    with open(VOCAB_DIR / "templates.json", "r", encoding="utf-8") as handle:
        return dict(json.load(handle)["templates"])


def load_templates(ref: Union[str, Sequence[str]]) -> List[str]:
    """Prompt templates by set name (``"single"``, ``"coco_multi"``; see :func:`template_sets`) or as a list."""
    if not isinstance(ref, str):
        templates = [str(t) for t in ref]
    else:
        sets = template_sets()
        if ref in sets:
            templates = list(sets[ref])
        elif "{}" in ref:
            templates = [ref]
        else:
            raise ValueError(f"unknown template set {ref!r}; known: {sorted(sets)} (or give a string with '{{}}')")
    return list(validate_templates(templates))
