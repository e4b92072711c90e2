"""The accuracy gate every reduced precision passes before it is used: TensorRT builds, the torch backend's fp16/bf16
and ONNX Runtime's int8/bf16 on the CPU.

The candidate (the built engines) and the reference (ONNX Runtime, fp32, CPU) run the same inputs:

* random inputs per graph: a random-normal image batch (image encoder), random unit-norm class embeddings with the
  reference's image features (head) and tokenised random words (text encoder): max |difference| per graph;
* the sample photos shipped in ``zsseg_rt/assets`` (or given ones), segmented end to end by two ``Engine`` objects
  that differ only in their backend, with each vocabulary judged (:func:`gate_vocabularies`: the 20 VOC names, the
  171 COCO-Stuff classes, and the names given to ``zsseg build-engine --classes``, each capped at the bundle's
  ``max_classes``): the fraction of pixels with the same label, and the max |difference| of the mask logits.

The gate passes when every output is finite and the label agreement reaches the precision's threshold
(``MIN_LABEL_AGREEMENT``: fp16, bf16, int8 99.5 %) on every photo of its set with every vocabulary, not only on their
sum (a path that agrees 99.9 % on three photos and 99.2 % on the fourth fails: ``worst_photo_agreement``; one that
passes with the VOC names and agrees 98.2 % with other names fails: the worst vocabulary is kept, and the record
says which were judged, ``vocabularies``). The result goes into each engine's ``engine.json`` (for the
torch and ONNX Runtime backends: the record under ``<bundle>/engines/`` of ``runtime/precision_records.py``); what
failed is refused at load time unless it was explicitly accepted (``accept_below_gate``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.bundle import BundleMeta, Files
from zsseg_rt.console.progress import stage_bar
from zsseg_rt.runtime.backends import Backend
from zsseg_rt.runtime.precision_records import PER_PHOTO_FIELD, VOCABULARIES_FIELD

# one gate for every backend: TensorRT builds, torch fp16/bf16 (export/torch_backend.py), ONNX Runtime int8/bf16 on the
# CPU (prepare/onnxruntime.py); the fraction of sample-photo pixels whose label must equal ONNX Runtime fp32's
MIN_LABEL_AGREEMENT = {"fp32": 0.999, "fp16": 0.995, "fp16-pinned": 0.995, "bf16": 0.995, "int8": 0.995}
REDUCED_AGREEMENT = 0.995  # a precision the table above does not name (a plugin's): a reduced precision's threshold
VOC_CLASSES = (
    "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person "
    "pottedplant sheep sofa train tvmonitor"
).split()
RANDOM_WORDS = ("zebra", "lamp post", "ceiling", "a red kite", "sand", "keyboard", "glacier", "traffic cone")
# the vocabularies every gate judges besides the given names: (name in the record, a named vocabulary of
# zsseg_rt.vocabulary, or None: VOC_CLASSES); each capped at the bundle's max_classes (its first names)
GATE_VOCABULARIES = (("voc20", None), ("coco_stuff", "coco_stuff"))
_given_classes: Optional[Tuple[str, ...]] = None  # the names of a gate_classes block (zsseg build-engine --classes)


class EngineAccuracyError(RuntimeError):
    """A built engine set failed the accuracy gate (and the failure was not explicitly accepted)."""


@dataclass
class GateReport:
    """What the gate measured and decided (stored in ``engine.json`` under ``accuracy_gate``)."""

    precision: str
    label_agreement: float  # fraction of sample-photo pixels where candidate and reference labels agree
    min_label_agreement: float  # the threshold, which every photo must reach
    photo_agreement: List[float]  # each photo's fraction, in order
    max_abs_logit_error: float  # mask logits on the sample photos, end to end (text and image through the engines)
    random_max_abs_error: Dict[str, float]  # per graph ("image", "head", "text"), random inputs
    photos: int
    pixels: int
    finite: bool
    passed: bool
    accepted: bool = False  # passed, or explicitly accepted below the gate
    reference: str = "onnxruntime fp32 (CPU)"
    candidate_path: str = "host"  # "device pipeline" when the photos ran through the path users run on a GPU
    notes: List[str] = field(default_factory=list)
    # each vocabulary judged: {"name", "classes" (judged), "of" (in the list), "agreement", "worst_photo"}; the
    # verdict is on the worst (label_agreement and photo_agreement are that vocabulary's)
    vocabularies: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def worst_photo_agreement(self) -> float:
        return min(self.photo_agreement, default=self.label_agreement)

    @property
    def summary(self) -> str:
        verdict = "passed" if self.passed else ("FAILED (accepted by override)" if self.accepted else "FAILED")
        finite = "" if self.finite else ", non-finite outputs"
        worst = self.photo_agreement.index(self.worst_photo_agreement) + 1 if self.photo_agreement else 0
        judged = ""
        if self.vocabularies:
            names = ", ".join(f"{v['name']} {v['classes']}" for v in self.vocabularies)
            judged = f"; vocabularies judged: {names} (the worst kept: {self.worst_vocabulary})"
        return (
            f"accuracy gate {verdict}: {100 * self.label_agreement:.2f}% labels agree with ONNX Runtime fp32 on "
            f"{self.photos} photo(s), {100 * self.worst_photo_agreement:.2f}% on the worst (photo {worst}) (every "
            f"photo needs >= {100 * self.min_label_agreement:.1f}%, {self.candidate_path} path), max |logit error| "
            f"{self.max_abs_logit_error:.3g}{finite}{judged}"
        )

    @property
    def worst_vocabulary(self) -> str:
        """The name of the vocabulary the verdict is on ("" when none was recorded)."""
        if not self.vocabularies:
            return ""
        return min(self.vocabularies, key=lambda v: (v["worst_photo"], v["agreement"]))["name"]

    def as_dict(self) -> Dict:
        data = asdict(self)
        data["summary"] = self.summary
        data[PER_PHOTO_FIELD] = True  # records gated before this rule hold their photos' sum only
        data[VOCABULARIES_FIELD] = list(self.vocabularies)  # (records gated before: the VOC names only)
        return data


class _RecordingBackend(Backend):
    """Delegates to ``inner`` and keeps every head output (the mask logits), in call order."""

    def __init__(self, inner: Backend):
        self.inner, self.name = inner, f"recording-{inner.name}"
        self.logits: List[np.ndarray] = []

    def encode_image(self, images):
        return self.inner.encode_image(images)

    def head(self, text, features):
        logits = np.asarray(self.inner.head(text, features))
        self.logits.append(logits)
        return logits

    def encode_text(self, tokens):
        return self.inner.encode_text(tokens)


def _record_head_logits(engine) -> List[np.ndarray]:
    """Keep every mask-logit output of ``engine``'s head, in call order, on the host. On the device pipeline the
    executor's head outputs are downloaded right after each head run (an extra copy, for the gate only); on the
    host path the backend's head output is kept."""
    logits: List[np.ndarray] = []
    device = _device_pipeline(engine)
    if device is None:
        engine.backend = _RecordingBackend(engine.backend)
        return engine.backend.logits
    from zsseg_rt.bundle import Names

    graphs = getattr(device, "graphs", None)
    if graphs is not None:  # a replayed CUDA graph runs no Python: the head's logits could not be recorded per run
        graphs.clear(device)  # (and a download + synchronise inside a capture is illegal): the gate runs eagerly,
        graphs.enabled = False  # the same kernels a graph replays
    executor, memory = device.executor, device.memory
    run = executor.run

    def recording_run(role, inputs):
        outputs = run(role, inputs)
        if role == "head":
            buffer = outputs[Names.MASK_LOGITS]
            host = np.empty(tuple(buffer.shape), np.float32)
            memory.download("accuracy_gate_logits", buffer, host)
            memory.synchronize()
            logits.append(host)
        return outputs

    executor.run = recording_run
    return logits


