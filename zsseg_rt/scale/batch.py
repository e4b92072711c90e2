"""Batch segmentation on Ray Data: images in, label PNGs + a JSON-lines manifest out, resumable.

The images are read by ``ray.data.read_binary_files`` (a local folder, a list file, or any path/URI Ray Data
reads: ``s3://``, ``gs://``; or a local glob), decoded and segmented by an actor pool (``map_batches`` with a callable
class: one ``zsseg_rt.Engine`` per actor, loaded once; ``num_gpus`` per actor, CPU-only actors with 0). Ray
Data schedules the work and retries it: an actor that dies is restarted and the batches it held are run again
(``max_restarts`` / ``max_task_retries``), so a killed worker's images are redone.

Outputs under ``OUTPUT``:

* ``<relative path of the image without extension>.png``: the label map, 8-bit for vocabularies of at most 256
  classes, 16-bit above; each file is written to a temporary name and renamed, so a killed run never leaves a
  truncated PNG behind.
* ``manifest.jsonl``: one JSON object per image (image, labels, status, height, width, per-class pixel areas,
  timings, worker pid and host), appended by the driver as results arrive (JSON lines: appendable, so a resumed
  run adds to it; ``pandas.read_json(path, lines=True)`` or ``ray.data.read_json`` read it).
* ``vocabulary.json``: the class names the label values index. A resumed run must use the same vocabulary.

Resume: an image is done when its label PNG exists and the manifest has an ``ok`` row for it; those are not read
again. Images that failed (undecodable) get an ``error`` row and are retried by the next run.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from . import import_ray

__all__ = ["BatchPlan", "plan_batch", "iter_segment_images", "segment_images", "label_png_bytes", "MANIFEST"]

MANIFEST = "manifest.jsonl"
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


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _strip_scheme(path: str) -> str:
    return path.split("://", 1)[1] if "://" in path else path


def output_key(path: str, root: str) -> str:
    """The output name of ``path`` (no extension): its path relative to ``root``, ``/``-separated."""
    rel = os.path.relpath(_strip_scheme(path), _strip_scheme(root)) if root else os.path.basename(path)
    if rel.startswith(".."):
        rel = os.path.basename(path)
    return os.path.splitext(rel)[0].replace(os.sep, "/")


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


def plan_batch(input_path: str, output_dir: str, resume: bool = True) -> BatchPlan:
    """Which images to read and which are done.

    Args:
        input_path: a folder (searched recursively for .jpg/.png/...), a list file (.txt/.lst: one path per
            line, relative to the list's folder, ``#`` comments), one image, a local glob (``"photos/**/*.jpg"``),
            or a URI Ray Data reads (``s3://bucket/prefix/``: listed by Ray Data, done images skipped in the actors).
        output_dir: the output folder (its manifest tells what is done).
        resume: skip images whose label PNG exists and whose manifest row is ``ok``.
    Returns:
        a :class:`BatchPlan`.
    """
    done: Set[str] = set()
    if resume:
        done = {
            row["key"]
            for row in read_manifest(output_dir)
            if row.get("status") == "ok" and os.path.isfile(os.path.join(output_dir, row.get("labels", "")))
        }
    if _is_remote(input_path):  # listed by Ray Data; done images are skipped in the actors
        return BatchPlan(sources=input_path, root=input_path.rstrip("/"), total=None, done_keys=done)
    if any(ch in input_path for ch in "*?["):  # a local glob ("**" recurses)
        import glob

        paths = sorted(os.path.abspath(p) for p in glob.glob(input_path, recursive=True) if os.path.isfile(p))
        if not paths:
            raise FileNotFoundError(f"the pattern {input_path!r} matches no file")
        root = os.path.commonpath([os.path.dirname(p) for p in paths])
        pending = [p for p in paths if output_key(p, root) not in done]
        return BatchPlan(sources=pending, root=root, total=len(paths), done_keys=done)
    if not os.path.exists(input_path):
        raise FileNotFoundError(f"input {input_path!r} does not exist: give a folder, a list file, an image or a URI")
    paths, root = _local_images(input_path)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {input_path!r}")
    pending = [p for p in paths if output_key(p, root) not in done]
    return BatchPlan(sources=pending, root=root, total=len(paths), done_keys=done)


def label_png_bytes(labels: np.ndarray, num_classes: int) -> bytes:
    """PNG bytes of a ``[H, W]`` label map: 8-bit when ``num_classes <= 256``, else 16-bit."""
    import cv2

    dtype = np.uint8 if num_classes <= 256 else np.uint16
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(labels.astype(dtype)))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {labels.shape} label map as PNG")
    return encoded.tobytes()


def _write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


class SegmentWorker:
    """The Ray Data actor: one Engine, built once; ``__call__`` segments a batch and writes its label PNGs."""

    def __init__(self, bundle, classes, output_dir, root, done_keys, backend="auto", device="auto", mode="exact"):
        from zsseg_rt.runtime import Engine

        self.engine = Engine(bundle, classes=classes, backend=backend, device=device, mode=mode)
        self.output_dir, self.root, self.done_keys = output_dir, root, set(done_keys)
        self.host = socket.gethostname()

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        records = [self._one(bytes(data), str(path)) for data, path in zip(batch["bytes"], batch["path"])]
        return {"record": np.array([json.dumps(r) for r in records], dtype=object)}

    def _one(self, data: bytes, path: str) -> Dict[str, Any]:
        import cv2

        key = output_key(path, self.root)
        row: Dict[str, Any] = {"image": path, "key": key, "labels": key + ".png", "worker": os.getpid()}
        row["host"] = self.host
        if key in self.done_keys:  # remote inputs are filtered here (local ones before reading)
            return dict(row, status="skipped")
        start = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return dict(row, status="error", error=f"cannot decode {path!r} ({len(data)} bytes) as an image")
        decoded = time.perf_counter()
        result = self.engine(image)
        segmented = time.perf_counter()
        names = result.class_names
        _write_atomic(os.path.join(self.output_dir, key + ".png"), label_png_bytes(result.labels, len(names)))
        counts = np.bincount(result.labels.ravel(), minlength=len(names))
        row.update(
            status="ok",
            height=int(image.shape[0]),
            width=int(image.shape[1]),
            areas={names[i]: int(counts[i]) for i in np.flatnonzero(counts)},
            seconds={
                "decode": round(decoded - start, 6),
                "segment": round(segmented - decoded, 6),
                "write": round(time.perf_counter() - segmented, 6),
            },
        )
        return row


def _check_vocabulary(output_dir: str, classes: List[str], resume: bool) -> None:
    path = os.path.join(output_dir, VOCABULARY)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle).get("class_names")
        if previous != classes and resume:
            raise ValueError(
                f"{output_dir!r} holds labels for the vocabulary {previous} but this run has {classes}: label values "
                "would mean different classes. Use another output folder, or the same --classes to resume."
            )
    os.makedirs(output_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"class_names": classes}, handle, indent=1)


def _pool_size(workers: Union[int, Tuple[int, int]]) -> Dict[str, int]:
    if isinstance(workers, int):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        return {"size": workers}
    low, high = (int(w) for w in workers)
    if not 1 <= low <= high:
        raise ValueError(f"workers (min, max) must satisfy 1 <= min <= max, got {workers}")
    return {"min_size": low, "max_size": high}


def iter_segment_images(
    input_path: str,
    output_dir: str,
    bundle: str,
    classes: Union[str, Sequence[str]],
    backend: str = "auto",
    device: str = "auto",
    mode: str = "exact",
    workers: Union[int, Tuple[int, int]] = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    batch_size: int = 4,
    resume: bool = True,
) -> Iterator[Dict[str, Any]]:
    """Segment every image of ``input_path`` on the current Ray cluster; yield each manifest row as it lands.

    Args:
        input_path: see :func:`plan_batch`.
        output_dir: where label PNGs, ``manifest.jsonl`` and ``vocabulary.json`` go.
        bundle: an export bundle directory, readable at the same path on every node.
        classes: the vocabulary (list or comma-separated string).
        workers: actors in the pool (an int, or ``(min, max)`` for an autoscaling pool).
        gpus_per_worker: GPUs each actor reserves (0: CPU actors; fractions share a GPU).
        cpus_per_worker: CPUs each actor reserves.
        batch_size: images per ``map_batches`` call (a lost actor's whole batch is redone).
        resume: skip images already done (see :func:`plan_batch`); False redoes everything.
    Returns:
        an iterator of manifest rows (dicts); each is also appended to ``manifest.jsonl`` before it is yielded.
    """
    from zsseg_rt.vocabulary import validate_class_names

    ray = import_ray()
    names = list(validate_class_names(classes, 65536))
    _check_vocabulary(output_dir, names, resume)
    plan = plan_batch(input_path, output_dir, resume=resume)
    if not plan.sources:
        return
    dataset = ray.data.read_binary_files(plan.sources, include_paths=True)
    dataset = dataset.map_batches(
        SegmentWorker,
        fn_constructor_kwargs=dict(
            bundle=os.path.abspath(bundle),
            classes=names,
            output_dir=os.path.abspath(output_dir),
            root=plan.root,
            done_keys=sorted(plan.done_keys) if not isinstance(plan.sources, list) else [],
            backend=backend,
            device=device,
            mode=mode,
        ),
        batch_size=int(batch_size),
        compute=ray.data.ActorPoolStrategy(**_pool_size(workers)),
        num_gpus=float(gpus_per_worker),
        num_cpus=float(cpus_per_worker),
        batch_format="numpy",
    )
    with open(os.path.join(output_dir, MANIFEST), "a", encoding="utf-8") as manifest:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for text in batch["record"]:
                row = json.loads(text)
                if row["status"] != "skipped":
                    manifest.write(json.dumps(row) + "\n")
                    manifest.flush()
                yield row


def segment_images(input_path: str, output_dir: str, bundle: str, classes, progress: bool = True, **kwargs) -> Dict:
    """Run :func:`iter_segment_images` to the end with a progress bar.

    Args:
        progress: show a tqdm bar (images done / to do).
        kwargs: passed to :func:`iter_segment_images`.
    Returns:
        ``{"ok": n, "error": n, "skipped": n, "manifest": path, "errors": [first error rows]}``.
    """
    from tqdm import tqdm

    plan = plan_batch(input_path, output_dir, resume=kwargs.get("resume", True))
    todo = len(plan.sources) if isinstance(plan.sources, list) else None
    counts = {"ok": 0, "error": 0, "skipped": (plan.total or 0) - (todo or 0)}
    errors: List[Dict[str, Any]] = []
    rows = iter_segment_images(input_path, output_dir, bundle, classes, **kwargs)
    for row in tqdm(rows, total=todo, desc="zsseg batch", unit="img", disable=not progress, dynamic_ncols=True):
        counts[row["status"]] += 1
        if row["status"] == "error" and len(errors) < 20:
            errors.append(row)
    return dict(counts, manifest=os.path.join(output_dir, MANIFEST), errors=errors)
