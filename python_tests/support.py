"""Shared test support: the golden tiny models, a vocabulary that gives several labels, and comparison helpers
for parity tests with the means to prove that a comparison can fail."""

from __future__ import annotations

import contextlib
import importlib
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent  # the checkout (its benchmarks/ and checks/ packages)
GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
# A vocabulary for which the tiny test models give several labels per sample photo (>= 3; asserted by the tests)
VOCAB10 = ["person", "cat", "dog", "car", "chair", "sofa", "table", "plant", "bottle", "tv"]


def golden_tiny_model(family: str = "zegclip"):
    """The tiny model of the golden fixtures (python_tests/data/golden), imported from its official-layout
    checkpoint: random but non-degenerate weights (mask logits spread over several units, several classes win),
    unlike a freshly initialised tiny model whose logits are nearly flat (one label everywhere)."""
    import zsseg_rt.models as models

    folder, config = {"zegclip": ("zegclip_tiny", "zegclip_tiny_test"), "cliprc": ("cliprc_tiny", "cliprc_tiny_test")}[
        family
    ]
    loader = models.load_official_zegclip if family == "zegclip" else models.load_official_cliprc
    return loader(GOLDEN / folder / "official_tiny.safetensors", config=config, decoder_ffn_dim=128).eval()


def session_shared_dir(tmp_path_factory) -> Path:
    """The test session's temporary directory that every pytest-xdist worker sees: each worker's own basetemp is a
    sub-directory of the session's (``pytest-N/gw0``); without xdist it is the session's basetemp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(tmp_path_factory, name: str, inputs, build) -> Path:
    """``build(directory)`` run once per test session however many pytest-xdist workers ask: the first to take the
    lock builds into ``<session dir>/<name>-<key>``, the others wait for it and reuse the directory. The key is a
    hash of ``inputs`` (file paths, hashed by content, and strings): another source is another directory, never a
    stale one. A build that raises leaves nothing marked done, so the next caller builds again (and fails alike)."""
    import hashlib

    from filelock import FileLock

    digest = hashlib.sha256()
    for item in inputs:
        digest.update(Path(item).read_bytes() if isinstance(item, Path) else str(item).encode())
        digest.update(b"\0")
    shared = session_shared_dir(tmp_path_factory)
    target = shared / f"{name}-{digest.hexdigest()[:16]}"
    with FileLock(str(target) + ".lock"):
        if not (target / ".done").is_file():
            import shutil

            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            build(target)
            (target / ".done").write_text("", encoding="utf-8")
    return target


def export_tiny_bundle(root) -> str:
    """Exports the golden tiny ZegCLIP model (64 px input, 4x4 patch grid, max 32 classes) as a bundle under
    ``root`` (its native checkpoint beside it, recorded in meta.json for the torch backend). Needs torch.
    Returns the bundle directory. tools/runtime_only_tests.sh calls it to hand a bundle to a torch-free venv."""
    import os

    from zsseg_rt.contract.common.convert import save_native
    from zsseg_rt.export.onnx_export import export_bundle

    model = golden_tiny_model("zegclip")
    native = save_native(model, os.path.join(root, "native"))
    return export_bundle(model, os.path.join(root, "bundle"), max_classes=32, source=str(native), verify_images=())


def assert_segmentations_agree(
    labels_a, scores_a, labels_b, scores_b, min_agree: float = 0.999, score_atol: float = 1e-5, what: str = ""
) -> None:
    """Labels equal on at least ``min_agree`` of the pixels and winning scores within ``score_atol`` where they
    agree (fp32 implementations can flip a pixel only where two classes tie within their rounding)."""
    agree = np.asarray(labels_a) == np.asarray(labels_b)
    assert agree.mean() >= min_agree, f"{what}: labels agree on {agree.mean():.5f} < {min_agree} of the pixels"
    diff = np.abs(np.asarray(scores_a, np.float64) - np.asarray(scores_b, np.float64))[agree]
    assert diff.max(initial=0.0) <= score_atol, f"{what}: winning scores differ by {diff.max():.3e} > {score_atol}"


@contextlib.contextmanager
def perturbed_head(engine, class_index: int, delta: float):
    """Mutation: ``engine``'s head adds ``delta`` to the logits of one class (the other side stays correct)."""
    original = engine.backend.head

    def head(text, features):
        logits = np.array(original(text, features), copy=True)
        logits[:, class_index] += np.float32(delta)
        return logits

    engine.backend.head = head
    try:
        yield engine
    finally:
        engine.backend.head = original


