"""Export a ZeroSeg bundle and print its verification (Engine on ONNX Runtime vs PyTorch ``predict_image``).

    python -m checks zeroseg_bundle                       # full-size config, random weights
    python -m checks zeroseg_bundle --config zeroseg_tiny_test --threshold 0.3
    python -m checks zeroseg_bundle --native work_dirs/zeroseg_in1k/final --text-weights openai

Random weights (no ``--native``) check the graphs and the runtime path, not accuracy: a random student puts most
pixels in the background at the paper's thresholds (see ``labels_present`` per case).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="zeroseg_vitb16_in1k", help="config of a random student (without --native)")
    ap.add_argument("--native", default=None, help="a trained ZeroSeg checkpoint directory")
    ap.add_argument("--text-weights", default=None, help="teacher CLIP weights (default: random text tower)")
    ap.add_argument("--threshold", type=float, default=None, help="background threshold (default: the config's)")
    ap.add_argument("--out", default=None, help="bundle directory (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model
    from zsseg_rt.models.zeroseg.export import build_bundle_model, default_verify_images

    torch.manual_seed(args.seed)
    student = create_model(args.native or args.config)
    model = build_bundle_model(student, args.text_weights, args.threshold)
    out = args.out or tempfile.mkdtemp(prefix="zeroseg-bundle-") + "/bundle"
    start = time.perf_counter()
    export_bundle(model, out, verify_images=default_verify_images(), overwrite=args.out is not None)
    with open(f"{out}/meta.json", "r", encoding="utf-8") as f:
        report = json.load(f)["verification"]
    print(f"{out}: export + verification {time.perf_counter() - start:.0f} s, passed {report['passed']}")
    for case in report["cases"]:
        print(json.dumps(case))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
