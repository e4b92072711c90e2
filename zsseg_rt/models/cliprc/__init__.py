"""CLIP-RC (Zhang et al., CVPR 2024), built on ZegCLIP's pieces: config, region-level bridge image tower
(``backbone``), region alignment + bidirectional decoder (``head``), the model and recovery loss (``model``) and the
official-checkpoint importer (``official``). Bundled configs: ``configs/``."""
