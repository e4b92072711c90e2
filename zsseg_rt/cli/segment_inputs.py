"""``zsseg segment``'s inputs and outputs before anything opens: what a path on its command line is (a photo, a
folder of photos, a quoted glob, a video file), refused when it is missing, a FIFO, a device or a socket; the
Session's sources they make (:func:`session_sources`); and where the views go (:func:`views_target`: ``-o``'s file
or folder, refused in the command's words, or a new numbered ``runs/segment/expN`` made for this run)."""

from __future__ import annotations

import glob
import os
from typing import Any, List, Optional, Sequence

from zsseg_rt.console.errors import CliError
from zsseg_rt.input_files import expand_glob, sequence_of
from zsseg_rt.outputs.plan import check_free_space, next_run_directory
from zsseg_rt.outputs.views import FRAME_DIGITS  # the views output's names

__all__ = [
    "IMAGE_EXTENSIONS",
    "RUNS_DIR",
    "expand_inputs",
    "frame_note",
    "is_single_file",
    "is_video",
    "refuse_missing",
    "refuse_several_sequences",
    "refuse_special_files",
    "session_sources",
    "views_target",
]

RUNS_DIR = os.path.join("runs", "segment")
WRITABLE_EXTENSIONS = ".png, .jpg, .bmp, .tif, .webp"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


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


def frame_note(path: str) -> str:
    return (
        f"zsseg segment: note: {path} is a video: each of its frames is segmented as a photo (its outputs named "
        f"STEM_{'0' * FRAME_DIGITS}_overlay.png, ...); `zsseg camera {path} -o out.mp4` writes an overlay video "
        "instead"
    )


def expand_inputs(sources: Sequence[str]) -> List[str]:
    """The image files named by the command line, in order: a file as given (a video file too: its frames are
    segmented), a folder's images (its own files with an image extension, in name order; not its sub-folders), a
    glob (``"photos/*.jpg"``, ``"**/*.png"``: quoted, so that zsseg and not the shell expands it; ``**`` enters each
    real folder once, so a symbolic-link loop ends: ``zsseg_rt.input_files``). A path that does not exist is kept:
    it is refused before the model loads (``refuse_missing``).

    Raises:
        CliError: a folder without images, or a glob that matches no file.
    """
    images: List[str] = []
    for source in sources:
        if os.path.isdir(source):
            found = sorted(
                os.path.join(source, name)
                for name in os.listdir(source)
                if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(source, name))
            )
            if not found:
                raise CliError(f"the folder {source!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            images.extend(found)
        elif not os.path.exists(source) and glob.has_magic(source):
            found = [path for path in expand_glob(source) if os.path.isfile(path)]
            if not found:
                raise CliError(f"no file matches {source!r}")
            images.extend(found)
        else:
            images.append(source)
    return images


def refuse_several_sequences(args, images: Sequence[str]) -> None:
    """--tracks-out FILE holds one sequence: one video file, or the images of one folder (:func:`sequence_of`); a video
    given twice is two (its frame numbers start again)."""
    if getattr(args, "tracks_out", None):
        keys = [(sequence_of(path), place if is_video(path) else -1) for place, path in enumerate(images)]
        sequences = [sequence for sequence, _ in dict.fromkeys(keys)]
        if len(sequences) > 1:
            shown = ", ".join(sequences[:3]) + (f" and {len(sequences) - 3} more" if len(sequences) > 3 else "")
            raise CliError(
                f"--tracks-out {args.tracks_out} holds one sequence of frames, and these inputs are {len(sequences)} "
                f"(each video, and the images of each folder, however named, is one: {shown}): give one video file, "
                "or the images of one folder"
            )


def session_sources(images: Sequence[str], folders: Sequence[str], args) -> List[Any]:
    """The Session's sources: each run of image files between two video files one ``ImageFilesSource`` (read in the
    order given; the folders they came from no output may lie in), each video file its path."""
    from zsseg_rt.stream.sources.images import ImageFilesSource

    sources: List[Any] = []
    files: List[str] = []
    read = {"max_pixels": args.max_pixels, "allow_partial": bool(args.allow_partial_images), "fit": args.resize}
    for path in [*images, None]:
        if path is not None and not is_video(path):
            files.append(path)
            continue
        if files:
            sources.append(ImageFilesSource(paths=files, folders=folders if not sources else (), **read))
            files = []
        if path is not None:
            sources.append(path)
    return sources


def _has_image_extension(path: str) -> bool:
    import cv2

    return bool(os.path.splitext(path)[1]) and bool(cv2.haveImageWriter(path))


def is_single_file(output: Optional[str], count: int) -> bool:
    """``-o out.png`` with one image: that file (a path with an image extension that is not a folder)."""
    if output is None or count != 1 or os.path.isdir(output) or output.endswith(("/", os.sep)):
        return False
    return bool(os.path.splitext(output)[1])


def views_target(args, images: Sequence[str]) -> str:
    """Where the views go (``-o``'s file or folder, else a new numbered folder), refused in the command's words
    before anything opens.

    Raises:
        CliError: ``-o FILE`` with a video or several images, an existing file, an extension OpenCV cannot write;
        OutputRefused: a full disk.
    """
    output = args.output
    single = output is not None and is_single_file(output, len(images))
    if output is not None:  # a full disk (OutputRefused): said of the folder the user gave, before anything is made
        check_free_space(os.path.dirname(output) or "." if single else output, "-o")
    if single:
        if is_video(images[0]):
            raise CliError(
                f"-o {output!r} names one image file, but {images[0]!r} is a video (a file per frame): give a "
                "folder (-o DIR), or `zsseg camera` for an overlay video"
            )
        if not _has_image_extension(output):
            raise CliError(
                f"cannot write {output!r}: OpenCV has no writer for {os.path.splitext(output)[1]!r}; use one of "
                f"{WRITABLE_EXTENSIONS}"
            )
        return output
    if output is not None and os.path.exists(output) and not os.path.isdir(output):
        raise CliError(f"-o {output!r} is an existing file but {len(images)} images were given: give a folder")
    if output is not None and len(images) > 1 and not os.path.exists(output) and _has_image_extension(output):
        raise CliError(
            f"-o {output!r} looks like an image file but {len(images)} images were given: "
            "give a folder for the results (e.g. -o out/)"
        )
    return output if output is not None else _new_run_directory()


def _new_run_directory() -> str:
    """A new numbered folder ``runs/segment/expN``, made here: a run starting at the same time makes another."""
    for _ in range(100):
        directory = next_run_directory(RUNS_DIR)
        check_free_space(directory, "-o")  # a full disk: OutputRefused
        try:
            os.makedirs(directory)
            return directory
        except FileExistsError:
            continue
        except OSError as exc:
            raise CliError(f"cannot create the output folder {directory!r}: {exc.strerror or exc}") from None
    raise CliError(f"no free numbered folder under {RUNS_DIR}: another run takes each one first")
