"""The two-stage pipeline behind ``zsseg_rt.Engine`` for bundles whose meta.json says ``"pipeline": "two_stage"``
(ZegFormer's: mask proposals classified against the text, then CLIP's image tower on every proposal's crop).

What runs where (ZegFormer's official test pipeline, as its PyTorch ``predict_zegformer``):

1. Pillow + NumPy: detectron2's shortest-edge resize (``test_short_side``, at most ``test_max_size``;
   ``PIL.Image.resize(BILINEAR)`` on the uint8 image, :func:`zsseg_rt.pipeline.resize.pil_resize_shortest_edge`, as the
   official test mapper), normalisation, zero padding to ``size_divisibility``.
2. ``mask_branch.onnx``: ``image [1,3,H,W]`` + the query-classifier text embeddings -> ``class_logits [1,Q,C+1]``
   and ``query_masks [1,Q,H/4,W/4]``.
3. Native ``ops.upsample`` of the mask logits to the padded size, then the crops of CLIP's image branch in
   vectorised NumPy (:func:`mask_boxes`, :func:`roi_align`: torchvision ``roi_align(aligned=True)`` written as two
   small matrix products per crop, exact up to fp32 summation order) and ``clip_image_encoder.onnx`` on all crops
   of the image in batches of ``max_batch`` crops.
4. NumPy fusion of the two class distributions (official ``ENSEMBLING``), the semantic maps
   ``scores^T . sigmoid(masks)``, then the native fused op ``ops.segment``: crop the padding, bilinear resize to the
   input size, subtract the seen-class calibration, argmax.

Two text-embedding sets come from the same text graph: the query classifier's (the bundle's ``templates``, the
official prompt ensemble) and the CLIP branch's (``two_stage.clip_templates``, the official 32). Backends: ONNX
Runtime (CPU, or CUDA for the graphs with onnxruntime-gpu), OpenVINO (CPU) and TensorRT (engines of the three roles
built by ``zsseg build-engine``; the host path: this pipeline has no device-resident one), or any backend whose
runner opens the pipeline's roles ("mask", "clip_image", "text": ``runtime/backends/table.py``); the others refuse
these bundles with a message.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt import ops, pipeline
from zsseg_rt.bundle import BundleMeta
from zsseg_rt.options import OptionValues
from zsseg_rt.pipeline.resize import pil_resize_bilinear, shortest_edge_shape
from zsseg_rt.runtime.backends import Backend, TwoStageGraphs
from zsseg_rt.runtime.result import Result
from zsseg_rt.vocabulary import ClipTokenizer, Vocabulary, split_synonyms, token_batches, validate_templates

from .base import Embed, Focus, Pipeline, PreparedVocabulary, image_index

__all__ = [
    "TwoStagePipeline",
    "shortest_edge_shape",
    "network_input_shape",
    "mask_boxes",
    "roi_align",
    "clip_crops",
    "fuse_scores",
    "semantic_probability",
]


# ---------------------------------------------------------------------------------------------- NumPy steps
# meta.json ``two_stage.resize`` -> ``([H, W, 3] uint8, height, width) -> [height, width, 3] uint8``
_RESIZERS = {"pil_bilinear": pil_resize_bilinear}


def network_input_shape(h: int, w: int, short: int, max_size: int) -> Tuple[int, int]:
    """The size the two-stage pipeline resizes an ``h x w`` image to: :func:`shortest_edge_shape` (detectron2's
    rule, as the official code), except for an image so thin that the rule rounds its short side to 0 pixels
    (shorter than half a pixel once the long side is capped at ``max_size``, e.g. 1 x 1024 with a short side of 512
    and a 1024 cap): there the official code fails inside PIL, and this keeps that side at 1 pixel (long side
    ``max_size``), so such an image gets labels as it does with every other pipeline."""
    if 2 * min(h, w) * max_size <= max(h, w):  # exact integer form of "short side < 0.5 px after the cap"
        return (1, int(max_size)) if h <= w else (int(max_size), 1)
    return shortest_edge_shape(h, w, short, max_size)


def mask_boxes(binary: np.ndarray) -> np.ndarray:
    """Tight boxes of ``[N, H, W]`` bool masks, official convention: ``[N, 4]`` float32 ``(x_min, y_min, x_max,
    y_max)`` with ``x_max``/``y_max`` the index of the last column/row holding mask pixels; a box of zero area
    (empty mask, or one row/column wide) becomes the whole padded image ``(0, 0, W, H)``."""
    n, h, w = binary.shape
    cols = np.any(binary, axis=1)  # [N, W]
    rows = np.any(binary, axis=2)  # [N, H]
    x_min = cols.argmax(axis=1)
    x_max = (w - 1) - cols[:, ::-1].argmax(axis=1)
    y_min = rows.argmax(axis=1)
    y_max = (h - 1) - rows[:, ::-1].argmax(axis=1)
    empty = ~np.any(cols, axis=1)
    x_max = np.where(empty, 0, x_max)
    y_max = np.where(empty, 0, y_max)
    boxes = np.stack((x_min, y_min, x_max, y_max), axis=1).astype(np.float32)
    degenerate = (y_max - y_min) * (x_max - x_min) == 0
    boxes[degenerate] = (0.0, 0.0, float(w), float(h))
    return boxes


def _roi_axis_weights(start: float, end: float, pooled: int, size: int) -> np.ndarray:
    """``[pooled, size]`` weights of torchvision ``roi_align(aligned=True, sampling_ratio=-1)`` along one axis:
    per output bin, the mean over ``ceil(length / pooled)`` sample points of their bilinear weights (samples
    beyond ``[-1, size]`` contribute 0 but still count)."""
    start = np.float32(start) - np.float32(0.5)
    end = np.float32(end) - np.float32(0.5)
    length = np.float32(end - start)
    bin_size = np.float32(length / np.float32(pooled))
    grid = int(math.ceil(float(length / np.float32(pooled))))
    weights = np.zeros((pooled, size), dtype=np.float64)
    if grid <= 0:
        return weights
    p = np.arange(pooled, dtype=np.float32)[:, None]
    i = np.arange(grid, dtype=np.float32)[None, :]
    pos = start + p * bin_size + (i + np.float32(0.5)) * bin_size / np.float32(grid)  # [pooled, grid] float32
    pos = pos.astype(np.float64)
    valid = (pos >= -1.0) & (pos <= size)
    pos = np.maximum(pos, 0.0)
    low = np.floor(pos).astype(np.int64)
    at_end = low >= size - 1
    low = np.where(at_end, size - 1, low)
    high = np.where(at_end, size - 1, low + 1)
    pos = np.where(at_end, low, pos)
    frac = pos - low
    rows = np.broadcast_to(np.arange(pooled)[:, None], pos.shape)
    np.add.at(weights, (rows, low), np.where(valid, 1.0 - frac, 0.0))
    np.add.at(weights, (rows, high), np.where(valid, frac, 0.0))
    return weights / grid


def roi_align(image: np.ndarray, boxes: np.ndarray, size: int, masks: Optional[np.ndarray] = None) -> np.ndarray:
    """torchvision ``roi_align(image * mask, box, size, spatial_scale=1, sampling_ratio=-1, aligned=True)`` for
    every box, as ``A_y . (image * mask) . A_x^T`` per channel (bilinear sampling and bin averaging are separable)
    restricted to the rows/columns the box touches.

    Args:
        image: ``[3, H, W]`` float32.
        boxes: ``[N, 4]`` ``(x1, y1, x2, y2)`` in pixels.
        size: output side.
        masks: optional ``[N, H, W]`` bool, multiplied into the image per box (the ``cropmask`` style).
    Returns:
        ``[N, 3, size, size]`` float32.
    """
    _, h, w = image.shape
    out = np.empty((len(boxes), image.shape[0], size, size), dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        ay = _roi_axis_weights(y1, y2, size, h)
        ax = _roi_axis_weights(x1, x2, size, w)
        ys = np.flatnonzero(ay.any(axis=0))
        xs = np.flatnonzero(ax.any(axis=0))
        if not len(ys) or not len(xs):
            out[k] = 0.0
            continue
        r0, r1, c0, c1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        part = image[:, r0:r1, c0:c1]
        if masks is not None:
            part = part * masks[k, r0:r1, c0:c1]
        ay32 = ay[:, r0:r1].astype(np.float32)
        ax32 = ax[:, c0:c1].astype(np.float32)
        out[k] = np.matmul(np.matmul(ay32[None], part), ax32.T[None])
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float32 with one new array (in place after the negation), so the working memory is
    the one ``[Q, H, W]`` copy the Engine's estimate counts."""
    out = np.negative(np.asarray(x, dtype=np.float32))
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
        out += np.float32(1.0)
        np.reciprocal(out, out=out)
    return out


