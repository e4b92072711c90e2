"""The OpenVINO runner: a bundle's graphs compiled by OpenVINO for the CPU (``graphs.py``: threads, one stream, the
compiled-model cache; ``precision.py``: the precision asked for and checked). Each graph runs under a lock of its own
(an OpenVINO infer request is not thread-safe). ``device`` must be "cpu" or "auto".

``precision``: "fp32" (default, exact), "bf16" (the image encoder in bf16 on a CPU with AMX-BF16 / AVX-512-BF16,
the other graphs f32), "int8" (the image encoder quantised by NNCF, on a CPU with VNNI / AMX-INT8) or "auto" (the
fastest precision whose gate passed on this CPU, else fp32); a reduced precision runs only after its accuracy gate
passed here (prepared on first use unless ``prepare=False``) and only on a windowed bundle's image encoder.
``precision`` then holds what runs, ``requested_precision`` what was asked for, ``precision_record`` the gate record
it runs under. ``gated=False`` skips the record check (the accuracy gate's own candidate, int8 with its
``image_model``)."""

from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

import numpy as np

from zsseg_rt.bundle import BundleMeta

from ..base import OpenRequest, runner_factory

__all__ = ["OpenVinoRunner", "open_openvino"]

NAME = "openvino"


class OpenVinoRunner:
    """The bundle's graphs under OpenVINO (module docstring); ``graphs`` is the compiled
    :class:`~zsseg_rt.runtime.backends.openvino.graphs.OpenVinoGraphs`."""

    name = NAME

    def __init__(
        self,
        meta: BundleMeta,
        device: str = "auto",
        threads: int = 0,
        precision: str = "fp32",
        *,
        cache_dir: Optional[str] = None,
        prepare: bool = True,
        gated: bool = True,
        image_model: Optional[str] = None,
    ):
        from ...signal_stack import ensure_signal_stack
        from .graphs import OpenVinoGraphs, check_openvino_device  # imports openvino itself
        from .precision import resolve_openvino_precision, validate_openvino_precision

        check_openvino_device(device)
        ensure_signal_stack()  # OpenVINO may use AMX tile state: Python's signal handlers must still fit their stack
        self.requested_precision = precision
        self.precision_record: Optional[dict] = None
        windowed = getattr(meta, "pipeline", "windowed") == "windowed"
        if not windowed and precision not in ("fp32", "auto"):
            raise ValueError(
                f"the openvino backend runs {meta.pipeline} bundles in fp32 only, got precision={precision!r}: the "
                "accuracy gate compares windowed pipelines"
            )
        if not windowed:
            validate_openvino_precision(precision)
            precision = "fp32"
        elif gated:
            precision, self.precision_record, image_model = resolve_openvino_precision(
                meta, precision, cache_dir, prepare
            )
        else:
            validate_openvino_precision(precision)
        self.precision = precision
        self.graphs = OpenVinoGraphs(meta, precision, threads, cache_dir, image_model)

    def run(self, role: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> List[np.ndarray]:
        return self.graphs.run(role, feeds, list(outputs))

    def batch_limit(self, role: str, input: str) -> Optional[int]:
        return None


@runner_factory
def open_openvino(request: OpenRequest) -> OpenVinoRunner:
    """The table row's factory: the bundle's graphs compiled (every graph of its pipeline), verified first."""
    meta = request.meta
    if request.verify:  # the graphs OpenVINO is about to compile
        from zsseg_rt.bundle import graph_files

        from ...file_verification import verify_bundle_files

        verify_bundle_files(meta, sorted(graph_files(getattr(meta, "pipeline", "windowed")).values()))
    precision = request.precision or "fp32"
    return OpenVinoRunner(meta, request.device, request.threads, precision, **request.options)
