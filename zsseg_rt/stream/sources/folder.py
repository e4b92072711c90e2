"""An image folder: an existing folder of images (``file://`` allowed; not live), read in name order as frames."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Type

import numpy as np

from .base import IMAGE_EXTENSIONS, FrameSource, OpenOptions, SourceError, SourceKind, SourceSpec, log


def strip_file_scheme(text: str) -> str:
    """``file://PATH`` -> ``PATH``; anything else as given."""
    return text[len("file://") :] if text.lower().startswith("file://") else text


class ImageFolderSource(FrameSource):
    """The images of a folder, in name order, as frames (unreadable files, truncated or damaged ones, and images
    over the pixel limit, ``max_pixels`` as in ``zsseg_rt.image_io.read_image_bgr``, are skipped with a warning
    giving the reason, each kept once in ``skipped``: ``(path, reason)``; ``allow_partial`` decodes what a truncated or
    damaged image holds instead; ``fit``: an image over the limit is read resized to fit it, with a warning saying
    so, ``zsseg_rt.image_io.read_image_fitted``, each kept in ``resized``: its path -> ``{"from", "to"}``)."""

    def __init__(
        self,
        folder: str,
        fps: Optional[float] = None,
        max_pixels: Optional[int] = None,
        allow_partial: bool = False,
        fit: bool = False,
    ):
        super().__init__()
        self.max_pixels = max_pixels
        self.allow_partial = bool(allow_partial)
        self.fit = bool(fit)
        self.skipped: List[Tuple[str, str]] = []  # (an image's path, why it was skipped), in the order read, once each
        self._skipped_keys: Set[Any] = set()  # what "once each" counts (:meth:`_skip_key`)
        self.images_read = 0  # the images it tried to read, the skipped ones too, over every open() (a loop's laps)
        self.resized: Dict[str, Dict[str, List[int]]] = {}  # an image read resized (fit): {"from": [w, h], "to": ...}
        self.folder = folder
        self.name = f"folder:{folder}"
        self.fps = fps
        self._paths: List[str] = []
        self._index = 0
        self.last_path: Optional[str] = None  # the file of the frame read last (COCO's file_name)

    def listing(self) -> List[str]:
        """The image files it reads, in order (a folder's: in name order).

        Raises:
            SourceError: the folder does not exist, or holds no images.
        """
        if not os.path.isdir(self.folder):
            raise SourceError(f"image folder {self.folder!r} does not exist")
        paths = sorted(
            os.path.join(self.folder, name)
            for name in os.listdir(self.folder)
            if name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not paths:
            raise SourceError(f"image folder {self.folder!r} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        return paths

    def _skip_key(self, path: str) -> Any:
        """What a skipped image is counted once by: its path (a folder read again, a loop's next lap)."""
        return path

    def open(self) -> None:
        self._paths = self.listing()
        self.frame_count = len(self._paths)
        self._index = 0
        self._restart_numbers()
        self.ended = False

    def read(self) -> Optional[np.ndarray]:
        from zsseg_rt.image_io import ImageReadError, ImageTooLargeError, read_image_bgr, read_image_fitted

        while self._index < len(self._paths):
            path = self._paths[self._index]
            self._index += 1
            self.images_read += 1
            try:
                if self.fit:  # over the limit: resized to fit it (what zsseg segment does without --max-pixels)
                    image, resized = read_image_fitted(path, self.max_pixels, True, self.allow_partial)
                else:
                    image, resized = read_image_bgr(path, self.max_pixels, allow_partial=self.allow_partial), None
            except ImageReadError as exc:
                if not isinstance(exc, ImageTooLargeError):
                    self.decode_errors += 1  # a damaged image (one over the pixel limit is not)
                if self._skip_key(path) not in self._skipped_keys:  # once, however many laps of a loop read it
                    self._skipped_keys.add(self._skip_key(path))
                    self.skipped.append((path, str(exc)))
                log.warning("skipped %s: %s", path, exc)  # "skipped PATH: why", as zsseg segment says it
                continue
            if resized:
                self.resized[path] = {"from": resized["from"], "to": resized["to"]}
                log.warning("note: %s", resized["note"])
            # its place in the folder, at fps; its number that place (a skipped image leaves a gap)
            self._place((self._index - 1) / (self.fps or 30.0), number=self._index - 1)
            self.last_path = path
            return image
        self.ended = True
        return None


def _parse(text: str) -> Optional[SourceSpec]:
    path = strip_file_scheme(text)
    return SourceSpec("folder", path, False) if os.path.isdir(path) else None


def builder(kind: Type[ImageFolderSource]) -> Callable[[SourceSpec, OpenOptions], FrameSource]:
    """The ``build`` of a row whose source reads image files (a folder's; ``images.py``'s files and globs)."""

    def build(spec: SourceSpec, options: OpenOptions) -> FrameSource:
        taken = ("fps", "max_pixels", "allow_partial", "fit")  # what a source of image files uses of them
        return kind(spec.target, **{name: getattr(options, name) for name in taken})

    return build


ROW = SourceKind(
    name="folder",
    example="frames/ (a folder of images)",
    parse=_parse,
    label=lambda spec: os.path.basename(os.path.normpath(spec.target)),
    build=builder(ImageFolderSource),
)
