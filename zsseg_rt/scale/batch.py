"""Batch segmentation on Ray Data: images in, label PNGs + a JSON-lines manifest out, resumable.

The images are read by ``ray.data.read_binary_files`` (a local folder, a list file, or any path/URI Ray Data
reads: ``s3://``, ``gs://``; or a local glob), decoded and segmented by an actor pool (``map_batches`` with a callable
class: one ``zsseg_rt.Engine`` per actor, loaded once; ``num_gpus`` per actor, CPU-only actors with 0). Ray
Data schedules the work and retries it: an actor that dies is restarted and the batches it held are run again
(``max_restarts`` / ``max_task_retries``), so a killed worker's images are redone.

One file is the unit of failure: a file that is empty, not an image, larger than the pixel limit (checked from its
header before anything is decoded; ``zsseg_rt.image_io``, the limit of every other command) or that the Engine
refuses gets an ``error`` row in the manifest, and every other image is still segmented. Files too large to be an
image of the pixel limit, and empty ones, are refused from their size without being read. Every argument (the bundle,
the vocabulary, the output folder, the actor pool against the cluster's CPUs) is checked before Ray starts.

Outputs under ``OUTPUT``:

* ``<path of the image relative to INPUT, extension included>.png`` (``INPUT/a/twin.jpg`` -> ``OUTPUT/a/twin.jpg.png``,
  ``INPUT/a/twin.png`` -> ``OUTPUT/a/twin.png.png``: two images, two outputs): the label map, 8-bit for
  vocabularies of at most 256 classes, 16-bit above; each file is written to a temporary name and renamed, so a
  killed run never leaves a truncated PNG behind. The manifest's ``key`` is the same relative path (``a/twin.jpg``).
* ``manifest.jsonl``: one JSON object per image, appended by the driver as results arrive (JSON lines: appendable,
  so a resumed run adds to it, after dropping the rows of the images it writes again: one row per image,
  :mod:`zsseg_rt.scale.batch_manifest`; an image a list file names twice is read once, ``BatchPlan.repeated``;
  ``pandas.read_json(path, lines=True)`` or ``ray.data.read_json`` read it): ``image``,
  ``key``, ``labels`` (the label PNG, relative to OUTPUT), ``status`` ("ok" or "error" with ``error``), and for an
  ok image the names and units of the package's results (``records.image_record``): ``height``, ``width``,
  ``areas`` (fraction of the pixels per present class), ``pixels`` (pixel counts), ``timing_ms`` (decode, segment,
  write), ``backend``, ``random_weights`` where the bundle records it; ``worker`` (pid) and ``host``; for every
  image a worker handled, ``worker_loaded_rss_bytes`` (the worker's RSS once its Engine was loaded; None where the
  peak mark cannot be reset, i.e. off Linux) and ``worker_peak_rss_bytes`` (its peak RSS since then, this image
  included; the process's peak where the mark cannot be reset), so a file that costs memory shows in the manifest.
* ``<path of the image relative to INPUT, extension included>.objects.json`` with ``--objects`` (``objects=True``):
  the image's objects (``Result.objects()``: each class's connected regions, ``--object-min-area``,
  ``--max-objects``) as ``zsseg segment --objects --json`` gives them (``{"objects": [...], "dropped": n}``), named
  in its manifest row's ``objects``; a resumed run with ``--objects`` redoes the images done without them.
* ``vocabulary.json``: what the label values mean: ``class_names`` (the names they index), ``unknown_id`` and
  ``unknown_below`` with ``--unknown-below``, and ``bundle_digest`` (the bundle that made them). A resumed run must
  have the same (another vocabulary, threshold or bundle is refused in one line: one folder would hold label values
  of two meanings); the file is never rewritten to disagree with the label maps it describes.

Resume: an image is done when its label PNG exists and the manifest has an ``ok`` row for it; those are not read
again. Images that failed (undecodable) get an ``error`` row and are retried by the next run. An OUTPUT written
before the names kept the extension (``a/twin.png`` for ``a/twin.jpg``) resumes too: its ``ok`` rows count for their
images, whose label maps stay where the rows' ``labels`` say, except where one label map was claimed by two images
(``twin.jpg`` and ``twin.png`` overwrote each other): both are redone under the new names.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from zsseg_rt.system_info import current_rss_bytes, peak_rss_bytes, reset_peak_rss

from . import import_ray
from .batch_manifest import MANIFEST, keep_one_row_per_key, labels_name, objects_name, read_manifest
from .batch_manifest import done_keys as _done_keys
from .batch_manifest import strip_scheme as _strip_scheme
from .records import image_record, label_png_bytes

LOG = logging.getLogger("zsseg_rt.scale")

__all__ = [
    "BatchPlan",
    "BatchJob",
    "plan_batch",
    "prepare_batch",
    "run_batch",
    "check_pool_fits",
    "iter_segment_images",
    "segment_images",
    "label_png_bytes",
    "pool_size",
    "MANIFEST",
]

VOCABULARY = "vocabulary.json"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
LIST_EXTENSIONS = (".txt", ".lst", ".list")


@dataclass
class BatchPlan:
    """What a batch run will read: ``sources`` (local paths or one URI/glob for Ray Data), the ``root`` output
    names are relative to, and which images are already done (``done_keys``, from a previous run)."""

    sources: Union[str, List[str]]
    root: str
    total: Optional[int]  # local inputs: how many images; remote: unknown before reading
    done_keys: Set[str] = field(default_factory=set)
    rejected: List[Tuple[str, str]] = field(default_factory=list)  # (path, why): refused from its size, never read
    repeated: List[str] = field(default_factory=list)  # output names a list file gives twice or more: read once


def _refuse_by_size(paths: List[str], max_pixels: Optional[int]) -> Tuple[List[str], List[Tuple[str, str]]]:
    """``(readable, rejected)``: empty files and files longer than an image of the pixel limit can be are refused
    from their size (``os.stat``), without reading them; a file that vanished is reported too."""
    from zsseg_rt.image_io import MAX_PIXELS_ENV, max_encoded_bytes

    most = max_encoded_bytes(max_pixels)
    keep, rejected = [], []
    for path in paths:
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            rejected.append((path, f"cannot read {path!r}: {exc.strerror or exc}"))
            continue
        if size == 0:
            rejected.append((path, f"image {path!r} is empty (0 bytes)"))
        elif most and size > most:
            rejected.append(
                (
                    path,
                    f"image {path!r} has {size} bytes, more than an image of the pixel limit can take ({most}); "
                    f"raise the limit with --max-pixels N or {MAX_PIXELS_ENV}=N",
                )
            )
        else:
            keep.append(path)
    return keep, rejected


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def output_key(path: str, root: str) -> str:
    """The output name of ``path``: its path relative to ``root``, ``/``-separated, extension included (``a/twin.jpg``;
    its label map is ``a/twin.jpg.png``), so that ``twin.jpg`` and ``twin.png`` in one folder are two outputs."""
    rel = os.path.relpath(_strip_scheme(path), _strip_scheme(root)) if root else os.path.basename(path)
    if rel.startswith(".."):
        rel = os.path.basename(path)
    return rel.replace(os.sep, "/")


def _local_images(input_path: str) -> Tuple[List[str], str]:
    """(absolute image paths, root) of a folder (recursive), a list file or one image."""
    if os.path.isdir(input_path):
        root = os.path.abspath(input_path)
        paths = [
            os.path.join(folder, name)
            for folder, _, names in os.walk(root)
            for name in names
            if name.lower().endswith(IMAGE_EXTENSIONS)
        ]
        return sorted(paths), root
    if input_path.lower().endswith(LIST_EXTENSIONS):
        base = os.path.dirname(os.path.abspath(input_path))
        with open(input_path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
        paths = [line if os.path.isabs(line) else os.path.join(base, line) for line in lines]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"list file {input_path!r} names {len(missing)} missing file(s), e.g. {missing[:3]}; fix the list "
                "(paths are relative to the list file's folder)"
            )
        root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else base
        return paths, root
    return [os.path.abspath(input_path)], os.path.dirname(os.path.abspath(input_path))


def plan_batch(
    input_path: str, output_dir: str, resume: bool = True, max_pixels: Optional[int] = None, objects: bool = False
) -> BatchPlan:
    """Which images to read and which are done.

    Args:
        input_path: a folder (searched recursively for .jpg/.png/...), a list file (.txt/.lst: one path per
            line, relative to the list's folder, ``#`` comments), one image, a local glob (``"photos/**/*.jpg"``),
            or a URI Ray Data reads (``s3://bucket/prefix/``: listed by Ray Data, done images skipped in the actors).
        output_dir: the output folder (its manifest tells what is done).
        resume: skip images whose label PNG exists and whose manifest row is ``ok``.
        max_pixels: the pixel limit (None: ``$ZSSEG_MAX_PIXELS`` or 40 MP; 0: none): local files longer than an
            image of that size can be, and empty ones, are put in ``rejected`` instead of being read.
        objects: the run writes each image's objects: an image done without them is not done.
    Returns:
        a :class:`BatchPlan`.
    """
    rows = read_manifest(output_dir) if resume else []
    if _is_remote(input_path):  # listed by Ray Data; done images are skipped in the actors
        done = _done_keys(rows, output_dir, objects=objects)
        return BatchPlan(sources=input_path, root=input_path.rstrip("/"), total=None, done_keys=done)
    if any(ch in input_path for ch in "*?["):  # a local glob ("**" recurses, each real folder once: no link loop)
        from zsseg_rt.input_files import expand_glob

        paths = sorted(os.path.abspath(p) for p in expand_glob(input_path) if os.path.isfile(p))
        if not paths:
            raise FileNotFoundError(f"the pattern {input_path!r} matches no file")
        root = os.path.commonpath([os.path.dirname(p) for p in paths])
    else:
        if not os.path.exists(input_path):
            raise FileNotFoundError(
                f"input {input_path!r} does not exist: give a folder, a list file, an image or a URI"
            )
        paths, root = _local_images(input_path)
        if not paths:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {input_path!r}")
    first: Dict[str, str] = {}  # an image named twice (a list file) is read once, its first path
    for path in paths:
        first.setdefault(output_key(path, root), path)
    named = Counter(output_key(path, root) for path in paths)
    repeated = sorted(key for key, times in named.items() if times > 1)
    paths, keys = list(first.values()), list(first)
    done = _done_keys(rows, output_dir, keys, objects) if rows else set()
    pending, rejected = _refuse_by_size([p for p, k in zip(paths, keys) if k not in done], max_pixels)
    return BatchPlan(sources=pending, root=root, total=len(paths), done_keys=done, rejected=rejected, repeated=repeated)


class SegmentWorker:
    """The Ray Data actor: one Engine, built once; ``__call__`` segments a batch and writes its label PNGs. Each
    image is handled on its own: whatever goes wrong with one becomes its ``error`` row, the others go on.

    On a device pipeline (a GPU) a batch's images go through the Engine in ONE call (``engine([...])``: the frames
    of one size through the image encoder together, inside the batched CUDA graphs of
    ``runtime/device/frame_batches.py``; their labels are single calls'); if that call fails, its images are
    segmented one by one, so that each failure is its own image's row. On the host each image is its own call (the
    host path's list call packs windows, no graphs: nothing to gain, and a batch's images would be held at once)."""

    def __init__(self, bundle, classes, output_dir, root, done_keys, objects=False, **engine_options: Any):
        """``engine_options``: the Engine's (:func:`zsseg_rt.scale.engine.open_engine`; ``BatchJob.worker_options``);
        ``objects``: write each image's objects too (``BatchJob.objects``)."""
        from .engine import open_engine

        self.objects = bool(objects)
        self.engine, self.max_pixels = open_engine(bundle, classes, **engine_options)
        self.together = getattr(self.engine.pipeline, "device", None) is not None  # one call a batch (see above)
        self.batch_failed = 0  # batched calls that failed (their images redone one by one)
        self.output_dir, self.root, self.done_keys = output_dir, root, set(done_keys)
        self.host = socket.gethostname()
        # memory from here on is the images' (the peak mark is reset where Linux allows, else the process's peak)
        # None where the mark cannot be reset: the process's peak would include the load, not only the images
        self.loaded_rss = current_rss_bytes() if reset_peak_rss() else None

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        items = [(bytes(data), str(path)) for data, path in zip(batch["bytes"], batch["path"])]
        records = self._together(items) if self.together and len(items) > 1 else [self._one(*item) for item in items]
        return {"record": np.array([json.dumps(r) for r in records], dtype=object)}

    def _row(self, path: str) -> Dict[str, Any]:
        key = output_key(path, self.root)
        row: Dict[str, Any] = {"image": path, "key": key, "labels": labels_name(key), "worker": os.getpid()}
        row["host"] = self.host
        return row

    def _ended(self, row: Dict[str, Any], work: Any, *args: Any) -> Dict[str, Any]:
        """``row`` with what ``work(*args)`` gives, or its error (one file is the unit of failure), and the memory."""
        from zsseg_rt.console.errors import format_error

        try:
            row.update(work(*args))
        except Exception as exc:  # noqa: BLE001 - one file is the unit of failure: report it, go on with the rest
            row.update(status="error", error=format_error(exc))
        row.update(worker_loaded_rss_bytes=self.loaded_rss, worker_peak_rss_bytes=peak_rss_bytes(self.loaded_rss))
        return row

    def _one(self, data: bytes, path: str) -> Dict[str, Any]:
        row = self._row(path)
        if row["key"] in self.done_keys:  # remote inputs are filtered here (local ones before reading)
            return dict(row, status="skipped")
        return self._ended(row, self._segment, data, path, row["key"])

    def _together(self, items: List[Tuple[bytes, str]]) -> List[Dict[str, Any]]:
        """A batch in one Engine call (the device pipeline's batched graphs): each image decoded (its own error
        row), the decoded ones segmented together, each result written; the call's time shared among its images.
        A failed call: its images one by one (:meth:`_one`), each with its own outcome."""
        rows = [self._row(path) for _, path in items]
        decoded: Dict[int, Tuple[np.ndarray, float]] = {}
        for index, ((data, path), row) in enumerate(zip(items, rows)):
            if row["key"] in self.done_keys:
                rows[index] = dict(row, status="skipped")
                continue
            start = time.perf_counter()
            image: List[np.ndarray] = []
            rows[index] = self._ended(row, self._decode_into, image, data, path)
            if image:
                decoded[index] = (image[0], time.perf_counter() - start)
        if not decoded:
            return rows
        start = time.perf_counter()
        try:
            results = self.engine([image for image, _ in decoded.values()])
        except Exception as exc:  # noqa: BLE001 - which image failed is each one's own call's to say
            from zsseg_rt.console.errors import format_error

            said = format_error(exc)  # said: in each redone row, and once a worker in its log
            if not self.batch_failed:
                LOG.warning("a batched call of %d images failed (%s): its images redone one by one", len(decoded), said)
            self.batch_failed += 1
            for index in decoded:
                rows[index] = dict(self._one(*items[index]), batched_call_failed=said)
            return rows
        share = (time.perf_counter() - start) / len(decoded)
        for (index, (_, decode)), result in zip(decoded.items(), results):
            row = self._row(items[index][1])
            rows[index] = self._ended(row, self._write, result, row["key"], decode, share)
        return rows

    def _decode(self, data: bytes, path: str) -> np.ndarray:
        from zsseg_rt.image_io import decode_image_bytes

        partial = self.engine.allow_partial_images  # --allow-partial-images, as the Engine reads files
        return decode_image_bytes(data, self.max_pixels, what=f"image {path!r}", allow_partial=partial)

    def _decode_into(self, into: List[np.ndarray], data: bytes, path: str) -> Dict[str, Any]:
        into.append(self._decode(data, path))
        return {}

    def _segment(self, data: bytes, path: str, key: str) -> Dict[str, Any]:
        start = time.perf_counter()
        image = self._decode(data, path)
        decoded = time.perf_counter()
        result = self.engine(image)
        del image
        return self._write(result, key, decoded - start, time.perf_counter() - decoded)

    def _write(self, result: Any, key: str, decode: float, segment: float) -> Dict[str, Any]:
        """An image's files (its label map, its objects) and its record; ``decode``, ``segment``: its seconds."""
        from zsseg_rt.outputs.image_files import write_views

        start = time.perf_counter()
        names = result.class_names
        # the labels view as zsseg segment writes it (8-bit when every id fits, the unknown label's too; else 16-bit)
        write_views(result, {"labels": os.path.join(self.output_dir, labels_name(key))}, fsync=False, make_folders=True)
        found = {}
        if self.objects:  # what zsseg segment --objects --json gives an image (FrameObjects.to_dict())
            from zsseg_rt.io_safety import atomic_write_json

            atomic_write_json(os.path.join(self.output_dir, objects_name(key)), result.objects().to_dict(), fsync=False)
            found = {"objects": objects_name(key)}
        timing = {"decode": decode, "segment": segment, "write": time.perf_counter() - start}
        timing["total"] = decode + segment + timing["write"]
        return dict(
            status="ok",
            **image_record(result.labels, names, timing, self.engine.backend.name, self.engine.meta),
            **found,
        )


def _check_vocabulary(output_dir: str, meaning: Any, resume: bool) -> None:
    """Refuse to write into an OUTPUT whose label maps mean something else (another vocabulary, unknown threshold or
    bundle: one folder would hold label values of two meanings), in one line: what it was made with,
    what this run has, what to do (:mod:`zsseg_rt.outputs.meaning`'s check and words); with ``resume`` False too
    (the maps of images this run is not given would stay: the earlier maps count whatever ``resume`` says). Then record what this run's label values mean in
    ``vocabulary.json``, unless it is recorded already (an older file is left as it is: it is never rewritten to
    disagree with the label maps it describes)."""
    from zsseg_rt.io_safety import atomic_write_json
    from zsseg_rt.outputs.meaning import check_earlier, read_record

    path = os.path.join(output_dir, VOCABULARY)

    def label_maps() -> List[str]:  # the maps of the earlier meaning there (the manifest's ok rows)
        return sorted(labels_name(key) for key in _done_keys(read_manifest(output_dir), output_dir))

    advice = "Use another output folder (or empty this one), or the settings it was made with to resume"
    changes = check_earlier(
        read_record(path), meaning, label_maps, where=repr(output_dir), record=VOCABULARY, advice=advice
    )
    if changes is not None and not changes:  # recorded already (what an older file did not record stays unsaid)
        return
    atomic_write_json(path, meaning.batch_document())  # whole or not at all: a full disk leaves the earlier record


def _check_output_dir(output_dir: str, input_path: str) -> None:
    """OUTPUT is not INPUT nor inside it (the output plan's rule of every command: a resumed run would segment its
    own label maps), and can be created and written (checked before Ray starts)."""
    from zsseg_rt.outputs.plan import OutputRefused, refuse_an_input

    try:
        refuse_an_input("OUTPUT", output_dir, [] if _is_remote(input_path) else [input_path])
    except OutputRefused as exc:
        raise ValueError(str(exc)) from None
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output {output_dir!r} is a file; give a folder for the label PNGs and the manifest")
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as exc:
        raise ValueError(f"cannot write to the output folder {output_dir!r}: {exc.strerror or exc}") from None


def pool_size(workers: Union[int, Tuple[int, int]]) -> Dict[str, int]:
    if isinstance(workers, int):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        return {"size": workers}
    low, high = (int(w) for w in workers)
    if not 1 <= low <= high:
        raise ValueError(f"workers (min, max) must satisfy 1 <= min <= max, got {workers}")
    return {"min_size": low, "max_size": high}


@dataclass
class BatchJob:
    """A checked batch run (:func:`prepare_batch`): what to read, where to write, and the actor pool."""

    output_dir: str
    bundle: str
    names: List[str]
    plan: BatchPlan
    pool: Dict[str, int]
    gpus_per_worker: float
    cpus_per_worker: float
    batch_size: int
    worker_options: Dict[str, Any]
    vocabulary: Optional[str] = None  # a named vocabulary ("voc21") the workers load by name; None: ``names``
    objects: bool = False  # each image's objects written beside its label map (objects_needed)

    @property
    def max_workers(self) -> int:
        return int(self.pool.get("size", self.pool.get("max_size", 1)))


def prepare_batch(
    input_path: str,
    output_dir: str,
    bundle: str,
    classes: Union[str, Sequence[str]],
    workers: Union[int, Tuple[int, int]] = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    batch_size: int = 4,
    resume: bool = True,
    objects: bool = False,
    **engine_options: Any,
) -> BatchJob:
    """Check every argument of a batch run without Ray (seconds, not the 10-20 s of a Ray start): the bundle
    (meta.json, the pinned digest), the vocabulary against it, the pool, OUTPUT, the inputs; then record the
    vocabulary in OUTPUT.

    Args:
        input_path: see :func:`plan_batch`.
        output_dir: where label PNGs, ``manifest.jsonl`` and ``vocabulary.json`` go.
        bundle: an export bundle directory, readable at the same path on every node.
        classes: the vocabulary (list or comma-separated string; ``;`` joins synonyms), or a named vocabulary
            (``"voc21"``: its official classes; ``vocabulary.json`` records their labels).
        workers: actors in the pool (an int, or ``(min, max)`` for an autoscaling pool).
        gpus_per_worker: GPUs each actor reserves (0: CPU actors; fractions share a GPU).
        cpus_per_worker: CPUs each actor reserves.
        batch_size: images per ``map_batches`` call (a lost actor's whole batch is redone).
        resume: skip images already done (see :func:`plan_batch`); False redoes everything.
        objects: write each image's objects beside its label map (``OUTPUT/KEY.objects.json``; whether a run finds
            them is ``zsseg_rt.outputs.kinds.objects_needed``, as for every command).
        engine_options: every worker's Engine's (``zsseg_rt.Engine``: the rows of ``zsseg_rt.options.ENGINE_OPTIONS``
            a worker takes, :func:`zsseg_rt.scale.engine.checked_engine_options`), checked here. ``max_pixels`` is
            also the pixel limit of every image read (None: ``$ZSSEG_MAX_PIXELS`` or 40 MP; 0: none) and
            ``expected_digest`` is checked here too. With ``backend="openvino"`` and ``precision="auto"`` every
            worker runs the fastest precision that passed the accuracy gate on its CPU; the gate records and the
            compiled models under ``<bundle>/engines/`` are shared by the workers of a machine (compiles take turns
            under a lock; ``zsseg build-engine BUNDLE --backend openvino`` gates ahead, once).

    Raises:
        ValueError / BundleError / FileNotFoundError saying what is wrong.
    """
    from zsseg_rt.bundle import check_bundle_digest, load_meta
    from zsseg_rt.image_io import max_pixels_limit
    from zsseg_rt.outputs.kinds import objects_needed
    from zsseg_rt.outputs.meaning import LabelMeaning
    from zsseg_rt.vocabulary import Vocabulary, named_vocabulary_name, validate_class_names

    from .engine import checked_engine_options

    options = checked_engine_options(engine_options, "prepare_batch()")
    expected_digest = options.get("expected_digest")
    pool = pool_size(workers)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not float(cpus_per_worker) > 0 or float(gpus_per_worker) < 0:
        raise ValueError(
            f"cpus_per_worker must be > 0 and gpus_per_worker >= 0, got {cpus_per_worker} and {gpus_per_worker}"
        )
    limit = max_pixels_limit(options.get("max_pixels"))
    options["max_pixels"] = limit
    meta = load_meta(bundle)  # BundleError naming what is wrong: a missing folder, a malformed meta.json
    if expected_digest is not None:
        check_bundle_digest(meta, expected_digest)
    vocabulary = named_vocabulary_name(classes)  # "voc21" (any case) or None
    if vocabulary is not None:  # its official classes (background included): what the label values index
        names = list(Vocabulary.parse(vocabulary, meta.max_classes).labels)
    else:
        names = list(validate_class_names(classes, meta.max_classes))
    wants_objects = bool(objects_needed(objects=objects))
    plan = plan_batch(input_path, output_dir, resume=resume, max_pixels=limit, objects=wants_objects)
    _check_output_dir(output_dir, input_path)
    _check_vocabulary(output_dir, LabelMeaning.of(names, options.get("unknown_below"), meta.digest), resume)
    return BatchJob(
        output_dir=os.path.abspath(output_dir),
        bundle=os.path.abspath(bundle),
        names=names,
        plan=plan,
        pool=pool,
        gpus_per_worker=float(gpus_per_worker),
        cpus_per_worker=float(cpus_per_worker),
        batch_size=int(batch_size),
        worker_options=options,
        vocabulary=vocabulary,
        objects=wants_objects,
    )


def check_pool_fits(job: BatchJob, cpus: float, gpus: float = 0.0) -> None:
    """Refuse an actor pool that the cluster can never hold (it would wait forever): ``workers x cpus_per_worker``
    CPUs and ``workers x gpus_per_worker`` GPUs against the cluster's ``cpus`` and ``gpus``. The read tasks need no
    CPU of their own (they only read bytes), so a pool may take every CPU."""
    need_cpus = job.max_workers * job.cpus_per_worker
    need_gpus = job.max_workers * job.gpus_per_worker
    if need_cpus > cpus + 1e-9:
        raise ValueError(
            f"the actor pool needs {job.max_workers} workers x {job.cpus_per_worker:g} CPUs = {need_cpus:g} CPUs but "
            f"the cluster has {cpus:g}: lower --workers or --cpus-per-worker (or raise --num-cpus)"
        )
    if need_gpus > gpus + 1e-9:
        raise ValueError(
            f"the actor pool needs {need_gpus:g} GPUs ({job.max_workers} x {job.gpus_per_worker:g}) but the cluster "
            f"has {gpus:g}: lower --gpus-per-worker (0: CPU workers) or --workers"
        )


def _rejected_rows(job: BatchJob) -> List[Dict[str, Any]]:
    rows = []
    for path, error in job.plan.rejected:
        key = output_key(path, job.plan.root)
        rows.append({"image": path, "key": key, "labels": labels_name(key), "status": "error", "error": error})
    return rows


def run_batch(job: BatchJob) -> Iterator[Dict[str, Any]]:
    """Run a prepared job on the current Ray cluster; yield each manifest row as it lands (also appended to
    ``manifest.jsonl`` before it is yielded). Files refused from their size come first.

    OUTPUT is this run's while it runs: the owner lock of every command's outputs (``zsseg_rt.outputs.owner``, the
    one ``zsseg segment`` and ``zsseg camera`` take), claimed before the first row and released at the end.

    Raises:
        OutputBusy: another run (``zsseg batch``, ``segment`` or ``camera``) writes into OUTPUT now (its process
            named); nothing was written.
    """
    from zsseg_rt.outputs.owner import OwnerLock

    owner = OwnerLock(job.output_dir, "OUTPUT", folder=True)
    owner.acquire()  # a killed run's lock is taken over (a warning says so)
    try:
        yield from _run_claimed(job)
    finally:
        owner.release()


def _run_claimed(job: BatchJob) -> Iterator[Dict[str, Any]]:
    from zsseg_rt.errors import naming_path

    ray = import_ray()
    plan = job.plan
    manifest_path = os.path.join(job.output_dir, MANIFEST)
    if isinstance(plan.sources, list):  # one row per image: the rows of the images this run writes again go first
        redone = [output_key(path, plan.root) for path in plan.sources + [path for path, _ in plan.rejected]]
        with naming_path(manifest_path, "dropping the rows of the images redone"):
            keep_one_row_per_key(job.output_dir, redone)
    with naming_path(manifest_path, "appending a row"), open(manifest_path, "a", encoding="utf-8") as manifest:
        for row in _rejected_rows(job):
            manifest.write(json.dumps(row) + "\n")
            manifest.flush()
            yield row
        if not plan.sources:
            return
        # the read tasks only read bytes (decoding happens in the actors): 0 CPUs, so that a pool holding every CPU
        # of the cluster cannot starve them (it did: --workers equal to --num-cpus waited forever)
        dataset = ray.data.read_binary_files(plan.sources, include_paths=True, num_cpus=0)
        dataset = dataset.map_batches(
            SegmentWorker,
            fn_constructor_kwargs=dict(
                bundle=job.bundle,
                classes=job.vocabulary or job.names,
                output_dir=job.output_dir,
                root=plan.root,
                done_keys=sorted(plan.done_keys) if not isinstance(plan.sources, list) else [],
                objects=job.objects,
                **job.worker_options,
            ),
            batch_size=job.batch_size,
            compute=ray.data.ActorPoolStrategy(**job.pool),
            num_gpus=job.gpus_per_worker,
            num_cpus=job.cpus_per_worker,
            batch_format="numpy",
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for text in batch["record"]:
                row = json.loads(text)
                if row["status"] != "skipped":
                    manifest.write(json.dumps(row) + "\n")
                    manifest.flush()
                yield row


def iter_segment_images(
    input_path: str, output_dir: str, bundle: str, classes: Union[str, Sequence[str]], **options: Any
) -> Iterator[Dict[str, Any]]:
    """Segment every image of ``input_path`` on the current Ray cluster; yield each manifest row as it lands.

    Args:
        input_path, output_dir, bundle, classes, options: as :func:`prepare_batch` (every argument is checked
            before the first row).
    Returns:
        an iterator of manifest rows (dicts); each is also appended to ``manifest.jsonl`` before it is yielded.
    """
    return run_batch(prepare_batch(input_path, output_dir, bundle, classes, **options))


def result_of_row(job: BatchJob, row: Dict[str, Any]) -> Any:
    """The ``Result`` of an ``ok`` manifest row, where the driver receives it: its label map read back from OUTPUT,
    the job's classes and unknown threshold (the one unknown id, ``Result.unknown_id``), for the output kinds that
    take results (``zsseg batch -o``: :mod:`zsseg_rt.outputs.result_outputs`). Scores NaN (the label PNG holds none).

    Raises:
        OSError: the label PNG cannot be read back.
    """
    import cv2

    from zsseg_rt.runtime.result import Result

    path = os.path.join(job.output_dir, row["labels"])
    labels = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise OSError(f"cannot read back the label map {path!r} of {row['image']!r}")
    below = job.worker_options.get("unknown_below")
    scores = np.full(labels.shape[:2], np.nan, np.float32)  # not known here: NaN, as the type asks for an array
    return Result(labels.astype(np.int32), scores, list(job.names), path=row["image"], unknown_below=below)


def summarize_batch(job: BatchJob, progress: bool = True, each=None) -> Dict[str, Any]:
    """Run a prepared job to the end with a progress bar (``each(row)``: called with every row as it lands).

    Returns:
        ``{"ok": n, "error": n, "skipped": n, "manifest": path, "errors": [first error rows],
        "worker_peak_rss_bytes": the largest peak RSS of any worker (None when no worker ran),
        "worker_peak_growth_bytes": the largest rise of a worker's peak RSS over its RSS after loading the Engine}``.
    """
    from zsseg_rt.console.progress import progress_bar
    from zsseg_rt.console.signal_phases import phase

    plan = job.plan
    todo = len(plan.sources) + len(plan.rejected) if isinstance(plan.sources, list) else None
    counts = {"ok": 0, "error": 0, "skipped": (plan.total or 0) - (todo or 0)}
    errors: List[Dict[str, Any]] = []
    peak: Optional[int] = None
    growth: Optional[int] = None
    for row in progress_bar(run_batch(job), total=todo, desc="zsseg batch", unit="img", disable=not progress):
        phase("batch:row")  # (a test hook: python_tests/scale/test_ray_signal_phases.py)
        counts[row["status"]] += 1
        if each is not None:
            each(row)
        if row["status"] == "error" and len(errors) < 20:
            errors.append(row)
        if row.get("worker_peak_rss_bytes") is not None:
            peak = max(peak or 0, row["worker_peak_rss_bytes"])
            if row.get("worker_loaded_rss_bytes") is not None:
                growth = max(growth or 0, row["worker_peak_rss_bytes"] - row["worker_loaded_rss_bytes"])
    return dict(
        counts,
        manifest=os.path.join(job.output_dir, MANIFEST),
        errors=errors,
        worker_peak_rss_bytes=peak,
        worker_peak_growth_bytes=growth,
    )


def segment_images(input_path: str, output_dir: str, bundle: str, classes, progress: bool = True, **kwargs) -> Dict:
    """Run :func:`iter_segment_images` to the end with a progress bar.

    Args:
        progress: show a tqdm bar (images done / to do).
        kwargs: passed to :func:`prepare_batch`.
    Returns:
        the summary of :func:`summarize_batch`.
    """
    return summarize_batch(prepare_batch(input_path, output_dir, bundle, classes, **kwargs), progress=progress)
