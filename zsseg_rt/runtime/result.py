"""The result every backend returns (:class:`Result`), with its views (colour mask, overlay), areas, files and JSON.

NumPy only, plus OpenCV for drawing and writing images.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy as np

from zsseg_rt.io_safety import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    from .objects import FrameObjects

__all__ = [
    "Result",
    "SegmentationResult",
    "UNKNOWN_COLOR",
    "LABEL_EXTENSIONS",
    "UNKNOWN_NAME",
    "VIEWS",
    "check_unknown_name",
    "class_map",
    "label_colors",
    "label_image",
    "mark_unknown",
    "palette",
    "unknown_label",
]

VIEWS = ("overlay", "mask", "labels")  # the files Result.save can write (see its docstring)
# The unknown label (``Engine(unknown_below=P)``, ``--unknown-below P``): a pixel whose best class's probability is
# below P gets this name and the reserved id of :func:`unknown_label`, drawn in this colour (RGB) in the mask and the
# overlay; classes.json, the COCO file's categories and the robot outputs' LabelInfo name it.
UNKNOWN_NAME = "unknown"
LABEL_EXTENSIONS = (".png", ".tif", ".tiff")  # lossless, 16-bit too: the formats a label map (class ids) is written in
UNKNOWN_COLOR = (0, 0, 0)
_UNKNOWN_8BIT, _UNKNOWN_16BIT = 255, 65535


def unknown_label(num_classes: int) -> int:
    """The reserved id of the unknown label for a vocabulary of ``num_classes``: 255 up to 255 classes (it fits the
    8-bit label PNGs, after the last class id 254), else 65535 (16-bit label PNGs, the robot outputs' mono16 labels
    and LabelInfo's uint16 ids; at most 65535 classes then). Never a class id."""
    if num_classes <= _UNKNOWN_8BIT:
        return _UNKNOWN_8BIT
    if num_classes <= _UNKNOWN_16BIT:
        return _UNKNOWN_16BIT
    raise ValueError(f"the unknown label needs a free 16-bit id: at most {_UNKNOWN_16BIT} classes, got {num_classes}")


def check_unknown_name(labels: Sequence[str], unknown_below: Optional[float]) -> None:
    """Refuse (ValueError) a vocabulary whose class ``labels`` include the unknown label's name while the unknown
    threshold is on (``unknown_below`` not None): its pixels and the unknown ones would share a name in every output.
    The one rule of the Engine (``set_classes``) and of the checks made before it (``zsseg serve``'s request, before
    it joins a batch); compared by the one rule of the same name, the duplicate check's (``vocabulary.name_key``: as
    the CLIP tokenizer reads a name): ``Unknown``, ``UNKNOWN`` (a legend "unknown 70.8%, Unknown 18.2%") and
    ``&#117;nknown`` (an HTML entity) are the reserved name too."""
    from zsseg_rt.vocabulary.names import name_key

    if unknown_below is None:
        return
    for label in labels:
        if name_key(str(label)) == UNKNOWN_NAME:
            how = "names are compared as the CLIP tokenizer reads them, case, spacing and HTML entities aside"
            named = "" if label == UNKNOWN_NAME else f" ({str(label)!r} reads {UNKNOWN_NAME!r}: {how})"
            raise ValueError(
                f"a class is named {UNKNOWN_NAME!r}{named}, the name of the label unknown_below gives "
                "(--unknown-below): rename the class, or leave unknown_below unset"
            )


def mark_unknown(labels: np.ndarray, probability: np.ndarray, threshold: float, num_classes: int) -> int:
    """Label unknown (in place) every pixel of ``labels`` whose ``probability`` (its best class's) is below
    ``threshold``, or not a number; returns how many."""
    below = ~(np.asarray(probability) >= np.float32(threshold))  # NaN: unknown too
    labels[below] = unknown_label(num_classes)
    return int(np.count_nonzero(below))


def palette(num_classes: int, seed: int = 0) -> np.ndarray:
    """Deterministic, well-separated RGB colours: ``[num_classes, 3]`` uint8 (golden-ratio hues)."""
    import colorsys

    colors = np.zeros((max(num_classes, 1), 3), dtype=np.uint8)
    for idx in range(num_classes):
        hue = (seed * 0.1 + idx * 0.61803398875) % 1.0
        sat = 0.65 + 0.35 * ((idx // 7) % 2)
        val = 0.95 - 0.25 * ((idx // 3) % 2)
        colors[idx] = [int(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val)]
    return colors[:num_classes]


def class_map(class_names: Sequence[str], unknown_id: Optional[int] = None) -> Dict[str, str]:
    """Label id -> class name of label maps (JSON keys are strings: ``{"0": "person", ...}``), and the unknown label's
    reserved id -> "unknown" when the threshold is on (``unknown_id``). The one class map every saved file uses
    (``classes.json`` of ``zsseg segment`` and ``--labels-out``, ``Result.class_map``)."""
    names = {str(i): str(name) for i, name in enumerate(class_names)}
    if unknown_id is not None:
        names[str(int(unknown_id))] = UNKNOWN_NAME
    return names


def label_colors(num_classes: int, unknown_id: Optional[int] = None) -> np.ndarray:
    """RGB ``[N, 3]`` uint8 by label id: :func:`palette` of the classes and, with the unknown threshold on, the
    unknown label's colour at its reserved id (the ids between, none of which is a label, in that colour too). The
    one palette every view and answer uses (the mask and overlay views, ``zsseg serve``'s ``colors``)."""
    colors = palette(num_classes)[:num_classes]
    if unknown_id is None:
        return colors
    grown = np.zeros((int(unknown_id) + 1, 3), dtype=np.uint8)
    grown[:] = UNKNOWN_COLOR
    grown[:num_classes] = colors
    return grown


def label_image(labels: np.ndarray, num_classes: int, unknown: bool = False) -> np.ndarray:
    """The label map as written to a PNG: uint8 when every id fits (at most 256 classes; 255 with ``unknown``, the
    reserved id 255 then), else uint16."""
    fits = num_classes + (1 if unknown else 0) <= 256
    return np.ascontiguousarray(labels.astype(np.uint8 if fits else np.uint16))


@dataclass(repr=False)
class Result:
    """Per-pixel labels of one image, and what to do with them.

    Attributes:
        labels: ``[H, W]`` int32 index into ``class_names`` (every pixel gets one class).
        scores: ``[H, W]`` float32 calibrated score of the winning class (sigmoid minus calibration bias).
        class_names: the vocabulary the labels index.
        color_order: "bgr" or "rgb", the channel order of the input image (used by ``to_color`` / ``overlay``).
        image: the input image the labels belong to (a reference, not a copy), so ``overlay()`` needs no argument;
            None when the result was built without it.
        path: the image file, when the input was a path.
        timing: milliseconds per stage of this call ("preprocess", "image_encoder", "head", "postprocess", ...;
            "text_encoder" when the vocabulary was encoded during the call) and "total"; ``speed`` is the same dict.
        banner: "" for a bundle of trained weights, else the warning its outputs carry ("RANDOM WEIGHTS ...").
        backend: the backend that ran the graphs ("onnxruntime", "tensorrt", "torch").
        inference: how the windowed pipeline ran the image: "whole" (one pass over the whole rescaled image) or
            "windows" (sliding windows); "" for pipelines without that choice.
        class_scores: every class's scores at a low resolution (a ``zsseg_rt.pipeline.class_scores.ClassScores``)
            when the call asked for them (``Engine.segment_with_class_scores``: video filtering); None otherwise.
        unknown_below: the unknown threshold the labels were made with (``Engine(unknown_below=P)``): pixels whose
            best class's probability is below it hold :attr:`unknown_id` (named "unknown" in ``class_map()``,
            ``areas()``, the views and the files); None: off, every pixel has a class.
        probability: the best class's probability where it is not ``scores`` (the two-stage pipeline: the semantic
            score over the proposals' mask mass, docs/usage.md "Unknown pixels"), when the unknown threshold read it;
            else None.
        object_min_area, max_objects: the limits :meth:`objects` applies when not given (the Engine's options of
            those names, set on its results); None: the option table's defaults.
    """

    labels: np.ndarray
    scores: np.ndarray
    class_names: List[str]
    color_order: str = "bgr"
    image: Optional[np.ndarray] = None
    path: Optional[str] = None
    timing: Dict[str, float] = field(default_factory=dict)
    banner: str = ""
    backend: str = ""
    inference: str = ""
    class_scores: Optional[Any] = None
    unknown_below: Optional[float] = None
    probability: Optional[np.ndarray] = None
    object_min_area: Optional[float] = None
    max_objects: Optional[int] = None
    # The objects found on a stream that asked for them (``zsseg camera --objects``, ``Session(objects=True)``: found
    # once a frame, before its outputs are written): what :meth:`objects` returns without arguments. Not a field, so
    # a result made from another (``VideoResult.from_result``, its own labels) does not carry the other's.
    frame_objects = None  # type: Optional[FrameObjects]

    # ---- what the labels say ------------------------------------------------------------------------------------
    @property
    def speed(self) -> Dict[str, float]:
        """Milliseconds per stage (``timing``; the name Ultralytics uses)."""
        return self.timing

    @property
    def unknown_id(self) -> Optional[int]:
        """The unknown label's reserved id (:func:`unknown_label`) when the unknown threshold is on, else None."""
        return unknown_label(len(self.class_names)) if self.unknown_below is not None else None

    def _counts(self) -> np.ndarray:
        """Pixels per label id: the classes', then (with the unknown threshold on) the unknown label's last."""
        counts = np.bincount(self.labels.ravel(), minlength=len(self.class_names))
        classes = counts[: len(self.class_names)]
        if self.unknown_id is None:
            return classes
        unknown = counts[self.unknown_id] if self.unknown_id < counts.size else 0
        return np.append(classes, unknown)

    def _name(self, index: int) -> str:
        return self.class_names[index] if index < len(self.class_names) else UNKNOWN_NAME

    def _label_id(self, index: int) -> int:
        return index if index < len(self.class_names) else int(self.unknown_id or 0)

    def present_classes(self) -> List[int]:
        """Class indices that label at least one pixel, most frequent first (the unknown label, when the threshold
        is on and it labels pixels, as ``len(class_names)``)."""
        counts = self._counts()
        order = np.argsort(-counts, kind="stable")
        return [int(i) for i in order if counts[i] > 0]

    def areas(self, all_classes: bool = False) -> Dict[str, float]:
        """Fraction of the image's pixels each class labels, most frequent first (classes that label nothing are
        left out unless ``all_classes``, which lists every class in vocabulary order). The values sum to 1. With the
        unknown threshold on, "unknown" is one of them."""
        counts = self._counts()
        total = max(int(self.labels.size), 1)
        order = range(len(counts)) if all_classes else self.present_classes()
        return {self._name(i): float(counts[i]) / total for i in order}

    def pixel_counts(self) -> Dict[str, int]:
        """Pixels each present class labels, most frequent first ("unknown" too, with the threshold on)."""
        counts = self._counts()
        return {self._name(i): int(counts[i]) for i in self.present_classes()}

    def class_map(self) -> Dict[str, str]:
        """Label id -> class name (JSON keys are strings: ``{"0": "person", ...}``), as in ``classes.json``; with
        the unknown threshold on, also the reserved id -> "unknown" (``{"255": "unknown"}``)."""
        return class_map(self.class_names, self.unknown_id)

    def objects(self, min_area: Optional[float] = None, max_objects: Optional[int] = None) -> "FrameObjects":
        """Each class's connected regions (8-connectivity, at the output size) as objects, for robots: class id and
        name, score (the mean of ``scores`` over the region: the class's own score, as every pixel of the region has
        it as its winner), box ``(x, y, w, h)``, area, centroid and COCO RLE mask, ordered by class, then area
        (largest first); the unknown label gives none (``zsseg_rt.runtime.objects.find_objects``).

        Args:
            min_area: the smallest region kept, a fraction of the frame's pixels in [0, 1]; None:
                :attr:`object_min_area` (the Engine's ``object_min_area``, default 0.001).
            max_objects: at most this many (the rest counted in ``dropped``); None: :attr:`max_objects` (the
                Engine's, default 100).

        Without arguments, the objects the stream found already (:attr:`frame_objects`) when it did.
        """
        from .objects import DEFAULT_MAX_OBJECTS, DEFAULT_MIN_AREA, find_objects

        if min_area is None and max_objects is None and self.frame_objects is not None:
            return self.frame_objects
        if min_area is None:
            min_area = DEFAULT_MIN_AREA if self.object_min_area is None else self.object_min_area
        if max_objects is None:
            max_objects = DEFAULT_MAX_OBJECTS if self.max_objects is None else self.max_objects
        return find_objects(
            self.labels,
            self.class_names,
            scores=self.scores,
            unknown_id=self.unknown_id,
            min_area=min_area,
            max_objects=max_objects,
        )

    def _color_table(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` (a colour per class) in the input's channel order, with the unknown label's colour at its id."""
        if self.unknown_id is not None:  # the unknown label's colour at its id (label_colors' rule)
            grown = label_colors(len(self.class_names), self.unknown_id)
            grown[: len(rgb)] = rgb
            rgb = grown
        table = rgb[:, ::-1] if self.color_order == "bgr" else rgb
        return np.ascontiguousarray(table)

    # ---- views --------------------------------------------------------------------------------------------------
    def to_color(self, colors: Optional[np.ndarray] = None) -> np.ndarray:
        """``[H, W, 3]`` uint8 colour image of the labels (the mask view), in the input's channel order."""
        rgb = palette(len(self.class_names)) if colors is None else np.asarray(colors, dtype=np.uint8)
        if rgb.shape != (len(self.class_names), 3):
            raise ValueError(f"colors must have shape [{len(self.class_names)}, 3], got {list(rgb.shape)}")
        table = self._color_table(rgb)  # with the unknown label's colour (UNKNOWN_COLOR) when the threshold is on
        return np.take(table, self.labels, axis=0)  # table[labels], 4x faster (768x576: 1.2 ms, was 4.6)

    def mask(self, legend: bool = False, banner: bool = True) -> np.ndarray:
        """The colour mask view (``to_color``), with the legend of present classes when ``legend`` and the
        random-weights banner when the bundle has one and ``banner``."""
        canvas = np.ascontiguousarray(self.to_color())
        if legend:
            canvas = self._draw_legend(canvas, "")
        if banner and self.banner:
            canvas = _draw_banner(canvas, self.banner, self.color_order)
        return canvas

    def overlay(
        self,
        image: Optional[np.ndarray] = None,
        alpha: float = 0.5,
        legend: bool = True,
        title: str = "",
        banner: bool = True,
    ) -> np.ndarray:
        """Blend the colour labels onto ``image`` (default: the input image the result holds; same size, same
        channel order), draw a legend of the present classes (``legend``, with ``title`` above it) and, for a
        random-weight bundle, its banner (``banner``)."""
        import cv2

        if image is None:
            image = self.image
            if image is None:
                raise ValueError("this result holds no input image: pass the image, result.overlay(image)")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if image.shape[:2] != self.labels.shape:
            raise ValueError(f"image is {list(image.shape[:2])} but the labels are {list(self.labels.shape)}")
        base = image if image.ndim == 3 and image.shape[2] == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        blended = cv2.addWeighted(base.astype(np.uint8), 1.0 - alpha, self.to_color(), alpha, 0.0)
        if legend:
            blended = self._draw_legend(blended, title)
        if banner and self.banner:
            blended = _draw_banner(blended, self.banner, self.color_order)
        return blended

    def _draw_legend(self, canvas: np.ndarray, title: str) -> np.ndarray:
        import cv2

        table = self._color_table(palette(len(self.class_names)))
        rows = [(title, None)] if title else []
        rows += [(self._name(i), table[self._label_id(i)]) for i in self.present_classes()[:20]]
        scale = max(0.4, min(canvas.shape[:2]) / 900.0)
        line = int(22 * scale / 0.5)
        for row, (text, color) in enumerate(rows):
            y = 8 + row * line
            x = 8
            if color is not None:
                cv2.rectangle(canvas, (x, y), (x + line - 4, y + line - 4), tuple(int(c) for c in color), -1)
                x += line
            cv2.putText(canvas, text, (x, y + line - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(
                canvas, text, (x, y + line - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
            )
        return canvas

    # ---- files and JSON -----------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """What the result says, JSON-ready (no arrays): image, size, classes, areas (fractions), pixel counts,
        class map, timing (ms), backend, the weights banner (and the inference, when the pipeline has the choice)."""
        height, width = self.labels.shape
        return {
            "image": self.path,
            "height": int(height),
            "width": int(width),
            "classes": list(self.class_names),
            "areas": {name: round(value, 6) for name, value in self.areas().items()},
            "pixels": self.pixel_counts(),
            "class_map": self.class_map(),
            "timing_ms": {stage: round(ms, 3) for stage, ms in self.timing.items()},
            "backend": self.backend,
            "random_weights": bool(self.banner),
            "banner": self.banner,
            **({"inference": self.inference} if self.inference else {}),
            **({"unknown_below": self.unknown_below} if self.unknown_below is not None else {}),
        }

    def to_json(self, indent: Optional[int] = None) -> str:
        """``to_dict()`` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def save(
        self,
        directory: str,
        name: Optional[str] = None,
        views: Sequence[str] = VIEWS,
        alpha: float = 0.5,
        legend: bool = True,
        overwrite: bool = False,
    ) -> Dict[str, str]:
        """Write the result's files into ``directory`` (created) and return their paths by kind.

        Files (``NAME`` = ``name``, else the input file's stem, else "result"):
            ``NAME_overlay.png`` (view "overlay"; needs the input image), ``NAME_mask.png`` (view "mask": the colour
            labels), ``NAME_labels.png`` (view "labels": label ids, 8-bit for up to 256 classes, else 16-bit),
            ``NAME.json`` (``to_dict()`` with these paths and the class map: label id -> class name).
        Raises:
            FileExistsError: a file exists and ``overwrite`` is False (nothing was written).
            ValueError: an unknown view, or "overlay" without an input image.
        """
        unknown = [view for view in views if view not in VIEWS]
        if unknown:
            raise ValueError(f"unknown views {unknown}; choose from {list(VIEWS)}")
        if "overlay" in views and self.image is None:
            raise ValueError("the overlay view needs the input image; this result holds none")
        stem = name or (os.path.splitext(os.path.basename(self.path))[0] if self.path else "result")
        paths = {view: os.path.join(directory, f"{stem}_{view}.png") for view in VIEWS if view in views}
        paths["json"] = os.path.join(directory, f"{stem}.json")
        existing = [path for path in paths.values() if os.path.exists(path)]
        if existing and not overwrite:
            raise FileExistsError(f"{existing[0]!r} exists; pass overwrite=True or another directory/name")
        os.makedirs(directory, exist_ok=True)
        for view, path in paths.items():
            if view != "json":
                self.write_view(view, path, alpha=alpha, legend=legend)
        summary = dict(self.to_dict(), files={view: path for view, path in paths.items() if view != "json"})
        atomic_write_json(paths["json"], summary)
        return paths

    def encoded_view(self, view: str, extension: str = ".png", alpha: float = 0.5, legend: bool = True) -> bytes:
        """One view (see ``write_view``) encoded as an image file of ``extension``: the bytes a saved file holds
        (``zsseg batch`` writes the "labels" view's so, as ``zsseg segment`` writes its files).

        Raises:
            OSError: no image writer for ``extension``. ValueError: an unknown view, "overlay" without an input
            image, or "labels" in a format OpenCV writes other than PNG or TIFF (``LABEL_EXTENSIONS``: a JPEG would
            change the ids).
        """
        import cv2

        if view == "overlay":
            pixels = self.overlay(alpha=alpha, legend=legend)
        elif view == "mask":
            pixels = self.mask(legend=legend)
        elif view == "labels":
            pixels = label_image(self.labels, len(self.class_names), self.unknown_id is not None)
        else:
            raise ValueError(f"unknown view {view!r}; choose from {list(VIEWS)}")
        if view != "labels" and self.color_order == "rgb":
            pixels = pixels[:, :, ::-1]  # OpenCV writes BGR
        try:
            ok, encoded = cv2.imencode(extension, np.ascontiguousarray(pixels)) if extension else (False, None)
        except cv2.error:
            ok, encoded = False, None
        if not ok:
            raise OSError(f"OpenCV has no image writer for {extension or 'a name without extension'!r}")
        if view == "labels" and extension.lower() not in LABEL_EXTENSIONS:  # a JPEG changed some ids
            raise ValueError(
                f"a label map is written lossless (its values are class ids): give a .png file name (or .tif), "
                f"got {extension!r}, a format that may change them"
            )
        return encoded.tobytes()

    def write_view(self, view: str, path: str, alpha: float = 0.5, legend: bool = True) -> None:
        """Write one view to an image file (OpenCV picks the format from the extension): "overlay" (needs the
        input image), "mask" (colour labels) or "labels" (label ids: 8-bit up to 256 classes, else 16-bit; PNG or
        TIFF only, lossless: another extension is refused). Replaces an existing file, only once the new one is
        complete (written through a temporary name: ``zsseg_rt.io_safety``).

        Raises:
            ValueError: an unknown view, "overlay" without an input image, "labels" in another format than PNG or
            TIFF (nothing written). OSError: the file was not written
            (``OutputWriteError`` naming the path and the bytes written: a full disk; the old file is kept).
        """
        extension = os.path.splitext(path)[1]
        try:
            data = self.encoded_view(view, extension, alpha=alpha, legend=legend)
        except OSError:
            raise OSError(
                f"OpenCV could not write {path!r}: no image writer for {extension or 'a name without extension'!r}"
            ) from None
        atomic_write_bytes(path, data)  # the old file stays until the new one is complete

    def __repr__(self) -> str:
        height, width = self.labels.shape
        areas = self.areas()
        shown = ", ".join(f"{name} {share:.1%}" for name, share in list(areas.items())[:4])
        more = f", +{len(areas) - 4} more" if len(areas) > 4 else ""
        total = f"; {self.timing['total']:.1f} ms" if "total" in self.timing else ""
        warning = f"; {self.banner.split(' - ')[0]}" if self.banner else ""
        return f"Result({width}x{height}, {len(self.class_names)} classes: {shown}{more}{total}{warning})"


SegmentationResult = Result  # the former name, kept: every backend returned a SegmentationResult


def _draw_banner(canvas: np.ndarray, text: str, color_order: str = "bgr") -> np.ndarray:
    """A red strip with ``text`` in white across the bottom of ``canvas`` (in place; returned)."""
    import cv2

    height, width = canvas.shape[:2]
    scale = max(0.35, min(width / 1400.0, 1.2))
    (text_w, text_h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    while text_w > width - 8 and scale > 0.25:  # fit the width of small images
        scale *= 0.85
        (text_w, text_h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    strip = min(height, text_h + base + 8)
    canvas[height - strip :] = (0, 0, 200) if color_order == "bgr" else (200, 0, 0)
    cv2.putText(canvas, text, (4, height - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
