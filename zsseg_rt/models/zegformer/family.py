"""The ZegFormer family's capabilities (registered by ``zsseg_rt.models.zegformer``): detectron2 checkpoints that
hold no CLIP weights (``zsseg convert --clip-pretrained``), two-stage bundles (mask branch + CLIP on every
proposal's crop) with a writer of their own, its own whole-image inference, loss and parameter groups."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from zsseg_rt.contract.family import Checkpoints, Evaluation, Export, FamilyArgument, Training

__all__ = ["ZegFormerCheckpoints", "ZegFormerExport", "ZegFormerEvaluation", "ZegFormerTraining"]

CONVERSION_ARGUMENTS = (
    FamilyArgument(
        ("--clip-pretrained",),
        {
            "default": None,
            "help": "ZegFormer only: CLIP weights (open_clip tag or local file) for checkpoints that hold none",
        },
    ),
)


class ZegFormerCheckpoints(Checkpoints):
    def conversion_arguments(self) -> Sequence[FamilyArgument]:
        return CONVERSION_ARGUMENTS


class ZegFormerExport(Export):
    def writer(self, model: Any) -> Optional[Callable[..., Dict[str, Any]]]:
        from .export import export_zegformer_bundle

        return export_zegformer_bundle


class ZegFormerEvaluation(Evaluation):
    def predict(
        self,
        model: Any,
        rgb: Any,
        class_names: Sequence[str],
        text: Any = None,
        mode: str = "slide",
        device: Any = None,
        seen_classes: Optional[Sequence[int]] = None,
    ) -> Tuple[Any, Any]:
        """The official whole-image test pipeline (``mode`` does not apply)."""
        from .predict import predict_zegformer

        return predict_zegformer(model, rgb, class_names, text=text, seen_classes=seen_classes, device=device)


class ZegFormerTraining(Training):
    def loss(self, model: Any) -> Any:
        return model.build_loss()

    def parameter_groups(self, model: Any, weight_decay: float) -> Any:
        """Backbone learning-rate multiplier, no weight decay on norms and embeddings (official)."""
        return model.optimizer_param_groups(weight_decay)
