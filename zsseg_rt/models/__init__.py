"""PyTorch models (needs torch + open_clip): the families ZegCLIP, CLIP-RC and training-free dense CLIP, their
configs, weights, losses and inference glue. One registry (:mod:`zsseg_rt.models.registry`) maps a family name
to its config and model classes; ``create_model``/``load_config``/``list_configs`` resolve names through it.

Public API: ``create_model``, ``load_config``, ``list_configs``, ``load_official_zegclip``, ``load_native``,
``ZegCLIP``, ``VocabularyCache``.
"""

from .cliprc import CLIPRC, CLIPRCLoss, create_cliprc
from .cliprc_config import CLIPRCConfig, load_cliprc_config
from .cliprc_official import load_official_any, load_official_cliprc
from .config import ZegCLIPConfig, load_class_names, load_templates, load_zegclip_config
from .convert import add_convert_command, convert_official, load_native, save_native
from .factory import create_model, load_model_config
from .losses import ZegCLIPLoss, zegclip_loss
from .official import OfficialImportReport, load_official_zegclip
from .registry import ModelFamily, families, family_of, get_family, list_configs, load_config, register_family
from .text import VocabularyCache, load_text_embeddings
from .training_free import TrainingFreeSegmenter, create_training_free_model
from .training_free_config import TrainingFreeConfig, load_training_free_config
from .weights import WeightsError
from .zegclip import ZegCLIP
from .zegformer import ZegFormerConfig, load_zegformer_config  # registers the ZegFormer family

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
