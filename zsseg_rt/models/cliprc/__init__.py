"""CLIP-RC (Zhang et al., CVPR 2024), built on ZegCLIP's pieces: config, region-level bridge image tower
(``backbone``), region alignment + bidirectional decoder (``head``), the model and recovery loss (``model``) and the
official-checkpoint importer (``official``). Bundled configs: ``configs/``. Registers the ``"cliprc"`` family."""

from zsseg_rt.contract.common.declare import declare_family
from zsseg_rt.contract.family import ModelExport

from .family import CLIPRCTraining, cliprc_aliases

__all__ = ["FAMILY"]

FAMILY = declare_family(
    __name__,
    display_name="CLIP-RC",
    description="CLIP-RC (Zhang et al., CVPR 2024)",
    order=1,
    config_class=".config:CLIPRCConfig",
    model_class=".model:CLIPRC",
    create=".model",
    aliases=cliprc_aliases,
    native=".official",
    official=".official",
    export_class=ModelExport,  # its model implements the graph members (the region tokens)
    training_class=CLIPRCTraining,
    public={
        ".model": ("CLIPRC", "CLIPRCLoss", "create_cliprc"),
        ".config": ("CLIPRCConfig", "load_cliprc_config"),
        ".official": ("load_official_cliprc",),
    },
)
