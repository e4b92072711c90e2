"""PyTorch models (needs torch + open_clip): the families ZegCLIP, CLIP-RC and training-free dense CLIP, their
configs, weights, losses and inference glue. One registry (:mod:`zsseg_rt.models.registry`) maps a family name
to its config and model classes; ``create_model``/``load_config``/``list_configs`` resolve names through it.

Public API: ``create_model``, ``load_config``, ``list_configs``, ``load_official_zegclip``, ``load_native``,
``ZegCLIP``, ``VocabularyCache``.
"""

from zsseg_rt.models import zeroseg  # noqa: F401  (registers the "zeroseg" family)
from zsseg_rt.models.cliprc.config import CLIPRCConfig, load_cliprc_config
from zsseg_rt.models.cliprc.model import CLIPRC, CLIPRCLoss, create_cliprc
from zsseg_rt.models.cliprc.official import load_official_any, load_official_cliprc
from zsseg_rt.models.common.config import load_class_names, load_templates
from zsseg_rt.models.common.convert import add_convert_command, convert_official, load_native, save_native
from zsseg_rt.models.common.text import VocabularyCache, load_text_embeddings
from zsseg_rt.models.common.weights import WeightsError
from zsseg_rt.models.registry import (
    ModelFamily,
    create_model,
    families,
    family_of,
    get_family,
    list_configs,
    load_config,
    load_model_config,
    register_family,
)
from zsseg_rt.models.training_free.config import TrainingFreeConfig, load_training_free_config
from zsseg_rt.models.training_free.model import TrainingFreeSegmenter, create_training_free_model
from zsseg_rt.models.zegclip.config import ZegCLIPConfig, load_zegclip_config
from zsseg_rt.models.zegclip.losses import ZegCLIPLoss, zegclip_loss
from zsseg_rt.models.zegclip.model import ZegCLIP
from zsseg_rt.models.zegclip.official import OfficialImportReport, load_official_zegclip
from zsseg_rt.models.zegformer import ZegFormerConfig, load_zegformer_config  # registers the "zegformer" family

__all__ = [
    "load_official_any",
    "load_model_config",
    "create_model",
    "load_official_zegclip",
    "load_native",
    "save_native",
    "convert_official",
    "add_convert_command",
    "ZegCLIP",
    "ZegCLIPConfig",
    "VocabularyCache",
    "load_config",
    "load_zegclip_config",
    "ModelFamily",
    "register_family",
    "families",
    "family_of",
    "get_family",
    "list_configs",
    "load_class_names",
    "load_templates",
    "load_text_embeddings",
    "zegclip_loss",
    "ZegCLIPLoss",
    "OfficialImportReport",
    "WeightsError",
    "CLIPRC",
    "CLIPRCConfig",
    "CLIPRCLoss",
    "create_cliprc",
    "load_cliprc_config",
    "load_official_cliprc",
    "TrainingFreeSegmenter",
    "TrainingFreeConfig",
    "create_training_free_model",
    "load_training_free_config",
    "ZegFormerConfig",
    "load_zegformer_config",
]
