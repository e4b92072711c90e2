"""ZegFormer (Ding et al., CVPR 2022, ``dingjiansw101/ZegFormer``): decoupled zero-shot segmentation.

Class-agnostic mask proposals (MaskFormer on a ResNet) classified against frozen CLIP text embeddings, and at
test time CLIP's image tower on each proposal's masked crop, fused per class. Registered as family
``"zegformer"`` (configs ``zegformer_*.json``); its bundles run the runtime's two-stage pipeline.
"""

from zsseg_rt.contract.family import ModelFamily
from zsseg_rt.contract.registry import register_family

from .config import ZegFormerConfig, load_zegformer_config
from .family import ZegFormerCheckpoints, ZegFormerEvaluation, ZegFormerExport, ZegFormerTraining

__all__ = ["ZegFormerConfig", "load_zegformer_config", "FAMILY"]

_MODULE = "zsseg_rt.models.zegformer"

FAMILY = register_family(
    ModelFamily(
        name="zegformer",
        display_name="ZegFormer",
        description="ZegFormer (Ding et al., CVPR 2022): two-stage, mask proposals + CLIP on masked crops",
        order=4,
        config_class=f"{_MODULE}.config:ZegFormerConfig",
        model_class=f"{_MODULE}.model:ZegFormer",
        load_config=f"{_MODULE}.config:load_zegformer_config",
        create=f"{_MODULE}.factory:create_zegformer",
        native_formats=("zsseg_rt.zegformer.",),
        native_format="zsseg_rt.zegformer.v1",
        native_loader=f"{_MODULE}.factory:load_native_zegformer",
        official_keys=f"{_MODULE}.official:is_zegformer_keys",
        official_loader=f"{_MODULE}.official:load_official_zegformer",
        official_converter=f"{_MODULE}.official:convert_official_zegformer",
        pipeline="two_stage",
        checkpoints_class=ZegFormerCheckpoints,
        export_class=ZegFormerExport,
        evaluation_class=ZegFormerEvaluation,
        training_class=ZegFormerTraining,
        synonym_rule="mean",  # official zeroshot_classifier: every template x every name, averaged per class
        public_names={
            "ZegFormerConfig": f"{_MODULE}.config:ZegFormerConfig",
            "load_zegformer_config": f"{_MODULE}.config:load_zegformer_config",
        },
    )
)
