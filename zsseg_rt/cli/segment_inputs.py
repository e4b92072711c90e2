"""``zsseg segment``'s inputs and its claim on its output: what a path on its command
line is (a photo, a folder of photos, a quoted glob, a video file), refused when it is a FIFO, a device or a socket;
the frames of a video file, each segmented as a photo with the same outputs (``clip_000042_overlay.png``, ...); and
the owner lock that holds the run's output folder (or file) from its start to its end
(:mod:`zsseg_rt.outputs.owner`)."""

from __future__ import annotations

import os
import re
import sys
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.console.errors import CliError
from zsseg_rt.outputs.views import FRAME_DIGITS, existing_frame_files, frame_files  # the views output's names

__all__ = [
    "FRAME_DIGITS",
    "claim_output",
    "frame_files",
    "is_video",
    "refuse_missing",
    "refuse_special_files",
    "video_frames",
    "views_left",
]


def is_video(path: str) -> bool:
    """A video file by its extension (the video extensions ``zsseg camera`` reads)."""
    from zsseg_rt.stream.sources import VIDEO_EXTENSIONS

    return os.path.splitext(str(path))[1].lower() in VIDEO_EXTENSIONS


def refuse_special_files(paths: Sequence[str]) -> None:
    """Refuse a FIFO, a device or a socket among the inputs, before anything is loaded (reading one waits for a
    writer, or forever).

    Raises:
        CliError: one line naming the first one and what it is.
    """
    from zsseg_rt.input_files import special_file

    for path in paths:
        kind = special_file(path)
        if kind is not None:
            raise CliError(f"{path!r} is {kind}, not an image or video file: give a regular file")


def refuse_missing(paths: Sequence[str]) -> None:
    """Refuse a path that does not exist among the inputs, before the model loads (it was said only after, as
    a skipped image, seconds later for a large model).

    Raises:
        CliError: one line naming the first one (and how many more).
    """
    missing = [path for path in paths if not os.path.exists(path)]
    if not missing:
        return
    first = missing[0]
    what = "is a symbolic link to nothing" if os.path.islink(first) else "does not exist"
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    raise CliError(f"{first!r}{more} {what}: give an existing image, folder or video (quote a glob: 'photos/*.jpg')")


def views_left(plan: Dict, views: Sequence[str]) -> List[str]:
    """The view files (``STEM_labels.png``, ``STEM_mask.png``, ``STEM_overlay.png``, a video's frames) an output folder
    holds that the run of ``plan`` (``segment.plan_outputs``) does not write over, by name: they would stay beside
    its classes.json, which would no longer say what their label values mean. A single file's plan
    (``-o out.png``): none (its own files only)."""
    directory = plan["directory"]
    if plan.get("single") or not os.path.isdir(directory):
        return []
    replaced = {os.path.basename(p) for files in plan["files"] if "video" not in files for p in files.values()}
    for files in plan["files"]:
        if "video" in files:  # an earlier run's frames of a video of this run: written over, frame by frame
            replaced.update(map(os.path.basename, existing_frame_files(directory, files["video"], plan["kinds"])))
    pattern = re.compile(r"^.+_(" + "|".join(map(re.escape, [*views, "labels"])) + r")\.png$")
    return [name for name in sorted(os.listdir(directory)) if pattern.match(name) and name not in replaced]


def video_frames(path: str, max_pixels: int) -> Iterator[Tuple[int, np.ndarray]]:
    """``(number, BGR frame)`` of every frame of a video file, in order (decoded as ``zsseg camera`` decodes a file:
    PyAV when installed, damaged packets skipped and counted; its frame size checked against ``max_pixels`` before
    decoding). ``number``: the frame's number from its presentation time, as ``zsseg camera`` names it in every output
    (``FrameSource.last_number``): a frame lost to damaged data leaves a gap, said once at the end (stderr).

    Raises:
        SourceError, ImageTooLargeError: the file cannot be opened or decoded, or its frames are over the limit.
    """
    from zsseg_rt.stream.sources import missing_note, open_source

    source = open_source(path, max_pixels=max_pixels)
    source.open()
    try:
        while True:
            frame = source.read()
            if frame is None:
                if source.ended:
                    break
                continue
            number = source.last_number
            if number is None:  # read() returned a frame: every source numbers what it returns
                raise RuntimeError(f"{path}: the source returned a frame without its number")
            yield number, frame
        note = missing_note(source.missing_count, source.missing)
        if note:
            print(f"zsseg segment: note: {path}: {note}", file=sys.stderr)
    finally:
        source.close()


def frame_note(path: str) -> str:
    return (
        f"zsseg segment: note: {path} is a video: each of its frames is segmented as a photo (its outputs named "
        f"STEM_{'0' * FRAME_DIGITS}_overlay.png, ...); `zsseg camera {path} -o out.mp4` writes an overlay video "
        "instead"
    )


def claim_output(target: str, folder: bool, say=None):
    """The owner lock of the run's output (its folder, or its one file), taken before any check may remove what an
    earlier run left there. Returns the ``OwnerLock``, or None when its lock file cannot be made (the output checks
    then say why, in their words).

    Raises:
        CliError: another run writes there now (its process named), ``--overwrite`` included.
    """
    from zsseg_rt.outputs.owner import OutputBusy, OwnerLock

    lock = OwnerLock(target, "-o", folder=folder)
    try:
        lock.acquire(say or (lambda line: print(f"zsseg segment: note: {line}", file=sys.stderr)))
    except OutputBusy as exc:
        raise CliError(str(exc)) from None
    except OSError:
        return None
    return lock


def release(lock: Optional[object]) -> None:
    if lock is not None:
        lock.release()  # type: ignore[attr-defined]
