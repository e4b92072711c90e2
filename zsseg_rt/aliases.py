"""Every deprecated import path of the package, in one map (:data:`MOVED`, and :data:`MOVED_PACKAGES` for a package
moved with all its modules): the old name hands out the very module of the new path (same classes, same state: a
test that patches one patches the other), with a ``DeprecationWarning`` naming the new path and the release that
removes it. One finder (:class:`MovedModules`) serves the whole map; ``import zsseg_rt`` installs it, so an old path
works whichever package of the old name was imported first. CHANGELOG.md lists every move.

:func:`resolve_reference` is the one reader of a ``"module:attr"`` reference (a table row that names a registry,
a factory, a preparer or a family's class by string, imported only when asked): the option table, the backend
table, the precision records and the family contract read theirs with it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["MOVED", "MOVED_PACKAGES", "MovedModules", "install_moved", "moved_to", "resolve_reference"]


REMOVAL = "removed in 0.2.0"


def _moves(since: str, pairs: Mapping[str, str]) -> Dict[str, Tuple[str, str]]:
    return {old: (new, since) for old, new in pairs.items()}


def _room(old: str, new: str, names: str) -> Dict[str, str]:
    return {f"{old}.{name}": f"{new}.{name}" for name in names.split()}


# old module -> (new module, the date it was deprecated); each group says why
MOVED: Dict[str, Tuple[str, str]] = {
    # each backend's modules moved into its folder
    **_moves("2026-11-26", {
        "zsseg_rt.runtime.ort_precision": "zsseg_rt.runtime.backends.onnxruntime.precision",
        "zsseg_rt.runtime.openvino_backend": "zsseg_rt.runtime.backends.openvino",
        "zsseg_rt.runtime.tensorrt": "zsseg_rt.runtime.backends.tensorrt.engines",
    }),
    # the preparation modules moved to zsseg_rt.prepare
    **_moves("2026-11-26", {
        "zsseg_rt.export.accuracy_gate": "zsseg_rt.prepare.gate",
        "zsseg_rt.export.two_stage_gate": "zsseg_rt.prepare.gate_two_stage",
        "zsseg_rt.export.gated_precision": "zsseg_rt.prepare.gated",
        "zsseg_rt.export.auto_precision": "zsseg_rt.prepare.auto",
        "zsseg_rt.export.ort_quantize": "zsseg_rt.prepare.onnxruntime",
        "zsseg_rt.export.openvino_precision": "zsseg_rt.prepare.openvino",
        "zsseg_rt.export.tensorrt": "zsseg_rt.prepare.tensorrt.build",
        "zsseg_rt.export.trt_compat": "zsseg_rt.prepare.tensorrt.compat",
        "zsseg_rt.export.trt_op_rules": "zsseg_rt.prepare.tensorrt.op_rules",
        "zsseg_rt.export.trt_profile_check": "zsseg_rt.prepare.tensorrt.profile_check",
        "zsseg_rt.export.trt_precision": "zsseg_rt.prepare.tensorrt.precision",
        "zsseg_rt.export.trt_memory": "zsseg_rt.prepare.tensorrt.memory",
        "zsseg_rt.export.progress": "zsseg_rt.console.progress",
    }),
    # the device pipeline's modules moved into runtime/device/
    **_moves("2026-11-27", _room("zsseg_rt.runtime", "zsseg_rt.runtime.device",
        "buffer_views cuda_driver cuda_graphs cuda_memory device_pipeline device_video in_flight postprocess_plans "
        "stage_timing")),
    # the family contract got its own package
    **_moves("2026-11-27", {
        "zsseg_rt.models.family": "zsseg_rt.contract.family",
        "zsseg_rt.models.registry": "zsseg_rt.contract.registry",
    }),
    # the loose top-level modules moved into rooms
    **_moves("2026-11-28", {
        "zsseg_rt.output_plan": "zsseg_rt.outputs.plan",
        "zsseg_rt.output_owner": "zsseg_rt.outputs.owner",
        "zsseg_rt.cli_errors": "zsseg_rt.console.errors",
        "zsseg_rt.cli_types": "zsseg_rt.console.arguments",
        "zsseg_rt.progress": "zsseg_rt.console.progress",
        "zsseg_rt.speed": "zsseg_rt.console.speed",
        "zsseg_rt.signal_phases": "zsseg_rt.console.signal_phases",
    }),
    # the output kinds and their sinks left zsseg_rt/stream/ for the outputs room
    **_moves("2026-11-28", {"zsseg_rt.stream.output_kinds": "zsseg_rt.outputs.kinds", **_room(
        "zsseg_rt.stream", "zsseg_rt.outputs",
        "sink_base sinks file_sinks video_writers mcap_sink foxglove_sink coco_sink robot_sinks ros_messages "
        "object_messages labels result_outputs loopback"), "zsseg_rt.stream.camera_outputs": "zsseg_rt.outputs.run_outputs"}),
    # one front end for every command's outputs: CameraOutputs and ResultOutputs merged (CameraOutputs, its old name, kept)
    **_moves("2026-11-29", {"zsseg_rt.outputs.camera_outputs": "zsseg_rt.outputs.run_outputs"}),
    # stream/'s modules moved into its rooms
    **_moves("2026-11-28", {
        **_room("zsseg_rt.stream", "zsseg_rt.stream.video_filter", "temporal video video_metrics lookahead filter_arrays"),
        "zsseg_rt.stream.ffmpeg_log": "zsseg_rt.stream.sources.ffmpeg_log",  # FFmpeg's messages of one source
        "zsseg_rt.stream.capabilities": "zsseg_rt.console.opencv_build",  # shared with the outputs (no arrow up)
        **_room("zsseg_rt.stream", "zsseg_rt.stream.loop",
                "runner flight live session session_options session_summary protocols capture vocabulary"),
    }),
}  # fmt: skip
# a package moved with every module in it: old package -> (new package, since); ``old.X`` is ``new.X``
MOVED_PACKAGES: Dict[str, Tuple[str, str]] = {
    "zsseg_rt.models.common": ("zsseg_rt.contract.common", "2026-11-27"),  # what the families share
}


def moved_to(fullname: str) -> Optional[Tuple[str, str]]:
    """(new module name, since) of a deprecated ``fullname``, or None."""
    if fullname in MOVED:
        return MOVED[fullname]
    for old, (new, since) in MOVED_PACKAGES.items():
        if fullname == old or fullname.startswith(old + "."):
            return new + fullname[len(old) :], since
    return None


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The finder of :data:`MOVED` and :data:`MOVED_PACKAGES`: importing an old name returns the new module."""

    def __init__(self) -> None:
        self._specs: Dict[str, Any] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        found = moved_to(fullname)
        if found is None:
            return None
        if fullname not in MOVED and importlib.util.find_spec(found[0]) is None:  # no such module in the package
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        new, since = moved_to(spec.name)  # type: ignore[misc]
        warnings.warn(
            f"{spec.name} is deprecated (deprecated since {since}, {REMOVAL}): import {new}",
            DeprecationWarning,
            stacklevel=3,
        )
        module = importlib.import_module(new)
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:  # already executed under its new name: give its own spec back
        module.__spec__ = self._specs.pop(module.__name__, module.__spec__)


def install_moved() -> None:
    """Put the one :class:`MovedModules` finder first on ``sys.meta_path`` (once; ``import zsseg_rt`` does it)."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())


def resolve_reference(reference: str) -> Any:
    """The object ``"package.module:attr[.attr]"`` names, its module imported now (ValueError, in one line, for a
    reference that does not read ``module:attribute``; the import's own error for a module that is not there)."""
    module, _, attr = str(reference).partition(":")
    if not module or not attr:
        raise ValueError(f"a reference reads 'module:attribute', got {reference!r}")
    found: Any = importlib.import_module(module)
    for part in attr.split("."):
        found = getattr(found, part)
    return found
