"""The bundled class-name lists (``zsseg_rt/vocabulary/lists/*.json``; model configs name them ``"vocab/voc20.json"``),
readable without torch: the model configs, the dataset readers and evaluation use them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence, Union

__all__ = ["VOCAB_DIR", "load_class_names"]

VOCAB_DIR = Path(__file__).resolve().parent / "lists"


def load_class_names(ref: Union[str, Sequence[str]]) -> List[str]:
    """Class names from a vocab file name (``"vocab/voc20.json"``, ``"voc20"``), a path, or a list."""
    if not isinstance(ref, str):
        return [str(n) for n in ref]
    candidates = [Path(ref), VOCAB_DIR / ref, VOCAB_DIR / f"{ref}.json"]
    if ref.startswith("vocab/"):
        candidates.append(VOCAB_DIR / ref[len("vocab/") :])
    for p in candidates:
        if p.is_file():
            with open(p, "r", encoding="utf-8") as handle:
                data = json.load(handle)
            names = data["class_names"] if isinstance(data, dict) else data
            return [str(n) for n in names]
    raise FileNotFoundError(
        f"class-name list {ref!r} not found (looked in {VOCAB_DIR}); give a JSON file with a 'class_names' list"
    )
