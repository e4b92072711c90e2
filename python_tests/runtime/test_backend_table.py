"""The backend table (zsseg_rt/runtime/backends/table.py): a new backend is one module plus one row. A toy runner
installed through a ``zsseg_rt.backends`` entry point (a dist-info folder on the path, as pip writes one) runs a
windowed bundle and a two-stage bundle through ``Engine`` and ``zsseg segment``, with the labels ONNX Runtime gives;
the registration of zsseg_rt 0.1 (a factory callable) still works; a row that does not open a pipeline's roles is
refused for it, naming the backends that do; the command line's choices are the table's."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from support import subprocess_env

from zsseg_rt import Engine
from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.runtime.backends import table

pytest.importorskip("onnxruntime")
PHOTO = os.path.join(SAMPLES_DIR, "JPEGImages", "2011_000006.jpg")

TOY_MODULE = '''
"""A backend of its own: one module and one table row (the docs' walk-through, python_tests/runtime)."""
import collections

import onnxruntime

from zsseg_rt.bundle import graph_files
from zsseg_rt.runtime.backends.table import BackendSpec

CALLS = collections.Counter()


class ToyRunner:
    name = "toy"
    precision = requested_precision = "fp32"
    precision_record = None

    def __init__(self, meta, roles):
        files = graph_files(meta.pipeline)
        self.sessions = {role: onnxruntime.InferenceSession(meta.file(files[role])) for role in roles}

    def run(self, role, feeds, outputs):
        CALLS[role] += 1
        return self.sessions[role].run(list(outputs), dict(feeds))

    def batch_limit(self, role, input):
        return 2  # every call in chunks of two: the pipelines' split and join are exercised


def open_toy(meta, roles, *, device, threads, precision, model, verify, **options):
    return ToyRunner(meta, roles)


ROW = BackendSpec(
    name="toy",
    factory="toy_zsseg_backend:open_toy",
    devices=("cpu",),
    precisions=("fp32",),
    default_precision="fp32",
    roles=("image", "head", "text", "mask", "clip_image"),
    summary="a toy backend (tests)",
)
'''


@pytest.fixture
def toy_dist(tmp_path, monkeypatch):
    """A toy distribution on the path: its module and a dist-info folder declaring the ``toy`` entry point."""
    (tmp_path / "toy_zsseg_backend.py").write_text(TOY_MODULE)
    info = tmp_path / "toy_zsseg_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-zsseg-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[zsseg_rt.backends]\ntoy = toy_zsseg_backend:ROW\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    table.BACKENDS.unregister("toy")
    sys.modules.pop("toy_zsseg_backend", None)


@pytest.fixture(scope="module")
def two_stage_bundle(family_bundles):
    return family_bundles["zegformer"]  # read by ONNX Runtime and the toy runners only: nothing writes into it


def _same_labels(bundle, backend, classes):
    import cv2

    photo = cv2.imread(PHOTO)
    ours = Engine(bundle, classes=classes, backend=backend)
    reference = Engine(bundle, classes=classes, backend=table.REFERENCE_BACKEND)
    got, want = ours(photo), reference(photo)
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-5)  # fp32, the same graphs
    return ours


def test_a_toy_runner_from_an_entry_point_runs_the_windowed_pipeline(toy_dist, tiny_bundle):
    assert "toy" in table.backend_names()  # by name, before anything is imported
    engine = _same_labels(tiny_bundle, "toy", ["person", "sofa", "chair", "floor", "wall"])
    calls = sys.modules["toy_zsseg_backend"].CALLS
    assert engine.backend.name == "toy" and calls["image"] >= 1 and calls["head"] >= 1 and calls["text"] >= 2


@pytest.mark.host_only  # the toy runner and the reference: ONNX Runtime on the CPU (no CUDA provider on the GPU image)
def test_a_toy_runner_from_an_entry_point_runs_the_two_stage_pipeline(toy_dist, two_stage_bundle):
    engine = _same_labels(two_stage_bundle, "toy", ["cat", "dog", "person", "sofa"])
    calls = sys.modules["toy_zsseg_backend"].CALLS
    assert engine.backend.name == "toy" and calls["mask"] >= 1 and calls["clip_image"] >= 1


def test_zsseg_segment_runs_the_toy_backend(toy_dist, tiny_bundle, tmp_path):
    out = tmp_path / "seg.png"
    run = subprocess.run(
        [sys.executable, "-m", "zsseg_rt.cli", "segment", PHOTO, "--bundle", tiny_bundle, "--classes", "person,sofa"]
        + ["--backend", "toy", "-o", str(out)],
        env=subprocess_env(str(toy_dist)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.is_file()


@pytest.mark.host_only  # a refusal before any graph runs (a CPU-only toy row): nothing a GPU changes
def test_a_row_is_refused_for_a_pipeline_whose_roles_it_does_not_open(toy_dist, two_stage_bundle):
    windowed_only = table.BackendSpec(
        name="toy-windowed",
        factory="toy_zsseg_backend:open_toy",
        devices=("cpu",),
        precisions=("fp32",),
        default_precision="fp32",
        roles=("image", "head", "text"),
    )
    with table.BACKENDS.adding(windowed_only):
        with pytest.raises(ValueError, match="toy-windowed.*mask branch|does not open the mask branch"):
            Engine(two_stage_bundle, backend="toy-windowed")
    assert "toy-windowed" not in table.backend_names()


def test_the_registration_of_0_1_still_works(tiny_bundle):
    from zsseg_rt.runtime.backends import OnnxRuntimeBackend, register_backend

    made = []

    def factory(meta, device="auto", model=None, **options):
        made.append(options)
        return OnnxRuntimeBackend(meta, "cpu")

    with table.BACKENDS.kept():
        register_backend("legacy-toy", factory)
        engine = Engine(tiny_bundle, classes=["person", "sofa"], backend="legacy-toy")
        assert engine(np.zeros((40, 50, 3), np.uint8)).labels.shape == (40, 50) and made == [{}]
        assert "legacy-toy" in table.backend_names()
    assert "legacy-toy" not in table.backend_names()


def test_the_command_line_offers_the_table():
    from zsseg_rt.console.arguments import BACKEND_CHOICES, PRECISION_CHOICES

    assert list(BACKEND_CHOICES) == table.backend_names()
    assert list(PRECISION_CHOICES) == table.precision_names()
    assert set(BACKEND_CHOICES) >= {table.AUTO, *table.BUILTIN_BACKENDS}


def test_the_pipelines_are_served_by_the_rows_that_open_their_roles():
    from zsseg_rt.runtime.pipelines import pipeline_class

    for kind in ("windowed", "two_stage"):
        cls = pipeline_class(kind)
        assert cls.backend_names() == [r.name for r in table.backend_rows()[:4] if set(cls.roles) <= set(r.roles)]
        assert table.REFERENCE_BACKEND in cls.backend_names()


def test_the_docs_show_the_table():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "development.md").read_text(encoding="utf-8")
    shown = text.split("<!-- backend-table:begin -->\n", 1)[1].split("\n<!-- backend-table:end -->", 1)[0]
    assert shown == table.markdown_table(), "docs/development.md's backend table is stale: paste markdown_table()"
