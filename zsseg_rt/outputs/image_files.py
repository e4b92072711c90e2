"""The files of one image that ``zsseg segment`` and ``zsseg batch`` write as each image is done: the views of
``--visualize`` (overlay, mask, label map) and batch's label PNGs. One writer for both commands: every file is
written whole through :func:`zsseg_rt.io_safety.atomic_write_bytes` (a full disk leaves the old file, or none, and
no temporary file; the error names the path), and an image's set of files is all or nothing (a failure removes the
files of that set this call created: no overlay without its label map).

These files are not staged as the table's kinds are (:mod:`zsseg_rt.outputs.result_outputs`): a run stopped at
image 700 of 1000 keeps the 699 images before it, which a resume (``zsseg batch``) or the next run skips or
replaces. Segment's are checked by the output plan's rules as an in-place entry
(:class:`zsseg_rt.outputs.plan.InPlaceFiles`); batch's OUTPUT resumes (its label maps are skipped, not replaced,
``scale.batch.plan_batch``); both under the one owner lock (:mod:`zsseg_rt.outputs.owner`)."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional

from zsseg_rt.io_safety import atomic_write_bytes

__all__ = ["write_image_file", "write_views"]


def write_image_file(path: str, data: bytes, *, fsync: bool = True, make_folder: bool = True) -> None:
    """``data`` (an encoded image) into ``path`` whole; ``make_folder``: its folder is made first (a batch key's
    sub-folder; segment's plan made its folders, and a missing one is an error there).

    Raises:
        OutputWriteError: the write failed; ``path`` is as it was and no temporary file is left.
    """
    folder = os.path.dirname(path)
    if make_folder and folder:
        os.makedirs(folder, exist_ok=True)
    atomic_write_bytes(path, data, fsync=fsync)


def write_views(
    result: Any,
    files: Dict[str, str],
    *,
    alpha: float = 0.5,
    legend: bool = True,
    fsync: bool = True,
    make_folders: bool = False,
    then: Optional[Callable[[Any], None]] = None,
) -> None:
    """Write ``result``'s views ``files`` (view -> path: ``Result.encoded_view``; ``make_folders``: their folders are
    made first), then ``then(result)`` (the table's
    outputs take it); if anything fails, the files of ``files`` that did not exist before are removed and the error
    goes on (the old files a view replaced stay replaced: each was written whole).

    Raises:
        ValueError: an unknown view, or an overlay without the input image. OSError: no image writer for a path's
        extension, or a write failed (``OutputWriteError``, naming the path).
    """
    new = [path for path in files.values() if not os.path.lexists(path)]
    try:
        for view, path in files.items():
            extension = os.path.splitext(path)[1]
            try:
                data = result.encoded_view(view, extension, alpha=alpha, legend=legend)
            except OSError:
                what = extension or "a name without extension"
                raise OSError(f"OpenCV could not write {path!r}: no image writer for {what!r}") from None
            write_image_file(path, data, fsync=fsync, make_folder=make_folders)
        if then is not None:
            then(result)
    except BaseException:  # e.g. a full disk at its label map: no half result (an overlay without its label map)
        for path in new:
            if os.path.lexists(path):
                os.unlink(path)
        raise