def clip_crops(clip_image: np.ndarray, masks: np.ndarray, style: str, size: int) -> np.ndarray:
    """The CLIP inputs of every query (the PyTorch model's ``clip_branch.clip_crops`` for one image).

    Args:
        clip_image: ``[3, H, W]`` CLIP-normalised, zero-padded image.
        masks: ``[Q, H, W]`` mask logits at the same size.
        style: ``cropmask``, ``crop`` or ``mask``.
        size: CLIP input side.
    Returns:
        ``[Q, 3, size, size]`` float32.
    """
    if style == "mask":
        small = ops.upsample(np.ascontiguousarray(masks[None], dtype=np.float32), (size, size))[0]
        img = ops.upsample(np.ascontiguousarray(clip_image[None], dtype=np.float32), (size, size))[0]
        return (img[None] * (_sigmoid(small) > 0.5)[:, None]).astype(np.float32)
    binary = _sigmoid(masks) > 0.5
    boxes = mask_boxes(binary)
    if style == "crop":
        return roi_align(clip_image, boxes, size)
    if style != "cropmask":
        raise ValueError(f"clip_cls_style must be cropmask, crop or mask, got {style!r}")
    return roi_align(clip_image, boxes, size, masks=binary)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fuse_scores(
    zeg_logits: np.ndarray, clip_logits: Optional[np.ndarray], seen: np.ndarray, mode: str, lam: float
) -> np.ndarray:
    """Per-query class scores ``[Q, C]`` (official fusion; ``clip_branch.fuse_scores`` for one image).

    Args:
        zeg_logits: ``[Q, C+1]`` query-classifier logits (last column: no-object).
        clip_logits: ``[Q, C]`` CLIP logits, or None for ``mode="none"``.
        seen: ``[C]`` bool.
        mode: ``ensemble``, ``ensemble_all``, ``clip_only`` or ``none``.
        lam: the balance lambda.
    """
    zeg_logits = np.asarray(zeg_logits, dtype=np.float32)
    if mode == "none":
        return _softmax(zeg_logits)[..., :-1]
    if clip_logits is None:
        raise ValueError(f"fusion mode {mode!r} needs the CLIP branch logits")
    clip_prob = _softmax(np.concatenate((clip_logits, zeg_logits[..., -1:]), -1))[..., :-1]
    if mode == "clip_only":
        return clip_prob
    zeg_prob = _softmax(zeg_logits)[..., :-1]
    lam32, rest = np.float32(lam), np.float32(1.0 - lam)
    if mode == "ensemble_all":
        return np.power(zeg_prob, rest) * np.power(clip_prob, lam32)
    if mode != "ensemble":
        raise ValueError(f"fusion must be ensemble, ensemble_all, clip_only or none, got {mode!r}")
    if seen.any():
        clip_prob = np.where(seen, clip_prob[..., seen].mean(-1, keepdims=True), clip_prob)
    seen_part = np.power(zeg_prob, lam32) * np.power(clip_prob, rest)
    unseen_part = np.power(zeg_prob, rest) * np.power(clip_prob, lam32)
    return np.where(seen, seen_part, unseen_part).astype(np.float32)


