"""Records of reduced-precision runs on the ONNX Runtime and torch backends, beside the TensorRT engines.

A reduced precision other than TensorRT's is used only after the accuracy gate (``prepare/gate.py``) has
compared it with ONNX Runtime fp32 on this kind of machine, and its result is kept like a TensorRT engine's:
``<bundle>/engines/<digest>/engine.json`` (the same root, the same ``accuracy_gate`` field). What the result depends on
is the :class:`PrecisionKey`: backend, precision, the graph or model it ran (sha256), the library version, the
device class (a GPU's name and compute capability; a CPU's int8 / bf16 instructions: an int8 graph gated on a VNNI
CPU is gated again on an AVX2 one) and the recipe. An artefact built for the key (the ONNX Runtime int8 image
encoder) lives in the same directory, its sha256 in the record, and is refused when it does not match.

Nothing here imports torch or ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from zsseg_rt.aliases import resolve_reference
from zsseg_rt.bundle import BundleMeta, Files

from .engine_cache import ENGINE_RECORD, GATE_FIELD, atomic_write
from .file_verification import cached_sha256, check_recorded_file

__all__ = [
    "GatedChoice",
    "PrecisionGateRefused",
    "PrecisionKey",
    "PrecisionRecordError",
    "PER_PHOTO_FIELD",
    "PREPARATION_FIELD",
    "PRUNED_FIELD",
    "SPEED_FIELD",
    "VOCABULARIES_FIELD",
    "find_record",
    "gated_choice",
    "gated_choices_of",
    "gated_record",
    "pick_recorded",
    "precision_root",
    "rank_choices",
    "read_record",
    "record_dir",
    "update_record",
    "write_record",
]

SPEED_FIELD = "speed"  # the record's measured image-encoder time against the gate's reference (prepare/auto)
# the gate result's field saying its threshold held on every photo (prepare/gate.py); a record that passed without it
# was gated on the photos' sum only, and the auto policy has it gated again
PER_PHOTO_FIELD = "every_photo"
# the gate result's list of the vocabularies it judged (prepare/gate.py: VOC, COCO-Stuff, the names given to
# build-engine --classes; the worst kept); a record that passed without it was judged on the VOC names only, and the
# auto policy has it gated again
VOCABULARIES_FIELD = "vocabularies"
PREPARATION_FIELD = "preparation"  # what preparing the path took here, measured (prepare/auto.py; preparation_cost)
PRUNED_FIELD = "pruned"  # the record's artefact was removed: another path was chosen (prepare/auto.py keeps one)


class PrecisionRecordError(RuntimeError):
    """No usable record: none yet, another setup's, a modified artefact, or a failed accuracy gate."""


class PrecisionGateRefused(PrecisionRecordError):
    """The record exists and says the accuracy gate failed (not accepted): not to be prepared again silently."""


@dataclass(frozen=True)
class PrecisionKey:
    """Everything a gated reduced-precision run depends on. ``digest()`` names its directory."""

    backend: str  # "onnxruntime" or "torch"
    precision: str  # "int8", "bf16", "fp16"
    source: str  # what runs: an ONNX file name ("image_encoder.onnx") or "model" (the torch model)
    source_sha256: str  # the ONNX file's sha256 from meta.json, or the torch model's parameter fingerprint
    library: str  # "onnxruntime 1.31.1", "torch 2.11.0+cu130"
    device: str  # "cpu x86_64 int8 avx512-vnni bf16 avx512-bf16", "cuda NVIDIA H100 80GB HBM3 sm 9.0"
    recipe: str  # canonical JSON of the settings (quantisation options, kept-fp32 parts, attention kernel)

    @classmethod
    def of_image_encoder(
        cls, meta: BundleMeta, backend: str, precision: str, library: str, device: str, recipe: Mapping[str, Any]
    ) -> "PrecisionKey":
        """The key of a CPU backend's reduced-precision run of the bundle's image encoder (``source``: its file and
        the sha256 meta.json records for it; ``recipe`` as :func:`recipe_text`)."""
        return cls(
            backend=backend,
            precision=precision,
            source=Files.IMAGE_ENCODER,
            source_sha256=str(meta.files.get(Files.IMAGE_ENCODER, "")),
            library=library,
            device=device,
            recipe=recipe_text(recipe),
        )

    def as_dict(self) -> Dict[str, str]:
        return asdict(self)

    def digest(self) -> str:
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:24]

    def differences(self, other: "PrecisionKey") -> Tuple[str, ...]:
        mine, theirs = self.as_dict(), other.as_dict()
        return tuple(f"{k}: record has {mine[k]!r}, expected {theirs[k]!r}" for k in mine if mine[k] != theirs[k])


