"""The video filter's keyframes on the device pipeline (``Engine.segment_on_device``; ``stream.VideoSegmenter`` with
``device``): the frame goes up once, the encoder and head run on the device (``DevicePipeline``'s own stages), and
what the filter needs stays there, in the stream's buffers (``stream.filter_arrays.DeviceArrays``):

- with ``stabilize``: every class's scores at ``1/stride`` of the frame (``ops.class_state`` on the window logits:
  the host path's ``pipeline.class_scores.window_class_scores`` where the logits are), the filter's input;
- without: the frame's labels and winning scores (``ops.segment_windows``, the pipeline's post-processing), copied
  into the stream's buffers (the anchor that later frames are propagated from).

Nothing is copied down here: the filter copies the labels down once it has them (``DeviceArrays.to_host``).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np

from zsseg_rt import ops

__all__ = ["device_unavailable", "device_keyframes", "host_path_reason"]


def host_path_reason(engine: Any) -> Optional[str]:
    """Why ``engine`` runs its frames on the host path rather than its device pipeline (None: the device pipeline
    runs them): it has none (a CPU backend, ``device_pipeline=False``), or a post-processing mode other than exact.
    The first refusal of every device-side feature (keyframes on the device, frames in flight)."""
    pipeline = getattr(engine, "pipeline", None)
    if getattr(pipeline, "device", None) is None:
        return "the Engine runs on the host path (no device pipeline: a CPU backend, or device_pipeline=False)"
    if getattr(pipeline, "mode", "exact") != "exact":
        return f"mode={pipeline.mode!r} runs on the host path"
    return None


def device_unavailable(engine: Any) -> Optional[str]:
    """Why ``engine``'s keyframes cannot be made on its device pipeline (None: they can)."""
    reason = host_path_reason(engine)
    if reason is not None:
        return reason
    pipeline = engine.pipeline
    post = getattr(pipeline, "postprocessor", None)
    if post is not None and (post.activation != "sigmoid" or post.window_logits != "padded"):
        return "the bundle's post-processing (not sigmoid over padded windows) runs on the host"
    if (
        getattr(pipeline.meta, "whole_image", None) is not None
        and getattr(pipeline, "inference", "windows") != "windows"
    ):
        return "whole-image inference runs on the host"
    return None


def device_keyframes(
    engine: Any, images: Sequence[np.ndarray], arrays: Any, stride: Optional[int], color_order: str, vocab: Any
) -> List[Any]:
    """One ``Result`` per image whose ``labels`` / ``scores`` (``stride`` None) or ``class_scores.scores`` (the
    state, ``[C, H / stride, W / stride]`` rounded up) are buffers of ``arrays``, enqueued on the pipeline's stream."""
    from zsseg_rt.pipeline.class_scores import ClassScores, state_size

    from ..result import Result

    pipeline = engine.pipeline
    device = pipeline.device
    results = []
    with pipeline._device_lock:
        if pipeline._device_vocab is not vocab:  # as the pipeline's own device call: the vocabulary once
            device.set_vocabulary(vocab.text, vocab.bias)
            pipeline._device_vocab = vocab
        memory = device.memory
        memory.activate()
        for image in images:
            pipeline.plan(image, vocab.bias, len(vocab.text))  # the input limits, as the pipeline checks them
            frame = np.ascontiguousarray(image)
            size = (int(frame.shape[0]), int(frame.shape[1]))
            host, device_frame = device._frame_buffers(frame)
            memory.host_access(host, True, "frame")
            np.copyto(host, frame)
            with memory.stream_context():
                scaled, windows = device.frame_plan(host)
                memory.upload("frame", host, device_frame)
                logits = device._window_logits(device_frame, scaled, windows, color_order)
                labels = scores = class_scores = None
                if stride is None:
                    labels, scores = _copied_result(device, arrays, logits, windows, scaled, size)
                else:
                    class_scores = ClassScores(
                        _state(device, arrays, logits, windows, scaled, state_size(size, stride)), size
                    )
            result = Result(labels, scores, list(vocab.names), color_order, class_scores=class_scores)  # type: ignore[arg-type]  # (labels None: the class scores finalize them)
            result.timing, result.banner, result.backend = {}, engine.meta.weights_banner, engine.backend.name
            result.image = image
            result.inference = "windows"
            results.append(result)
    return results


def _state(device: Any, arrays: Any, logits: Any, windows, scaled, size) -> Any:
    """The frame's per-class state in the stream's "current" buffer (``ops.class_state``)."""
    classes = int(logits.shape[1])
    state = arrays.empty("current", (classes,) + tuple(size), np.float32)
    head = (int(device.meta.image_size),) * 2
    ops.class_state(logits, [tuple(w) for w in windows], head, tuple(scaled), tuple(size), class_bias=device._bias,
                    sigmoid=True, out=state, stream=device.memory.stream)  # fmt: skip
    return state


def _copied_result(device: Any, arrays: Any, logits: Any, windows, scaled, size):
    """The frame's labels and scores (the pipeline's post-processing) copied into the stream's buffers: the pipeline
    reuses its own for the next frame, of this stream or another."""
    labels, scores = device._postprocess(logits, windows, scaled, size)
    own = arrays.empty("labels", size, np.int32), arrays.empty("scores", size, np.float32)
    device.memory.copy_into(own[0], 0, labels)
    device.memory.copy_into(own[1], 0, scores)
    return own
