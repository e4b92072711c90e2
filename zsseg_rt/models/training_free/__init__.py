"""Training-free dense CLIP (MaskCLIP, SCLIP, ClearCLIP, NACLIP, SC-CLIP): config, the segmenter (``model``) and its
sliding-window inference (``predict``, through the one :class:`zsseg_rt.pipeline.Postprocessor`). Bundled configs:
``configs/``. Registers the ``"training_free"`` family."""

from zsseg_rt.contract.family import ModelExport, ModelFamily
from zsseg_rt.contract.registry import register_family

from .family import TrainingFreeEvaluation

__all__ = ["FAMILY"]

_MODULE = "zsseg_rt.models.training_free"

FAMILY = register_family(
    ModelFamily(
        name="training_free",
        display_name="training-free",
        description="training-free dense CLIP: MaskCLIP, SCLIP, ClearCLIP, NACLIP, SC-CLIP",
        order=2,
        trainable=False,
        # a class with several names: the max over its names' probabilities (their postprocess_result, query_idx)
        synonym_rule="max",
        config_class=f"{_MODULE}.config:TrainingFreeConfig",
        load_config=f"{_MODULE}.config:load_training_free_config",
        model_class=f"{_MODULE}.model:TrainingFreeSegmenter",
        create=f"{_MODULE}.model:create_training_free_model",
        export_class=ModelExport,  # its model implements the graph members (softmax post-processing)
        evaluation_class=TrainingFreeEvaluation,
        public_names={
            "TrainingFreeSegmenter": f"{_MODULE}.model:TrainingFreeSegmenter",
            "TrainingFreeConfig": f"{_MODULE}.config:TrainingFreeConfig",
            "create_training_free_model": f"{_MODULE}.model:create_training_free_model",
            "load_training_free_config": f"{_MODULE}.config:load_training_free_config",
        },
    )
)
