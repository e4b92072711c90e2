"""The toy backend's precisions: checked against its row, their records keyed and read (nothing prepared here)."""

from zsseg_rt.runtime.backends.table import backend_row, check_precision
from zsseg_rt.runtime.precision_records import (
    PrecisionKey,
    find_or_prepare,
    gated_choices_of,
    load_preparer,
    precision_root,
)

NAME = "toy"


def precision_key(meta, precision: str) -> PrecisionKey:
    return PrecisionKey.of_image_encoder(meta, NAME, precision, "toy 1.0", "cpu any", {"version": 1})


def gated_choices(meta, cache_dir=None):
    """The row's ``gated_choices``: its int8 from its record (the ``auto`` policy's candidates)."""
    check = lambda precision: check_precision(NAME, precision)  # noqa: E731
    return gated_choices_of(NAME, meta, cache_dir, ("int8",), check, lambda p: precision_key(meta, p))


def image_encoder(meta, precision: str, cache_dir=None, prepare: bool = True):
    """``(record, artefact)`` of the int8 image encoder: its gated record, prepared on first use when ``prepare``."""
    preparer = load_preparer(str(backend_row(NAME).prepare), "the toy preparer is missing ({exc})")
    return find_or_prepare(
        precision_root(meta, cache_dir),
        precision_key(meta, precision),
        prepare,
        lambda: preparer(meta.path, precision, cache_dir=cache_dir),
        lambda why: None,
    )
