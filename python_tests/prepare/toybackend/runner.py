"""The toy backend's runner: ONNX Runtime's, on a copy of the image encoder for "int8" (the record's artefact)."""

from zsseg_rt.runtime.backends.onnxruntime import OrtRunner
from zsseg_rt.runtime.backends.table import check_precision

from .precision import NAME, image_encoder


def open_toy(meta, roles, *, device, threads, precision, model, verify, cache_dir=None, prepare=True, **options):
    """The row's factory: the graphs of ``roles``; "int8" from its gated record."""
    check_precision(NAME, precision)
    record, artefact = image_encoder(meta, precision, cache_dir, prepare) if precision != "fp32" else (None, None)
    runner = OrtRunner(meta, roles, "cpu", threads, image_encoder=artefact)
    runner.name, runner.precision, runner.requested_precision, runner.precision_record = (
        NAME,
        precision,
        precision,
        record,
    )
    return runner