def recipe_text(settings: Mapping[str, Any]) -> str:
    """The canonical text of a recipe (sorted JSON), as stored in the key."""
    return json.dumps(dict(settings), sort_keys=True, separators=(",", ":"))


def precision_root(meta: BundleMeta, cache_dir: Optional[str] = None) -> str:
    """Where records live: ``cache_dir``, else ``<bundle>/engines`` (shared with the TensorRT engines)."""
    return os.path.abspath(cache_dir) if cache_dir else os.path.join(meta.path, Files.ENGINE_DIR)


def record_dir(root: str, key: PrecisionKey) -> str:
    return os.path.join(root, key.digest())


def write_record(
    root: str, key: PrecisionKey, gate: Mapping, artefact: Optional[str] = None, extra: Optional[Mapping] = None
) -> str:
    """Write ``engine.json`` for ``key`` (with the accuracy-gate result and, when given, the artefact's name, sha256
    and size, the artefact lying in ``record_dir(root, key)``). Returns the record's path."""
    folder = record_dir(root, key)
    record: Dict[str, Any] = {**dict(extra or {}), "key": key.as_dict(), "digest": key.digest(), GATE_FIELD: dict(gate)}
    if artefact is not None:
        path = os.path.join(folder, os.path.basename(artefact))
        record.update(
            artefact=os.path.basename(path), artefact_sha256=cached_sha256(path), artefact_bytes=os.path.getsize(path)
        )
    target = os.path.join(folder, ENGINE_RECORD)
    atomic_write(target, json.dumps(record, indent=2, sort_keys=True).encode())
    return target


def read_record(folder: str) -> Dict[str, Any]:
    """The record in ``folder`` (raises PrecisionRecordError when missing or unreadable)."""
    path = os.path.join(folder, ENGINE_RECORD)
    try:
        with open(path, "r", encoding="utf-8") as handle:
            record = json.load(handle)
        PrecisionKey(**record["key"])
        return record
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PrecisionRecordError(f"cannot read the precision record {path!r}: {exc}") from exc


def find_record(root: str, key: PrecisionKey, check_artefact: bool = True) -> Tuple[Dict[str, Any], Optional[str]]:
    """The record of ``key`` and the path of its artefact (None when it has none), checked: the key matches, the
    artefact exists and has the recorded sha256, and the accuracy gate passed (or was explicitly accepted).

    Raises:
        PrecisionRecordError saying what is missing or wrong.
    """
    folder = record_dir(root, key)
    if not os.path.isfile(os.path.join(folder, ENGINE_RECORD)):
        raise PrecisionRecordError(f"no {key.backend} {key.precision} record for this setup in {root!r} yet")
    record = read_record(folder)
    diffs = PrecisionKey(**record["key"]).differences(key)
    if diffs:
        raise PrecisionRecordError(f"the record in {folder!r} is for another setup:\n  - " + "\n  - ".join(diffs))
    # a refused gate first: its record says not to prepare again, whatever became of the artefact
    gate = record.get(GATE_FIELD)
    if not isinstance(gate, Mapping) or not gate.get("accepted"):
        summary = gate.get("summary", "no summary") if isinstance(gate, Mapping) else "no gate result"
        raise PrecisionGateRefused(
            f"{key.backend} precision={key.precision!r} is refused here: it failed the accuracy gate ({summary}). "
            f"Use Engine(..., precision='fp32'), or accept it explicitly: `zsseg build-engine BUNDLE --backend "
            f"{key.backend} "
            f"--precision {key.precision} --force --accept-below-gate`"
        )
    artefact = None
    if record.get("artefact"):
        artefact = os.path.join(folder, str(record["artefact"]))
        check_recorded_file(
            artefact,
            record.get("artefact_sha256"),
            check_artefact,
            PrecisionRecordError,
            missing=f"{artefact!r}, recorded in {folder!r}, is missing",
            modified=f"{artefact!r} does not match the sha256 in its record (truncated or modified); delete "
            f"{folder!r} to have it made again",
        )
    return record, artefact


