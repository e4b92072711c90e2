"""The per-image views output: what ``zsseg segment`` writes for each image it is given, as one output kind (the
``views`` row of :mod:`zsseg_rt.outputs.kinds`, ``-o views:DIR`` on a ``Session`` or ``zsseg camera``; ``zsseg
segment -o DIR`` names its folder itself) with its in-place entry in the output plan
(:class:`~zsseg_rt.outputs.plan.InPlaceFiles`: written as the run goes, each image's files whole).

Each image gets ``STEM_overlay.png`` (labels blended on the photo), ``STEM_mask.png`` (colour labels) and
``STEM_labels.png`` (the label ids: 8-bit up to 256 classes, else 16-bit), those its views ask for; the first image
with a given stem gets ``STEM``, later ones ``STEM_2``, ``STEM_3``... (also on case-insensitive file systems), never
a name that would overwrite an input. A frame of a video (or of any source whose frames have no file) gets
``NAME_000042_KIND.png``, ``NAME`` its video's name and ``000042`` its frame number. ``classes.json`` beside them says
what the label values mean (:class:`zsseg_rt.outputs.meaning.SegmentRecord`), written before the first map.

A spec names the views it writes before the folder: ``views:out/`` (the overlay, segment's default),
``views:overlay,mask,labels:out/`` (what ``zsseg segment --visualize overlay,mask --save-labels`` writes). Every
source of a run goes into the one folder, as ``zsseg segment`` writes every input into one; with ``{source}`` in the
folder (one per source) each folder's names are still planned over every source's images (a stem another source
took counts there too).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.outputs.image_files import write_views
from zsseg_rt.outputs.meaning import CLASS_MAP, LabelMeaning, SegmentRecord

from .sink_base import FrameSink

__all__ = [
    "FRAME_DIGITS",
    "SCHEME",
    "VIEWS",
    "ViewFiles",
    "ViewsSink",
    "open_views",
    "existing_frame_files",
    "frame_files",
    "name_views",
    "parse_views_spec",
    "plan_views",
    "view_kinds",
]

VIEWS = ("overlay", "mask")  # the image views (jetson-inference's names); the label ids are "labels"
KINDS = (*VIEWS, "labels")
FRAME_DIGITS = 6  # clip_000042_overlay.png
SCHEME = "views:"
VIDEO = "video"  # name_views: the files of a video input are NAME_000042_KIND.png, one per frame and kind


def view_kinds(views: Sequence[str], save_labels: bool) -> List[str]:
    """The files written per image, in order: the ``views`` asked for (the label ids need their colour view: a mask
    with ``save_labels``), then the label map."""
    kinds = [view for view in VIEWS if view in views or (view == "mask" and save_labels)]
    return kinds + (["labels"] if save_labels else [])


def parse_views_spec(spec: str) -> Tuple[List[str], str]:
    """``views:[VIEW,...:]DIR`` -> (the kinds written per image, the folder).

    Raises:
        ValueError: no folder, or a view that is none of overlay, mask, labels.
    """
    text = str(spec).strip()
    if not text.lower().startswith(SCHEME):
        raise ValueError(f"a views output is views:DIR or views:overlay,mask,labels:DIR, got {text!r}")
    rest = text[len(SCHEME) :]
    head, sep, tail = rest.partition(":")
    named = [part.strip() for part in head.split(",") if part.strip()]
    if sep and named and all(part in KINDS for part in named):
        views, folder = named, tail
    else:
        views, folder = ["overlay"], rest
    if not folder.strip():
        raise ValueError(f"{text!r} names no folder: give views:DIR or views:overlay,mask,labels:DIR")
    return view_kinds(views, "labels" in views), folder


def frame_files(directory: str, name: str, index: int, kinds: Sequence[str]) -> Dict[str, str]:
    """The outputs of frame ``index`` of the video whose outputs are named ``name``: one file per kind."""
    return {kind: os.path.join(directory, f"{name}_{index:0{FRAME_DIGITS}d}_{kind}.png") for kind in kinds}


def existing_frame_files(directory: str, name: str, kinds: Sequence[str]) -> List[str]:
    """The frame outputs of the video named ``name`` that ``directory`` holds already (an earlier run's)."""
    pattern = re.compile(
        re.escape(name) + r"_\d{" + str(FRAME_DIGITS) + r",}_(" + "|".join(map(re.escape, kinds)) + r")\.png$"
    )
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(os.path.join(directory, entry) for entry in names if pattern.match(entry))


def name_views(
    images: Sequence[str], directory: str, kinds: Sequence[str], is_video: Callable[[str], bool]
) -> List[Dict[str, str]]:
    """The files of each input in ``directory``: ``{kind: path}`` of an image, ``{"video": NAME}`` of a video (its
    frames' files: :func:`frame_files`); names as the module says (never an input's path, distinct whatever the
    case)."""
    inputs = {os.path.realpath(image) for image in images}
    used: set = set()
    files: List[Dict[str, str]] = []

    def paths(base: str) -> Dict[str, str]:
        return {kind: os.path.join(directory, f"{base}_{kind}.png") for kind in kinds}

    for image in images:
        stem = os.path.splitext(os.path.basename(os.path.normpath(image)))[0]
        name, number = stem, 2
        # lower(): distinct on case-insensitive file systems too; never the path of an input image
        while name.lower() in used or any(os.path.realpath(p) in inputs for p in paths(name).values()):
            name, number = f"{stem}_{number}", number + 1
        used.add(name.lower())
        files.append({VIDEO: name} if is_video(image) else paths(name))
    return files


def _is_video(path: str) -> bool:
    from zsseg_rt.input_files import VIDEO_EXTENSIONS

    return os.path.splitext(str(path))[1].lower() in VIDEO_EXTENSIONS


def _images_of(inputs: Sequence[str]) -> List[str]:
    """The images (and video files) a run reads from its inputs, in the order its sources read them: a folder's
    images in name order (``ImageFolderSource``), a file as given."""
    from zsseg_rt.input_files import IMAGE_EXTENSIONS

    found: List[str] = []
    for path in inputs:
        if os.path.isdir(path):
            found += sorted(
                os.path.join(path, name) for name in os.listdir(path) if name.lower().endswith(IMAGE_EXTENSIONS)
            )
        else:
            found.append(path)
    return found


@dataclasses.dataclass
class ViewFiles:
    """The views output's entry of a run's plan: its folder, the kinds per image, the files of each input image named
    before the run (``names``: an image's real path -> its files), and the plan's in-place entry that checks them
    (``entry``: :class:`~zsseg_rt.outputs.plan.InPlaceFiles`; an earlier run's frames of a video input of the same
    name counted as ``found``)."""

    directory: str
    kinds: List[str]
    names: Dict[str, Dict[str, str]]
    overwrite: bool
    entry: Any = None


def plan_views(plan: Any, option: str, spec: str) -> ViewFiles:
    """The views row's plan entry (``plan``: an :class:`~zsseg_rt.outputs.plan.OutputPlan`): the files of every image
    the run's inputs (``plan.inputs``: files and folders) hold, declared in place in ``spec``'s folder."""
    kinds, directory = parse_views_spec(spec)
    images = _images_of(plan.inputs)
    planned = name_views(images, directory, kinds, _is_video)
    names = {os.path.realpath(image): files for image, files in zip(images, planned) if VIDEO not in files}
    videos = [files[VIDEO] for files in planned if VIDEO in files]
    found = [path for name in videos for path in existing_frame_files(directory, name, kinds)]
    targets = [path for files in names.values() for path in files.values()]
    record = SegmentRecord.files(os.path.join(directory, CLASS_MAP))
    entry = plan.in_place(option, directory, targets, found=found, others=record, instead="choose another folder")
    return ViewFiles(directory, list(kinds), names, bool(plan.overwrite), entry)


class ViewsSink(FrameSink):
    """Writes each result's views into its files (all of them or none: :func:`~zsseg_rt.outputs.image_files.
    write_views`), the class map first.

    It takes results: the stream loop calls ``write_result(frame, result)`` (``frame.path``: an image's file, named by
    ``files``; else ``frame.index``: a video's frame number, named by its source, ``frame.stream``); ``zsseg segment`` calls
    :meth:`write_files` with the files its plan named.

    Args:
        directory: the output folder (made by the plan's checks or by the first write).
        kinds: the files per image (:func:`view_kinds`).
        alpha, legend: the overlay's.
        files: the real path of an image -> its files (:class:`ViewFiles`' ``names``); an image not in it gets its
            stem (then ``_2``...).
        sources: the names of the sources it takes (one folder for every source, as ``zsseg segment`` writes every
            input into one): a frame without a file is named by its source's (``NAME_000042_overlay.png``).
        record: the class map's record; None: ``DIR/classes.json`` with each result's meaning, checked before the
            first write (``overwrite``: a record of another meaning may be replaced).
    """

    def __init__(
        self,
        directory: str,
        kinds: Sequence[str],
        *,
        alpha: float = 0.5,
        legend: bool = True,
        files: Optional[Dict[str, Dict[str, str]]] = None,
        sources: Sequence[str] = ("camera",),
        record: Optional[SegmentRecord] = None,
        overwrite: bool = False,
    ):
        self.directory, self.kinds = directory, list(kinds)
        self.alpha, self.legend = float(alpha), bool(legend)
        self.files = dict(files or {})
        self.sources = list(sources) or ["camera"]
        self.record = record
        self.overwrite = overwrite
        self.name = f"views:{directory}"
        self.frames = 0
        self.bundle_digest: Optional[str] = None  # the model's (model_opened): in the folder's whole record
        self._taken = {path.lower() for files in self.files.values() for path in files.values()}

    def write(self, frame: np.ndarray) -> None:
        raise TypeError("the views take results (write_result), not overlay images")

    def files_of(self, frame: Any) -> Dict[str, str]:
        """The files of ``frame``: its image's (planned, else by its stem), else its frame number's."""
        path = getattr(frame, "path", None)
        if path is None:
            stream = int(getattr(frame, "stream", 0) or 0)
            source = self.sources[stream] if stream < len(self.sources) else self.sources[0]
            return frame_files(self.directory, source, int(frame.index), self.kinds)
        planned = self.files.get(os.path.realpath(path))
        if planned is not None:
            return planned
        stem = os.path.splitext(os.path.basename(path))[0]
        name, number = stem, 2

        def named(base: str) -> Dict[str, str]:
            return {kind: os.path.join(self.directory, f"{base}_{kind}.png") for kind in self.kinds}

        while any(candidate.lower() in self._taken for candidate in named(name).values()):
            name, number = f"{stem}_{number}", number + 1
        files = named(name)
        self._taken.update(candidate.lower() for candidate in files.values())
        self.files[os.path.realpath(path)] = files
        return files

    def model_opened(self, engine: Any) -> None:
        """The run's model is open: its bundle's digest goes into the record (as ``zsseg segment``'s)."""
        self.bundle_digest = getattr(getattr(engine, "meta", None), "digest", None) or None

    def write_result(self, frame: Any, result: Any) -> None:
        self.write_files(result, self.files_of(frame))

    def write_files(self, result: Any, files: Dict[str, str], then: Optional[Callable[[Any], None]] = None) -> None:
        """``result``'s views into ``files`` (the class map first), then ``then(result)``.

        Raises:
            OutputWriteError, OSError, ValueError: as :func:`~zsseg_rt.outputs.image_files.write_views`; MeaningRefused:
                the folder's class map says another vocabulary (without ``overwrite``).
        """
        if self.record is None:
            os.makedirs(self.directory, exist_ok=True)
            self.record = SegmentRecord(
                os.path.join(self.directory, CLASS_MAP), LabelMeaning.of_result(result, self.bundle_digest)
            )
            self.record.check(self.overwrite, self._left, repr(self.directory))
        self.record.write()
        write_views(result, files, alpha=self.alpha, legend=self.legend, then=then)
        self.frames += 1

    def _left(self) -> List[str]:
        """The view files the folder holds that this run does not write over (they would stay beside a class map
        that no longer says what their label values mean)."""
        mine = {os.path.basename(path) for files in self.files.values() for path in files.values()}
        pattern = re.compile(r"^.+_(" + "|".join(KINDS) + r")\.png$")
        sources = "|".join(map(re.escape, self.sources))
        frames = re.compile(r"^(" + sources + r")_\d{" + str(FRAME_DIGITS) + r",}_(" + "|".join(KINDS) + r")\.png$")
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        return [name for name in names if pattern.match(name) and name not in mine and not frames.match(name)]

    def describe(self) -> Dict[str, Any]:
        """What was written (``--stats-json`` "outputs"; the "wrote ..." line)."""
        return {"path": self.directory, "kind": "views", "frames": self.frames, "views": list(self.kinds)}


def open_views(spec: str, options: Any) -> ViewsSink:
    """The views row's sink: ``spec``'s folder and views, its plan entry's names (``options.staged``)."""
    kinds, directory = parse_views_spec(spec)
    staged = options.staged
    return ViewsSink(
        directory,
        kinds,
        alpha=options.alpha,
        legend=options.legend,
        files=staged.names if isinstance(staged, ViewFiles) else None,
        sources=list(options.sources),
        overwrite=staged.overwrite if isinstance(staged, ViewFiles) else options.replace,
    )
