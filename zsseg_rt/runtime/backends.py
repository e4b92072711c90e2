"""Backends run the three bundle graphs; everything around them (pre/post-processing) is shared.

Each backend exposes ``encode_image``, ``head`` and ``encode_text`` on NumPy arrays. Only the torch backend
imports torch, and only when it is chosen.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

import numpy as np

from zsseg_rt.bundle import GRAPH_FILES, BundleMeta, Names

Features = Dict[str, np.ndarray]


class Backend:
    """Interface: NumPy in, NumPy out. Image features are a dict keyed by the bundle's image-encoder output
    names (ZegCLIP: ``image_global [B,D]``, ``patches [B,N,D]``), in meta.json's order."""

    name = "abstract"

    def encode_image(self, images: np.ndarray) -> Features:
        """``[B,3,S,S]`` float32 -> image features."""
        raise NotImplementedError

    def head(self, text: np.ndarray, features: Features) -> np.ndarray:
        """``text [C,D]`` + image features -> ``mask_logits [B,C,h,w]``."""
        raise NotImplementedError

    def encode_text(self, tokens: np.ndarray) -> np.ndarray:
        """``[P,L]`` int32 token ids -> ``[P,D]`` L2-normalised embeddings."""
        raise NotImplementedError


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError("the onnxruntime backend needs onnxruntime: pip install onnxruntime") from exc
    return onnxruntime


def ort_providers(device: str) -> List[str]:
    """ONNX Runtime execution providers for ``device`` ("auto", "cpu" or "cuda"); refuses an unusable "cuda"."""
    available = _ort().get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                f"device='cuda' was requested but this onnxruntime has no CUDAExecutionProvider "
                f"(available: {available}); install onnxruntime-gpu or use device='cpu'"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxRuntimeBackend(Backend):
    """Runs the bundle's ONNX graphs with ONNX Runtime. ``InferenceSession.run`` is thread-safe."""

    name = "onnxruntime"

    def __init__(self, meta: BundleMeta, device: str = "auto", threads: int = 0):
        ort = _ort()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        # ONNX Runtime's idle worker threads spin by default; on small CPUs (Jetson, small VMs) they then steal the
        # cores the native post-processing (OpenMP) runs on next: measured 4-30x slower post-processing here.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        providers = ort_providers(device)
        self.providers = providers
        self._io = meta.io
        self._sessions = {
            role: ort.InferenceSession(meta.file(name), options, providers=providers)
            for role, name in GRAPH_FILES.items()
        }

    def encode_image(self, images):
        names = self._io["image"]["outputs"]
        outs = self._sessions["image"].run(names, {Names.IMAGE: np.ascontiguousarray(images, dtype=np.float32)})
        return dict(zip(names, outs))

    def head(self, text, features):
        feeds = dict(features, **{Names.TEXT_EMBEDDINGS: text})
        return self._sessions["head"].run(list(self._io["head"]["outputs"]), feeds)[0]

    def encode_text(self, tokens):
        feeds = {Names.TOKENS: np.ascontiguousarray(tokens, dtype=np.int32)}
        return self._sessions["text"].run(list(self._io["text"]["outputs"]), feeds)[0]