def update_record(root: str, key: PrecisionKey, field_name: str, value: Any) -> Dict[str, Any]:
    """Set one field of the record of ``key`` (a measurement added after the gate: :data:`SPEED_FIELD`), written
    atomically; returns the record. The key and the gate's result are not changed."""
    folder = record_dir(root, key)
    record = read_record(folder)
    record[field_name] = value
    atomic_write(os.path.join(folder, ENGINE_RECORD), json.dumps(record, indent=2, sort_keys=True).encode())
    return record


@dataclass
class GatedChoice:
    """What one (backend, reduced precision) is on this CPU for a bundle, read from its records without preparing
    anything: ``status`` "passed" / "accepted" (below the gate, by the user) with its ``record``; "refused" (the gate
    failed), "missing" (this CPU can run it; no record yet, or one gated under an older rule: preparing it is worth
    trying), "pruned" (it passed, another path was faster and only that one was kept), "unusable" (a record of
    another setup, a modified artefact) or "cannot" (this CPU or installation cannot run it); ``reason`` says why."""

    backend: str
    precision: str
    status: str
    reason: str = ""
    record: Optional[Dict[str, Any]] = None
    root: str = ""  # where its record is (or goes), and its key: None for "cannot"
    key: Optional[PrecisionKey] = None

    @property
    def usable(self) -> bool:
        return self.status in ("passed", "accepted")

    @property
    def speedup(self) -> Optional[float]:
        """The image encoder's speed over the gate's reference (ONNX Runtime fp32) measured on this CPU when it was
        gated (``record["speed"]``), or None (not measured: a record written before speeds were)."""
        speed = (self.record or {}).get(SPEED_FIELD)
        try:
            return float(speed["speedup"]) if isinstance(speed, Mapping) else None
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def gate_summary(self) -> str:
        gate = (self.record or {}).get(GATE_FIELD)
        return str(gate.get("summary", "")) if isinstance(gate, Mapping) else ""

    def describe(self) -> str:
        """``"openvino int8 2.91x"``, ``"onnxruntime int8: refused (accuracy gate FAILED: ...)"``, ..."""
        name = f"{self.backend} {self.precision}"
        if self.usable:
            speed = self.speedup
            return f"{name} {speed:.2f}x" if speed is not None else f"{name} (speed not measured)"
        return f"{name}: {self.status} ({self.reason})" if self.reason else f"{name}: {self.status}"


def gated_choice(root: str, key: PrecisionKey) -> GatedChoice:
    """The :class:`GatedChoice` of ``key`` from the records under ``root`` (nothing is prepared)."""
    if not os.path.isfile(os.path.join(record_dir(root, key), ENGINE_RECORD)):
        return GatedChoice(key.backend, key.precision, "missing", "no record for this CPU yet", None, root, key)
    pruned = read_record(record_dir(root, key)).get(PRUNED_FIELD)
    if pruned:
        return GatedChoice(key.backend, key.precision, "pruned", str(pruned), None, root, key)
    try:
        record, _ = find_record(root, key)
    except PrecisionGateRefused as exc:
        summary = read_record(record_dir(root, key)).get(GATE_FIELD, {}).get("summary", str(exc))
        return GatedChoice(key.backend, key.precision, "refused", str(summary).splitlines()[0], None, root, key)
    except PrecisionRecordError as exc:
        return GatedChoice(key.backend, key.precision, "unusable", str(exc).splitlines()[0], None, root, key)
    gate = record.get(GATE_FIELD, {})
    if gate.get("passed") and not gate.get(PER_PHOTO_FIELD):
        why = "gated on its photos' sum only, before every photo had to pass: to be gated again"
        return GatedChoice(key.backend, key.precision, "missing", why, None, root, key)
    if gate.get("passed") and not gate.get(VOCABULARIES_FIELD):
        why = "gated on the VOC names only, before several vocabularies were judged: to be gated again"
        return GatedChoice(key.backend, key.precision, "missing", why, None, root, key)
    status = "passed" if gate.get("passed") else "accepted"
    return GatedChoice(key.backend, key.precision, status, "", record, root, key)


