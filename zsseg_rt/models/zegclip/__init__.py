"""ZegCLIP (Zhou et al., CVPR 2023): config, prompted CLIP image tower (``backbone``), relationship descriptor +
decoder (``head``), the model (``model``), its loss (``losses``), CLIP weights (``weights``), native checkpoints
(``native``) and the official-checkpoint importer (``official``). Bundled configs: ``configs/``.

Registers the ``"zegclip"`` family, the default one: configs and native checkpoints that name no family are
ZegCLIP's (they predate families).
"""

from zsseg_rt.contract.family import ModelFamily
from zsseg_rt.contract.registry import register_family

from .family import ZegCLIPTraining

__all__ = ["FAMILY"]

_MODULE = "zsseg_rt.models.zegclip"

FAMILY = register_family(
    ModelFamily(
        name="zegclip",
        display_name="ZegCLIP",
        description="ZegCLIP (Zhou et al., CVPR 2023)",
        order=0,
        default=True,
        config_class=f"{_MODULE}.config:ZegCLIPConfig",
        load_config=f"{_MODULE}.config:load_zegclip_config",
        model_class=f"{_MODULE}.model:ZegCLIP",
        create=f"{_MODULE}.model:create_zegclip",
        native_formats=("zsseg_rt.zegclip.",),
        native_format="zsseg_rt.zegclip.v1",
        native_loader=f"{_MODULE}.native:load_native_zegclip",
        official_keys=f"{_MODULE}.official:is_zegclip_keys",
        official_loader=f"{_MODULE}.official:load_official_zegclip",
        training_class=ZegCLIPTraining,
        public_names={
            "ZegCLIP": f"{_MODULE}.model:ZegCLIP",
            "ZegCLIPConfig": f"{_MODULE}.config:ZegCLIPConfig",
            "load_zegclip_config": f"{_MODULE}.config:load_zegclip_config",
            "load_official_zegclip": f"{_MODULE}.official:load_official_zegclip",
            "OfficialImportReport": f"{_MODULE}.official:OfficialImportReport",
            "zegclip_loss": f"{_MODULE}.losses:zegclip_loss",
            "ZegCLIPLoss": f"{_MODULE}.losses:ZegCLIPLoss",
        },
    )
)
