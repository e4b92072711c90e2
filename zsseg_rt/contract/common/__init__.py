"""What the model families share: ``BaseModelConfig`` and the vocabulary files (``config``), CLIP weight loading
(``weights``), the text encoder and embedding cache (``text``), native checkpoints and ``zsseg convert``
(``convert``) and the PyTorch whole-image / sliding-window inference glue (``predict``)."""