def gated_choices_of(
    backend: str,
    meta: BundleMeta,
    cache_dir: Optional[str],
    order: Sequence[str],
    validate: Callable[[str], None],
    key_of: Callable[[str], PrecisionKey],
    needs: Optional[Mapping[str, Tuple[str, str]]] = None,
) -> List[GatedChoice]:
    """A CPU row's ``gated_choices`` (the ``auto`` policy's candidates, ``runtime/backends/cpu_auto.py``): each reduced
    precision of ``order`` for a windowed bundle's image encoder (other pipelines: none), read from its record under
    ``key_of(precision)``, nothing prepared. ``validate(precision)`` raises ValueError where this CPU cannot run it
    (the choice is then "cannot", with the reason); ``needs[precision] = (module, why)``: what preparing it imports,
    a missing record being "cannot" (``why``) where that module is not installed."""
    if getattr(meta, "pipeline", "windowed") != "windowed":
        return []
    root = precision_root(meta, cache_dir)
    choices = []
    for precision in order:
        try:
            validate(precision)
        except ValueError as exc:
            choices.append(GatedChoice(backend, precision, "cannot", str(exc).split(". Use ")[0].splitlines()[0]))
            continue
        choice = gated_choice(root, key_of(precision))
        module, why = (needs or {}).get(precision, ("", ""))
        if module and choice.status == "missing" and importlib.util.find_spec(module) is None:
            choice = GatedChoice(backend, precision, "cannot", why)
        choices.append(choice)
    return choices


def rank_choices(choices: Sequence[GatedChoice]) -> List[GatedChoice]:
    """The usable choices, fastest first: those with a measured speed by it (highest first; ties keep the given
    order), then those without one in the given order."""
    usable = [choice for choice in choices if choice.usable]
    measured = [choice for choice in usable if choice.speedup is not None]
    measured.sort(key=lambda choice: -float(choice.speedup or 0.0))  # stable: ties keep their order
    return measured + [choice for choice in usable if choice.speedup is None]


def pick_gated_precision(
    candidates: Tuple[str, ...],
    try_one: Callable[[str], Any],
    label: str,
    log: logging.Logger,
    existing: Optional[Callable[[str], GatedChoice]] = None,
) -> Tuple[str, Any]:
    """``precision="auto"`` on a CPU backend: the first of ``candidates`` that this CPU can run and whose
    accuracy-gate record passed or was accepted below the gate by the user (``--accept-below-gate``: the log line
    then carries the gate's FAILED summary), as ``(precision, try_one(precision))``, else ``("fp32", None)``; logs
    which and why at INFO on ``log``. ``existing(precision)`` (the records there are, nothing prepared): candidates
    with a usable record go first, fastest first by the speed measured when they were gated (:func:`rank_choices`),
    so a faster gated precision wins over the order of ``candidates``, which is kept among the rest (gated on first
    use in that order). ``try_one`` returns what the backend needs to run a candidate (its record) and raises
    ValueError (the CPU cannot run it), ImportError (what prepares it is missing) or a gate error
    (PrecisionRecordError: refused, or no record and not prepared; the exporter's EngineAccuracyError: the first-use
    gate failed); any other error propagates."""
    if existing is not None:
        found = []
        for candidate in candidates:
            try:
                found.append(existing(candidate))
            except (ValueError, ImportError):
                continue  # said by try_one below
        ranked = [choice.precision for choice in rank_choices(found)]
        candidates = tuple(ranked) + tuple(c for c in candidates if c not in ranked)
    reasons = []
    for candidate in candidates:
        try:
            found = try_one(candidate)
        except (ValueError, ImportError) as exc:
            reasons.append(f"{candidate}: {str(exc).split('. Use ')[0].splitlines()[0]}")
            continue
        except RuntimeError as exc:
            if not (isinstance(exc, PrecisionRecordError) or type(exc).__name__ == "EngineAccuracyError"):
                raise
            reasons.append(f"{candidate}: {str(exc).splitlines()[0]}")
            continue
        parts = found if isinstance(found, tuple) else (found,)
        record = next((part for part in parts if isinstance(part, dict) and "accuracy_gate" in part), {})
        gate = record.get("accuracy_gate", {})
        log.info(
            "%s precision='auto' runs %s on this CPU (accuracy gate: %s)", label, candidate, gate.get("summary", "")
        )
        return candidate, found
    log.info("%s precision='auto' runs fp32 on this CPU (%s)", label, "; ".join(reasons) or "no reduced precision")
    return "fp32", None