def _device_pipeline(engine):
    """The device pipeline ``engine`` runs frames through, or None (host path; pipelines without one)."""
    return getattr(getattr(engine, "pipeline", None), "device", None)


def _max_abs(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"candidate output shape {list(a.shape)} != reference {list(b.shape)}")
    return float(np.max(np.abs(a - b), initial=0.0))


def _all_finite(*arrays) -> bool:
    return all(np.isfinite(np.asarray(a)).all() for a in arrays)


def random_input_errors(
    meta: BundleMeta, candidate: Backend, reference: Backend, roles: Sequence[str], seed: int = 0
) -> Dict[str, object]:
    """Max |candidate - reference| per graph in ``roles`` on random inputs, and whether all outputs were finite."""
    from zsseg_rt.vocabulary import ClipTokenizer

    rng = np.random.default_rng(seed)
    size = int(meta.image_size)
    images = rng.standard_normal((2, 3, size, size)).astype(np.float32)  # [2, 3, S, S]
    ref_features = reference.encode_image(images)
    errors: Dict[str, float] = {}
    finite = True
    if "image" in roles:
        cand_features = candidate.encode_image(images)
        errors["image"] = max(_max_abs(cand_features[k], ref_features[k]) for k in ref_features)
        finite &= _all_finite(*cand_features.values())
    if "head" in roles:
        classes = min(8, int(meta.max_classes))
        text = rng.standard_normal((classes, int(meta.embed_dim))).astype(np.float32)  # [C, D]
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        cand_logits = candidate.head(text, ref_features)
        errors["head"] = _max_abs(cand_logits, reference.head(text, ref_features))
        finite &= _all_finite(cand_logits)
    if "text" in roles:
        tokenizer = ClipTokenizer(meta.file(Files.TOKENIZER), meta.context_length)
        tokens = tokenizer([f"a photo of a {word}." for word in RANDOM_WORDS])  # [P, L] int32
        cand_text = candidate.encode_text(tokens)
        errors["text"] = _max_abs(cand_text, reference.encode_text(tokens))
        finite &= _all_finite(cand_text)
    return {"errors": errors, "finite": bool(finite)}