def backend_available(backend: str) -> bool:
    """Whether ``backend``'s library is installed: OpenVINO may not be (ONNX Runtime always is). Where
    ``ZSSEG_REQUIRE_OPENVINO=1`` (tools/run_tests.sh, tools/runtime_only_tests.sh: CI installs OpenVINO) a missing
    OpenVINO fails the test instead, so the backend's tests cannot silently skip there. The torch backend needs
    torch, which the runtime-only install (tools/runtime_only_tests.sh) does not have."""
    if backend == "torch":
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    if backend != "openvino":
        return True
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        if os.environ.get("ZSSEG_REQUIRE_OPENVINO") == "1":
            import pytest

            pytest.fail(
                f"OpenVINO is not importable ({exc}); ZSSEG_REQUIRE_OPENVINO=1 makes this a failure, not a skip"
            )
        return False
    return True


def skip_unless_a_cpu_path_can_be_prepared(bundle: str) -> None:
    """Skips, naming each path's reason, where no reduced precision of ``bundle`` can be prepared by this installation
    on this CPU: the runtime-only install has no onnx (ONNX Runtime int8 is quantised with it) and an AVX2 CPU runs
    neither OpenVINO path (int8 needs VNNI or AMX, bf16 AMX or AVX-512-BF16), so there the ``auto`` policy has nothing
    to prepare and only the exact path runs (the development venv, with onnx, runs these tests on any x86-64 CPU)."""
    import pytest

    from zsseg_rt.bundle import graph_files, load_meta
    from zsseg_rt.runtime.backends.cpu_auto import cpu_candidates

    meta = load_meta(bundle)
    found, _ = cpu_candidates(meta, tuple(graph_files(meta.pipeline)))
    if not any(choice.key is not None for _, choice in found):
        reasons = "; ".join(f"{choice.backend} {choice.precision}: {choice.reason}" for _, choice in found)
        pytest.skip(f"no reduced precision can be prepared by this installation on this CPU ({reasons})")


def require_backend(backend: str) -> None:
    """Skip, with the reason, a test of a backend whose library is not installed (see ``backend_available``)."""
    if not backend_available(backend):
        import pytest

        pytest.skip(
            f"the {backend} backend's tests need {backend}: pip install {backend} (requirements.txt pins it)",
            allow_module_level=True,
        )


def distinct_labels(labels) -> int:
    return int(len(np.unique(np.asarray(labels))))


# tools/gpu_check.sh sets ZSSEG_NO_BUILD=1: the acceptance run on a lent GPU machine builds nothing (the wheel and
# the C++ tests are built on the development machine: tools/gpu_artifacts.sh). Tests that compile (nvcc, cmake) skip
# there with this reason; CI runs them.
NO_BUILD = os.environ.get("ZSSEG_NO_BUILD") == "1"
NO_BUILD_REASON = (
    "compiles with nvcc/cmake: the acceptance run on a GPU machine builds nothing (ZSSEG_NO_BUILD=1); CI runs it"
)


def package_import_root() -> str:
    """The directory this process imported ``zsseg_rt`` from (the repository with an editable install, the venv's
    site-packages with a regular one): a subprocess given it as PYTHONPATH imports the same package, never a
    source tree without the built ``_C`` (the runtime-only CI job tests the installed package)."""
    import zsseg_rt

    return os.path.dirname(os.path.dirname(os.path.abspath(zsseg_rt.__file__)))


