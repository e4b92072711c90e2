"""ZegFormer (Ding et al., CVPR 2022, ``dingjiansw101/ZegFormer``): decoupled zero-shot segmentation.

Class-agnostic mask proposals (MaskFormer on a ResNet) classified against frozen CLIP text embeddings, and at
test time CLIP's image tower on each proposal's masked crop, fused per class. Registered as family
``"zegformer"`` (configs ``zegformer_*.json``).
"""

from zsseg_rt.models.registry import ModelFamily, register_family

from .config import ZegFormerConfig, load_zegformer_config

__all__ = ["ZegFormerConfig", "load_zegformer_config"]

register_family(
    ModelFamily(
        name="zegformer",
        config_class="zsseg_rt.models.zegformer.config:ZegFormerConfig",
        model_class="zsseg_rt.models.zegformer.model:ZegFormer",
        load_config="zsseg_rt.models.zegformer.config:load_zegformer_config",
        create="zsseg_rt.models.zegformer.factory:create_zegformer",
        native_formats=("zsseg_rt.zegformer.",),
        description="ZegFormer (Ding et al., CVPR 2022): two-stage, mask proposals + CLIP on masked crops",
    )
)