def _read_photos(images: Optional[Sequence]) -> List[np.ndarray]:
    """``[H, W, 3]`` uint8 BGR photos: the given paths/arrays, or the sample photos shipped with zsseg_rt."""
    import cv2

    if images is None:
        from zsseg_rt.assets import sample_images

        images = [str(path) for path in sample_images()]
    photos = []
    for image in images:
        if isinstance(image, np.ndarray):
            photos.append(image)
            continue
        bgr = cv2.imread(os.fspath(image), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"accuracy gate: cannot read photo {os.fspath(image)!r}")
        photos.append(bgr)
    if not photos:
        raise ValueError("the accuracy gate needs at least one photo")
    return photos


def run_accuracy_gate(
    meta: BundleMeta,
    candidate: Backend,
    reference: Backend,
    precision: str,
    roles: Sequence[str] = ("image", "head", "text"),
    images: Optional[Sequence] = None,
    classes: Optional[Sequence[str]] = None,
    max_batch: int = 1,
    accept_below_gate: bool = False,
    device_pipeline="auto",
) -> GateReport:
    """Compare ``candidate`` with ``reference`` on random inputs and photos and decide.

    Args:
        meta: the bundle both backends run.
        candidate: the engines under test (graphs outside ``roles`` should be the reference's).
        reference: ONNX Runtime fp32.
        precision: the build's precision (selects ``MIN_LABEL_AGREEMENT``).
        roles: the graphs that were built (random-input errors are measured for these).
        images: photo paths or ``[H, W, 3]`` uint8 BGR arrays (default: the shipped sample photos).
        classes: vocabulary for the photos (default: the 20 VOC classes, capped at ``meta.max_classes``).
        max_batch: windows per encoder call (``Engine.max_batch``; the device pipeline caps it at the engine's
            profile).
        accept_below_gate: mark a failing result as accepted (explicit override).
        device_pipeline: the candidate Engine's ``device_pipeline`` setting; default "auto", what users run (the
            device-resident pipeline where the candidate is TensorRT and CUDA ops are usable).
    Returns:
        the ``GateReport``.
    """
    from zsseg_rt.runtime.engine import Engine

    random = random_input_errors(meta, candidate, reference, roles)
    vocabularies = gate_vocabularies(meta, classes)
    if not hasattr(candidate, "device_executor"):  # a host path: its image features once per window, whatever the
        candidate = RememberingReference(candidate)  # vocabulary (the reference side remembers its own: gate_reference)
    names = vocabularies[0][1]
    # the candidate runs the path users run: Engine's default device_pipeline="auto" (on a GPU with TensorRT: the
    # device-resident pipeline, with its chunking and buffers); the reference is ONNX Runtime's host path
    cand_engine = Engine(
        meta.path, names, backend=candidate, verify=False, max_batch=max_batch, device_pipeline=device_pipeline
    )
    ref_engine = Engine(meta.path, names, backend=reference, verify=False, max_batch=max_batch, device_pipeline=False)
    recorded = [_record_head_logits(cand_engine), _record_head_logits(ref_engine)]
    tally, judged = judge_vocabularies(_read_photos(images), cand_engine, ref_engine, precision, vocabularies)
    cand_logits, ref_logits = _by_window(recorded[0]), _by_window(recorded[1])
    logit_error = max((_max_abs(c, r) for c, r in zip(cand_logits, ref_logits)), default=0.0)
    finite = bool(random["finite"]) and _all_finite(*cand_logits)
    return decide(
        precision,
        tally,
        random,
        logit_error,
        finite,
        accept_below_gate,
        candidate_path="device pipeline" if _device_pipeline(cand_engine) is not None else "host",
        vocabularies=judged,
    )