def record_process_groups(monkeypatch) -> list:
    """Pretend to run under torchrun as rank 0 of 2 and replace ``torch.distributed.init_process_group`` by a
    recorder that raises "process group recorded" (a real group needs two ranks): returns the backends asked for."""
    import torch.distributed as dist

    seen: list = []

    def init_process_group(backend=None, **kwargs):
        seen.append(backend)
        raise RuntimeError("process group recorded")

    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    return seen


def console_script(name: str = "zsseg") -> str:
    """The installed console script ``name``: beside this Python (a venv), else on PATH (``pip install --target``
    puts it in TARGET/bin, which tools/gpu_check.sh puts on PATH); a clear error when neither has it."""
    import shutil

    beside = os.path.join(os.path.dirname(sys.executable), name)
    found = beside if os.path.isfile(beside) else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"no {name!r} console script beside {sys.executable} nor on PATH: install the package")
    return found


def subprocess_env(*first: str, checkout: bool = False, **overrides: str) -> dict:
    """The environment for a Python subprocess of a test: this process's, with ``first`` (paths) and then
    ``package_import_root()`` put at the front of PYTHONPATH and every entry already on it KEPT after them, so the
    subprocess imports the same zsseg_rt and still sees what the caller's PYTHONPATH provides (tools/gpu_check.sh
    puts the packages it installed from ``--wheels`` there: replacing PYTHONPATH dropped them, issue 36).
    Duplicates and empty entries (an empty one would put the current directory on ``sys.path``) are dropped.
    ``overrides`` are further variables (``OMP_NUM_THREADS="2"``). ``checkout=True`` appends the repository LAST,
    for its ``benchmarks``/``checks`` packages: first it would shadow an installed zsseg_rt with the source tree
    (no ``_C``: the first H200 run's ``python -m benchmarks`` tests failed so)."""
    env = dict(os.environ, **overrides)
    paths = [*first, package_import_root(), *env.get("PYTHONPATH", "").split(os.pathsep)]
    if checkout:
        paths.append(str(REPO))
    kept: list = []
    for path in paths:
        if path and path not in kept:
            kept.append(path)
    env["PYTHONPATH"] = os.pathsep.join(kept)
    return env


def import_from_checkout(name: str):
    """``NAME`` (``benchmarks.cpu``, ``checks.gpu_artifacts``) of this checkout, its folder on ``sys.path`` for the
    import only (nothing else of the checkout shadows the installed package afterwards)."""
    sys.path.insert(0, str(REPO))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO))


def run_benchmark(cwd, *args, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m benchmarks ARGS`` of this checkout run in ``cwd`` on one thread, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *(str(a) for a in args)],
        cwd=cwd,
        env=subprocess_env(checkout=True, OMP_NUM_THREADS="1"),  # the checkout's benchmarks/ (last), PYTHONPATH kept
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def record_made(monkeypatch, owner, name: str, keep=None) -> list:
    """``owner.NAME`` (a class) replaced for the test by a subclass that appends each object it makes to the list
    returned (or ``keep(obj, kwargs)``: the keywords it was made with, say): what the code under test built, as it
    ran."""
    made: list = []

    class Recorded(getattr(owner, name)):  # type: ignore[misc]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self if keep is None else keep(self, kwargs))

    monkeypatch.setattr(owner, name, Recorded)
    return made


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_bilevel_png(path, width: int, height: int, complete: bool = True) -> int:
    """A black 1-bit greyscale PNG (OpenCV decodes it to [H, W, 3] uint8: 3 bytes per pixel), streamed through
    zlib so that making a 20000x20000 file costs 50 MB of zlib input and no image in memory. ``complete=False``
    writes only a few rows of data after a valid header (the issue's 467-byte 40000x40000 file). Returns bytes."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    data = []
    rows = height if complete else 4
    for start in range(0, rows, 256):
        data.append(packer.compress(row * min(256, rows - start)))
    data.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    blob = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(data)) + _chunk(b"IEND", b"")
    with open(path, "wb") as handle:
        handle.write(blob)
    return len(blob)
