"""ZeroSeg (Chen et al., ICCV 2023): open-vocabulary segmentation learned by CLIP vision distillation only.

Registers the ``"zeroseg"`` family in :mod:`zsseg_rt.contract.registry` on import (:mod:`.family`).
"""

from zsseg_rt.contract.common.declare import declare_family

from .config import DATASET_BACKGROUND_THRESHOLDS, ZeroSegConfig, load_zeroseg_config
from .family import BACKGROUND_THRESHOLD_PROTOCOL, ZeroSegEvaluation, ZeroSegExport, ZeroSegTraining

__all__ = ["ZeroSegConfig", "load_zeroseg_config", "DATASET_BACKGROUND_THRESHOLDS", "FAMILY", "FAMILY_ENTRY"]

FAMILY = FAMILY_ENTRY = declare_family(
    __name__,
    display_name="ZeroSeg",
    description="ZeroSeg (Chen et al., ICCV 2023), re-implemented from the paper",
    order=3,
    config_class=".config:ZeroSegConfig",
    model_class=".model:ZeroSeg",
    create=".factory",
    native=".factory",
    evaluation_protocol=BACKGROUND_THRESHOLD_PROTOCOL,
    export_class=ZeroSegExport,
    evaluation_class=ZeroSegEvaluation,
    training_class=ZeroSegTraining,
)