@contextlib.contextmanager
def gate_classes(names: Optional[Sequence[str]]) -> Iterator[None]:
    """While in this block every gate also judges the vocabulary ``names`` (``zsseg build-engine --classes``: the
    names a deployment will use), besides :data:`GATE_VOCABULARIES`; None or empty: those only."""
    global _given_classes
    previous, _given_classes = _given_classes, (tuple(names) if names else None)
    try:
        yield
    finally:
        _given_classes = previous


def gate_vocabularies(meta: BundleMeta, classes: Optional[Sequence[str]] = None) -> List[Tuple[str, List[str], int]]:
    """``(name, names judged, names in the list)`` of every vocabulary a gate on ``meta``'s bundle judges: the 20 VOC
    names, the 171 COCO-Stuff classes (their labels, one name each), and the given names (``classes``, else a
    :func:`gate_classes` block's), each capped at the bundle's ``max_classes`` (its first names)."""
    from zsseg_rt.vocabulary import Vocabulary

    most = int(meta.max_classes)
    found: List[Tuple[str, List[str], int]] = []
    for name, named in GATE_VOCABULARIES:
        names = list(VOC_CLASSES) if named is None else list(Vocabulary.parse(named, None).labels)
        found.append((name, names[:most], len(names)))
    given = list(classes) if classes else list(_given_classes or ())
    if given:
        found.append(("given", given[:most], len(given)))
    return found


def judge_vocabularies(
    photos: Sequence[np.ndarray],
    candidate,
    reference,
    precision: str,
    vocabularies: Sequence[Tuple[str, List[str], int]],
) -> Tuple["PhotoTally", List[Dict[str, Any]]]:
    """:func:`compare_photos` with each vocabulary set on both Engines (:func:`gate_vocabularies`): the tally of the
    worst one (its lowest photo agreement, then its overall agreement), and a record of each judged."""
    tallies: List[PhotoTally] = []
    judged: List[Dict[str, Any]] = []
    for name, names, total in vocabularies:
        candidate.set_classes(names)
        reference.set_classes(names)
        tally = compare_photos(photos, candidate, reference, precision, name)
        tallies.append(tally)
        judged.append(
            {
                "name": name,
                "classes": len(names),
                "of": int(total),
                "agreement": round(tally.agree / max(tally.pixels, 1), 6),
                "worst_photo": round(min(tally.agreement, default=0.0), 6),
            }
        )
    if not tallies:
        raise ValueError("the accuracy gate needs at least one vocabulary")
    worst = min(tallies, key=lambda t: (min(t.agreement, default=0.0), t.agree / max(t.pixels, 1)))
    worst.finite = all(t.finite for t in tallies)  # a non-finite score with any vocabulary fails the gate
    return worst, judged


