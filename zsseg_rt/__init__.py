"""zsseg_rt: open-vocabulary semantic segmentation runtime for edge GPUs (CLIP-based model families).

``import zsseg_rt`` is light: it needs neither torch, nor a GPU, nor TensorRT. Heavy pieces load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from zsseg_rt.aliases import install_moved  # noqa: E402 (standard library only)

# deprecated 2026-11-28 (0.1.x), removed in 0.2.0: the loose top-level modules moved into rooms (issue 80, item 4)
_MOVED = {
    "zsseg_rt.output_plan": "zsseg_rt.outputs.plan",
    "zsseg_rt.output_owner": "zsseg_rt.outputs.owner",
    "zsseg_rt.cli_errors": "zsseg_rt.console.errors",
    "zsseg_rt.cli_types": "zsseg_rt.console.arguments",
    "zsseg_rt.progress": "zsseg_rt.console.progress",
    "zsseg_rt.speed": "zsseg_rt.console.speed",
    "zsseg_rt.signal_phases": "zsseg_rt.console.signal_phases",
    # the output kinds and their sinks left zsseg_rt/stream/ for the outputs room (issue 80, item 2)
    "zsseg_rt.stream.output_kinds": "zsseg_rt.outputs.kinds",
    **{
        f"zsseg_rt.stream.{name}": f"zsseg_rt.outputs.{name}"
        for name in (
            "sink_base sinks file_sinks video_writers mcap_sink foxglove_sink coco_sink robot_sinks ros_messages"
            " object_messages labels result_outputs camera_outputs loopback"
        ).split()
    },
}
install_moved(_MOVED, "deprecated since 2026-11-28, removed in 0.2.0")

_LAZY = {
    "Engine": ("zsseg_rt.runtime", "Engine"),
    "Result": ("zsseg_rt.runtime", "Result"),
    "ObjectTracker": ("zsseg_rt.runtime.tracking", "ObjectTracker"),
    "create_model": ("zsseg_rt.models", "create_model"),
}


def __getattr__(name):  # PEP 562 lazy attributes
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'zsseg_rt' has no attribute {name!r}")


__all__ = ["Engine", "ObjectTracker", "Result", "create_model", "__version__"]
