"""ZeroSeg (Chen et al., ICCV 2023): open-vocabulary segmentation learned by CLIP vision distillation only.

Registers the ``"zeroseg"`` family in :mod:`zsseg_rt.contract.registry` on import (:mod:`.family`).
"""

from zsseg_rt.contract.family import ModelFamily
from zsseg_rt.contract.registry import register_family

from .config import DATASET_BACKGROUND_THRESHOLDS, ZeroSegConfig, load_zeroseg_config
from .family import BACKGROUND_THRESHOLD_PROTOCOL, ZeroSegEvaluation, ZeroSegExport, ZeroSegTraining

__all__ = ["ZeroSegConfig", "load_zeroseg_config", "DATASET_BACKGROUND_THRESHOLDS", "FAMILY", "FAMILY_ENTRY"]

_MODULE = "zsseg_rt.models.zeroseg"

FAMILY = FAMILY_ENTRY = register_family(
    ModelFamily(
        name="zeroseg",
        display_name="ZeroSeg",
        description="ZeroSeg (Chen et al., ICCV 2023), re-implemented from the paper",
        order=3,
        config_class=f"{_MODULE}.config:ZeroSegConfig",
        model_class=f"{_MODULE}.model:ZeroSeg",
        load_config=f"{_MODULE}.config:load_zeroseg_config",
        create=f"{_MODULE}.factory:create_zeroseg",
        native_formats=("zsseg_rt.zeroseg.",),
        native_format="zsseg_rt.zeroseg.v1",
        native_loader=f"{_MODULE}.factory:load_native_zeroseg",
        evaluation_protocol=BACKGROUND_THRESHOLD_PROTOCOL,
        export_class=ZeroSegExport,
        evaluation_class=ZeroSegEvaluation,
        training_class=ZeroSegTraining,
    )
)
