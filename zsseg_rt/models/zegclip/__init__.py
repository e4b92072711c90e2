"""ZegCLIP (Zhou et al., CVPR 2023): config, prompted CLIP image tower (``backbone``), relationship descriptor +
decoder (``head``), the model (``model``), its loss (``losses``), CLIP weights (``weights``), native checkpoints
(``native``) and the official-checkpoint importer (``official``). Bundled configs: ``configs/``.

Registers the ``"zegclip"`` family, the default one: configs and native checkpoints that name no family are
ZegCLIP's (they predate families).
"""

from zsseg_rt.contract.common.declare import declare_family

from .family import ZegCLIPTraining

__all__ = ["FAMILY"]

FAMILY = declare_family(
    __name__,
    display_name="ZegCLIP",
    description="ZegCLIP (Zhou et al., CVPR 2023)",
    order=0,
    default=True,
    config_class=".config:ZegCLIPConfig",
    model_class=".model:ZegCLIP",
    create=".model",
    native=".native",
    official=".official",
    training_class=ZegCLIPTraining,
    public={
        ".model": ("ZegCLIP",),
        ".config": ("ZegCLIPConfig", "load_zegclip_config"),
        ".official": ("load_official_zegclip", "OfficialImportReport"),
        ".losses": ("zegclip_loss", "ZegCLIPLoss"),
    },
)
