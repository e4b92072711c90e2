"""Exception types shared by layers that must not import each other. A leaf module: it imports nothing."""

from __future__ import annotations

__all__ = ["BundleError"]


class BundleError(RuntimeError):
    """A bundle is missing, incomplete, corrupted or incompatible (``zsseg_rt.bundle.BundleError``)."""
