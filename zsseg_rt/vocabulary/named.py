"""Named vocabularies: the standard benchmarks' class files as the training-free methods' official code reads them
(``named/*.json``), with their synonyms and background class. ``zsseg segment --classes voc21``,
``Engine(bundle, classes="voc21")`` or ``zsseg_rt.vocabulary.named_vocabulary("voc21")`` (built in :mod:`.names`
from the data read here).

Each file holds ``entries`` (``[label, [names...]]`` per class, in the dataset's label order), ``background`` (the
index of the background class of datasets that have one, else null) and ``source``: the official class file
(``configs/cls_<dataset>.txt``, identical in SuleBai/SC-CLIP, wangf3014/SCLIP and sinahmr/NACLIP at the commits
named), one class per line with its names split on ``", "`` as their ``get_cls_idx`` does. Labels are the first name
of each line, except a background line listing several names (``"sky, wall, tree, ..."``), labelled
``"background"``. Names are stripped (the official ``"wood "`` of Context-60 tokenises as ``"wood"``).

The official files are kept as they are, duplicates included: COCO-Object's background names hold ``"bed"``, also
a class of its own, so those two names score alike and the lower index (background) wins ties, as in the official
code. That is why named vocabularies skip the duplicate-name check that user vocabularies get.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Dict, List

__all__ = ["NAMED_DIR", "named_vocabularies", "load_named", "describe_named"]

NAMED_DIR = Path(__file__).resolve().parent / "named"


def named_vocabularies() -> List[str]:
    """The names of the shipped vocabularies (``voc21``, ``context60``, ...)."""
    return sorted(path.stem for path in NAMED_DIR.glob("*.json"))


@functools.lru_cache(maxsize=None)
def _load(name: str) -> Dict:
    with open(NAMED_DIR / f"{name}.json", "r", encoding="utf-8") as handle:
        return json.load(handle)


def load_named(name: str) -> Dict:
    """The data of the named vocabulary ``name`` (``entries``, ``background``, ``source``, ``description``); the
    :class:`~zsseg_rt.vocabulary.Vocabulary` is ``zsseg_rt.vocabulary.named_vocabulary(name)``.

    Raises:
        KeyError: no such vocabulary (the message lists them).
    """
    if name not in named_vocabularies():
        raise KeyError(f"no named vocabulary {name!r}; the shipped ones are: {', '.join(named_vocabularies())}")
    return _load(name)


def describe_named() -> List[str]:
    """One line per named vocabulary: name, classes, names, background, description (``zsseg segment --help``)."""
    lines = []
    for name in named_vocabularies():
        data = _load(name)
        count = sum(len(names) for _, names in data["entries"])
        background = " (background = class 0)" if data["background"] is not None else ""
        lines.append(f"{name}: {len(data['entries'])} classes, {count} names{background}: {data['description']}")
    return lines
