"""What a backend is: a :class:`GraphRunner` runs a bundle's graphs by role; a pipeline wires its roles once.

A runner opens the graphs of the roles it is given (``graph_files(meta.pipeline)``: windowed bundles "image",
"head", "text"; two-stage bundles "mask", "clip_image", "text") and runs them on NumPy arrays:
``run(role, feeds, outputs) -> [arrays]``. ``batch_limit(role, input)`` is the largest leading dimension it accepts
for that input (a TensorRT profile's), or None. The pipelines' role objects (:class:`WindowedGraphs`,
:class:`TwoStageGraphs`) are the only code that names the graphs' tensors: every runner serves every pipeline whose
roles it opens.

:class:`Backend` is the older interface (``encode_image``, ``head``, ``encode_text``) a user may still implement
and pass as ``Engine(backend=obj)``: the windowed pipeline uses such an object as it is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

from zsseg_rt.bundle import BundleMeta, Names
from zsseg_rt.options import ENGINE_OPTIONS, OptionValues

__all__ = [
    "Backend",
    "Features",
    "GraphRunner",
    "OpenRequest",
    "RoleGraphs",
    "TwoStageGraphs",
    "WindowedGraphs",
    "runner_factory",
]

Features = Dict[str, np.ndarray]


@runtime_checkable
class GraphRunner(Protocol):
    """Runs a bundle's graphs by role. Attributes: ``name`` (its table row), ``precision`` (what runs),
    ``requested_precision`` (what was asked for) and ``precision_record`` (the accuracy-gate record a reduced
    precision runs under, or None)."""

    name: str
    precision: str

    def run(self, role: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> List[np.ndarray]:
        """The graph of ``role`` on ``feeds`` (tensor name -> array); the ``outputs`` named, in that order."""
        ...

    def batch_limit(self, role: str, input: str) -> Optional[int]:
        """The largest leading dimension the graph of ``role`` accepts for its input ``input``; None: no limit."""
        ...


class Backend:
    """The role interface of a windowed bundle: NumPy in, NumPy out. Image features are a dict keyed by the bundle's
    image-encoder output names (ZegCLIP: ``image_global [B,D]``, ``patches [B,N,D]``), in meta.json's order. A user's
    own object of this kind runs as it is (``Engine(bundle, backend=obj)``)."""

    name = "abstract"

    def encode_image(self, images: np.ndarray) -> Features:
        """``[B,3,S,S]`` float32 -> image features."""
        raise NotImplementedError

    def head(self, text: np.ndarray, features: Features) -> np.ndarray:
        """``text [C,D]`` + image features -> ``mask_logits [B,C,h,w]``."""
        raise NotImplementedError

    def encode_text(self, tokens: np.ndarray) -> np.ndarray:
        """``[P,L]`` int32 token ids -> ``[P,D]`` L2-normalised embeddings."""
        raise NotImplementedError


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


class RoleGraphs:
    """A pipeline's roles over a :class:`GraphRunner`: calls are split into chunks the runner accepts
    (``batch_limit``) and put together again. Everything else (``name``, ``precision``, ``precision_record``,
    a runner's own attributes such as ``providers`` or ``device_executor``) is the runner's."""

    roles: Tuple[str, ...] = ()

    def __init__(self, runner: Any, meta: BundleMeta):
        self.runner = runner
        self._io = meta.io

    def __getattr__(self, name: str) -> Any:
        if name in ("runner", "_io") or name.startswith("__"):  # not yet set (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.runner, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.runner!r})"

    def outputs(self, role: str) -> List[str]:
        return list(self._io[role]["outputs"])

    def run_batched(
        self, role: str, batched: Mapping[str, np.ndarray], fixed: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> List[np.ndarray]:
        """``run(role, ...)`` on ``batched`` inputs (one leading dimension) with ``fixed`` ones beside them, in
        chunks of the runner's ``batch_limit`` for the first batched input; outputs concatenated along axis 0."""
        first = next(iter(batched))
        total = len(batched[first])
        step = self.runner.batch_limit(role, first) or total or 1
        if step >= total:
            return self.runner.run(role, {**batched, **fixed}, list(outputs))
        parts = [
            self.runner.run(role, {**{k: v[i : i + step] for k, v in batched.items()}, **fixed}, list(outputs))
            for i in range(0, total, step)
        ]
        return [np.concatenate([part[k] for part in parts]) for k in range(len(outputs))]

    def encode_text(self, tokens: np.ndarray) -> np.ndarray:
        """``[P,L]`` int32 token ids -> ``[P,D]`` L2-normalised embeddings."""
        feeds = {Names.TOKENS: np.ascontiguousarray(tokens, dtype=np.int32)}
        return self.run_batched("text", feeds, {}, self.outputs("text"))[0]


class WindowedGraphs(RoleGraphs, Backend):
    """The windowed pipeline's roles: ``encode_image``, ``head`` and ``encode_text`` (the :class:`Backend`
    interface) over a runner of the graphs "image", "head" and "text"."""

    roles = ("image", "head", "text")

    def __init__(self, runner: Any, meta: BundleMeta):
        RoleGraphs.__init__(self, runner, meta)

    @property
    def name(self) -> str:  # type: ignore[override]
        return str(self.runner.name)

    def encode_image(self, images: np.ndarray) -> Features:
        names = self.outputs("image")
        return dict(zip(names, self.run_batched("image", {Names.IMAGE: _f32(images)}, {}, names)))

    def head(self, text: np.ndarray, features: Features) -> np.ndarray:
        fixed = {Names.TEXT_EMBEDDINGS: text}
        return self.run_batched("head", dict(features), fixed, self.outputs("head"))[0]


class TwoStageGraphs(RoleGraphs):
    """The two-stage pipeline's roles: ``masks``, ``encode_crops`` and ``encode_text`` over a runner of the graphs
    "mask", "clip_image" and "text"."""

    roles = ("mask", "clip_image", "text")

    @property
    def name(self) -> str:
        return str(self.runner.name)

    def masks(self, image: np.ndarray, text: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``image [1,3,H,W]``, ``text [C,D]`` -> ``(class_logits [1,Q,C+1], query_masks [1,Q,H/4,W/4])``."""
        feeds = {Names.IMAGE: _f32(image), Names.TEXT_EMBEDDINGS: text}
        logits, masks = self.runner.run("mask", feeds, [Names.CLASS_LOGITS, Names.QUERY_MASKS])
        return logits, masks

    def encode_crops(self, crops: np.ndarray) -> np.ndarray:
        """``[N,3,S,S]`` CLIP-normalised crops -> ``[N,D]`` L2-normalised embeddings."""
        return self.run_batched("clip_image", {Names.CROPS: _f32(crops)}, {}, [Names.CROP_EMBEDDINGS])[0]


# A pipeline's role object for a runner: WindowedGraphs or TwoStageGraphs
RoleAdapter = Callable[[Any, BundleMeta], Any]


@dataclass(frozen=True)
class OpenRequest:
    """What the Engine asks of a row's factory: the bundle, the graph roles to open, the Engine's options by name
    (``values``: every row of ``zsseg_rt.options.ENGINE_OPTIONS``, read by attribute, ``request.values.threads``:
    a row a backend reads is read here, nothing between the Engine and the runner hands it on), and the backend's
    own ``options`` (``cache_dir``, ``prepare``, ``engine_paths``, ...). ``device``, ``threads``, ``precision`` (the
    row's default filled in by ``make_backend``), ``verify`` and ``model`` are ``values``'."""

    meta: BundleMeta
    roles: Tuple[str, ...]
    values: OptionValues = field(default_factory=ENGINE_OPTIONS.defaults)
    options: Dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return str(self.values.device)

    @property
    def threads(self) -> int:
        return int(self.values.threads)

    @property
    def precision(self) -> Optional[str]:
        return self.values.precision

    @property
    def verify(self) -> bool:
        return bool(self.values.verify)

    @property
    def model(self) -> Any:
        return self.values.model


def runner_factory(build: Callable[[OpenRequest], Any]) -> Callable[..., Any]:
    """A row's factory written as ``build(request)``. ``make_backend`` hands it the Engine's options whole
    (``factory.from_request(OpenRequest(...))``); called as every row's factory is documented,
    ``factory(meta, roles, *, device, threads, precision, verify, model, **options)`` (docs/development.md "Adding a
    backend"), it reads the other options at their rows' defaults."""

    @functools.wraps(build)
    def factory(
        meta: BundleMeta,
        roles: Sequence[str],
        *,
        device: str = "auto",
        threads: int = 0,
        precision: Optional[str] = None,
        verify: bool = True,
        model: Any = None,
        **options: Any,
    ) -> Any:
        named = {"device": device, "threads": threads, "precision": precision, "verify": verify, "model": model}
        return build(OpenRequest(meta, tuple(roles), ENGINE_OPTIONS.defaults().replace(**named), dict(options)))

    factory.from_request = build  # type: ignore[attr-defined]
    return factory
