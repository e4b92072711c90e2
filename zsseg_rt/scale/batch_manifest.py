"""``zsseg batch``'s manifest (``OUTPUT/manifest.jsonl``, :mod:`zsseg_rt.scale.batch`): its rows, which images they
say are done, and one row per image.

One row per image: before a run appends its rows, the rows of the images it writes again (every image
with ``--no-resume``, a failed one retried, a label map deleted since) are dropped from the file, which is written
whole (:func:`zsseg_rt.io_safety.atomic_write_bytes`: a run killed meanwhile leaves the earlier file); a torn last
line (a run killed while appending) goes with them, so the next row starts a line of its own."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Sequence, Set

__all__ = [
    "MANIFEST",
    "done_keys",
    "keep_one_row_per_key",
    "labels_name",
    "objects_name",
    "read_manifest",
    "row_key",
    "strip_scheme",
]

MANIFEST = "manifest.jsonl"


def strip_scheme(path: str) -> str:
    return path.split("://", 1)[1] if "://" in path else path


def labels_name(key: str) -> str:
    """The label map of the image whose output name is ``key``, relative to OUTPUT."""
    return key + ".png"


def objects_name(key: str) -> str:
    """The objects (``--objects``: ``FrameObjects.to_dict()``, as ``zsseg segment --objects --json`` gives them) of
    the image whose output name is ``key``, relative to OUTPUT, beside its label map."""
    return key + ".objects.json"


def row_key(row: Dict[str, Any]) -> str:
    """The output name of a manifest row's image in this version's naming. Rows written before the names kept the
    extension (``key`` ``a/twin`` for ``.../a/twin.jpg``, labels ``a/twin.png``) get the image's extension back."""
    key = str(row.get("key", ""))
    base = os.path.basename(strip_scheme(str(row.get("image", ""))))
    stem, extension = os.path.splitext(base)
    if extension and key.rsplit("/", 1)[-1] == stem:
        return key + extension
    return key


def done_keys(
    rows: List[Dict[str, Any]], output_dir: str, input_keys: Sequence[str] = (), objects: bool = False
) -> Set[str]:
    """The output names of the images done in ``rows``: an ``ok`` row whose label map exists (with ``objects``: and
    whose objects file, the row's ``objects``, too), and that no other image claims. A label map claimed by two
    images (two rows of an older version that named ``twin.jpg`` and ``twin.png`` both ``twin.png``; or an older
    row's name that an image of this run gets, ``x.jpg.png``) holds one of them at most: both are redone."""
    claims: Dict[str, Set[str]] = {}
    for key in input_keys:
        claims.setdefault(labels_name(key), set()).add(key)
    done: Dict[str, str] = {}
    for row in rows:
        if row.get("status") != "ok" or not row.get("labels"):
            continue
        key, labels = row_key(row), os.path.normpath(str(row["labels"])).replace(os.sep, "/")
        claims.setdefault(labels, set()).add(key)
        found = row.get("objects")
        if objects and not (found and os.path.isfile(os.path.join(output_dir, str(found)))):
            continue  # segmented without --objects (or its file is gone): redone for them
        if os.path.isfile(os.path.join(output_dir, labels)):
            done[key] = labels
    return {key for key, labels in done.items() if claims[labels] == {key}}


def read_manifest(output_dir: str) -> List[Dict[str, Any]]:
    """The rows of ``OUTPUT/manifest.jsonl`` (empty when absent); a truncated last line (killed run) is dropped."""
    path = os.path.join(output_dir, MANIFEST)
    rows = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows


def keep_one_row_per_key(output_dir: str, redone: Iterable[str]) -> int:
    """Drop the manifest's rows of the images ``redone`` (output names) and a torn last line, writing the file whole,
    before a run appends their new rows (the module's "one row per image"); nothing is written when there is neither.
    Returns the rows dropped."""
    from zsseg_rt.io_safety import atomic_write_bytes

    path = os.path.join(output_dir, MANIFEST)
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except FileNotFoundError:
        return 0
    rows = read_manifest(output_dir)
    keys = set(redone)
    kept = [row for row in rows if row_key(row) not in keys]
    whole = len(rows) == text.count(b"\n") and (not text or text.endswith(b"\n"))  # no torn or unreadable line
    if len(kept) < len(rows) or not whole:
        atomic_write_bytes(path, "".join(json.dumps(row) + "\n" for row in kept).encode())
    return len(rows) - len(kept)
