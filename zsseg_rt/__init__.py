"""zsseg_rt: open-vocabulary semantic segmentation runtime for edge GPUs (CLIP-based model families).

``import zsseg_rt`` is light: it needs neither torch, nor a GPU, nor TensorRT. Heavy pieces load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from zsseg_rt.aliases import install_moved  # noqa: E402 (standard library only)

# every deprecated import path of the package, served by one finder (zsseg_rt.aliases.MOVED)
install_moved()

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
