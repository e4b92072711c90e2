"""CLIP-RC (Zhang et al., CVPR 2024), built on ZegCLIP's pieces: config, region-level bridge image tower
(``backbone``), region alignment + bidirectional decoder (``head``), the model and recovery loss (``model``) and the
official-checkpoint importer (``official``). Bundled configs: ``configs/``. Registers the ``"cliprc"`` family."""

from zsseg_rt.contract.family import ModelExport, ModelFamily
from zsseg_rt.contract.registry import register_family

from .family import CLIPRCTraining, cliprc_aliases

__all__ = ["FAMILY"]

_MODULE = "zsseg_rt.models.cliprc"

FAMILY = register_family(
    ModelFamily(
        name="cliprc",
        display_name="CLIP-RC",
        description="CLIP-RC (Zhang et al., CVPR 2024)",
        order=1,
        config_class=f"{_MODULE}.config:CLIPRCConfig",
        load_config=f"{_MODULE}.config:load_cliprc_config",
        model_class=f"{_MODULE}.model:CLIPRC",
        create=f"{_MODULE}.model:create_cliprc",
        aliases=cliprc_aliases,
        native_formats=("zsseg_rt.cliprc.",),
        native_format="zsseg_rt.cliprc.v1",
        native_loader=f"{_MODULE}.official:load_native_cliprc",
        official_keys=f"{_MODULE}.official:is_cliprc_keys",
        official_loader=f"{_MODULE}.official:load_official_cliprc",
        export_class=ModelExport,  # its model implements the graph members (the region tokens)
        training_class=CLIPRCTraining,
        public_names={
            "CLIPRC": f"{_MODULE}.model:CLIPRC",
            "CLIPRCConfig": f"{_MODULE}.config:CLIPRCConfig",
            "CLIPRCLoss": f"{_MODULE}.model:CLIPRCLoss",
            "create_cliprc": f"{_MODULE}.model:create_cliprc",
            "load_cliprc_config": f"{_MODULE}.config:load_cliprc_config",
            "load_official_cliprc": f"{_MODULE}.official:load_official_cliprc",
        },
    )
)