@dataclass
class PhotoTally:
    """The photos' side of a gate: each photo's label agreement (candidate vs reference), pixels, finite scores."""

    agreement: List[float] = field(default_factory=list)
    agree: int = 0
    pixels: int = 0
    finite: bool = True


def compare_photos(
    photos: Sequence[np.ndarray], candidate, reference, precision: str, vocabulary: str = ""
) -> PhotoTally:
    """Segment each photo with the ``candidate`` and ``reference`` Engines (same vocabulary) and tally where their
    labels agree, photo by photo (the windowed and the two-stage gates alike); ``vocabulary``: its name, for the
    progress bar."""
    tally = PhotoTally()
    name = f"accuracy gate ({precision})" + (f": {vocabulary}" if vocabulary else "")
    with stage_bar(len(photos), name, unit="photo") as bar:  # shown by zsseg build-engine
        for photo in photos:
            cand, ref = candidate(photo), reference(photo)
            same = int(np.count_nonzero(cand.labels == ref.labels))
            tally.agreement.append(same / max(int(cand.labels.size), 1))
            tally.agree += same
            tally.pixels += int(cand.labels.size)
            tally.finite &= _all_finite(cand.scores)
            bar.update()
    return tally


def decide(
    precision: str,
    tally: PhotoTally,
    random: Dict[str, object],
    logit_error: float,
    finite: bool,
    accept_below_gate: bool,
    **extra,
) -> GateReport:
    """The gate's verdict: every output finite and every photo's label agreement at the precision's threshold
    (``MIN_LABEL_AGREEMENT``: each photo, not only their sum); ``extra``: the report's other fields."""
    threshold = MIN_LABEL_AGREEMENT.get(precision, REDUCED_AGREEMENT)
    finite = bool(finite and tally.finite)
    passed = bool(finite and tally.agreement and min(tally.agreement) >= threshold)
    return GateReport(
        precision=precision,
        label_agreement=tally.agree / max(tally.pixels, 1),
        min_label_agreement=threshold,
        photo_agreement=[round(value, 6) for value in tally.agreement],
        max_abs_logit_error=logit_error,
        random_max_abs_error=dict(random["errors"]),  # type: ignore[call-overload]
        photos=len(tally.agreement),
        pixels=tally.pixels,
        finite=finite,
        passed=passed,
        accepted=passed or bool(accept_below_gate),
        **extra,
    )


