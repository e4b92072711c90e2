"""What a model family is to the rest of zsseg_rt: the :class:`Family` protocol and its base implementation.

A family (ZegCLIP, CLIP-RC, ZegFormer, ...) is a plugin. Its package ``zsseg_rt/models/<family>/`` registers one
object implementing :class:`Family` (``register_family`` in :mod:`zsseg_rt.contract.registry`) when it is imported;
the registry imports every family package on first use. Generic layers (runtime, pipeline, bundle, export, eval,
train, scale, stream, the CLI, data, ops, ``models/common``) reach a family only through that object: they never
import a family's modules and never compare a family's name.

:class:`ModelFamily` implements the protocol: the members a family must give are its fields (``"module:attr"``
references, imported on first use so that registering a family imports neither torch nor open_clip), and every
other member has the default written below (what a ZegCLIP-like model with ``encode_image`` / ``decode`` needs).
A family overrides a member by subclassing :class:`ModelFamily` in its own ``family.py``.
"""

from __future__ import annotations

import importlib
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

if TYPE_CHECKING:  # pragma: no cover - types only
    import numpy as np

__all__ = [
    "Family",
    "ModelFamily",
    "ModelExportMembers",
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
# How a class with several names (synonyms) is scored (``Family.synonym_rule``, meta.json ``postprocess.synonyms``).
SYNONYM_RULES = ("mean", "max")


def resolve_ref(ref: str) -> Any:
    """``"package.module:attr[.attr]"`` -> the object (imports the module)."""
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ValueError(f"a reference must read 'module:attribute', got {ref!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class FamilyArgument:
    """A command-line option that only some families take (``zsseg export``: :meth:`Family.export_arguments`;
    ``zsseg eval``: :meth:`Family.evaluation_arguments`): ``flags`` and ``argparse`` keyword arguments. The
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
        ``display_name`` (how messages name it), ``description``, ``order`` (listing order), ``default`` (configs
        and native checkpoints that name no family belong to the default family: they predate families).
    Configs
        :meth:`config_cls`, :meth:`load` (any spec -> config), :meth:`config_aliases` (short names of bundled
        configs), :meth:`configs_dir` (its bundled ``configs/*.json``).
    Models
        :meth:`model_cls`, :meth:`build` (create a model from a spec), ``native_formats`` (format prefixes of its
        native checkpoints), ``native_format`` (the one it writes), :meth:`load_native`.
    Official checkpoints
        :meth:`is_official_checkpoint` (from the checkpoint's key names), :meth:`load_official`,
        :meth:`convert_official` (``zsseg convert``).
    Export
        :meth:`export_arguments` (its own ``zsseg export`` flags), :meth:`prepare_export` (a loaded model -> the
        model to export), :meth:`exporter` (None: the generic exporter of ``zsseg_rt.export``, which calls the
        graph members :meth:`export_image_outputs`, :meth:`export_encode_image`, :meth:`export_decode`,
        :meth:`export_postprocess` and :meth:`export_verify`), :meth:`bundle_model` (what the torch backend runs
        for a bundle: the model given, or its source checkpoint).
    Runtime and evaluation
        ``pipeline`` (the runtime pipeline kind of its bundles, ``zsseg_rt.runtime.pipelines``),
        ``evaluation_protocol`` (how its models and bundles are evaluated), :meth:`evaluate` (that protocol when
        it is not the generic one), :meth:`evaluation_arguments` (that protocol's own options: ``zsseg eval``
        flags and ``evaluate`` keywords), :meth:`evaluation_settings` and :meth:`apply_evaluation_settings` (official
        per-dataset test settings of its bundles, e.g. thresholds and refinement), :meth:`predict` (PyTorch
        inference of one image), ``synonym_rule`` (how a vocabulary class with several names, ``"person; man"``,
        is scored, as the family's official code does: ``"mean"``, every prompt of every name averaged into one
        embedding, ZegFormer's ``zeroshot_classifier``; ``"max"``, every name a row of its own and the class's
        probability the max over its names', the training-free methods' ``postprocess_result``; recorded in the
        bundles it exports as ``postprocess.synonyms``).
    Training
        ``trainable`` (whether its models are trained at all), :meth:`trainer_class` (None:
        ``zsseg_rt.train.Trainer``), :meth:`loss`, :meth:`parameter_groups`.
    Public names
        ``public_names``: names ``zsseg_rt.models`` exports for it (name -> ``"module:attr"``).
    """

    name: str
    display_name: str
    description: str
    order: int
    default: bool
    trainable: bool
    native_formats: Tuple[str, ...]
    native_format: str
    pipeline: str
    evaluation_protocol: str
    synonym_rule: str
    public_names: Mapping[str, str]

    def config_cls(self) -> type: ...

    def load(self, spec: Any, **overrides: Any) -> Any: ...

    def config_aliases(self, stem: str) -> List[str]: ...

    def configs_dir(self) -> Path: ...

    def model_cls(self) -> type: ...

    def build(self, spec: Any, pretrained: Optional[str] = None, device: Any = None, **overrides: Any) -> Any: ...

    def load_native(self, directory: Path, device: Any = None, **overrides: Any) -> Any: ...

    def is_official_checkpoint(self, keys: Sequence[str]) -> bool: ...

    def load_official(self, path: Any, config: Any = None, **kwargs: Any) -> Any: ...

    def convert_official(
        self,
        src: Any,
        dst_dir: Any,
        config: Any = None,
        overwrite: bool = False,
        allow_missing_text_encoder: bool = False,
        clip_pretrained: Optional[str] = None,
    ) -> Path: ...

    def export_arguments(self) -> Sequence[ExportArgument]: ...

    def prepare_export(self, model: Any, options: Mapping[str, Any]) -> Any: ...

    def exporter(self, model: Any) -> Optional[Callable[..., Dict[str, Any]]]: ...

    def export_image_outputs(self, model: Any) -> Tuple[str, ...]: ...

    def export_encode_image(self, model: Any, image: Any) -> Tuple[Any, ...]: ...

    def export_decode(self, model: Any, text: Any, *features: Any, grid: Tuple[int, int]) -> Any: ...

    def export_postprocess(self, model: Any) -> Dict[str, Any]: ...

    def export_verify(self, model: Any, bundle_dir: str, images: Sequence[str]) -> Optional[Dict[str, Any]]: ...

    def bundle_model(self, meta: Any, model: Any = None) -> Any: ...

    def predict(
        self,
        model: Any,
        rgb: "np.ndarray",
        class_names: Sequence[str],
        text: Any = None,
        mode: str = "slide",
        device: Any = None,
        seen_classes: Optional[Sequence[int]] = None,
    ) -> Tuple["np.ndarray", "np.ndarray"]: ...

    def evaluate(self, obj: Any, dataset: Any, **options: Any) -> Dict[str, Any]: ...

    def evaluation_arguments(self) -> Sequence[FamilyArgument]: ...

    def evaluation_settings(
        self, meta: Any, dataset_name: str, choice: str = "official"
    ) -> Optional[Dict[str, Any]]: ...

    def apply_evaluation_settings(self, engine: Any, record: Mapping[str, Any]) -> Callable[[], None]: ...

    def trainer_class(self) -> Optional[type]: ...

    def loss(self, model: Any) -> Any: ...

    def parameter_groups(self, model: Any, weight_decay: float) -> Any: ...


@dataclass(frozen=True)
class ModelFamily:
    """A registry entry implementing :class:`Family`; the fields are the members every family must give.

    ``config_class``/``model_class``/``load_config``/``create`` (and the optional ``native_loader``,
    ``official_keys``, ``official_loader``, ``official_converter``, ``public_names`` values) are ``"module:attr"``
    references, imported on first use (config modules are light; model modules import torch/open_clip).

    ``load_config(spec, **overrides)`` and ``create(spec, pretrained=None, device=None, **overrides)`` take any spec
    of this family: bundled name, JSON path, dict, config object (``create`` also a native checkpoint directory).
    ``aliases(name)`` may map a short name to a bundled stem (``"cliprc-vitb16-voc"`` ->
    ``"cliprc_vitb16_voc_inductive"``); ``native_formats`` are the ``format`` prefixes of its checkpoints.
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
    synonym_rule: str = "mean"  # "mean" or "max" (see Family): recorded as meta.json postprocess.synonyms
    public_names: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    _cache: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.synonym_rule not in SYNONYM_RULES:
            raise ValueError(
                f"family {self.name!r}: synonym_rule must be one of {SYNONYM_RULES}, got {self.synonym_rule!r}"
            )

    # ------------------------------------------------------------------ references
    def _resolve(self, ref: str) -> Any:
        if ref not in self._cache:
            self._cache[ref] = resolve_ref(ref)
        return self._cache[ref]

    def _needs(self, ref: str, what: str) -> Any:
        if not ref:
            raise NotImplementedError(f"the {self.label} family has no {what}")
        return self._resolve(ref)

    @property
    def label(self) -> str:
        """How messages name the family (``display_name``, else ``name``)."""
        return self.display_name or self.name

    # ------------------------------------------------------------------ configs
    def config_cls(self) -> type:
        """The config dataclass of this family."""
        return self._resolve(self.config_class)

    def load(self, spec: Any, **overrides: Any) -> Any:
        """This family's config from ``spec`` (name, path, dict or config object)."""
        return self._resolve(self.load_config)(spec, **overrides)

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

    # ------------------------------------------------------------------ models
    def model_cls(self) -> type:
        """The ``nn.Module`` class of this family (imports torch)."""
        return self._resolve(self.model_class)

    def build(self, spec: Any, pretrained: Optional[str] = None, device: Any = None, **overrides: Any) -> Any:
        """This family's model from ``spec`` (eval mode)."""
        return self._resolve(self.create)(spec, pretrained=pretrained, device=device, **overrides)

    def load_native(self, directory: Path, device: Any = None, **overrides: Any) -> Any:
        """A native checkpoint directory of this family (``model.safetensors`` + ``config.json``) as a model."""
        return self._needs(self.native_loader, "native checkpoint loader")(directory, device=device, **overrides)

    # ------------------------------------------------------------------ official checkpoints
    def is_official_checkpoint(self, keys: Sequence[str]) -> bool:
        """Whether tensor names of an official checkpoint (``module.`` prefix removed) are this family's."""
        return bool(self._resolve(self.official_keys)(keys)) if self.official_keys else False

    def load_official(self, path: Any, config: Any = None, **kwargs: Any) -> Any:
        """Import an official checkpoint of this family (``return_report=True``: ``(model, report)``)."""
        return self._needs(self.official_loader, "official checkpoint importer")(path, config=config, **kwargs)

    def convert_official(
        self,
        src: Any,
        dst_dir: Any,
        config: Any = None,
        overwrite: bool = False,
        allow_missing_text_encoder: bool = False,
        clip_pretrained: Optional[str] = None,
    ) -> Path:
        """Official checkpoint -> native checkpoint directory (``zsseg convert``); returns the directory."""
        convert = self._needs(self.official_converter, "official checkpoint converter")
        return convert(
            src,
            dst_dir,
            config=config,
            overwrite=overwrite,
            allow_missing_text_encoder=allow_missing_text_encoder,
            clip_pretrained=clip_pretrained,
        )

    # ------------------------------------------------------------------ export
    def export_arguments(self) -> Sequence[ExportArgument]:
        """``zsseg export`` flags of this family only (none by default)."""
        return ()

    def prepare_export(self, model: Any, options: Mapping[str, Any]) -> Any:
        """The model to export from a loaded one; ``options`` holds the values of :meth:`export_arguments`."""
        return model

    def exporter(self, model: Any) -> Optional[Callable[..., Dict[str, Any]]]:
        """A bundle writer of the family's own, ``(model, tmp_dir, max_classes, opset, source, verify_images,
        extra_meta) -> verification report``, or None for the generic exporter (image encoder, head and text
        encoder graphs, ``zsseg_rt.export.onnx_export``)."""
        return None

    def export_image_outputs(self, model: Any) -> Tuple[str, ...]:
        """Names of the image encoder graph's outputs (default: ``image_global``, ``patches``)."""
        from zsseg_rt.bundle import Names

        return tuple(Names.IMAGE_ENCODER_OUTPUTS)

    def export_encode_image(self, model: Any, image: Any) -> Tuple[Any, ...]:
        """``image [B,3,S,S]`` -> the image encoder graph's outputs (default: ``model.encode_image(image)[:2]``)."""
        image_global, patches, _ = model.encode_image(image)
        return image_global, patches

    def export_decode(self, model: Any, text: Any, *features: Any, grid: Tuple[int, int]) -> Any:
        """``(text [C,D], *image features)`` -> ``mask_logits [B,C,h,w]`` (default: ``model.decode``)."""
        image_global, patches = features
        return model.decode(text, image_global, patches, grid)

    def export_postprocess(self, model: Any) -> Dict[str, Any]:
        """The ``postprocess`` table of meta.json (activation, logit scale, thresholds; default: sigmoid)."""
        return {"activation": "sigmoid"}

    def export_verify(self, model: Any, bundle_dir: str, images: Sequence[str]) -> Optional[Dict[str, Any]]:
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
        return self.load_native(Path(source))

    # ------------------------------------------------------------------ inference and evaluation
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

    def evaluate(self, obj: Any, dataset: Any, **options: Any) -> Dict[str, Any]:
        """Evaluation under ``evaluation_protocol`` when that is not the generic one (``zsseg_rt.eval``)."""
        raise NotImplementedError(f"the {self.label} family is evaluated with the generic protocol")

    def evaluation_arguments(self) -> Sequence[FamilyArgument]:
        """Options of this family's own evaluation protocol (``zsseg eval`` flags, ``evaluate(**options)``
        keywords, passed on to :meth:`evaluate`); none by default."""
        return ()

    def evaluation_settings(self, meta: Any, dataset_name: str, choice: str = "official") -> Optional[Dict[str, Any]]:
        """The test settings an evaluation of one of this family's bundles (``meta``: its ``BundleMeta``) runs with
        on the dataset named ``dataset_name`` (a dataset reader's name), as a JSON-ready record (recorded in the
        metrics as ``"evaluation_settings"``), or None when the family has no per-dataset settings (default: the
        bundle's own settings everywhere). ``choice`` is one of ``EVALUATION_SETTINGS``."""
        return None

    def apply_evaluation_settings(self, engine: Any, record: Mapping[str, Any]) -> Callable[[], None]:
        """Make an Engine on one of this family's bundles follow ``record`` (from :meth:`evaluation_settings`);
        returns the function that restores the Engine's own settings (default: nothing to apply)."""
        return lambda: None

    # ------------------------------------------------------------------ training
    def trainer_class(self) -> Optional[type]:
        """The trainer of this family's recipes, or None for ``zsseg_rt.train.Trainer``."""
        return None

    def loss(self, model: Any) -> Any:
        """The training loss module of ``model``."""
        raise NotImplementedError(f"the {self.label} family has no training loss (its models are not trained)")

    def parameter_groups(self, model: Any, weight_decay: float) -> Any:
        """What the optimizer gets (default: ``model.trainable_parameters()``, one group)."""
        return model.trainable_parameters()


class ModelExportMembers:
    """Mixin for a :class:`ModelFamily` subclass whose model classes implement the graph members themselves, under
    the same names: ``export_image_outputs`` and ``export_postprocess`` (attributes or properties),
    ``export_encode_image(image)`` and ``export_decode(text, *features, grid=...)``."""

    def export_image_outputs(self, model: Any) -> Tuple[str, ...]:
        return tuple(model.export_image_outputs)

    def export_encode_image(self, model: Any, image: Any) -> Tuple[Any, ...]:
        return tuple(model.export_encode_image(image))

    def export_decode(self, model: Any, text: Any, *features: Any, grid: Tuple[int, int]) -> Any:
        return model.export_decode(text, *features, grid=grid)

    def export_postprocess(self, model: Any) -> Dict[str, Any]:
        return dict(model.export_postprocess)
