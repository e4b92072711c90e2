"""ZeroSeg (Chen et al., ICCV 2023): open-vocabulary segmentation learned by CLIP vision distillation only.

Registers the ``"zeroseg"`` family in :mod:`zsseg_rt.models.registry` on import.
"""

from zsseg_rt.models.registry import ModelFamily, register_family

from .config import DATASET_BACKGROUND_THRESHOLDS, ZeroSegConfig, load_zeroseg_config

__all__ = ["ZeroSegConfig", "load_zeroseg_config", "DATASET_BACKGROUND_THRESHOLDS", "FAMILY_ENTRY"]

FAMILY_ENTRY = register_family(
    ModelFamily(
        name="zeroseg",
        config_class="zsseg_rt.models.zeroseg.config:ZeroSegConfig",
        model_class="zsseg_rt.models.zeroseg.model:ZeroSeg",
        load_config="zsseg_rt.models.zeroseg.config:load_zeroseg_config",
        create="zsseg_rt.models.zeroseg.factory:create_zeroseg",
        native_formats=("zsseg_rt.zeroseg.",),
        description="ZeroSeg (Chen et al., ICCV 2023), re-implemented from the paper",
    )
)