def pick_recorded(
    meta: BundleMeta,
    cache_dir: Optional[str],
    order: Tuple[str, ...],
    validate: Callable[[str], None],
    key_of: Callable[[str], PrecisionKey],
    record_of: Callable[[str], Any],
    label: str,
    log: logging.Logger,
) -> Tuple[str, Any]:
    """A CPU backend's ``precision="auto"``: :func:`pick_gated_precision` over ``order``, each candidate checked by
    ``validate`` (ValueError: this CPU cannot run it), read by ``key_of`` (its record, nothing prepared) and opened
    by ``record_of`` (what the backend runs it from, prepared on first use where the backend may)."""

    def try_one(candidate: str) -> Any:
        validate(candidate)
        return record_of(candidate)

    def existing(candidate: str) -> GatedChoice:
        validate(candidate)
        return gated_choice(precision_root(meta, cache_dir), key_of(candidate))

    return pick_gated_precision(order, try_one, label, log, existing)


def gated_record(
    meta: BundleMeta, key: PrecisionKey, cache_dir: Optional[str], prepare: bool, label: str, doing: str, hint: str
) -> Tuple[Dict[str, Any], Optional[str]]:
    """``(record, artefact)`` of ``key`` (a CPU backend's reduced precision) for ``meta``'s bundle: its passing
    record, or, with none yet and ``prepare``, the one its row's preparer (``BackendSpec.prepare``, found by name:
    imported by name here on first use: no import statement of the runtime names ``zsseg_rt.prepare``) makes and gates now, said in a warning (``label`` the library,
    ``doing`` what preparing is: "quantising", "compiling"); ``hint`` says what to do where the preparer cannot be
    imported (``{exc}``: why)."""
    from .backends.table import backend_row

    def make() -> None:
        preparer = load_preparer(str(backend_row(key.backend).prepare), hint)
        preparer(meta.path, precision=key.precision, cache_dir=cache_dir)

    def announce(why: str) -> None:
        logging.getLogger("zsseg_rt.precision").warning(
            "%s precision=%r has no gated record for this CPU yet (%s): %s it now and gating it against ONNX Runtime "
            "fp32 (once; `zsseg build-engine BUNDLE --backend %s --precision %s` does it ahead)",
            label,
            key.precision,
            why,
            doing,
            key.backend,
            key.precision,
        )

    return find_or_prepare(precision_root(meta, cache_dir), key, prepare, make, announce)


def load_preparer(spec: str, hint: str) -> Callable[..., Any]:
    """The preparer ``"module:name"`` (``zsseg_rt.prepare``, a layer above: read by name when a precision is
    prepared and gated, never imported at module level); a missing preparer is an ImportError with ``hint``
    (``{exc}``: the cause)."""
    try:
        return resolve_reference(spec)
    except ImportError as exc:
        raise ImportError(hint.format(exc=exc)) from exc


def find_or_prepare(
    root: str,
    key: PrecisionKey,
    prepare: bool,
    make: Callable[[], Any],
    announce: Callable[[str], None],
    force: bool = False,
) -> Tuple[Dict[str, Any], Optional[str]]:
    """:func:`find_record`, or, with no record yet and ``prepare``, ``announce(why)`` then ``make()`` (prepare and
    gate it; records a refusal) and find it again. A refused record, or none with ``prepare=False``, raises.
    ``force``: prepare again whatever is recorded (announced as ``"--force: the gate runs again"``)."""
    try:
        if force:
            raise PrecisionRecordError("--force: the gate runs again")
        return find_record(root, key)
    except PrecisionRecordError as exc:
        if not prepare or isinstance(exc, PrecisionGateRefused):
            raise
        announce(str(exc).splitlines()[0])
        make()
        return find_record(root, key)
