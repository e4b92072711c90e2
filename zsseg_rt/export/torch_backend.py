"""The torch backend of ``zsseg_rt.Engine``: the PyTorch model a windowed bundle was exported from, run through the
same graph wrappers the exporter traced (``zsseg_rt.export.graphs``), so the two cannot drift apart.

It lives on the torch side: the runtime finds it by name (``backend="torch"``) through the ``zsseg_rt.backends``
entry point of the installed package, and never imports this module itself.

Precision: "fp32" (default, exact), "fp16" or "bf16" (``export/torch_precision.py``: which parts stay fp32). A
reduced precision is used only after the accuracy gate (``prepare/gate.py``, the one TensorRT builds pass)
has compared it with ONNX Runtime fp32 for this model, device and torch version: the result is recorded under
``<bundle>/engines/`` (``runtime/precision_records.py``) and the gate runs on first use when there is no record.
On CUDA the device pipeline replays each frame as a CUDA graph (``cuda_graphs``; ``runtime/device/cuda_graphs.py``).
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any, Optional, Sequence

import numpy as np

from zsseg_rt.bundle import BundleMeta, Names
from zsseg_rt.runtime.backends import Backend, OpenRequest, runner_factory
from zsseg_rt.runtime.precision_records import (
    PrecisionGateRefused,
    PrecisionKey,
    find_or_prepare,
    precision_root,
    recipe_text,
    write_record,
)

__all__ = ["TorchBackend", "open_torch", "prepare_torch_precision", "source_model", "torch_precision_key"]
LOG = logging.getLogger("zsseg_rt.precision")


def source_model(meta: BundleMeta, model: Any = None) -> Any:
    """The PyTorch model a bundle runs on the torch backend: ``model`` when given, else the bundle's source
    checkpoint, as its family decides (``Family.bundle_model``)."""
    from zsseg_rt.contract.registry import get_family

    return get_family(meta.family).export.bundle_model(meta, model)


def device_description(device) -> str:
    """What a torch precision's gate record is tied to: the GPU's name and compute capability, or the CPU's bf16."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda {torch.cuda.get_device_name(device)} sm {major}.{minor}"
    from zsseg_rt.runtime.cpu_features import cpu_features

    features = cpu_features()
    return f"{device.type} {features.machine} bf16 {features.bf16}"


def torch_precision_key(precision, fingerprint: str, device) -> PrecisionKey:
    """The record key of a torch precision (``TorchPrecision``) for a model (its ``model_fingerprint``) on a device."""
    import torch

    return PrecisionKey(
        backend="torch",
        precision=precision.name,
        source="model",
        source_sha256=fingerprint,
        library=f"torch {torch.__version__}",
        device=device_description(device),
        recipe=recipe_text(precision.recipe()),
    )


