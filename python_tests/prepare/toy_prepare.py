"""The toy backend's preparer (what ``zsseg_rt/prepare/<name>.py`` is for a built-in backend): make the int8 image
encoder (a copy of the bundle's), gate it against ONNX Runtime fp32 with the one accuracy gate, record it."""

import os
import shutil

from toybackend.precision import NAME, precision_key

from zsseg_rt.bundle import Files, load_meta
from zsseg_rt.prepare.gate import run_accuracy_gate
from zsseg_rt.prepare.gated import prepare_gated_record
from zsseg_rt.runtime.backends import WindowedGraphs, open_reference
from zsseg_rt.runtime.backends.onnxruntime import OrtRunner


def prepare_toy(bundle_dir, precision, *, cache_dir=None, force=False, accept_below_gate=False, threads=0):
    meta = load_meta(bundle_dir)

    def make(folder, extra):
        artefact = os.path.join(folder, "image_encoder.toy.onnx")
        shutil.copyfile(meta.file(Files.IMAGE_ENCODER), artefact)
        candidate = WindowedGraphs(OrtRunner(meta, WindowedGraphs.roles, "cpu", threads, image_encoder=artefact), meta)
        gate = run_accuracy_gate(
            meta,
            candidate,
            open_reference(meta, threads),
            precision,
            roles=("image",),
            accept_below_gate=accept_below_gate,
        )
        return artefact, gate.as_dict()

    return prepare_gated_record(meta, precision_key(meta, precision), cache_dir, force, "preparing", make, NAME, "fp32")