def semantic_probability(
    best: np.ndarray, mask_probabilities: np.ndarray, size: Tuple[int, int], valid: Tuple[int, int]
) -> np.ndarray:
    """The best class's probability ZegFormer's unknown threshold reads (``Engine(unknown_below=P)``): its semantic
    score ``best [H, W]`` (``sum_q p_q(c) sigmoid(m_q)`` minus its calibration) over the proposals' mask mass
    ``sum_q sigmoid(m_q)`` there, resized as the scores were (``mask_probabilities [Q, h, w]``, its ``valid`` top-left
    part, bilinear to ``size``): the mask-weighted mean of the proposals' probabilities of that class, in [0, 1]
    (less its calibration). Where no proposal covers the pixel (mass ~0) it is 0."""
    mass = np.ascontiguousarray(mask_probabilities.sum(axis=0, dtype=np.float32)[None, None])
    resized = ops.upsample(mass, tuple(size), crop=(0, 0, int(valid[0]), int(valid[1])))[0, 0]
    covered = resized > np.float32(1e-6)
    out = np.zeros_like(best, dtype=np.float32)
    np.divide(best, resized, out=out, where=covered)
    return out


# ---------------------------------------------------------------------------------------------- pipeline
class TwoStagePipeline(Pipeline):
    """Mask proposals classified against the text, then CLIP on every proposal's crop, fused per class.

    Same user API through ``zsseg_rt.Engine``: ``set_classes``, ``__call__``, ``Result`` (labels and
    the winning class's fused score minus its calibration). Differences from the windowed pipeline: ``templates``
    replace the query classifier's prompt ensemble only (the CLIP branch always uses the bundle's
    ``clip_templates``, as the official code); a class counts as seen (fusion and calibration) when its name is one
    of the bundle's seen training classes; a name may hold ``", "``-separated synonyms, whose prompts are averaged
    (official); ``max_batch`` is the number of crops per CLIP encoder call; only ``mode="exact"`` exists
    (``set_text_embeddings`` is refused: two sets are needed).
    """

    kind = "two_stage"
    description = "mask proposals classified by text, CLIP on every proposal's crop"
    roles = TwoStageGraphs.roles
    modes = ("exact",)
    default_max_batch = 32

    def __init__(self, meta: BundleMeta, options: OptionValues, **engine: Any):
        # inference, whole_fallback, test_scale: windowed-pipeline options, refused by their rows (the Engine's
        # ENGINE_OPTIONS.check_kind)
        mode, backend = options.mode, options.backend
        if mode not in self.modes:
            raise ValueError(
                f"bundles of the two-stage pipeline have one post-processing (the official): mode must be 'exact', "
                f"got {mode!r}"
            )
        if isinstance(backend, Backend):
            raise ValueError(
                "bundles of the two-stage pipeline run the mask branch, CLIP on the crops and the text encoder: a "
                f"Backend object (encode_image/head/encode_text) cannot run them, got {backend!r}; pass a backend "
                f"name ({', '.join(self.backend_names())}) or a GraphRunner"
            )
        if isinstance(backend, str) and not self.supports(backend):
            raise ValueError(
                f"bundles of the two-stage pipeline run with {', '.join(self.backend_names())} (or 'auto'), got "
                f"{backend!r}: its runner does not open the mask branch and the CLIP crop encoder (docs/models.md)"
            )
        if options.device_pipeline is True:
            raise ValueError(
                "device_pipeline=True: bundles of the two-stage pipeline have no device-resident pipeline (use "
                "'auto' or False)"
            )
        super().__init__(meta, options, **engine)
        self.params = meta.section(self.kind)
        self.open_backend(TwoStageGraphs)
        self.device = None
        self.clip_templates = tuple(validate_templates(self.params["clip_templates"]))
        # the resize the bundle names (meta.json schema: TWO_STAGE_RESIZES); bundles written before name none and
        # were exported from models whose official test mapper resizes with PIL's bilinear filter
        self.resize = _RESIZERS[self.params.get("resize", "pil_bilinear")]

    # ---- vocabulary
    def prepare(
        self, vocabulary: Vocabulary, templates: Tuple[str, ...], bias: np.ndarray, embed: Embed
    ) -> PreparedVocabulary:
        """Both embedding sets (cached per class text) and the seen mask. A class's synonyms are averaged into its
        embeddings (ZegFormer's rule, :meth:`encode_classes`); it is seen when one of its names is."""
        texts = tuple(vocabulary.texts)
        seen = vocabulary.seen_mask(self.meta.seen_class_names)
        text = embed(texts, templates)
        clip_text = embed(texts, self.clip_templates) if self.params["fusion"] != "none" else None
        return PreparedVocabulary(
            tuple(vocabulary.labels), text, bias, (clip_text, seen), None, vocabulary.background, vocabulary
        )

    def prepare_embeddings(self, names, embeddings, bias) -> PreparedVocabulary:
        raise NotImplementedError(
            "the two-stage pipeline needs two text-embedding sets (query classifier and CLIP branch): use set_classes"
        )

    def encode_classes(
        self, names: Sequence[str], templates: Tuple[str, ...], tokenizer: ClipTokenizer, trim: bool
    ) -> np.ndarray:
        """Official ``zeroshot_classifier``: every template x synonym (a name split on ``", "``, as the official
        class names hold them; and the vocabulary's synonyms, ``"a; b"``) -> normalised embedding -> mean ->
        normalise; ``[len(names), D]``."""
        prompts: List[str] = []
        owner: List[int] = []
        for k, text in enumerate(names):
            parts = [part for name in split_synonyms(text) for part in (name.split(", ") if ", " in name else [name])]
            for template in templates:
                for part in parts:
                    prompts.append(template.format(part))
                    owner.append(k)
        tokens = tokenizer(prompts)
        per_prompt = np.empty((len(tokens), self.meta.embed_dim), dtype=np.float32)
        for rows, trimmed in token_batches(tokens, trim):
            per_prompt[rows] = self.backend.encode_text(trimmed)
        per_prompt /= np.maximum(np.linalg.norm(per_prompt, axis=-1, keepdims=True), 1e-12)
        index = np.asarray(owner)
        sums = np.zeros((len(names), per_prompt.shape[1]), dtype=np.float64)
        np.add.at(sums, index, per_prompt)
        mean = sums / np.bincount(index, minlength=len(names))[:, None]
        mean /= np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)
        return np.ascontiguousarray(mean, dtype=np.float32)

    # ---- inference
    def segment(self, image: Any, color_order: str, vocab: PreparedVocabulary) -> Result:
        plan = self._plan(image, color_order, vocab)
        state = self._masks(image, color_order, vocab, plan)
        if state.clip_img is not None:
            with self.stage("head"):
                for start in range(0, state.queries, self.max_batch):
                    state.feats.append(self.backend.encode_crops(state.crops(start, start + self.max_batch)))
        return self._finish(state, vocab)

    def _plan(self, image: Any, color_order: str, vocab: PreparedVocabulary) -> Tuple[int, ...]:
        """Check the image and the input limits before any work: ``(height, width, nh, nw, ph, pw)``."""
        if color_order not in ("bgr", "rgb"):
            raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
        height, width, _ = pipeline.check_image(image)
        z = self.params
        nh, nw = network_input_shape(height, width, int(z["test_short_side"]), int(z["test_max_size"]))
        div = int(z["size_divisibility"])
        ph, pw = -(-nh // div) * div, -(-nw // div) * div
        queries = int(self.meta.raw["architecture"].get("config", {}).get("num_queries", 100))
        # working memory: masks + their sigmoid (float32) and binary copy [Q, ph, pw], the semantic maps [C, ph, pw],
        # three [3, ph, pw] float32 images, one batch of crops, the RGB input and the outputs
        crop_bytes = 4 * self.max_batch * 3 * int(z["clip_image_size"]) ** 2
        estimate = ph * pw * (9 * queries + 4 * len(vocab.names) + 36) + crop_bytes + 11 * height * width
        self.limits.check((height, width), (nh, nw), 1, estimate)
        return height, width, nh, nw, ph, pw

    def _masks(self, image: Any, color_order: str, vocab: PreparedVocabulary, plan: Tuple[int, ...]) -> "_Proposals":
        """Pre-processing and the mask branch of one image (its own graph call: images of other sizes cannot share
        it), the mask logits upsampled: the image's proposals, their CLIP crops still to encode."""
        height, width, nh, nw, ph, pw = plan
        z = self.params
        with self.stage("preprocess"):
            rgb = pipeline.to_rgb_uint8(image, color_order)
            img = np.ascontiguousarray(self.resize(rgb, nh, nw).transpose(2, 0, 1), dtype=np.float32)
            mean = np.asarray(self.meta.mean, np.float32)[:, None, None]
            std = np.asarray(self.meta.std, np.float32)[:, None, None]
            net = np.zeros((1, 3, ph, pw), np.float32)
            net[0, :, :nh, :nw] = (img - mean) / std
        with self.stage("image_encoder"):
            class_logits, small = self.backend.masks(net, vocab.text)
        with self.stage("head"):
            masks = ops.upsample(np.ascontiguousarray(small, dtype=np.float32), (ph, pw))[0]  # [Q, ph, pw]
            clip_img = None
            if z["fusion"] != "none":
                cmean = np.asarray(z["clip_mean"], np.float32)[:, None, None]
                cstd = np.asarray(z["clip_std"], np.float32)[:, None, None]
                clip_img = np.zeros((3, ph, pw), np.float32)
                clip_img[:, :nh, :nw] = (img - cmean) / cstd
        return _Proposals(plan, class_logits, masks, clip_img, color_order, z)

    def _finish(self, state: "_Proposals", vocab: PreparedVocabulary) -> Result:
        """Fuse the two class distributions and post-process one image's proposals into its result."""
        z = self.params
        height, width, nh, nw, _, _ = state.plan
        with self.stage("head"):
            clip_logits = None
            if state.clip_img is not None:
                clip_text, _ = vocab.extra
                clip_logits = (np.float32(z["clip_logit_scale"]) * np.concatenate(state.feats)) @ clip_text.T
            _, seen = vocab.extra
            scores = fuse_scores(state.class_logits[0], clip_logits, seen, z["fusion"], float(z["ensemble_lambda"]))
        with self.stage("postprocess"):
            masks = state.masks
            q, ph, pw = masks.shape
            sem = (scores.T.astype(np.float32) @ _sigmoid(masks).reshape(q, -1)).reshape(1, -1, ph, pw)
            labels, best = ops.segment(
                np.ascontiguousarray(sem, dtype=np.float32),
                (height, width),
                class_bias=np.ascontiguousarray(vocab.bias, dtype=np.float32),
                sigmoid=False,
                crop=(0, 0, nh, nw),
            )
            result = Result(labels[0], best[0], list(vocab.names), state.order)
            if self.options.unknown_below is not None:  # the unknown threshold reads a probability (Engine)
                result.probability = semantic_probability(best[0], _sigmoid(masks), (height, width), (nh, nw))
        return result

    def segment_many(self, images: Sequence[Tuple[Any, str]], vocab: PreparedVocabulary, focus: Focus) -> List[Result]:
        """Every image checked first (an error names the image, before any work); then, image by image, the mask
        branch (one call per image: its input size is the image's), and the CLIP crops of all images, in order,
        packed into CLIP encoder calls of at most ``max_batch`` crops (a call may hold the last crops of one image
        and the first of the next). An image is finished as soon as its last crop ran, so at most the images of one
        CLIP call are held with their masks. Shared CLIP calls are timed to their images by their share of crops."""
        plans = []
        for index, (image, order) in enumerate(images):
            with image_index(index):
                plans.append(self._plan(image, order, vocab))
        results: List[Result] = []
        waiting: List[Tuple[int, _Proposals]] = []  # images whose crops are (partly) still to encode, in order
        queued: List[Tuple[int, np.ndarray]] = []  # (image, crops) of the next CLIP call
        for index, (image, order) in enumerate(images):
            focus({index: 1.0})
            with image_index(index):
                state = self._masks(image, order, vocab, plans[index])
            if state.clip_img is None:
                results.append(self._finish(state, vocab))
                continue
            waiting.append((index, state))
            while state.next < state.queries:
                room = self.max_batch - sum(len(c) for _, c in queued)
                focus({index: 1.0})
                with self.stage("head"):
                    queued.append((index, state.crops(state.next, min(state.next + room, state.queries))))
                state.next += len(queued[-1][1])
                if room == len(queued[-1][1]):  # a full CLIP call
                    queued = self._encode_queued(queued, dict(waiting), focus)
                    results.extend(self._finish_done(waiting, vocab, focus))
        if queued:  # the last, partial CLIP call
            queued = self._encode_queued(queued, dict(waiting), focus)
        results.extend(self._finish_done(waiting, vocab, focus))
        return results

    def _finish_done(self, waiting: List[Tuple[int, "_Proposals"]], vocab: PreparedVocabulary, focus: Focus):
        """Finish, in order, the waiting images whose crops have all been encoded (removed from ``waiting``)."""
        finished = []
        while waiting and waiting[0][1].done:
            index, state = waiting.pop(0)
            focus({index: 1.0})
            with image_index(index):
                finished.append(self._finish(state, vocab))
        return finished

    def _encode_queued(
        self, queued: List[Tuple[int, np.ndarray]], states: Dict[int, "_Proposals"], focus: Focus
    ) -> list:
        """One CLIP encoder call on the queued crops of one or several images; each image gets its rows. Returns
        the emptied queue."""
        total = sum(len(c) for _, c in queued)
        shares: Dict[int, float] = {}
        for index, crops in queued:
            shares[index] = shares.get(index, 0.0) + len(crops) / total
        focus(shares)
        with self.stage("head"):
            feats = self.backend.encode_crops(
                np.concatenate([c for _, c in queued]) if len(queued) > 1 else queued[0][1]
            )
        row = 0
        for index, crops in queued:
            states[index].feats.append(feats[row : row + len(crops)])
            row += len(crops)
        return []


class _Proposals:
    """One image's mask proposals between the mask branch and the fusion (``segment_many`` holds a few)."""

    def __init__(self, plan, class_logits, masks, clip_img, order, params):
        self.plan, self.class_logits, self.masks, self.clip_img, self.order = plan, class_logits, masks, clip_img, order
        self.style, self.size = params["clip_cls_style"], int(params["clip_image_size"])
        self.queries, self.next, self.feats = int(masks.shape[0]), 0, []  # crops queued so far; their features

    def crops(self, start: int, stop: int) -> np.ndarray:
        """The CLIP inputs of proposals ``start:stop`` (``[stop - start, 3, size, size]``)."""
        return clip_crops(self.clip_img, self.masks[start:stop], self.style, self.size)

    @property
    def done(self) -> bool:
        return self.next == self.queries and sum(len(f) for f in self.feats) == self.queries