class TorchBackend(Backend):
    """Runs the PyTorch model the bundle was exported from (reference backend; needs torch).

    Args:
        meta: the bundle.
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        model: the PyTorch model to run (default: the bundle's source checkpoint). A given model is never changed:
            it runs as it is when it is already in eval mode on ``device`` at fp32; otherwise the backend runs a copy
            (moved to ``device``, in eval mode, converted at a reduced precision), and the caller's model keeps its
            device, mode and dtype.
        precision: "fp32" (exact), "fp16" or "bf16".
        fp32_parts: parts kept in fp32 at a reduced precision (default ``torch_precision.DEFAULT_FP32_PARTS``).
        gate: check the accuracy-gate record of a reduced precision (running the gate when there is none); False
            skips it (for measurements and the gate itself, never for users).
        accept_below_gate: record a failing gate as accepted (explicit override) instead of refusing.
        cache_dir: where gate records live (default ``<bundle>/engines``).
        cuda_graphs: "auto"/True: the device pipeline captures each frame as a CUDA graph on CUDA; False: eager.
        gate_images: photos for a first-use gate (default: the sample photos).
        force: run the gate again even when a record exists (``zsseg build-engine --backend torch --force``).
    """

    name = "torch"

    def __init__(
        self,
        meta: BundleMeta,
        device: str = "auto",
        model: Any = None,
        precision: str = "fp32",
        *,
        fp32_parts: Optional[Sequence[str]] = None,
        gate: bool = True,
        accept_below_gate: bool = False,
        cache_dir: Optional[str] = None,
        cuda_graphs: Any = "auto",
        gate_images: Optional[Sequence] = None,
        force: bool = False,
    ):
        import torch

        from zsseg_rt.export.graphs import HeadGraph, ImageEncoderGraph, TextEncoderGraph

        from .torch_precision import DEFAULT_FP32_PARTS, PrecisionGraph, TorchPrecision, convert_for_precision

        spec = TorchPrecision(precision, tuple(DEFAULT_FP32_PARTS if fp32_parts is None else fp32_parts))
        given = model is not None
        model = source_model(meta, model)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if cuda_graphs not in ("auto", True, False):
            raise ValueError(f"cuda_graphs must be 'auto', True or False, got {cuda_graphs!r}")
        self._torch = torch
        self.device = torch.device(device)
        if given and (spec.reduced or not _ready_to_run(model, self.device)):
            model = copy.deepcopy(model)  # the caller's model keeps its device, mode and dtype
        self.cuda_graphs = self.device.type == "cuda" if cuda_graphs == "auto" else bool(cuda_graphs)
        if self.cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs a CUDA device, got device={device!r}")
        model = model.eval().to(self.device)
        fingerprint = _fingerprint(model) if spec.reduced and gate else ""
        image, head, text = ImageEncoderGraph(model), HeadGraph(model, meta.grid), TextEncoderGraph(model)
        for graph in (image, head, text):  # buffers the wrappers make themselves (the text graph's positions, mask)
            graph.to(self.device)
        convert_for_precision([image, head], spec, keep_fp32=text)
        self.precision = spec.name
        self.precision_spec = spec
        self._image = PrecisionGraph(image, spec) if spec.reduced else image
        self._head = PrecisionGraph(head, spec, output_dtype=torch.float32) if spec.reduced else head
        self._text = text
        self._io = meta.io
        self.image_size = int(meta.image_size)  # the image graph's input side (the fp8 variant's probe input)
        self.precision_record: Optional[dict] = None
        if spec.reduced and gate:
            key = torch_precision_key(spec, fingerprint, self.device)
            self.precision_record = self._gated_record(meta, key, cache_dir, accept_below_gate, gate_images, force)

    def _gated_record(self, meta, key: PrecisionKey, cache_dir, accept_below_gate: bool, images, force: bool) -> dict:
        """The passing (or accepted) gate record of ``key``; the gate runs now when there is none (or ``force``)."""
        from zsseg_rt.prepare.gate import EngineAccuracyError

        root = precision_root(meta, cache_dir)

        def announce(why: str) -> None:
            LOG.warning(
                "torch precision=%r on %s has no gate record for this model yet (%s): running the accuracy gate "
                "against ONNX Runtime fp32 now (once)",
                key.precision,
                key.device,
                why,
            )

        def make() -> None:
            gate = run_torch_gate(meta, self, key.precision, accept_below_gate, images)
            write_record(root, key, gate, extra={"torch_precision": self.precision_spec.recipe()})
            if not gate["accepted"]:
                raise EngineAccuracyError(
                    f"{gate['summary']}. torch precision={key.precision!r} is refused on {key.device} (recorded in "
                    f"{root!r}); use Engine(..., precision='fp32'), or accept it with `zsseg build-engine BUNDLE "
                    "--backend torch "
                    f"--precision {key.precision} --accept-below-gate`"
                )

        try:
            return find_or_prepare(root, key, True, make, announce, force=force)[0]
        except PrecisionGateRefused as exc:
            raise EngineAccuracyError(str(exc)) from None

    # the device-resident pipeline (runtime/device/device_pipeline.py): where it runs, its executor, its CUDA graphs
    @property
    def runs_on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def device_memory_peak(self) -> Optional[dict]:
        """The peak of torch's CUDA allocator for ``zsseg profile`` (None on the CPU)."""
        if self.device.type != "cuda":
            return None
        return {"bytes": int(self._torch.cuda.max_memory_allocated()), "how": "torch.cuda.max_memory_allocated"}

    def device_executor(self):
        from zsseg_rt.runtime.device.device_pipeline import TorchExecutor

        return TorchExecutor(self)

    def encoder_variants(self):
        """The image encoder variants the device pipeline may choose among (``export/torch_encoders.py``)."""
        from zsseg_rt.runtime.device.encoder_choice import CANDIDATES

        return CANDIDATES

    def encoder_unavailable(self, name: str) -> Optional[str]:
        """Why variant ``name`` cannot run on this device (None: it can), without building it."""
        from .torch_encoders import unavailable

        return unavailable(self.device, name)

    def encoder_variant(self, name: str):
        """The image graph of variant ``name``, built once (``torch_encoders.build_variant``; raises
        ``encoder_choice.Unavailable`` where it cannot run)."""
        built = self.__dict__.setdefault("_encoder_variants", {})
        if name not in built:
            from .torch_encoders import build_variant

            built[name] = build_variant(self, name)
        return built[name]

    def frame_graphs(self, executor):
        """The CUDA graphs of a frame (``cuda_graphs``), or None: eager."""
        if not self.cuda_graphs:
            return None
        from zsseg_rt.runtime.device.cuda_graphs import FrameGraphs, TorchCudaGraphs

        return FrameGraphs(TorchCudaGraphs(executor.memory), precision=self.precision)

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
        return {name: self._np(_declared_layout(name, t)) for name, t in zip(self._io["image"]["outputs"], outs)}

    def head(self, text, features):
        names = self._io["head"]["inputs"][1:]
        with self._torch.inference_mode():
            out = self._head(self._tensor(text), *(self._tensor(features[name]) for name in names))
        return self._np(out)

    def encode_text(self, tokens):
        with self._torch.inference_mode():
            out = self._text(self._tensor(tokens, np.int32))
        return self._np(out)


