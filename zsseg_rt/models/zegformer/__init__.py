"""ZegFormer (Ding et al., CVPR 2022, ``dingjiansw101/ZegFormer``): decoupled zero-shot segmentation.

Class-agnostic mask proposals (MaskFormer on a ResNet) classified against frozen CLIP text embeddings, and at
test time CLIP's image tower on each proposal's masked crop, fused per class. Registered as family
``"zegformer"`` (configs ``zegformer_*.json``); its bundles run the runtime's two-stage pipeline.
"""

from zsseg_rt.contract.common.declare import declare_family

from .config import ZegFormerConfig, load_zegformer_config
from .family import ZegFormerCheckpoints, ZegFormerEvaluation, ZegFormerExport, ZegFormerTraining

__all__ = ["ZegFormerConfig", "load_zegformer_config", "FAMILY"]

FAMILY = declare_family(
    __name__,
    display_name="ZegFormer",
    description="ZegFormer (Ding et al., CVPR 2022): two-stage, mask proposals + CLIP on masked crops",
    order=4,
    config_class=".config:ZegFormerConfig",
    model_class=".model:ZegFormer",
    create=".factory",
    native=".factory",
    official=".official",
    official_converter=".official:convert_official_zegformer",
    pipeline="two_stage",
    checkpoints_class=ZegFormerCheckpoints,
    export_class=ZegFormerExport,
    evaluation_class=ZegFormerEvaluation,
    training_class=ZegFormerTraining,
    synonym_rule="mean",  # official zeroshot_classifier: every template x every name, averaged per class
    public={".config": ("ZegFormerConfig", "load_zegformer_config")},
)
