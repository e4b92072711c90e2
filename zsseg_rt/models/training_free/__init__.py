"""Training-free dense CLIP (MaskCLIP, SCLIP, ClearCLIP, NACLIP, SC-CLIP): config, the segmenter (``model``) and its
sliding-window inference (``predict``, through the one :class:`zsseg_rt.pipeline.Postprocessor`). Bundled configs:
``configs/``. Registers the ``"training_free"`` family."""

from zsseg_rt.contract.common.declare import declare_family
from zsseg_rt.contract.family import ModelExport

from .family import TrainingFreeEvaluation

__all__ = ["FAMILY"]

FAMILY = declare_family(
    __name__,
    display_name="training-free",
    description="training-free dense CLIP: MaskCLIP, SCLIP, ClearCLIP, NACLIP, SC-CLIP",
    order=2,
    trainable=False,
    # a class with several names: the max over its names' probabilities (their postprocess_result, query_idx)
    synonym_rule="max",
    config_class=".config:TrainingFreeConfig",
    model_class=".model:TrainingFreeSegmenter",
    create=".model:create_training_free_model",
    export_class=ModelExport,  # its model implements the graph members (softmax post-processing)
    evaluation_class=TrainingFreeEvaluation,
    public={
        ".model": ("TrainingFreeSegmenter", "create_training_free_model"),
        ".config": ("TrainingFreeConfig", "load_training_free_config"),
    },
)
