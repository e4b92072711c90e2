"""Runtime pipelines: what the Engine runs for a bundle, chosen by the ``pipeline`` its meta.json names (older
bundles get it from ``zsseg_rt.bundle.migrate``). Pipelines are named for what they do, know no model family and
import no torch.

* ``"windowed"`` (:class:`WindowedPipeline`): an image encoder and a head per sliding window, the shared
  post-processing.
* ``"two_stage"`` (:class:`TwoStagePipeline`): mask proposals classified against the text, then CLIP's image tower
  on every proposal's crop (TensorRT on its host path).

The backends that serve each are the table's rows whose roles cover the pipeline's (``Pipeline.backend_names()``).
"""

from __future__ import annotations

from typing import Dict, List, Type

from .base import Pipeline, PreparedVocabulary
from .two_stage import TwoStagePipeline
from .windowed import WindowedPipeline

__all__ = [
    "Pipeline",
    "PreparedVocabulary",
    "WindowedPipeline",
    "TwoStagePipeline",
    "register_pipeline",
    "pipeline_class",
    "pipeline_kinds",
]

_PIPELINES: Dict[str, Type[Pipeline]] = {}


def register_pipeline(cls: type) -> type:
    """Make bundles whose meta.json names ``cls.kind`` run with ``cls`` (a :class:`Pipeline` subclass)."""
    if not (isinstance(cls, type) and issubclass(cls, Pipeline)) or not cls.kind:
        raise TypeError(f"a runtime pipeline must be a Pipeline subclass with a kind, got {cls!r}")
    _PIPELINES[cls.kind] = cls
    return cls


def pipeline_class(kind: str) -> Type[Pipeline]:
    """The pipeline class of a bundle's ``meta.pipeline`` (ValueError naming the known kinds)."""
    try:
        return _PIPELINES[kind]
    except KeyError:
        raise ValueError(f"unknown runtime pipeline {kind!r}; known: {pipeline_kinds()}") from None


def pipeline_kinds() -> List[str]:
    return sorted(_PIPELINES)


register_pipeline(WindowedPipeline)
register_pipeline(TwoStagePipeline)
