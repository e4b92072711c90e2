"""``CameraOutputs``, the name the stream loop used for the outputs of a run: since 2026-11-29 every command's
outputs have one front end, :class:`zsseg_rt.outputs.run_outputs.RunOutputs` (``zsseg camera``'s and a ``Session``'s
through :meth:`~zsseg_rt.outputs.run_outputs.RunOutputs.plan_for`)."""

from __future__ import annotations

from .run_outputs import PYTHON_WORDS, RunOutputs, input_paths

__all__ = ["CameraOutputs", "PYTHON_WORDS", "input_paths"]

CameraOutputs = RunOutputs