def _ready_to_run(model, device) -> bool:
    """Whether ``model`` runs here as it is: in eval mode throughout, every parameter and buffer on ``device``."""
    if any(module.training for module in model.modules()):
        return False
    tensors = list(model.parameters()) + list(model.buffers())
    return all(t.device.type == device.type and device.index in (None, t.device.index) for t in tensors)


def _declared_layout(name: str, tensor):
    """An image feature in the layout the bundle declares: a model that gives ``patch_grid [B, h, w, D]`` (image
    graphs of any size) for a bundle exported before, whose ``patches`` are ``[B, N, D]``, is flattened."""
    if name == Names.PATCHES and tensor.dim() == 4:
        return tensor.flatten(1, 2)
    return tensor


def _fingerprint(model) -> str:
    from .torch_precision import model_fingerprint

    return model_fingerprint(model)


def run_torch_gate(meta: BundleMeta, backend: TorchBackend, precision: str, accept_below_gate: bool, images) -> dict:
    """The accuracy gate of a torch backend at a reduced precision against ONNX Runtime fp32 on the CPU (the path
    users run: on CUDA the device pipeline, CUDA graphs included). Returns the gate's record."""
    from zsseg_rt.bundle import GRAPH_FILES
    from zsseg_rt.prepare.gate import run_accuracy_gate
    from zsseg_rt.runtime.backends import open_reference
    from zsseg_rt.runtime.file_verification import verify_bundle_files

    verify_bundle_files(meta, sorted(GRAPH_FILES.values()))  # the reference opens every graph
    reference = open_reference(meta)
    report = run_accuracy_gate(meta, backend, reference, precision, images=images, accept_below_gate=accept_below_gate)
    return report.as_dict()


def check_source_checkpoint(meta: BundleMeta) -> None:
    """The torch backend without a ``model`` runs the checkpoint the bundle was exported from: refuse, in words a
    command-line user can act on, a bundle that records none or whose checkpoint is not here."""
    source = meta.raw.get("source_checkpoint")
    if source and os.path.exists(source):
        return
    where = (
        f"its meta.json records {source!r}, which does not exist on this machine"
        if source
        else "it records no checkpoint (exported from random weights, or from CLIP weights named by a tag)"
    )
    raise FileNotFoundError(
        f"the torch backend runs the PyTorch checkpoint a bundle was exported from, and {meta.path!r} cannot give "
        f"it: {where}. Use the onnxruntime backend (zsseg: --backend onnxruntime; Python: backend='onnxruntime'), "
        "or, from Python only, hand the model over with Engine(..., model=...) (no command-line flag does that)"
    )


@runner_factory
def open_torch(request: OpenRequest) -> TorchBackend:
    """The torch row's factory (``zsseg_rt/runtime/backends/table.py``): the bundle's PyTorch model behind the
    windowed roles (the request's ``threads`` and ``verify`` concern graph files, which it does not open)."""
    if request.model is None:
        check_source_checkpoint(request.meta)
    precision = request.precision or "fp32"
    return TorchBackend(
        request.meta, device=request.device, model=request.model, precision=precision, **request.options
    )


def prepare_torch_precision(
    bundle_dir: str, precision: str = "fp16", *, force: bool = False, accept_below_gate: bool = False
) -> dict:
    """``zsseg build-engine --backend torch``: gate ``precision`` on this device ahead of use; the gate's record."""
    from zsseg_rt.bundle import load_meta

    backend = TorchBackend(load_meta(bundle_dir), precision=precision, accept_below_gate=accept_below_gate, force=force)
    return backend.precision_record or {}
