"""Training-free dense CLIP (MaskCLIP, SCLIP, ClearCLIP, NACLIP): config, the segmenter (``model``) and its
sliding-window inference (``infer``, through the one :class:`zsseg_rt.pipeline.Postprocessor`). Bundled configs:
``configs/``."""
