"""Class vocabularies and seen/unseen splits of the zero-shot benchmarks, kept as JSON data files.

``zsseg_rt/data/splits/<name>.json`` holds ``class_names`` (a list, or a reference to a vocabulary file of
``zsseg_rt.models``, e.g. ``"vocab/voc20.json"``) and ``unseen`` (class NAMES). Bundled: ``voc20`` (15/5),
``coco_stuff171`` (156/15), ``context59`` (49/10), ``ade150`` (no split; cross-dataset evaluation),
``coco_object80`` (the 80 COCO things, no split; ZeroSeg / GroupViT COCO-Object).
Any split can be overridden by passing ``unseen=[...]`` (names or indices) or a JSON path of the same form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

SPLIT_DIR = Path(__file__).resolve().parent / "splits"

__all__ = ["ClassSplit", "load_split", "list_splits", "SPLIT_DIR"]


def list_splits() -> List[str]:
    return sorted(p.stem for p in SPLIT_DIR.glob("*.json"))


def _norm(name: str) -> str:
    return " ".join(str(name).split()).lower()


@dataclass(frozen=True)
class ClassSplit:
    """A vocabulary and its seen/unseen partition (indices are positions in ``class_names``)."""

    name: str
    class_names: tuple
    unseen: tuple  # sorted class indices

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def seen(self) -> tuple:
        u = set(self.unseen)
        return tuple(i for i in range(self.num_classes) if i not in u)

    @property
    def seen_names(self) -> List[str]:
        return [self.class_names[i] for i in self.seen]

    @property
    def unseen_names(self) -> List[str]:
        return [self.class_names[i] for i in self.unseen]

    def with_unseen(self, unseen: Optional[Sequence[Union[int, str]]]) -> "ClassSplit":
        """The same vocabulary with another unseen set (names or indices); None keeps this one."""
        if unseen is None:
            return self
        return ClassSplit(self.name, self.class_names, resolve_classes(self.class_names, unseen))


def resolve_classes(class_names: Sequence[str], refs: Sequence[Union[int, str]]) -> tuple:
    """Class references (indices, numeric strings or names, case/space-insensitive) -> sorted unique indices."""
    index = {_norm(n): i for i, n in enumerate(class_names)}
    out, bad = set(), []
    for r in refs:
        if isinstance(r, int) or (isinstance(r, str) and r.strip().isdigit()):
            i = int(r)
            if 0 <= i < len(class_names):
                out.add(i)
            else:
                bad.append(r)
        elif _norm(r) in index:
            out.add(index[_norm(r)])
        else:
            bad.append(r)
    if bad:
        raise ValueError(
            f"unknown classes {bad}: not names or indices of this {len(class_names)}-class vocabulary "
            f"(first names: {list(class_names[:5])})"
        )
    return tuple(sorted(out))


def _class_names(ref) -> List[str]:
    if isinstance(ref, str):
        from zsseg_rt.vocabulary.class_lists import load_class_names  # the bundled vocabulary files, torch-free

        return load_class_names(ref)
    return [str(n) for n in ref]


def load_split(
    ref: Union[str, Path, dict, ClassSplit], unseen: Optional[Sequence[Union[int, str]]] = None
) -> ClassSplit:
    """Load a split by bundled name (``"voc20"``), JSON path or dict; ``unseen`` overrides its unseen set."""
    if isinstance(ref, ClassSplit):
        return ref.with_unseen(unseen)
    if isinstance(ref, dict):
        data, name = ref, str(ref.get("name", "custom"))
    else:
        p = Path(str(ref))
        if not p.is_file():
            p = SPLIT_DIR / (str(ref) if str(ref).endswith(".json") else f"{ref}.json")
        if not p.is_file():
            raise FileNotFoundError(f"split {str(ref)!r} is neither a JSON file nor a bundled split {list_splits()}")
        with open(p, "r", encoding="utf-8") as f:
            data = json.load(f)
        name = str(data.get("name", p.stem))
    unknown = sorted(set(data) - {"name", "class_names", "unseen", "source"})
    if unknown:
        raise ValueError(f"split {name!r}: unknown keys {unknown}; known: class_names, unseen, name, source")
    if "class_names" not in data:
        raise ValueError(f"split {name!r} has no 'class_names'")
    names = _class_names(data["class_names"])
    split = ClassSplit(name, tuple(names), resolve_classes(names, data.get("unseen", [])))
    return split.with_unseen(unseen)
