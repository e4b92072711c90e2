"""``zsseg_rt.Engine`` runs a bundle of every registered model family, with torch, open_clip, ``zsseg_rt.export`` and
``zsseg_rt.models`` unimportable (the runtime is family-blind and torch-free), and bundles written before meta.json
named its pipeline (the migration) run exactly like new ones. Every family's bundle also runs on OpenVINO (when it is
installed; required in CI), equal to ONNX Runtime fp32 within the documented bound."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from support import backend_available, subprocess_env  # noqa: E402

from zsseg_rt.bundle import load_meta  # noqa: E402
from zsseg_rt.bundle.schema import write_meta  # noqa: E402
from zsseg_rt.models import families, get_family  # noqa: E402

BLOCKER = """
import sys

class Blocker:
    blocked = ("zsseg_rt.export", "zsseg_rt.models", "zsseg_rt.train", "zsseg_rt.eval", "torch", "open_clip")

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in self.blocked):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocker())
"""

RUN = """
import json, pkgutil, importlib
import numpy as np
import zsseg_rt, zsseg_rt.runtime, zsseg_rt.vocabulary, zsseg_rt.bundle, zsseg_rt.pipeline
for package in (zsseg_rt.runtime, zsseg_rt.vocabulary, zsseg_rt.bundle, zsseg_rt.pipeline):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith((".zegformer", ".tokenizer", ".vocabulary")):  # deprecated paths: they warn
            continue
        importlib.import_module(info.name)
out = {}
rgb = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
other_backends = json.loads(sys.argv[2])
for name, path in json.loads(sys.argv[1]).items():
    engine = zsseg_rt.Engine(path, classes=["person", "cat", "sofa"], backend="onnxruntime", device="cpu")
    result = engine(rgb, color_order="rgb")
    thin = {}  # 1 x N and N x 1 images: every pipeline labels every pixel (the two-stage one used to fail)
    for shape in ((1, 1024, 3), (1024, 1, 3), (1, 1, 3)):
        labels = engine(rgb[:1, :1].repeat(shape[0], 0).repeat(shape[1], 1), color_order="rgb").labels
        thin["x".join(map(str, shape[:2]))] = [list(labels.shape), int(labels.min()), int(labels.max())]
    out[name] = {"pipeline": type(engine.pipeline).__name__, "labels": result.labels.tolist(),
                 "names": result.class_names, "thin": thin}
    for backend in other_backends:  # the same image on another CPU backend, compared with ONNX Runtime fp32
        other = zsseg_rt.Engine(path, classes=["person", "cat", "sofa"], backend=backend, device="cpu")
        got = other(rgb, color_order="rgb")
        agree = got.labels == result.labels
        out[name][backend] = {"backend": other.backend.name, "agree": float(agree.mean()),
                              "score_diff": float(np.abs(got.scores - result.scores)[agree].max(initial=0.0))}
assert not [m for m in sys.modules if m.startswith(("torch", "open_clip", "zsseg_rt.models", "zsseg_rt.export"))]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def bundles(family_bundles, tmp_path_factory):
    """This module's copies of the session's tiny bundles, one per registered family, each exported by its own
    family's route (a ZeroSeg student with its teacher's text tower): OpenVINO writes its compiled-model cache into a
    bundle's engines/ folder, which the shared bundles must not get."""
    missing = sorted(set(families()) - set(family_bundles))
    assert not missing, f"no tiny bundle for the registered families {missing}: add them to family_bundles.TINY_CONFIGS"
    root = tmp_path_factory.mktemp("family_bundles")
    return {family: shutil.copytree(family_bundles[family], str(root / family)) for family in families()}


def _legacy_copy(bundle: str, dst: str) -> str:
    """The bundle as zsseg_rt 0.1 wrote it: no pipeline / evaluation protocol, the two-stage section named after
    its family; re-signed."""
    copy = shutil.copytree(bundle, dst)
    path = os.path.join(copy, "meta.json")
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    raw.pop("pipeline")
    raw.pop("evaluation_protocol")
    if "two_stage" in raw:
        raw["zegformer"] = raw.pop("two_stage")
    write_meta(path, raw)
    return copy


def _run(bundles: dict, other_backends=()) -> dict:
    env = subprocess_env()
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER + RUN, json.dumps(bundles), json.dumps(list(other_backends))],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_engine_runs_every_family_bundle_with_torch_and_models_blocked(bundles, tmp_path):
    assert set(bundles) == set(families())
    legacy = {f"legacy-{name}": _legacy_copy(path, str(tmp_path / name)) for name, path in bundles.items()}
    others = ["openvino"] if backend_available("openvino") else []  # required (fails) in CI, else skipped here
    got = _run({**bundles, **legacy}, others)
    for family, path in bundles.items():
        meta = load_meta(path)
        assert meta.family == family and meta.pipeline == get_family(family).export.pipeline
        assert meta.evaluation_protocol == get_family(family).evaluation.protocol
        expected = {"windowed": "WindowedPipeline", "two_stage": "TwoStagePipeline"}[meta.pipeline]
        assert got[family]["pipeline"] == expected
        for size, (shape, low, high) in got[family]["thin"].items():  # a thin image gets a label per pixel
            assert shape == [int(v) for v in size.split("x")], (family, size, shape)
            assert 0 <= low <= high < len(got[family]["names"]), (family, size, low, high)
        for backend in others:  # fp32 on another backend: the documented bound (support.assert_segmentations_agree)
            other = got[family][backend]
            assert other["backend"] == backend, (family, other)
            assert other["agree"] >= 0.999 and other["score_diff"] <= 1e-5, (family, backend, other)
        assert got[f"legacy-{family}"] == got[family]  # migrated meta: the same pipeline, labels and names
        old = load_meta(legacy[f"legacy-{family}"])
        assert (old.pipeline, old.evaluation_protocol) == (meta.pipeline, meta.evaluation_protocol)
