"""The OpenVINO backend, in one place: its runner and the row's factory (``runner.py``), the compiled graphs and
their cache (``graphs.py``) and its precisions (``precision.py``: bf16 / NNCF int8 and their gate records). What
prepares them is ``zsseg_rt.prepare.openvino``."""

from .graphs import (
    CACHE_RECORD,
    COMPILE_LOCK,
    OpenVinoGraphs,
    check_openvino_device,
    compile_lock,
    openvino_cache_key,
    openvino_config,
)
from .precision import (
    AUTO_ORDER,
    INT8_INSTRUCTIONS,
    gate_key,
    gated_choices,
    openvino_precision_record,
    openvino_version,
    resolve_openvino_precision,
    validate_openvino_precision,
)
from .runner import OpenVinoRunner, open_openvino

__all__ = [
    "AUTO_ORDER",
    "CACHE_RECORD",
    "COMPILE_LOCK",
    "INT8_INSTRUCTIONS",
    "OpenVinoGraphs",
    "OpenVinoRunner",
    "check_openvino_device",
    "compile_lock",
    "gate_key",
    "gated_choices",
    "open_openvino",
    "openvino_cache_key",
    "openvino_config",
    "openvino_precision_record",
    "openvino_version",
    "resolve_openvino_precision",
    "validate_openvino_precision",
]
