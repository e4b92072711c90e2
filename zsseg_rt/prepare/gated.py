"""What preparing a CPU backend's gated reduced precision shares (ONNX Runtime int8 / bf16, ``onnxruntime.py``;
OpenVINO bf16 / int8, ``openvino.py``): reuse the record of this setup, or make the artefact, run the
accuracy gate and record the result beside the bundle (``runtime/precision_records.py``)."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from zsseg_rt.bundle import BundleMeta, Files
from zsseg_rt.runtime.cpu_features import cpu_features
from zsseg_rt.runtime.file_verification import verify_bundle_files
from zsseg_rt.runtime.precision_records import (
    PrecisionKey,
    PrecisionRecordError,
    find_record,
    precision_root,
    record_dir,
    write_record,
)

LOG = logging.getLogger("zsseg_rt.precision")

__all__ = ["prepare_gated_record", "quieter"]

# make(folder, extra) -> (artefact path or None, the gate's report as a dict)
MakeAndGate = Callable[[str, Dict[str, Any]], Tuple[Optional[str], Dict[str, Any]]]


def prepare_gated_record(
    meta: BundleMeta,
    key: PrecisionKey,
    cache_dir: Optional[str],
    force: bool,
    doing: str,
    make: MakeAndGate,
    library: str,
    advice: str,
) -> Dict:
    """The record of ``key`` for ``meta``'s bundle: the one kept in ``cache_dir`` (default ``<bundle>/engines``)
    unless ``force`` or none usable is there (logged: ``doing`` "gating" / "preparing", the backend, the precision,
    why); else the bundle's graphs are verified, ``make(folder, extra)`` writes the artefact (if any) into the
    record's folder, adds what it did to ``extra`` (which starts with the CPU's summary) and runs the gate, and the
    record is written.

    Raises:
        EngineAccuracyError: the gate failed and was not accepted (the record is written, marked refused); its
            message is the gate's summary, then "``library`` ``precision`` is refused on this CPU (recorded in
            FOLDER); use ``advice``".
    """
    root = precision_root(meta, cache_dir)
    if not force:
        try:
            return find_record(root, key)[0]
        except PrecisionRecordError as exc:
            LOG.info("%s %s %s (%s)", doing, key.backend, key.precision, str(exc).splitlines()[0])
    verify_bundle_files(meta, [Files.IMAGE_ENCODER, Files.HEAD, Files.TEXT_ENCODER])
    folder = record_dir(root, key)
    os.makedirs(folder, exist_ok=True)
    extra: Dict[str, Any] = {"cpu": cpu_features().summary()}
    artefact, gate = make(folder, extra)
    write_record(root, key, gate, artefact=artefact, extra=extra)
    if not gate["accepted"]:
        from zsseg_rt.prepare.gate import EngineAccuracyError

        raise EngineAccuracyError(
            f"{gate['summary']}. {library} {key.precision} is refused on this CPU (recorded in {folder!r}); use "
            f"{advice}"
        )
    return find_record(root, key)[0]


@contextlib.contextmanager
def quieter(logger: logging.Logger, level: int) -> Iterator[None]:
    """``logger`` logs only from ``level`` up (or as it did, when that is higher) inside the block: a quantiser's
    chatter kept out of the user's log."""
    before = logger.level
    logger.setLevel(max(before, level))
    try:
        yield
    finally:
        logger.setLevel(before)