class TensorRTBackend(Backend):
    """Runs engines built by ``zsseg build-engine`` (TensorRT 10). One execution context per graph, so calls
    are serialised with a lock (a TensorRT execution context is not thread-safe)."""

    name = "tensorrt"

    def __init__(self, meta: BundleMeta, precision: str = "fp16", engine_paths: Optional[Dict[str, str]] = None):
        """``engine_paths`` (role -> engine file) runs these engines, checked only against this machine's TensorRT
        and GPU (the accuracy gate uses it on a fresh build); default: ``find_engines`` for ``precision``."""
        from zsseg_rt.runtime import tensorrt as trt_run  # imports tensorrt itself lazily

        paths = dict(engine_paths) if engine_paths else trt_run.find_engines(meta.path, precision=precision)
        self._runners: Dict[str, Any] = {key: trt_run.TensorRTRunner(path) for key, path in paths.items()}
        self._io = meta.io
        self._lock = threading.Lock()

    def device_executor(self):
        """An executor running these engines on device buffers (the device-resident pipeline), on the image
        runner's CUDA context and a stream of its own."""
        from .cuda_memory import CudaMemory, TensorRTExecutor

        driver = self._runners["image"]._cuda
        driver.make_current()
        return TensorRTExecutor({role: self._runners[role].context for role in ("image", "head")}, CudaMemory(driver))

    def _run(self, key, feeds, outputs):
        with self._lock:
            result = self._runners[key].run(feeds)
        return [result[name] for name in outputs]

    def _limit(self, key: str, name: str) -> int:
        """Largest leading dimension the engine's optimisation profile accepts for input ``name``."""
        return int(self._runners[key].input_profile(name)[2][0])

    def encode_image(self, images):
        images = np.ascontiguousarray(images, dtype=np.float32)
        names = self._io["image"]["outputs"]
        step = self._limit("image", Names.IMAGE)
        parts = [self._run("image", {Names.IMAGE: images[i : i + step]}, names) for i in range(0, len(images), step)]
        return {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(names)}

    def head(self, text, features):
        step = self._limit("head", next(iter(features)))  # batch limit of the first image feature
        batch = len(next(iter(features.values())))
        outs = []
        for i in range(0, batch, step):
            feeds = {name: value[i : i + step] for name, value in features.items()}
            feeds[Names.TEXT_EMBEDDINGS] = text
            outs.append(self._run("head", feeds, self._io["head"]["outputs"])[0])
        return np.concatenate(outs)

    def encode_text(self, tokens):
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        step = self._limit("text", Names.TOKENS)
        return np.concatenate(
            [
                self._run("text", {Names.TOKENS: tokens[i : i + step]}, self._io["text"]["outputs"])[0]
                for i in range(0, len(tokens), step)
            ]
        )


class TorchBackend(Backend):
    """Runs the PyTorch model the bundle was exported from (reference backend; needs torch)."""

    name = "torch"

    def __init__(self, meta: BundleMeta, device: str = "auto", model=None):
        import torch

        from zsseg_rt.export.graphs import HeadGraph, ImageEncoderGraph, TextEncoderGraph

        if model is None:
            model = _load_source_model(meta)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._torch = torch
        self.device = torch.device(device)
        model = model.eval().to(self.device)
        self._image = ImageEncoderGraph(model)
        self._head = HeadGraph(model, meta.grid)
        self._text = TextEncoderGraph(model)
        self._io = meta.io

    # the graphs and I/O table, for the device-resident pipeline (runtime/device_pipeline.py)
    @property
    def image_graph(self):
        return self._image

    @property
    def head_graph(self):
        return self._head

    @property
    def io(self):
        return self._io

    def _np(self, tensor):
        return tensor.detach().float().cpu().numpy()

    def _tensor(self, array, dtype=np.float32):
        return self._torch.from_numpy(np.ascontiguousarray(array, dtype)).to(self.device)

    def encode_image(self, images):
        with self._torch.inference_mode():
            outs = self._image(self._tensor(images))
        return {name: self._np(t) for name, t in zip(self._io["image"]["outputs"], outs)}

    def head(self, text, features):
        names = self._io["head"]["inputs"][1:]
        with self._torch.inference_mode():
            out = self._head(self._tensor(text), *(self._tensor(features[name]) for name in names))
        return self._np(out)

    def encode_text(self, tokens):
        with self._torch.inference_mode():
            out = self._text(self._tensor(tokens, np.int32))
        return self._np(out)


def _load_source_model(meta: BundleMeta):
    import os

    from zsseg_rt.models import load_native

    if meta.family == "zeroseg":  # the checkpoint holds the student only; the bundle adds the teacher's text tower
        raise ValueError(
            "the torch backend of a ZeroSeg bundle needs the exported model: pass "
            "model=zsseg_rt.models.zeroseg.bundle.build_bundle_model(student, text_weights, threshold) to Engine, "
            "or use backend='onnxruntime'"
        )
    source = meta.raw.get("source_checkpoint")
    if not source or not os.path.exists(source):
        raise FileNotFoundError(
            f"the torch backend needs the checkpoint the bundle was exported from; meta.json records "
            f"{source!r}, which does not exist here. Pass model=... to Engine, or use backend='onnxruntime'."
        )
    return load_native(source)
