"""The per-image views output: what ``zsseg segment`` writes for each image it is given, as one output kind (the
``views`` row of :mod:`zsseg_rt.outputs.kinds`, ``-o views:DIR`` on a ``Session`` or ``zsseg camera``; ``zsseg
segment -o DIR`` names its folder itself) with its in-place entry in the output plan
(:class:`~zsseg_rt.outputs.plan.InPlaceFiles`: written as the run goes, each image's files whole).

Each image gets ``STEM_overlay.png`` (labels blended on the photo), ``STEM_mask.png`` (colour labels) and
``STEM_labels.png`` (the label ids: 8-bit up to 256 classes, else 16-bit), those its views ask for; the first image
with a given stem gets ``STEM``, later ones ``STEM_2``, ``STEM_3``... (also on case-insensitive file systems), never
a name that would overwrite an input (an image read twice, a file and a glob over it, is written twice: ``STEM``
then ``STEM_2``). A frame of a video (or of any source whose frames have no file) gets ``NAME_000042_KIND.png``,
``000042`` its frame number and ``NAME`` its video file's name by that rule (whatever the source is called:
``front=clip.avi`` too), a stream's or a camera's the source's name; an earlier run's frames of those names are
refused without overwrite, as an image's files are. ``classes.json`` beside them says
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

from zsseg_rt.errors import flag_words
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
    "one_image_files",
    "parse_views_spec",
    "plan_views",
    "single_file",
    "source_reads",
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


IMAGES, STREAM = "images", "stream"  # source_reads: a source of image files, of frames without a file


def source_reads(sources: Sequence[Any], names: Sequence[str]) -> List[Tuple[str, str, List[str]]]:
    """What each source reads, as the views name it: ``(its name, "images", its image files in the order it reads
    them)`` (a folder's, a glob's: the listing the source reads), ``(name, "video", [its file])`` (a file the video
    reader reads, frame by frame) or ``(name, "stream", [])`` (a camera, a URL: frames without a file)."""
    reads: List[Tuple[str, str, List[str]]] = []
    for source, name in zip(sources, names):
        listed = getattr(source, "image_paths", None)  # image files (a glob's)
        if listed is None and getattr(source, "folder", None) is not None and hasattr(source, "listing"):
            try:
                listed = source.listing()
            except (OSError, RuntimeError):  # no folder, no images: the source says so when it opens
                listed = []
        if listed is not None:
            reads.append((str(name), IMAGES, [str(path) for path in listed]))
            continue
        spec = getattr(source, "spec", None)
        path = getattr(source, "path", None) or (spec.target if spec is not None and spec.kind == "file" else None)
        reads.append((str(name), VIDEO, [str(path)]) if path else (str(name), STREAM, []))
    return reads


@dataclasses.dataclass
class ViewFiles:
    """The views output's entry of a run's plan: its folder, the kinds per image, the files of each input image named
    before the run (``names``: an image's real path -> the files of each time it is read, in order), the name of
    each source's frames without a file (``frames``: a source's name -> ``NAME`` of ``NAME_000042_KIND.png``: a
    video file's as segment names it, else the source's), and the plan's in-place entry that checks them
    (``entry``: :class:`~zsseg_rt.outputs.plan.InPlaceFiles`; an earlier run's frames of the same names counted as
    ``found``)."""

    directory: str
    kinds: List[str]
    names: Dict[str, List[Dict[str, str]]]
    overwrite: bool
    entry: Any = None
    frames: Dict[str, str] = dataclasses.field(default_factory=dict)
    class_map: str = ""  # the class map's path ("": the folder's classes.json; ``views:out.png``: out_classes.json)


def _base(files: Dict[str, str], kinds: Sequence[str]) -> str:
    """The name planned for an input: a video's, or an image's (``STEM_2`` of ``STEM_2_overlay.png``)."""
    if VIDEO in files:
        return files[VIDEO]
    return os.path.basename(files[kinds[0]])[: -len(f"_{kinds[0]}.png")]


def single_file(path: str) -> bool:
    """``views:out.png``: the views of one image named as one file (an image extension OpenCV writes, not a folder),
    as ``zsseg segment -o out.png`` names them."""
    if os.path.isdir(path) or path.endswith(("/", os.sep)) or not os.path.splitext(path)[1]:
        return False
    import cv2

    return bool(cv2.haveImageWriter(path))


def one_image_files(path: str, kinds: Sequence[str]) -> Tuple[Dict[str, str], str]:
    """The files of one image written as ``path`` (``out.png``): ``({first kind: out.png, KIND: out_KIND.png, ...},
    out_classes.json)``: ``views:out.png``'s and ``zsseg segment -o out.png``'s names."""
    stem = os.path.splitext(path)[0]
    return {kinds[0]: path, **{kind: f"{stem}_{kind}.png" for kind in kinds[1:]}}, f"{stem}_{CLASS_MAP}"


def _plan_single(plan: Any, option: str, spec: str, kinds: List[str], path: str, reads: List[Any]) -> ViewFiles:
    """``views:out.png``'s entry: the one image read is written as ``out.png`` (the first view asked) and
    ``out_KIND.png`` (the others), its class map ``out_classes.json`` (zsseg segment's single-file names).

    Raises:
        OutputRefused: the run reads more than one image, or a video or stream.
    """
    from zsseg_rt.outputs.plan import OutputRefused

    images = [image for _, kind, paths in reads if kind == IMAGES for image in paths]
    if len(images) != 1 or len(reads) != 1:
        others = [name for name, kind, _ in reads if kind != IMAGES]
        said = f"{len(images)} images" + (f" and the frames of {', '.join(others)}" if others else "")
        raise OutputRefused(
            f"{option} {spec!r} names one image file, but the run reads {said}: give a folder (views:DIR)", path
        )
    files, class_map = one_image_files(path, kinds)
    targets = list(files.values())
    entry = plan.in_place(
        option, path, targets, others=SegmentRecord.files(class_map), instead="choose another file", folder=False
    )
    directory = os.path.dirname(path) or "."
    names = {os.path.realpath(images[0]): [files]}
    return ViewFiles(directory, list(kinds), names, bool(plan.overwrite), entry, {}, class_map)


def plan_views(plan: Any, option: str, spec: str) -> ViewFiles:
    """The views row's plan entry (``plan``: an :class:`~zsseg_rt.outputs.plan.OutputPlan`): the files of every image
    the run's sources read (``plan.sources``: :func:`source_reads`; without them ``plan.inputs``, files and folders)
    and the frame names of every other source, declared in place in ``spec``'s folder (an existing one refused
    without overwrite); ``views:out.png``: the one image's files (:func:`single_file`)."""
    kinds, directory = parse_views_spec(spec)
    reads = plan.sources or [(path, VIDEO if _is_video(path) else IMAGES, [path]) for path in _images_of(plan.inputs)]
    if single_file(directory):
        return _plan_single(plan, option, spec, kinds, directory, reads)
    inputs = [(path, kind) for _, kind, paths in reads for path in paths]
    videos = {path for path, kind in inputs if kind == VIDEO}
    planned = name_views([path for path, _ in inputs], directory, kinds, videos.__contains__)
    names: Dict[str, List[Dict[str, str]]] = {}
    frames: Dict[str, str] = {}
    for (path, _), files in zip(inputs, planned):
        if VIDEO not in files:
            names.setdefault(os.path.realpath(path), []).append(files)
    used = {_base(files, kinds).lower() for files in planned}
    position = 0
    for name, kind, paths in reads:
        if kind == VIDEO:
            frames[name] = planned[position][VIDEO]  # the name segment gives the video file
        elif kind == STREAM:
            base, number = name, 2
            while base.lower() in used:
                base, number = f"{name}_{number}", number + 1
            used.add(base.lower())
            frames[name] = base
        position += len(paths)
    found = sorted({path for base in frames.values() for path in existing_frame_files(directory, base, kinds)})
    targets = [path for each in names.values() for files in each for path in files.values()]
    record = SegmentRecord.files(os.path.join(directory, CLASS_MAP))
    entry = plan.in_place(option, directory, targets, found=found, others=record, instead="choose another folder")
    return ViewFiles(directory, list(kinds), names, bool(plan.overwrite), entry, frames, record[0])


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
        files: the real path of an image -> the files of each time it is read, in order (:class:`ViewFiles`'
            ``names``: an image given twice is written twice, ``STEM`` then ``STEM_2``; read again, as a loop's next
            lap reads it, it is written into the same files again); an image not in it gets its stem (then ``_2``...).
        sources: the names of the sources it takes (one folder for every source, as ``zsseg segment`` writes every
            input into one): a frame without a file is named by its source's frame name (``frames``), else by the
            source's name (``NAME_000042_overlay.png``).
        frames: a source's name -> the name of its frames (:class:`ViewFiles`' ``frames``: a video file's as
            segment names it).
        class_map: the class map's path (None: ``DIR/classes.json``; one image's file ``out.png``: ``out_classes.json``).
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
        files: Optional[Dict[str, List[Dict[str, str]]]] = None,
        sources: Sequence[str] = ("camera",),
        record: Optional[SegmentRecord] = None,
        overwrite: bool = False,
        frames: Optional[Dict[str, str]] = None,
        class_map: Optional[str] = None,
    ):
        self.directory, self.kinds = directory, list(kinds)
        self.class_map = class_map or os.path.join(directory, CLASS_MAP)
        self.alpha, self.legend = float(alpha), bool(legend)
        self.files = {path: list(each) for path, each in (files or {}).items()}
        self.sources = list(sources) or ["camera"]
        self.frame_names = dict(frames or {})
        self._reads: Dict[str, int] = {}  # an image's real path -> how many times it was written
        self.record = record
        self.overwrite = overwrite
        self.name = f"views:{directory}"
        self.path = directory  # what it writes into, as the spec named it (describe)
        self.frames = 0
        self._written: Dict[int, int] = {}  # a source's place in the run -> the frames of it written
        self._read_from: List[Any] = []  # the run's sources (reads_from): how many images each read, skipped ones too
        self._in_order = False
        self.bundle_digest: Optional[str] = None  # the model's (model_opened): in the folder's whole record
        self._taken = {path.lower() for each in self.files.values() for files in each for path in files.values()}
        self.cli = flag_words()  # opened by a command (its refusals name -o; they are said in a writer thread)

    def write(self, frame: np.ndarray) -> None:
        raise TypeError("the views take results (write_result), not overlay images")

    def files_of(self, frame: Any) -> Dict[str, str]:
        """The files of ``frame``: its image's (planned, else by its stem), else its frame number's."""
        path = getattr(frame, "path", None)
        if path is None:
            stream = int(getattr(frame, "stream", 0) or 0)
            source = self.sources[stream] if stream < len(self.sources) else self.sources[0]
            name = self.frame_names.get(source, source)
            return frame_files(self.directory, name, int(frame.index), self.kinds)
        real = os.path.realpath(path)
        planned = self.files.get(real)
        if planned:
            done = self._reads.get(real, 0)
            self._reads[real] = done + 1
            return planned[done % len(planned)]  # the next time it is given, then (a loop's lap) the first again
        stem = os.path.splitext(os.path.basename(path))[0]
        name, number = stem, 2

        def named(base: str) -> Dict[str, str]:
            return {kind: os.path.join(self.directory, f"{base}_{kind}.png") for kind in self.kinds}

        while any(candidate.lower() in self._taken for candidate in named(name).values()):
            name, number = f"{stem}_{number}", number + 1
        files = named(name)
        self._taken.update(candidate.lower() for candidate in files.values())
        self.files[real] = [files]
        self._reads[real] = 1
        return files

    def reads_from(self, sources: Sequence[Any], in_order: bool) -> None:
        """The run's sources, in its order (``in_order``: one after another): a write the disk refuses says the
        image's place among the images the run read, the skipped ones too (:meth:`_place`)."""
        self._read_from, self._in_order = list(sources), bool(in_order)

    def _place(self, frame: Any) -> int:
        """``frame``'s place in the run, from 1: the images read before it, skipped ones included (an image's
        number in its source, ``frame.index``: a skipped image leaves a gap), and those the other sources read
        (``images_read``; in order: the sources before it, every one of them ended; else every other source, as
        far as it got), as ``zsseg segment`` counts every image it is given. A frame without a file (a video's),
        or a source that counts no images: the frames written."""
        stream = int(getattr(frame, "stream", 0) or 0)
        own = int(frame.index) if getattr(frame, "path", None) is not None else self._written.get(stream, 0)
        others = 0
        for place, source in enumerate(self._read_from or [None] * (max(self._written, default=0) + 1)):
            if place == stream or (self._in_order and place > stream):
                continue
            read = getattr(source, "images_read", None)
            others += int(read) if read is not None else self._written.get(place, 0)
        return 1 + own + others

    def model_opened(self, engine: Any) -> None:
        """The run's model is open: its bundle's digest goes into the record (as ``zsseg segment``'s)."""
        self.bundle_digest = getattr(getattr(engine, "meta", None), "digest", None) or None

    def write_result(self, frame: Any, result: Any) -> None:
        """``frame``'s views (:meth:`files_of`), then ``result.view_files``: those files by kind. A write the disk refuses stops the run: the error says where (``image
        N of M`` when the run reads image files only: N its place in the run, skipped images counted, :meth:`_place`)
        and that the views of the K written before it are kept.

        Raises:
            OutputWriteError: as :meth:`write_files`, with how far the run got.
        """
        from zsseg_rt.io_safety import OutputWriteError

        files = self.files_of(frame)
        try:
            self.write_files(result, files)
        except OutputWriteError as exc:
            planned = sum(len(each) for each in self.files.values())
            number = self._place(frame)
            total = f" of {planned}" if planned and not self.frame_names and number <= planned else ""
            done = f"the results of {self.frames} images before it are kept" if self.frames else "no image was written"
            message = f"{exc}; stopped at image {number}{total} ({done}; the others were not segmented)"
            raise OutputWriteError(message, exc.path, exc.errno) from None
        stream = int(getattr(frame, "stream", 0) or 0)
        self._written[stream] = self._written.get(stream, 0) + 1
        result.view_files = files  # where its views went (zsseg segment's line of the image)

    def write_files(self, result: Any, files: Dict[str, str], then: Optional[Callable[[Any], None]] = None) -> None:
        """``result``'s views into ``files`` (the class map first), then ``then(result)``.

        Raises:
            OutputWriteError, OSError, ValueError: as :func:`~zsseg_rt.outputs.image_files.write_views`; MeaningRefused:
                the folder's class map says another vocabulary (without ``overwrite``).
        """
        if self.record is None:
            os.makedirs(self.directory, exist_ok=True)
            self.record = SegmentRecord(self.class_map, LabelMeaning.of_result(result, self.bundle_digest))
            self.record.check(self.overwrite, self._left, self._where())
        self.record.write()
        write_views(result, files, alpha=self.alpha, legend=self.legend, then=then)
        self.frames += 1

    def _where(self) -> str:
        """The folder as the refusals name it: ``-o 'DIR'`` on the command line (opened in its words), else
        ``'DIR'``."""
        return f"-o {self.directory!r}" if self.cli else repr(self.directory)

    def _left(self) -> List[str]:
        """The view files the folder holds that this run does not write over (they would stay beside a class map
        that no longer says what their label values mean)."""
        mine = {os.path.basename(path) for each in self.files.values() for files in each for path in files.values()}
        pattern = re.compile(r"^.+_(" + "|".join(KINDS) + r")\.png$")
        sources = "|".join(map(re.escape, [self.frame_names.get(source, source) for source in self.sources]))
        frames = re.compile(r"^(" + sources + r")_\d{" + str(FRAME_DIGITS) + r",}_(" + "|".join(KINDS) + r")\.png$")
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        return [name for name in names if pattern.match(name) and name not in mine and not frames.match(name)]

    def describe(self) -> Dict[str, Any]:
        """What was written (``--stats-json`` "outputs"; the "wrote ..." line)."""
        return {"path": self.path, "kind": "views", "frames": self.frames, "views": list(self.kinds)}


def open_views(spec: str, options: Any) -> ViewsSink:
    """The views row's sink: ``spec``'s folder and views, its plan entry's names (``options.staged``)."""
    kinds, given = parse_views_spec(spec)
    staged = options.staged
    sink = ViewsSink(
        staged.directory if isinstance(staged, ViewFiles) else given,
        kinds,
        alpha=options.alpha,
        legend=options.legend,
        files=staged.names if isinstance(staged, ViewFiles) else None,
        sources=list(options.sources),
        overwrite=staged.overwrite if isinstance(staged, ViewFiles) else options.replace,
        frames=staged.frames if isinstance(staged, ViewFiles) else None,
        class_map=staged.class_map if isinstance(staged, ViewFiles) else None,
    )
    sink.path = given  # the folder, or the one image's file (views:out.png)
    return sink
