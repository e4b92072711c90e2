"""``zsseg eval --ray``: the serial evaluation (:func:`zsseg_rt.eval.evaluate.evaluate`) spread over a Ray Data
actor pool. Each actor builds the dataset from its spec and the same ``Segmenter`` the serial path uses, and
returns one integer confusion matrix per batch of image indices; the driver adds them up. Integer sums do not
depend on order, so the metrics are identical to the serial evaluation's."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import numpy as np

from zsseg_rt.scale import import_ray

__all__ = ["evaluate_parallel"]


class EvalWorker:
    """Ray Data actor: dataset + Segmenter built once; ``__call__`` turns a batch of indices into a confusion
    matrix ``[1, C*C]`` int64, the number of images done, the indices skipped as corrupt and the milliseconds its images
    spent per stage (a :class:`~zsseg_rt.console.speed.SpeedMeter`'s state, timed as the serial loop times them)."""

    def __init__(
        self,
        checkpoint,
        dataset_spec,
        mode,
        text_embeddings,
        device,
        backend,
        seen_classes,
        settings="official",
        precision=None,
    ):
        from zsseg_rt.data import build_dataset
        from zsseg_rt.eval.evaluate import Segmenter, apply_evaluation_settings, load_for_eval

        self.dataset = build_dataset(dict(dataset_spec))
        kind, obj = load_for_eval(checkpoint, device=device, backend=backend, mode=mode, precision=precision)
        record = None
        if kind == "bundle":  # the bundle follows its family's settings for the dataset, as in `evaluate` (this
            record, _ = apply_evaluation_settings(obj, self.dataset.name, settings)  # actor's Engine does nothing else)
        named = record.get("vocabulary") if record else None
        self.segmenter = Segmenter(
            kind, obj, self.dataset.class_names, text_embeddings, mode, device, seen_classes, named
        )
        plan = getattr(obj, "plan", None) if kind == "bundle" else None
        self.path = " ".join(plan.path) if plan is not None else ""  # the path this actor's images ran on

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        from zsseg_rt.console.speed import SpeedMeter
        from zsseg_rt.eval.metrics import ConfusionMatrix

        matrix = ConfusionMatrix(self.dataset.num_classes)
        done, skipped, speed = 0, [], SpeedMeter()
        for index in batch["id"]:
            sample = self.dataset.load_safe(int(index))
            if sample is None:
                skipped.append(self.dataset.skipped.get(int(index), f"sample #{int(index)}"))
                continue
            rgb, gt = sample
            self.segmenter.last_timing = None
            start = time.perf_counter()
            labels = self.segmenter(rgb)
            elapsed = 1000.0 * (time.perf_counter() - start)
            speed.add(self.segmenter.last_timing or {"predict": elapsed}, rgb.shape[:2])  # as segment_dataset
            matrix.update(labels, gt)
            done += 1
        return {
            "counts": matrix.counts.reshape(1, -1),
            "done": np.array([done], np.int64),
            "skipped": np.array([json.dumps(skipped)], dtype=object),
            "path": np.array([self.path], dtype=object),
            "speed": np.array([json.dumps(speed.state())], dtype=object),
        }


def evaluate_parallel(
    checkpoint: Union[str, Path],
    dataset_spec: Dict[str, Any],
    *,
    workers: Union[int, Tuple[int, int]] = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    batch_size: int = 8,
    **options: Any,
) -> Dict[str, Any]:
    """:func:`zsseg_rt.eval.evaluate.evaluate` on the current Ray cluster; same arguments and the same result.

    Args:
        checkpoint: a path (bundle, native checkpoint directory or training checkpoint) every node can read.
        dataset_spec: the dataset as a spec dict (``{"type": "voc", "root": ..., "split": "val"}``), built on
            every actor; its files must be readable at the same paths on every node.
        workers, gpus_per_worker, cpus_per_worker: the actor pool (see :func:`zsseg_rt.scale.batch.prepare_batch`).
        batch_size: image indices per actor call.
        options: ``evaluate``'s keyword arguments (``mode``, ``text_embeddings``, ``unseen``, ``device``,
            ``backend``, ``limit``, ``progress``, ``seen_classes``, ``settings``, ``precision``), with its defaults
            (read from its signature: :func:`~zsseg_rt.eval.evaluate.evaluate_arguments`); a family's own protocol
            options are not taken (the actor pool runs the generic evaluation).
    Returns:
        the metrics dict of ``evaluate`` (``images``, ``skipped``, ``mode``, ``dataset``, ``source`` included).
    """
    from zsseg_rt.console.progress import progress_bar
    from zsseg_rt.console.speed import SpeedMeter
    from zsseg_rt.data import build_dataset
    from zsseg_rt.eval.evaluate import (
        check_limit,
        checkpoint_kind,
        evaluate_arguments,
        evaluation_settings,
        load_text,
        name_speed,
    )
    from zsseg_rt.eval.metrics import ConfusionMatrix, summarize
    from zsseg_rt.scale.batch import pool_size

    options = evaluate_arguments(options, "evaluate_parallel()")
    mode, limit, settings = options["mode"], options["limit"], options["settings"]
    check_limit(limit)
    ray = import_ray()
    dataset = build_dataset(dict(dataset_spec))
    split = dataset.split.with_unseen(options["unseen"])
    text = load_text(options["text_embeddings"], dataset.num_classes)
    kind = checkpoint_kind(checkpoint)
    count = len(dataset) if limit is None else min(len(dataset), int(limit))
    pipeline = ray.data.range(count).map_batches(
        EvalWorker,
        fn_constructor_kwargs=dict(
            checkpoint=str(checkpoint),
            dataset_spec=dict(dataset_spec),
            mode=mode,
            text_embeddings=text,
            device=options["device"],
            backend=options["backend"],
            seen_classes=options["seen_classes"],
            settings=settings,
            precision=options["precision"],
        ),
        batch_size=int(batch_size),
        compute=ray.data.ActorPoolStrategy(**pool_size(workers)),
        num_gpus=float(gpus_per_worker),
        num_cpus=float(cpus_per_worker),
        batch_format="numpy",
    )
    matrix = ConfusionMatrix(dataset.num_classes)
    done, skipped, paths, speed = 0, [], set(), SpeedMeter()  # speed: the actors' ms per image per stage, summed
    bar = progress_bar(total=count, desc=f"eval {dataset.name}", disable=not options["progress"], dynamic_ncols=True)
    for batch in pipeline.iter_batches(batch_size=None, batch_format="numpy"):
        matrix.counts += batch["counts"].sum(axis=0).reshape(matrix.counts.shape)
        done += int(batch["done"].sum())
        skipped += [message for text in batch["skipped"] for message in json.loads(str(text))]
        paths.update(str(path) for path in batch["path"] if str(path))
        for state in batch["speed"]:
            speed.merge(json.loads(str(state)))
        bar.update(int(batch["done"].sum()) + sum(len(json.loads(str(t))) for t in batch["skipped"]))
    bar.close()
    out = summarize(matrix, dataset.class_names, split.unseen)
    out.update(
        {
            "images": done,
            "skipped": len(skipped),
            "skipped_files": skipped[:20],
            "mode": mode,
            "dataset": dataset.name,
            "source": kind,
            "speed": speed.as_dict(),  # ms per image per stage in the actors (the pool's throughput is not this)
        }
    )
    if paths:  # the path the actors' images ran on, as `evaluate` records it (more than one: each, sorted)
        out["path"] = " | ".join(sorted(paths))
    if kind == "bundle":  # what the actors applied, recorded as `evaluate` does
        from zsseg_rt.bundle import load_meta
        from zsseg_rt.eval.evaluate import ran_with

        meta = load_meta(str(checkpoint))
        record = evaluation_settings(meta, dataset.name, settings)
        if record is not None:
            out["evaluation_settings"] = record
        ran = sorted(paths)[0].split(" ") if len(paths) == 1 else [options["backend"], options["precision"]]
        out.update(ran_with(ran, meta.weights_banner))
    name_speed(out, kind)
    return out
