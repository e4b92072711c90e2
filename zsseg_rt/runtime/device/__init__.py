"""The device pipeline: a frame's data stays on the GPU from its upload to its labels (no torch needed).

``device_pipeline`` (the pipeline, its memories and executors), ``cuda_memory`` (raw CUDA allocations and the
TensorRT executor), ``cuda_driver`` (the ctypes binding of ``libcuda``), ``cuda_graphs`` (each kind of frame
captured once, then replayed), ``postprocess_plans`` (the post-processing as prepared launches),
``postprocess_choice`` (their kernel, timed on the device or pinned: ``Engine(postprocess_kernel=...)``),
``stage_timing`` (the per-stage clocks), ``buffer_views`` (views of its buffers), ``device_video`` (the video
filter's keyframes on it) and ``in_flight`` (frames in flight). The Engine and the backends reach it; nothing here
imports them.
"""
