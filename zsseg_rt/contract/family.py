"""What a model family is to the rest of zsseg_rt: the :class:`Family` protocol and its base implementation.

A family (ZegCLIP, CLIP-RC, ZegFormer, ...) is a plugin. Its package ``zsseg_rt/models/<family>/`` registers one
object implementing :class:`Family` (``register_family`` in :mod:`zsseg_rt.contract.registry`) when it is imported;
the registry imports every family package on first use. Generic layers (runtime, pipeline, bundle, export, eval,
train, scale, stream, the CLI, data, ops, ``contract/common``) reach a family only through that object: they never
import a family's modules and never compare a family's name.

A family is slim: its identity, its factories (configs and models) and four capability objects, each the one place
an engine asks about one thing: :class:`Checkpoints` (native and official checkpoints, ``zsseg convert``),
:class:`Export` (``zsseg export`` and the bundles' runtime declarations), :class:`Evaluation` (protocol, options,
per-dataset settings, PyTorch inference) and :class:`Training` (``None`` for a family that is not trained).

:class:`ModelFamily` implements the protocol from a registration: the members a family must give are its fields
(``"module:attr"`` references, imported on first use so that registering a family imports neither torch nor
open_clip) and the capability classes it uses; every capability member has the default written below (what a
ZegCLIP-like model with ``encode_image`` / ``decode`` needs). A family changes a capability by subclassing it in
its own ``family.py`` and naming the subclass in its registration (``export=MyExport``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    runtime_checkable,
)

from zsseg_rt.aliases import resolve_reference

if TYPE_CHECKING:  # pragma: no cover - types only
    import numpy as np

__all__ = [
    "Family",
    "ModelFamily",
    "Checkpoints",
    "Export",
    "ModelExport",
    "Evaluation",
    "Training",
    "FamilyArgument",
    "ExportArgument",
    "resolve_ref",
    "WINDOWED",
    "GENERALIZED_ZERO_SHOT",
    "EVALUATION_SETTINGS",
    "SYNONYM_RULES",
]

WINDOWED = "windowed"  # runtime pipeline kind of image encoder + head + text encoder bundles (zsseg_rt.runtime)
GENERALIZED_ZERO_SHOT = "generalized_zero_shot"  # evaluation protocol: mIoU(seen), mIoU(unseen), hIoU (eval/)
# What an evaluation of a bundle runs with (``zsseg eval --settings``): the family's official per-dataset test
# settings where it has them, or the bundle's own.
EVALUATION_SETTINGS = ("official", "bundle")
# How a class with several names (synonyms) is scored (``Export.synonym_rule``, meta.json ``postprocess.synonyms``).
SYNONYM_RULES = ("mean", "max")


# ``"package.module:attr[.attr]"`` -> the object (imports the module): the package's one resolver
resolve_ref = resolve_reference


@dataclass(frozen=True)
class FamilyArgument:
    """A command-line option that only some families take (``zsseg export``: :meth:`Export.arguments`;
    ``zsseg eval``: :meth:`Evaluation.arguments`; ``zsseg convert``: :meth:`Checkpoints.conversion_arguments`): ``flags`` and ``argparse`` keyword arguments. The
    commands add every family's options, so a generic command names no family's option itself."""

    flags: Tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        """The attribute name argparse stores it under (``--text-weights`` -> ``text_weights``)."""
        return str(self.options.get("dest") or self.flags[0].lstrip("-").replace("-", "_"))

    @property
    def default(self) -> Any:
        """The value argparse stores when the option is not given."""
        return self.options.get("default")


ExportArgument = FamilyArgument  # the name before ``zsseg eval`` took family options too


@runtime_checkable
class Family(Protocol):
    """The members every registered model family has (``zsseg_rt.models.get_family(name)``).

    Identity
        ``name`` (registry key, ``"family"`` in configs, ``architecture.family`` in bundle meta.json),
        ``display_name`` (how messages name it), ``label`` (``display_name``, else ``name``), ``description``,
        ``order`` (listing order), ``default`` (configs and native checkpoints that name no family belong to the
        default family: they predate families), ``public_names`` (names ``zsseg_rt.models`` exports for it:
        name -> ``"module:attr"``).
    Factories
        :meth:`config_cls`, :meth:`load` (any spec -> config), :meth:`config_aliases` (short names of bundled
        configs), :meth:`configs_dir` (its bundled ``configs/*.json``), :meth:`model_cls`, :meth:`build` (create a
        model from a spec).
    Capabilities
        ``checkpoints`` (:class:`Checkpoints`), ``export`` (:class:`Export`), ``evaluation`` (:class:`Evaluation`),
        ``training`` (:class:`Training`, or None when its models are not trained).
    """

    name: str
    display_name: str
    description: str
    order: int
    default: bool
    public_names: Mapping[str, str]

    @property
    def label(self) -> str: ...

    def config_cls(self) -> type: ...

    def load(self, spec: Any, **overrides: Any) -> Any: ...

    def config_aliases(self, stem: str) -> List[str]: ...

    def configs_dir(self) -> Path: ...

    def model_cls(self) -> type: ...

    def build(self, spec: Any, pretrained: Optional[str] = None, device: Any = None, **overrides: Any) -> Any: ...

    @property
    def checkpoints(self) -> "Checkpoints": ...

    @property
    def export(self) -> "Export": ...

    @property
    def evaluation(self) -> "Evaluation": ...

    @property
    def training(self) -> Optional["Training"]: ...


class _Capability:
    """One capability of a :class:`ModelFamily`: its members read the family's registration (``self.family``)."""

    def __init__(self, family: "ModelFamily") -> None:
        self.family = family

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.family.name!r})"


class Checkpoints(_Capability):
    """A family's checkpoints: native directories (``model.safetensors`` + ``config.json``) and the papers'
    official ones (detected from their key names, imported, converted by ``zsseg convert``)."""

    @property
    def formats(self) -> Tuple[str, ...]:
        """The ``format`` prefixes of its native checkpoints (``"zsseg_rt.zegclip."``)."""
        return tuple(self.family.native_formats)

    @property
    def format(self) -> str:
        """The ``format`` it writes (``"zsseg_rt.zegclip.v1"``; empty: it writes none)."""
        return self.family.native_format

    def load_native(self, directory: Path, device: Any = None, **overrides: Any) -> Any:
        """A native checkpoint directory of this family as a model."""
        load = self.family.reference(self.family.native_loader, "native checkpoint loader")
        return load(directory, device=device, **overrides)

    def is_official(self, keys: Sequence[str]) -> bool:
        """Whether tensor names of an official checkpoint (``module.`` prefix removed) are this family's."""
        return bool(self.family.reference(self.family.official_keys)(keys)) if self.family.official_keys else False

    @property
    def converts_official(self) -> bool:
        """Whether ``zsseg convert`` takes this family's official checkpoints (it imports or converts them)."""
        return bool(self.family.official_converter or self.family.official_loader)

    def load_official(self, path: Any, config: Any = None, **kwargs: Any) -> Any:
        """Import an official checkpoint of this family (``return_report=True``: ``(model, report)``)."""
        load = self.family.reference(self.family.official_loader, "official checkpoint importer")
        return load(path, config=config, **kwargs)

    def conversion_arguments(self) -> Sequence[FamilyArgument]:
        """``zsseg convert`` flags of this family only (none by default); their values reach
        :meth:`convert_official` as keywords."""
        return ()

    def convert_official(
        self,
        src: Any,
        dst_dir: Any,
        config: Any = None,
        overwrite: bool = False,
        allow_missing_text_encoder: bool = False,
        **options: Any,
    ) -> Path:
        """Official checkpoint -> native checkpoint directory (``zsseg convert``); returns the directory.
        ``options``: the values of :meth:`conversion_arguments`. Default: :meth:`load_official` (with its report),
        written by ``contract.common.native_files.write_native``; a registration's ``official_converter`` replaces it."""
        if self.family.official_converter:
            convert = self.family.reference(self.family.official_converter)
            return convert(
                src,
                dst_dir,
                config=config,
                overwrite=overwrite,
                allow_missing_text_encoder=allow_missing_text_encoder,
                **options,
            )
        from zsseg_rt.contract.common.native_files import imported_extra, write_native

        model, report = self.load_official(
            src, config=config, return_report=True, allow_missing_text_encoder=allow_missing_text_encoder, **options
        )
        return write_native(model, dst_dir, self.format, extra=imported_extra(report, src), overwrite=overwrite)


class Export(_Capability):
    """How ``zsseg export`` writes a family's bundles, and what the bundles declare to the runtime.

    The generic exporter (``zsseg_rt.export``: image encoder, head and text encoder graphs) calls the graph members
    :meth:`image_outputs`, :meth:`encode_image`, :meth:`decode`, :meth:`postprocess` and :meth:`verify`; a family
    with a bundle layout of its own gives a :meth:`writer`."""

    @property
    def pipeline(self) -> str:
        """The runtime pipeline kind of its bundles (``zsseg_rt.runtime.pipelines``)."""
        return self.family.pipeline

    @property
    def synonym_rule(self) -> str:
        """How a vocabulary class with several names (``"person; man"``) is scored, as the family's official code
        does: ``"mean"``, every prompt of every name averaged into one embedding (ZegFormer's
        ``zeroshot_classifier``); ``"max"``, every name a row of its own and the class's probability the max over
        its names' (the training-free methods' ``postprocess_result``). Recorded as ``postprocess.synonyms``."""
        return self.family.synonym_rule

    def arguments(self) -> Sequence[FamilyArgument]:
        """``zsseg export`` flags of this family only (none by default)."""
        return ()

    def prepare(self, model: Any, options: Mapping[str, Any]) -> Any:
        """The model to export from a loaded one; ``options`` holds the values of :meth:`arguments`."""
        return model

    def writer(self, model: Any) -> Optional[Callable[..., Dict[str, Any]]]:
        """A bundle writer of the family's own, ``(model, tmp_dir, max_classes, opset, source, verify_images,
        extra_meta) -> verification report``, or None for the generic exporter (``zsseg_rt.export.onnx_export``).
        Refuses (raises) what it cannot export."""
        return None

    def image_outputs(self, model: Any) -> Tuple[str, ...]:
        """Names of the image encoder graph's outputs (default: ``image_global``, ``patches``)."""
        from zsseg_rt.bundle import Names

        return tuple(Names.IMAGE_ENCODER_OUTPUTS)

    def encode_image(self, model: Any, image: Any) -> Tuple[Any, ...]:
        """``image [B,3,S,S]`` -> the image encoder graph's outputs (default: ``model.encode_image(image)[:2]``)."""
        image_global, patches, _ = model.encode_image(image)
        return image_global, patches

    def decode(self, model: Any, text: Any, *features: Any, grid: Tuple[int, int]) -> Any:
        """``(text [C,D], *image features)`` -> ``mask_logits [B,C,h,w]`` (default: ``model.decode``)."""
        image_global, patches = features
        return model.decode(text, image_global, patches, grid)

    def postprocess(self, model: Any) -> Dict[str, Any]:
        """The ``postprocess`` table of meta.json (activation, logit scale, thresholds; default: sigmoid)."""
        return {"activation": "sigmoid"}

    def whole_image(self, model: Any) -> Optional[Dict[str, Any]]:
        """meta.json's ``whole_image`` section when the model's image graph takes any input size (whole-image
        inference; ``zsseg_rt.bundle.schema``), or None for a fixed-size image graph (default)."""
        return None

    def verify(self, model: Any, bundle_dir: str, images: Sequence[str]) -> Optional[Dict[str, Any]]:
        """The family's own check of a freshly written bundle (a report with ``passed``), or None for the generic
        graph-by-graph check against PyTorch."""
        return None

    def bundle_model(self, meta: Any, model: Any = None) -> Any:
        """The PyTorch model a bundle of this family runs on the torch backend: ``model`` when given, else the
        native checkpoint the bundle was exported from (meta.json ``source_checkpoint``)."""
        if model is not None:
            return model
        source = meta.raw.get("source_checkpoint")
        if not source:
            raise FileNotFoundError(
                "the torch backend needs the checkpoint the bundle was exported from, and this bundle records none "
                "(exported without one); pass the PyTorch model (Engine(model=...)) or use the ONNX Runtime backend "
                "(backend='onnxruntime', --backend onnxruntime)"
            )
        if not Path(source).exists():
            raise FileNotFoundError(
                f"the torch backend needs the checkpoint the bundle was exported from, {source}, which does not exist "
                "here; pass the PyTorch model (Engine(model=...)) or use the ONNX Runtime backend "
                "(backend='onnxruntime', --backend onnxruntime)"
            )
        return self.family.checkpoints.load_native(Path(source))


class ModelExport(Export):
    """:class:`Export` of a family whose model classes implement the graph members themselves, under these names:
    ``export_image_outputs`` and ``export_postprocess`` (attributes or properties), ``export_encode_image(image)``
    and ``export_decode(text, *features, grid=...)``; optionally ``export_whole_image`` (:meth:`Export.whole_image`)."""

    def image_outputs(self, model: Any) -> Tuple[str, ...]:
        return tuple(model.export_image_outputs)

    def encode_image(self, model: Any, image: Any) -> Tuple[Any, ...]:
        return tuple(model.export_encode_image(image))

    def decode(self, model: Any, text: Any, *features: Any, grid: Tuple[int, int]) -> Any:
        return model.export_decode(text, *features, grid=grid)

    def postprocess(self, model: Any) -> Dict[str, Any]:
        return dict(model.export_postprocess)

    def whole_image(self, model: Any) -> Optional[Dict[str, Any]]:
        section = getattr(model, "export_whole_image", None)
        return None if section is None else dict(section)


class Evaluation(_Capability):
    """How a family's models and bundles are evaluated (``zsseg_rt.eval``) and run in PyTorch."""

    @property
    def protocol(self) -> str:
        """Its evaluation protocol (``GENERALIZED_ZERO_SHOT``: mIoU seen/unseen, hIoU; or its own)."""
        return self.family.evaluation_protocol

    def arguments(self) -> Sequence[FamilyArgument]:
        """Options of its own protocol (``zsseg eval`` flags, ``evaluate(**options)`` keywords, passed on to
        its :meth:`protocol_hooks`' ``prepare``); none by default."""
        return ()

    def protocol_hooks(self) -> Any:
        """Its own protocol as the eval toolkit runs it: an instance of a subclass of
        ``zsseg_rt.eval.evaluate.EvaluationProtocol`` whose ``name`` is :attr:`protocol` and whose ``prepare``
        hook builds the run (the toolkit loads the checkpoint and runs the one loop), or None (default) for the
        toolkit's generalized zero-shot protocol."""
        return None

    def settings(self, meta: Any, dataset_name: str, choice: str = "official") -> Optional[Dict[str, Any]]:
        """The test settings an evaluation of one of its bundles (``meta``: its ``BundleMeta``) runs with on the
        dataset named ``dataset_name`` (a dataset reader's name), as a JSON-ready record (recorded in the metrics
        as ``"evaluation_settings"``), or None when the family has no per-dataset settings (default: the bundle's
        own settings everywhere). ``choice`` is one of ``EVALUATION_SETTINGS``."""
        return None

    def apply_settings(self, engine: Any, record: Mapping[str, Any]) -> Callable[[], None]:
        """Make an Engine on one of its bundles follow ``record`` (from :meth:`settings`); returns the function
        that restores the Engine's own settings (default: nothing to apply)."""
        return lambda: None

    def predict(
        self,
        model: Any,
        rgb: "np.ndarray",
        class_names: Sequence[str],
        text: Any = None,
        mode: str = "slide",
        device: Any = None,
        seen_classes: Optional[Sequence[int]] = None,
    ) -> Tuple["np.ndarray", "np.ndarray"]:
        """``(labels [H,W], scores [H,W])`` of one RGB image with the PyTorch model (default: the shared
        ``zsseg_rt.contract.common.predict.predict``)."""
        from zsseg_rt.contract.common.predict import predict

        return predict(
            model,
            rgb,
            class_names=class_names,
            text=text,
            mode=mode,
            color_order="rgb",
            device=device,
            seen_classes=seen_classes,
        )


class Training(_Capability):
    """How a family's models are trained (``zsseg_rt.train``)."""

    def trainer_class(self) -> Optional[type]:
        """The trainer of its recipes, or None for ``zsseg_rt.train.Trainer``."""
        return None

    def loss(self, model: Any) -> Any:
        """The training loss module of ``model``."""
        raise NotImplementedError(f"the {self.family.label} family gives no training loss")

    def parameter_groups(self, model: Any, weight_decay: float) -> Any:
        """What the optimizer gets (default: ``model.trainable_parameters()``, one group)."""
        return model.trainable_parameters()


@dataclass(frozen=True)
class ModelFamily:
    """A registry entry implementing :class:`Family` from its registration.

    ``config_class``/``model_class``/``load_config``/``create`` (and the optional ``native_loader``,
    ``official_keys``, ``official_loader``, ``official_converter``, ``public_names`` values) are ``"module:attr"``
    references, imported on first use (config modules are light; model modules import torch/open_clip).

    ``load_config(spec, **overrides)`` and ``create(spec, pretrained=None, device=None, **overrides)`` take any spec
    of this family: bundled name, JSON path, dict, config object (``create`` also a native checkpoint directory).
    ``aliases(name)`` may map a short name to a bundled stem (``"cliprc-vitb16-voc"`` ->
    ``"cliprc_vitb16_voc_inductive"``); ``native_formats`` are the ``format`` prefixes of its checkpoints.

    The capabilities are built from the classes named here (``checkpoints_class``, ``export_class``,
    ``evaluation_class``, ``training_class``), once; ``trainable=False`` makes ``training`` None.
    """

    name: str
    config_class: str
    model_class: str
    load_config: str
    create: str
    native_formats: Tuple[str, ...] = ()
    aliases: Optional[Callable[[str], List[str]]] = None
    description: str = ""
    display_name: str = ""
    order: int = 100
    default: bool = False
    trainable: bool = True
    native_format: str = ""
    native_loader: str = ""  # "module:function(directory, device=None, **overrides)"
    official_keys: str = ""  # "module:function(keys) -> bool"
    official_loader: str = ""  # "module:function(path, config=None, **kwargs)"
    official_converter: str = ""  # "module:function(src, dst, config, overwrite, allow_missing_text_encoder, ...)"
    pipeline: str = WINDOWED
    evaluation_protocol: str = GENERALIZED_ZERO_SHOT
    synonym_rule: str = "mean"  # "mean" or "max" (see Export.synonym_rule): meta.json postprocess.synonyms
    checkpoints_class: type = field(default=Checkpoints, compare=False)
    export_class: type = field(default=Export, compare=False)
    evaluation_class: type = field(default=Evaluation, compare=False)
    training_class: type = field(default=Training, compare=False)
    public_names: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    _cache: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.synonym_rule not in SYNONYM_RULES:
            raise ValueError(
                f"family {self.name!r}: synonym_rule must be one of {SYNONYM_RULES}, got {self.synonym_rule!r}"
            )
        for role, cls, base in (
            ("checkpoints_class", self.checkpoints_class, Checkpoints),
            ("export_class", self.export_class, Export),
            ("evaluation_class", self.evaluation_class, Evaluation),
            ("training_class", self.training_class, Training),
        ):
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise TypeError(f"family {self.name!r}: {role} must be a subclass of {base.__name__}, got {cls!r}")

    # ------------------------------------------------------------------ references
    def reference(self, ref: str, what: str = "") -> Any:
        """The object a ``"module:attr"`` field names (imported once); ``what``: the member it is, for the error
        when the family gives none."""
        if not ref:
            if what:
                raise NotImplementedError(f"the {self.label} family has no {what}")
            raise ValueError(f"family {self.name!r}: empty reference")
        if ref not in self._cache:
            self._cache[ref] = resolve_ref(ref)
        return self._cache[ref]

    def _capability(self, key: str, cls: type) -> Any:
        if key not in self._cache:
            self._cache[key] = cls(self)
        return self._cache[key]

    @property
    def label(self) -> str:
        """How messages name the family (``display_name``, else ``name``)."""
        return self.display_name or self.name

    # ------------------------------------------------------------------ factories
    def config_cls(self) -> type:
        """The config dataclass of this family."""
        return self.reference(self.config_class)

    def load(self, spec: Any, **overrides: Any) -> Any:
        """This family's config from ``spec`` (name, path, dict or config object)."""
        return self.reference(self.load_config)(spec, **overrides)

    def config_aliases(self, stem: str) -> List[str]:
        """Bundled config stems a short name stands for (``aliases``; none by default)."""
        return list(self.aliases(stem)) if self.aliases is not None else []

    def configs_dir(self) -> Path:
        """The directory of this family's bundled JSON configs: ``configs/`` in the package of its config class."""
        package = self.config_class.partition(":")[0].rsplit(".", 1)[0]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"family {self.name!r}: cannot locate the package {package!r} of its config class")
        return Path(list(spec.submodule_search_locations)[0]) / "configs"

    def model_cls(self) -> type:
        """The ``nn.Module`` class of this family (imports torch)."""
        return self.reference(self.model_class)

    def build(self, spec: Any, pretrained: Optional[str] = None, device: Any = None, **overrides: Any) -> Any:
        """This family's model from ``spec`` (eval mode)."""
        return self.reference(self.create)(spec, pretrained=pretrained, device=device, **overrides)

    # ------------------------------------------------------------------ capabilities
    @property
    def checkpoints(self) -> Checkpoints:
        return self._capability("checkpoints", self.checkpoints_class)

    @property
    def export(self) -> Export:
        return self._capability("export", self.export_class)

    @property
    def evaluation(self) -> Evaluation:
        return self._capability("evaluation", self.evaluation_class)

    @property
    def training(self) -> Optional[Training]:
        return self._capability("training", self.training_class) if self.trainable else None
