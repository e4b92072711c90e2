"""Whole-image inference through an exported bundle and the Engine (issue 41 items 2 and 3): MaskCLIP's and NACLIP's
bundles (image graphs of any size) against the independent transcriptions of their official code
(``maskclip_official.py``, ``naclip_official.py``), on the photos of ``test_training_free_whole.py`` (several sizes
and aspect ratios, a strip under one patch tall), through ONNX Runtime, OpenVINO and the torch backend; the official
mode chosen by the bundle (MaskCLIP: whole; NACLIP: windows, whole with the VOC vocabularies), windows still
available; what a bundle declares and what happens past it (a clear error, or windows when asked for); a list of
images; bundles with a fixed-size image graph; ``zsseg segment``'s flags.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from maskclip_official import official_segment
from support import backend_available, require_backend
from test_training_free_whole import (  # noqa: F401  (module fixtures: the tiny stock towers)
    HEADS,
    LABELS_MIN,
    NAMES,
    PROB_ATOL,
    SHORT,
    compare,
    maskclip,
    maskclip_official,
    naclip,
    naclip_official,
    photos,
)

from zsseg_rt.assets import sample_images

BACKENDS = ["onnxruntime", "openvino", "torch"]
# One worker per method (pytest-xdist --dist loadgroup): the method's bundle export (~12 s, made on first use: see
# ``bundles``) and, for NACLIP, the official predictions below are made once, not once per worker that happens to get
# one of its tests; the two methods' tests run on two workers side by side (one group of both was the GPU lease's
# longest chain: 79 s of the models stage's 104 on the H200)
MASKCLIP_WORKER = pytest.mark.xdist_group("training_free_whole_engine_maskclip")
NACLIP_WORKER = pytest.mark.xdist_group("training_free_whole_engine_naclip")
# the official NACLIP predictions (PAMR in torch: ~2.4 s a photo), computed once per photo and vocabulary for the
# three backends' runs of a test, not once per backend: the same inputs give the same arrays (read-only here)
_NACLIP_OFFICIAL: dict = {}


def _naclip_official_once(naclip, photo: str, vocabulary: str, bgr, text, **options):  # noqa: F811 (the fixture)
    key = (photo, vocabulary, tuple(sorted((k, tuple(v)) for k, v in options.items())))
    if key not in _NACLIP_OFFICIAL:
        arrays = naclip_official(naclip, bgr, text, **options)
        for array in arrays:
            array.flags.writeable = False
        _NACLIP_OFFICIAL[key] = arrays
    return _NACLIP_OFFICIAL[key]


class _Bundles(dict):
    """Method -> its bundle directory, exported when first asked for (from the module fixture of that name): a worker
    that runs one method's tests exports that method's bundle only."""

    def __init__(self, request, root):
        super().__init__()
        self._request, self._root = request, root

    def __missing__(self, name: str) -> str:
        from zsseg_rt.export.onnx_export import export_bundle

        model = self._request.getfixturevalue(name)["model"]
        self[name] = export_bundle(
            model, str(self._root / name), max_classes=32, verify_images=[str(sample_images()[0])]
        )
        return self[name]


@pytest.fixture(scope="module")
def bundles(request, tmp_path_factory):
    return _Bundles(request, tmp_path_factory.mktemp("whole_bundles"))


def _engine(bundles, fixtures, method, backend, **options):
    from zsseg_rt import Engine

    require_backend(backend)  # the GPU image has no OpenVINO
    model = fixtures[method]["model"] if backend == "torch" else None
    return Engine(bundles[method], classes=options.pop("classes", NAMES), backend=backend, model=model, **options)


@MASKCLIP_WORKER
@pytest.mark.parametrize(
    "backend",
    [  # ONNX Runtime and OpenVINO run on the CPU on every machine (the GPU image's onnxruntime has no CUDA provider,
        # and it has no OpenVINO): CI's (host_only); the torch backend runs on CUDA where there is one: the lease's
        pytest.param("onnxruntime", marks=pytest.mark.host_only),
        pytest.param("openvino", marks=pytest.mark.host_only),
        "torch",
    ],
)
def test_maskclip_engine_runs_its_official_whole_mode_and_windows(bundles, maskclip, backend):  # noqa: F811
    """MaskCLIP's bundle runs whole images by default (its official ``mode='whole'``) and matches the official whole
    mode on every photo (measured: 100 % of labels, probabilities within 6e-8 on ONNX Runtime, 5e-8 on OpenVINO and
    torch); with ``inference="windows"`` it matches the official 64/43 windows (the config's ``mode='slide'``)."""
    engine = _engine(bundles, {"maskclip": maskclip}, "maskclip", backend)
    windows = _engine(bundles, {"maskclip": maskclip}, "maskclip", backend, inference="windows")
    model = maskclip["model"]
    text = model.text_embeddings(NAMES)
    for name, bgr in photos():
        result = engine(bgr)
        assert result.inference == "whole"
        agreement, diff = compare(result.labels, result.scores, *maskclip_official(maskclip, bgr, text))
        assert agreement >= LABELS_MIN and diff <= PROB_ATOL, (backend, name, agreement, diff)
        if min(bgr.shape[:2]) * 2048 >= max(bgr.shape[:2]) * SHORT:  # rescaled to short side 64: full windows
            labels, probs = official_segment(
                bgr, maskclip["weights"], text, HEADS, (2048, SHORT), 64, 43, model.config.mean, model.config.std
            )
            got = windows(bgr)
            assert got.inference == "windows"
            agreement, diff = compare(got.labels, got.scores, labels, probs)
            assert agreement >= LABELS_MIN and diff <= PROB_ATOL, (backend, name, "windows", agreement, diff)


@NACLIP_WORKER
@pytest.mark.parametrize(
    "backend",
    [  # ONNX Runtime and OpenVINO run on the CPU on every machine (the GPU image's onnxruntime has no CUDA provider,
        # and it has no OpenVINO): CI's (host_only); the torch backend runs on CUDA where there is one: the lease's
        pytest.param("onnxruntime", marks=pytest.mark.host_only),
        pytest.param("openvino", marks=pytest.mark.host_only),
        "torch",
    ],
)
def test_naclip_engine_runs_whole_images_on_voc_as_its_official_configs(bundles, naclip, backend):  # noqa: F811
    """NACLIP's bundle: windows for a plain vocabulary (its default), whole images for the VOC vocabularies (its
    official ``cfg_voc20.py`` / ``cfg_voc21.py``: ``slide_crop=0``), matching the official predict with PAMR; the
    VOC20 class file's synonyms scored by the max rule (measured: 100 % of labels, probabilities within 9e-6 on
    every backend; logit scale 40 and PAMR amplify float32 rounding)."""
    from zsseg_rt.vocabulary import Vocabulary

    plain = _engine(bundles, {"naclip": naclip}, "naclip", backend)
    voc = _engine(bundles, {"naclip": naclip}, "naclip", backend, classes="voc20")
    vocabulary = Vocabulary.parse("voc20")
    model = naclip["model"]
    text = model.text_embeddings(vocabulary.names)
    names_text = model.text_embeddings(NAMES)
    query_idx = [int(c) for c in vocabulary.class_of()]
    asked = _engine(bundles, {"naclip": naclip}, "naclip", backend, inference="whole")
    checked = 0
    for name, bgr in photos():
        assert plain(bgr).inference == "windows"
        result = voc(bgr)
        assert result.inference == "whole" and result.labels.shape == bgr.shape[:2]
        if "under one patch" in name:  # the official code has no result there (its grid is empty)
            continue
        labels, probs = _naclip_official_once(naclip, name, "voc20", bgr, text, query_idx=query_idx)
        agreement, diff = compare(result.labels, result.scores, labels, probs)
        assert agreement >= LABELS_MIN and diff <= PROB_ATOL, (backend, name, agreement, diff)
        whole = asked(bgr)
        agreement, diff = compare(
            whole.labels, whole.scores, *_naclip_official_once(naclip, name, "names", bgr, names_text)
        )
        assert agreement >= LABELS_MIN and diff <= PROB_ATOL, (backend, name, "names", agreement, diff)
        checked += 1
    assert checked == 4


@MASKCLIP_WORKER
@pytest.mark.host_only  # ONNX Runtime on the CPU (the GPU image's has no CUDA provider): CI's, not the lease's
def test_the_bundle_declares_its_sizes_and_refuses_beyond_them_unless_asked(bundles, maskclip):  # noqa: F811
    """An image whose whole-image input would exceed the sides the bundle declares is refused with a message naming
    them and what to do, or runs in windows when ``whole_fallback="windows"`` was asked for (said in the result);
    the encoder's memory at the image's size counts against ``max_memory_mb``."""
    from zsseg_rt import Engine
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.pipeline import InputLimitError

    meta = load_meta(bundles["maskclip"])
    assert meta.whole_image["max_side"] == 2048 and meta.whole_image["max_short_side"] == 528  # its official scales
    bgr = photos()[0][1]
    engine = Engine(bundles["maskclip"], classes=NAMES, backend="onnxruntime")
    engine.pipeline.test_scale = [2048, 600]  # a larger test scale than the bundle was exported for
    with pytest.raises(InputLimitError, match=r"608x896 whole-image input: more than this bundle's image graph"):
        engine(bgr)
    fallback = Engine(bundles["maskclip"], classes=NAMES, backend="onnxruntime", whole_fallback="windows")
    fallback.pipeline.test_scale = [2048, 600]
    windows = Engine(bundles["maskclip"], classes=NAMES, backend="onnxruntime", inference="windows")
    windows.pipeline.test_scale = [2048, 600]
    got, want = fallback(bgr), windows(bgr)
    assert got.inference == "windows" and (got.labels == want.labels).all()
    np.testing.assert_array_equal(got.scores, want.scores)
    assert fallback(cv2.resize(bgr, (1000, 30))).inference == "whole"  # 61 x 2048: within the sides, whole
    with pytest.raises(ValueError, match=r"^whole_fallback: expected one of None, 'windows', got 'crop'$"):
        Engine(bundles["maskclip"], backend="onnxruntime", whole_fallback="crop")
    small = Engine(bundles["maskclip"], classes=NAMES, backend="onnxruntime", max_memory_mb=40)
    small.pipeline.test_scale = [2048, 512]  # 512 x 757: 1537 tokens, ~54 MiB of attention maps alone
    with pytest.raises(InputLimitError, match=r"needs ~\d+ MiB of working memory .*max_memory_mb=40"):
        small(bgr)
    small.pipeline.inference = "windows"  # the same image in 64 x 64 windows: within 40 MiB
    assert small(bgr).inference == "windows"


@MASKCLIP_WORKER
@pytest.mark.host_only  # ONNX Runtime on the CPU (the GPU image's has no CUDA provider): CI's, not the lease's
def test_a_list_of_images_runs_one_encoder_call_per_size(bundles, maskclip):  # noqa: F811
    """``engine([...])`` in whole-image inference: consecutive images whose graph inputs have one size share an
    encoder call (up to ``max_batch``), others take one each; every result equals the single call's."""
    from zsseg_rt import Engine

    engine = Engine(bundles["maskclip"], classes=NAMES, backend="onnxruntime", max_batch=2)
    calls = []
    inner = engine.backend.encode_image

    def counting(images):
        calls.append(tuple(images.shape))
        return inner(images)

    engine.backend.encode_image = counting
    a, b, c = (bgr for _, bgr in photos()[:3])
    items = [a, a.copy(), a[::-1].copy(), b, c]  # three of one size (max_batch 2: two calls), then two others
    results = engine(items)
    assert [shape[0] for shape in calls] == [2, 1, 1, 1]
    calls.clear()
    for item, result in zip(items, results):
        single = engine(item)
        assert result.inference == single.inference == "whole"
        np.testing.assert_array_equal(result.labels, single.labels)
        np.testing.assert_allclose(result.scores, single.scores, rtol=0, atol=1e-6)  # batch 2 vs 1: GEMM blocking


@MASKCLIP_WORKER
def test_a_fixed_size_bundle_runs_windows_and_refuses_whole(bundles, maskclip, tmp_path, monkeypatch):  # noqa: F811
    """A bundle whose image graph has one size (exported before whole-image inference: image graph [B, 3, S, S],
    ``patches [B, N, D]``, no ``whole_image``) still loads and runs windows on every backend, the torch backend too
    with a model that now gives ``patch_grid``; ``inference="whole"`` is refused with what to do."""
    from zsseg_rt import Engine
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models.training_free.config import TrainingFreeConfig

    model = maskclip["model"]
    monkeypatch.setattr(TrainingFreeConfig, "whole_image_capable", property(lambda self: False))
    old = export_bundle(model, str(tmp_path / "old"), max_classes=8, verify_images=())
    monkeypatch.undo()
    meta = load_meta(old)
    assert meta.whole_image is None and meta.raw["io"]["image"]["outputs"] == ["patches"]
    assert meta.io["image"]["dynamic_axes"]["image"] == {0: "batch"}
    bgr = photos()[0][1]
    reference = Engine(bundles["maskclip"], classes=NAMES, backend="onnxruntime", inference="windows")(bgr)
    for backend in [b for b in BACKENDS if backend_available(b)]:  # OpenVINO where it is installed (CI)
        engine = Engine(old, classes=NAMES, backend=backend, model=model if backend == "torch" else None)
        result = engine(bgr)
        assert result.inference == "windows", backend
        assert (result.labels == reference.labels).mean() >= LABELS_MIN, backend
    with pytest.raises(ValueError, match=r"needs a bundle whose image graph takes any size.*fixed 64x64"):
        Engine(old, backend="onnxruntime", inference="whole")


@NACLIP_WORKER
@pytest.mark.host_only  # zsseg segment --backend onnxruntime: ONNX Runtime on the CPU: CI's, not the lease's
def test_zsseg_segment_inference_flags(bundles, tmp_path, capsys):
    """``zsseg segment --inference windows|whole|auto`` and ``--whole-fallback windows`` reach the Engine; the JSON
    says which inference ran."""
    from zsseg_rt import cli

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), photos()[0][1])
    ran = {}
    for choice in ("auto", "windows", "whole"):
        argv = ["segment", str(photo), "--bundle", bundles["naclip"], "--classes", ",".join(NAMES)]
        argv += ["--backend", "onnxruntime", "--json", "-o", str(tmp_path / choice), "--inference", choice]
        assert cli.main(argv + ["--whole-fallback", "windows"]) == 0
        ran[choice] = json.loads(capsys.readouterr().out)[0]["inference"]
    assert ran == {"auto": "windows", "windows": "windows", "whole": "whole"}
    with pytest.raises(SystemExit):  # argparse: invalid choice
        cli.main(["segment", str(photo), "--bundle", bundles["naclip"], "--inference", "tiles"])