def _by_window(chunks: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Per-window ``[C, h, w]`` logits from head outputs of any batch split (the two sides may chunk differently:
    the device pipeline's windows per call are capped by the engine's profile)."""
    return [window for chunk in chunks for window in np.asarray(chunk)]


class RememberingReference(Backend):
    """The fp32 reference, remembering what it computed: a call with the same inputs (bytes, dtype and shape) as an
    earlier one returns a copy of that call's outputs instead of running the graph again. The gates of one
    preparation (one per path: ONNX Runtime int8, OpenVINO bf16 and int8) run the same random inputs and the same
    photos' windows through the same reference, so each is computed once (:func:`shared_reference`). Inputs that
    are not NumPy arrays run every time. ``computed``: the calls that ran the graphs."""

    def __init__(self, inner: Backend):
        self.inner, self.name = inner, getattr(inner, "name", "reference")
        self._memo: Dict[str, Any] = {}
        self.computed = 0

    def __getattr__(self, name: str) -> Any:  # precision, runner attributes...: the reference's own
        if name == "inner" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _call(self, role: str, run, *inputs):
        key = _inputs_key(role, inputs)
        if key is None:
            self.computed += 1
            return run(*inputs)
        if key not in self._memo:
            self.computed += 1
            self._memo[key] = _copied(run(*inputs))
        return _copied(self._memo[key])

    def encode_image(self, images):
        return self._call("image", self.inner.encode_image, images)

    def head(self, text, features):
        return self._call("head", self.inner.head, text, features)

    def encode_text(self, tokens):
        return self._call("text", self.inner.encode_text, tokens)


def _inputs_key(role: str, inputs: Sequence[Any]) -> Optional[str]:
    """A digest of ``inputs`` (arrays, or dicts of arrays: image features), or None where one is neither."""
    digest = hashlib.sha256(role.encode())
    arrays: List[Tuple[str, Any]] = []
    for index, value in enumerate(inputs):
        items = sorted(value.items()) if isinstance(value, dict) else [("", value)]
        arrays += [(f"{index}:{name}", array) for name, array in items]
    for name, array in arrays:
        if not isinstance(array, np.ndarray):
            return None
        array = np.ascontiguousarray(array)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _copied(outputs):
    if isinstance(outputs, dict):
        return {name: np.array(value, copy=True) for name, value in outputs.items()}
    return np.array(outputs, copy=True)


_shared: Optional[Dict[Tuple[str, int], RememberingReference]] = None  # open while a shared_reference block runs


@contextlib.contextmanager
def shared_reference() -> Iterator[None]:
    """While in this block, :func:`gate_reference` returns one :class:`RememberingReference` per (bundle, threads):
    the gates run in it (a preparation's paths, one after another) compute the reference's side once. Its memory
    (the photos' windows' features and logits) is freed when the block ends. A nested block shares the outer one."""
    global _shared
    if _shared is not None:
        yield
        return
    _shared = {}
    try:
        yield
    finally:
        _shared = None


def gate_reference(meta: BundleMeta, threads: int = 0) -> Backend:
    """The fp32 reference of an accuracy gate on a windowed bundle: ONNX Runtime on the CPU (``open_reference``),
    shared and remembering inside a :func:`shared_reference` block, a new one elsewhere."""
    from zsseg_rt.runtime.backends import open_reference

    if _shared is None:
        return open_reference(meta, threads)
    key = (os.path.realpath(meta.path), int(threads))
    if key not in _shared:
        _shared[key] = RememberingReference(open_reference(meta, threads))
    return _shared[key]


class MixedBackend(Backend):
    """The candidate's graphs where engines were built (``roles``), the reference's elsewhere. When the image encoder
    and the head are both the candidate's, it also offers the candidate's device executor (so the gate's Engine
    runs the device pipeline exactly as a user's Engine on those engines does: its executor, where it runs, its
    CUDA graphs)."""

    name = "tensorrt+onnxruntime"

    def __init__(self, candidate: Backend, reference: Backend, roles: Sequence[str]):
        self._pick = {role: candidate if role in roles else reference for role in ("image", "head", "text")}
        if {"image", "head"} <= set(roles) and hasattr(candidate, "device_executor"):
            self.name = candidate.name
            self.device_executor = candidate.device_executor
            self.runs_on_gpu = bool(getattr(candidate, "runs_on_gpu", False))
            if hasattr(candidate, "frame_graphs"):
                self.frame_graphs = candidate.frame_graphs

    def encode_image(self, images):
        return self._pick["image"].encode_image(images)

    def head(self, text, features):
        return self._pick["head"].head(text, features)

    def encode_text(self, tokens):
        return self._pick["text"].encode_text(tokens)


__all__ = [
    "EngineAccuracyError",
    "GateReport",
    "MIN_LABEL_AGREEMENT",
    "MixedBackend",
    "PhotoTally",
    "RememberingReference",
    "compare_photos",
    "decide",
    "gate_classes",
    "gate_reference",
    "gate_vocabularies",
    "judge_vocabularies",
    "random_input_errors",
    "run_accuracy_gate",
    "shared_reference",
]
