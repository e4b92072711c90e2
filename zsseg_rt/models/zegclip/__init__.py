"""ZegCLIP (Zhou et al., CVPR 2023): config, prompted CLIP image tower (``backbone``), relationship descriptor +
decoder (``head``), the model (``model``), its loss (``losses``) and the official-checkpoint importer (``official``).
Bundled configs: ``configs/``."""
