"""Image files as a source: one photo (``a.jpg``) or a quoted glob (``"photos/*.jpg"``, ``"**/*.png"``: zsseg expands
it, ``zsseg_rt.input_files.expand_glob``), read in the order given (a glob's matches in name order) as frames, each
with its file (``Frame.path``: the views output names its files by it). Not live. An image that cannot be read is
skipped with a warning giving the reason, as an image folder's (:class:`~.folder.ImageFolderSource`). A glob reads
only image files: the others it matches (a video) are left out, named in one warning (a video is a source of its
own: ``zsseg camera clip.avi``). An animated PNG given on its own is no row of this table's images: the file row
reads every frame of it.

``zsseg segment`` hands a Session one such source for the image files of its command line, however many:
``ImageFilesSource(paths=[...])`` reads those files in the order given (one capture thread for a shell-expanded
``photos/*.jpg`` of ten thousand files, not ten thousand sources); ``folders``: the folders they were listed from, which
no output may lie in (``zsseg_rt.outputs.run_outputs.input_paths``)."""

from __future__ import annotations

import glob
import logging
import os
from typing import Any, List, Optional, Sequence

from .base import IMAGE_EXTENSIONS, SourceError, SourceKind, SourceSpec
from .folder import ImageFolderSource, builder, strip_file_scheme

log = logging.getLogger(__name__)


class ImageFilesSource(ImageFolderSource):
    """The image files of ``pattern`` (one file, or a glob), in order, as frames (see the module)."""

    def __init__(
        self,
        pattern: str = "",
        *,
        paths: Optional[Sequence[str]] = None,
        folders: Sequence[str] = (),
        **options: Any,  # fps, max_pixels, allow_partial, fit: a folder's
    ):
        if paths is not None and not paths:
            raise SourceError("ImageFilesSource(paths=...) needs at least one image file")
        self.paths = [str(path) for path in paths] if paths is not None else None
        pattern = pattern or (self.paths[0] if self.paths else "")
        super().__init__(pattern, **options)
        self.pattern = pattern
        self.input_folders = [str(folder) for folder in folders]
        more = f" and {len(self.paths) - 1} more" if self.paths and len(self.paths) > 1 else ""
        self.name = f"images:{pattern}{more}"
        self._said_left_out = False  # the warning naming the files a glob matches that are no images: once

    def _skip_key(self, path: str) -> Any:
        """The files given: each place in their list (a file given twice that fails is two failed images)."""
        return (self._index - 1, path) if self.paths is not None else path

    def listing(self) -> List[str]:
        """The files of the pattern: the one image, or the glob's image files in name order (the others it matches
        left out, named in one warning).

        Raises:
            SourceError: a glob that matches no file, or no image file.
        """
        from zsseg_rt.input_files import expand_glob

        if self.paths is not None:  # the files given, in their order
            return list(self.paths)
        if os.path.isfile(self.pattern):
            return [self.pattern]
        found = [path for path in expand_glob(self.pattern) if os.path.isfile(path)]
        if not found:
            raise SourceError(f"no file matches {self.pattern!r}")
        images = [path for path in found if path.lower().endswith(IMAGE_EXTENSIONS)]
        others = [path for path in found if path not in images]
        if not images:
            said = ", ".join(others)
            raise SourceError(
                f"no image file matches {self.pattern!r}, only {said}: give a video as a source of its own"
            )
        if others and not self._said_left_out:
            self._said_left_out = True
            log.warning(
                "%r: left out %s (not image files; a video is a source of its own: give it as one)",
                self.pattern,
                ", ".join(others),
            )
        return images

    @property
    def image_paths(self) -> List[str]:
        """The files it reads (the output plan: no output may be one of them; the views output names them)."""
        return self.listing()


def _parse(text: str) -> Optional[SourceSpec]:
    path = strip_file_scheme(text)
    if os.path.isfile(path) and path.lower().endswith(IMAGE_EXTENSIONS):
        from zsseg_rt.image_io import frame_count

        # an animated PNG: the file row (OpenCV's video reader) reads every frame; it reads no frame of an animated
        # WebP and one of a multi-page TIFF, which stay here (their first frame, with their file)
        if path.lower().endswith(".png") and frame_count(path) > 1:
            return None
        return SourceSpec("images", path, False)
    if not os.path.exists(path) and glob.has_magic(path):
        return SourceSpec("images", path, False)
    return None


def _label(spec: SourceSpec) -> str:
    if os.path.isfile(spec.target):
        return os.path.splitext(os.path.basename(spec.target))[0]
    folder = os.path.dirname(spec.target.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0])
    return os.path.basename(os.path.normpath(folder)) if folder else "images"


ROW = SourceKind(
    name="images",
    example="photo.jpg or 'photos/*.jpg' (image files, a quoted glob)",
    parse=_parse,
    label=_label,
    build=builder(ImageFilesSource),
)
