"""The ZeroSeg family's capabilities (registered by ``zsseg_rt.models.zeroseg``).

A ZeroSeg checkpoint is the student alone: its bundle adds the teacher's CLIP text tower (``zsseg export
--text-weights``) and bakes the background threshold into the head graph (``--background-threshold``); the bundle
model (:class:`~.export.ZeroSegBundleModel`) implements the graph members and verifies the whole Engine. Models and
bundles are evaluated under GroupViT's protocol (background + classes, a threshold per dataset: :mod:`.evaluate`),
and trained by the distillation trainer (:mod:`.trainer`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from zsseg_rt.console.arguments import real_number
from zsseg_rt.contract.family import Evaluation, FamilyArgument, ModelExport, Training

from .evaluate import BACKGROUND_THRESHOLD_PROTOCOL, BackgroundThresholdProtocol

__all__ = ["ZeroSegExport", "ZeroSegEvaluation", "ZeroSegTraining", "BACKGROUND_THRESHOLD_PROTOCOL"]

EXPORT_ARGUMENTS = (
    FamilyArgument(
        ("--text-weights",),
        {
            "default": None,
            "help": "(ZeroSeg --native) CLIP weights of the teacher whose text tower classifies segments, e.g. openai",
        },
    ),
    FamilyArgument(
        ("--background-threshold",),
        {
            "type": float,
            "default": None,
            "help": "(ZeroSeg) background threshold baked into the head graph (default: the config's; paper: VOC "
            "0.95, Context 0.05, COCO-Object 0.35)",
        },
    ),
)
# GroupViT's protocol as ZeroSeg evaluates it: `zsseg eval` flags and `evaluate()` keywords
EVALUATION_ARGUMENTS = (
    FamilyArgument(
        ("--text-weights",),
        {"default": None, "help": "(ZeroSeg checkpoints) CLIP weights of the teacher's text tower, e.g. openai"},
    ),
    FamilyArgument(
        ("--background-threshold",),
        {
            "type": real_number(0),
            "default": None,
            "help": "(ZeroSeg) background threshold (default: the dataset's value in --thresholds)",
        },
    ),
    FamilyArgument(
        ("--thresholds",),
        {
            "choices": ["paper", "groupvit"],
            "default": "paper",
            "help": "(ZeroSeg) per-dataset thresholds: the paper's (VOC 0.95, Context 0.05, COCO-Object 0.35) or "
            "GroupViT's configs (0.95, 0.35, 0.95)",
        },
    ),
)


def _is_bundle_model(model: Any) -> bool:
    from .export import ZeroSegBundleModel

    return isinstance(model, ZeroSegBundleModel)


class ZeroSegExport(ModelExport):
    def arguments(self) -> Sequence[FamilyArgument]:
        return EXPORT_ARGUMENTS

    def prepare(self, model: Any, options: Mapping[str, Any]) -> Any:
        """The student + its teacher's text tower, with the background threshold baked in."""
        if _is_bundle_model(model):
            return model
        from .export import build_bundle_model

        if options.get("text_weights") is None:
            raise ValueError(
                "a ZeroSeg checkpoint has no text tower: add --text-weights (its teacher's CLIP weights, e.g. openai)"
            )
        return build_bundle_model(model, options["text_weights"], options.get("background_threshold"))

    def writer(self, model: Any) -> Optional[Callable[..., Dict[str, Any]]]:
        if not _is_bundle_model(model):
            raise ValueError(
                "a ZeroSeg student has no text tower: export it with "
                "zsseg_rt.models.zeroseg.export.export_zeroseg_bundle (or `zsseg export --native DIR --text-weights "
                "openai`), which adds its teacher's CLIP text tower"
            )
        return None  # the generic exporter, with this family's graph members

    def verify(self, model: Any, bundle_dir: str, images: Sequence[str]) -> Optional[Dict[str, Any]]:
        """The whole Engine (ONNX Runtime) against :func:`.predict.predict_image` (PyTorch)."""
        from .export import verify_zeroseg_bundle

        return verify_zeroseg_bundle(bundle_dir, model, images)

    def bundle_model(self, meta: Any, model: Any = None) -> Any:
        """Only the exported model: the checkpoint holds the student, the bundle adds the teacher's text tower."""
        if model is None or not _is_bundle_model(model):
            raise ValueError(
                "the torch backend of a ZeroSeg bundle needs the exported model: pass "
                "model=zsseg_rt.models.zeroseg.export.build_bundle_model(student, text_weights, threshold) to Engine, "
                "or use backend='onnxruntime'"
            )
        return model


class ZeroSegEvaluation(Evaluation):
    def arguments(self) -> Sequence[FamilyArgument]:
        return EVALUATION_ARGUMENTS

    def protocol_hooks(self) -> Any:
        """GroupViT's protocol (background + classes, per-dataset threshold) as hooks of the eval toolkit's."""
        return BackgroundThresholdProtocol()


class ZeroSegTraining(Training):
    def trainer_class(self) -> Optional[type]:
        from .trainer import ZeroSegTrainer

        return ZeroSegTrainer
