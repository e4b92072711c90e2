"""The full-size ViT-B/16 ZegCLIP bundle: exported, verified and run by ONNX Runtime against PyTorch (slow: a few
minutes on 2 cores; tools/run_tests.sh runs it, `-m "not slow"` deselects it). Random weights: the exporter and
ONNX Runtime do not care what the weights are, and no pretrained weights can be downloaded in CI.

The bundle is the one `zsseg demo --allow-random-weights` exports and verifies on a photo (the docs snippets'
session set-up, ``set_up_root``: exported once per session, not twice): the same config from the demo's seeded
random weights, which the test draws again and matches to the bundle by the weights' sha256 the demo records."""

import json
import os

import numpy as np
import pytest
from support import VOCAB10

pytestmark = pytest.mark.slow


def test_full_size_bundle_onnxruntime_matches_pytorch(set_up_root):
    torch = pytest.importorskip("torch")
    import cv2
    from test_doc_snippets import DEMO_BUNDLE

    from zsseg_rt import Engine
    from zsseg_rt.assets import sample_image
    from zsseg_rt.cli.demo import DEFAULT_RANDOM_CONFIG, WEIGHTS_FIELD, _seeded_model, weights_sha256
    from zsseg_rt.models import create_model

    assert DEMO_BUNDLE.endswith(f"/{DEFAULT_RANDOM_CONFIG}-random")
    model = _seeded_model(create_model, DEFAULT_RANDOM_CONFIG).eval()  # the weights the demo exported
    photo = str(sample_image("2011_000006.jpg"))
    # exported and verified on a photo by the demo; the checks below hold ONNX Runtime to the float64 error model
    bundle = str(set_up_root / DEMO_BUNDLE)
    with open(os.path.join(bundle, "meta.json"), encoding="utf-8") as handle:
        meta = json.load(handle)
    assert meta[WEIGHTS_FIELD] == weights_sha256(model), "the bundle is not of these weights"
    # the demo verified the bundle (ONNX Runtime against PyTorch and float64, zsseg_rt.export.verify): among its cases
    # the batch of two random 512 px images drawn below, whole
    verification = meta["verification"]
    assert verification["passed"], "the demo's export records a passed verification"
    random_cases = [c for c in verification["cases"] if c["graph"] == "image_encoder" and c.get("input") == "random"]
    assert any(c["input_size"] == [512, 512] and c["passed"] for c in random_cases), random_cases
    engine = Engine(bundle, classes=VOCAB10, backend="onnxruntime")
    assert engine.meta.image_size == 512 and engine.meta.embed_dim == 512
    image = cv2.imread(photo, cv2.IMREAD_COLOR)
    # the first image of the demo's random batch (verify.py's first draw): one image, not the two the demo verified,
    # checked again here on this test's own path (the Engine's backend, the model's decode, VOCAB10)
    batch = np.random.default_rng(0).standard_normal((2, 3, 512, 512)).astype(np.float32)[:1]
    ort_features = engine.backend.encode_image(batch)
    ort_logits = engine.backend.head(engine._vocab[1], ort_features)
    from zsseg_rt.export.numeric_bounds import fp32_error_case
    from zsseg_rt.export.verify import float64_twin

    text = torch.from_numpy(engine._vocab[1])
    twin = float64_twin(model)
    with torch.no_grad():
        g, p, grid = model.encode_image(torch.from_numpy(batch))
        ref_logits = model.decode(text, g, p, grid).numpy()
        g64, p64, grid64 = twin.encode_image(torch.from_numpy(batch).double())
        exact_logits = twin.decode(text.double(), g64, p64, grid64).numpy()
    # the error model (docs/numeric_checks.md): ONNX Runtime's error against float64 within 8x PyTorch's own fp32
    # error on the same input, on any CPU (the encoder end to end: a 12-block ViT at 512 px)
    logits_case = fp32_error_case(ort_logits, ref_logits, exact_logits)
    assert logits_case["passed"], logits_case
    patches_case = fp32_error_case(ort_features["patches"], p.numpy(), p64.numpy())
    assert patches_case["passed"], patches_case
    mutated = ort_logits.copy()
    mutated[:, 3] += 3 * logits_case["atol"]  # mutation self-check: one class moved by 3x the bound is caught
    assert not fp32_error_case(mutated, ref_logits, exact_logits)["passed"]
    result = engine(image)
    assert result.labels.shape == image.shape[:2]
    assert os.path.getsize(os.path.join(bundle, "image_encoder.onnx")) > 300e6  # really the full-size tower
