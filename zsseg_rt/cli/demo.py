"""``zsseg demo``: the README's main job. Export (or reuse) a bundle, segment a real photo, write the overlay.

Which model runs, in order of preference:
1. a trained ZegCLIP checkpoint (``--official`` / ``ZSSEG_CHECKPOINT``, or ``--native``);
2. otherwise training-free segmentation (SC-CLIP by default, ``--method``) on stock CLIP weights: the open_clip
   tag ``openai`` (downloaded when a network exists) or a local file given with ``--clip-weights``;
3. with no weights reachable at all it says so plainly, and ``--allow-random-weights`` still runs every stage
   (export, ONNX verification, tokenizer, Engine, native post-processing) with random weights, labelled as a
   pipeline check on the overlay and in the output. They are drawn from a fixed seed (``RANDOM_SEED``, as is the
   untrained head of a trained family given stock CLIP weights): every run builds the same model, so the bundle is
   reused and its labels do not change from one run to the next.

The bundle is exported once and reused while the model is the one it was exported from: its ``meta.json`` records
the sha256 of the model's weights (``demo_weights_sha256``) and the demo's name for it (``demo_config``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from zsseg_rt.bundle.weights import RANDOM_BANNER
from zsseg_rt.cli import command_parser
from zsseg_rt.console.arguments import DEMO_METHOD

NO_WEIGHTS_MESSAGE = """\
No model weights are available: no trained {family} checkpoint was given, and the stock CLIP weights ({tag!r})
could not be loaded ({error}).
To see real segmentations, give the demo weights:
  * an official {family} checkpoint (VOC or COCO, linked from the {family} README):
        bash tools/run_demo.sh --official /path/to/zegclip_voc_inductive.pth   (or ZSSEG_CHECKPOINT=...)
  * or a native checkpoint written by `zsseg convert`:  --native /path/to/dir
  * or stock CLIP ViT-B/16 weights for training-free segmentation: a local file (OpenAI ViT-B-16.pt archive,
    open_clip state_dict or .safetensors):  --clip-weights /path/to/ViT-B-16.pt
    (on a machine with internet the open_clip tag 'openai' is downloaded automatically)
  * or check the pipeline only, on random weights (meaningless labels, clearly marked):
        zsseg demo --allow-random-weights   (what bash tools/run_demo.sh runs when it finds no weights)"""

RANDOM_LABEL = RANDOM_BANNER  # the banner every output of a random-weight bundle carries
DEFAULT_RANDOM_CONFIG = "zegclip_vitb16_voc_inductive"  # the random-weights check's model when --config is not given
RANDOM_SEED = 0  # the random-weights model's: the same weights on every run (a reusable, reproducible bundle)


def _first_sentence(exc: BaseException, most: int = 240) -> str:
    """The reason in ``exc``'s first line, cut at a sentence end (never mid-word) when longer than ``most``: the
    advice that follows it in the message says what to do."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    if len(text) <= most:
        return text
    head = text[:most]
    end = max(head.rfind(". "), head.rfind("; "))
    if end >= most // 2:  # a sentence end that keeps most of the reason
        return head[:end]
    return (head[: head.rfind(" ")] if " " in head else head) + " ..."


def _sample_image() -> str:
    from zsseg_rt.assets import sample_image

    return str(sample_image())  # shipped with the package


def _resolve_model(args):
    """Returns (model, source path or None, title label for the overlay, bundle directory name)."""
    from zsseg_rt.models import create_model, load_native, load_official_any  # the public face (commands layer)

    official = args.official or os.environ.get("ZSSEG_CHECKPOINT")
    if official:
        # ZegCLIP or CLIP-RC; the config inferred from the checkpoint unless --config names it
        model = load_official_any(official, config=args.config)
        return model, official, f"{type(model).__name__} ({os.path.basename(official)})", _stem(official)
    if args.native:
        model = load_native(args.native)
        return model, args.native, f"{type(model).__name__} ({os.path.basename(args.native)})", _stem(args.native)
    tag = args.clip_weights or "openai"
    from zsseg_rt.contract.common.weights import cache_only_when_offline
    from zsseg_rt.contract.registry import family_of

    try:
        family_of(args.method)  # an unknown --method is an error of its own, never reported as missing weights
    except FileNotFoundError:
        from zsseg_rt.console.errors import CliError
        from zsseg_rt.contract.registry import list_configs

        known = ", ".join(list_configs(family_of(DEMO_METHOD)))  # the default method's family: the training-free ones
        raise CliError(f"--method {args.method!r} is not a model config; the training-free methods: {known}") from None

    cache_only_when_offline(tag, say=lambda line: print(f"[demo] {line}", flush=True))
    try:
        model = _seeded_model(create_model, args.method, tag)  # a trained family's head: random, seeded
        source = tag if os.path.exists(tag) else None
        return model, source, f"{args.method} (training-free, CLIP weights {tag})", f"{args.method}-{_stem(tag)}"
    except Exception as exc:  # noqa: BLE001 - any failure to get weights is reported, never hidden
        if args.clip_weights:
            raise  # an explicit file that fails to load is an error, not a reason to fall back
        from zsseg_rt.contract.registry import default_family

        message = NO_WEIGHTS_MESSAGE.format(family=default_family().label, tag=tag, error=_first_sentence(exc))
        print(message, flush=True)
    if not args.allow_random_weights:
        import sys

        print(
            "zsseg demo: error: no model weights (see above): give a checkpoint (--official, --native) or CLIP weights "
            "(--clip-weights), or pass --allow-random-weights to run the pipeline on random weights",
            file=sys.stderr,
        )
        raise SystemExit(2)  # a usage error, as argparse's
    print(f"\n*** {RANDOM_LABEL} ***\n", flush=True)
    config = args.config or DEFAULT_RANDOM_CONFIG
    return _seeded_model(create_model, config), None, RANDOM_LABEL, f"{config}-random"


def _seeded_model(create_model, config: str, pretrained=None):
    """``create_model(config, pretrained=pretrained)`` with whatever it initialises at random (everything without
    ``pretrained``; a trained family's head with stock CLIP weights) drawn from ``RANDOM_SEED``, the caller's random
    state untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return create_model(config, pretrained=pretrained)


def weights_sha256(model) -> str:
    """sha256 over a model's state dict (names, dtypes, shapes, values): which weights a bundle was exported from."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _weights(args, model, source, title):
    """meta.json ``weights`` of the demo's bundle (``zsseg_rt.bundle.weights``)."""
    from zsseg_rt.bundle import weights_record
    from zsseg_rt.contract.registry import family_of_model

    if title == RANDOM_LABEL:
        return weights_record(None, "none")
    if args.official or os.environ.get("ZSSEG_CHECKPOINT") or args.native:
        return weights_record(source, "checkpoint")
    trainable = bool(getattr(family_of_model(model), "trainable", False))
    return weights_record(args.clip_weights or "openai", "clip", trainable=trainable)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(os.path.normpath(path)))[0]


def _bundle_matches(bundle_dir: str, source, config: str, weights: str) -> bool:
    """Whether the bundle at ``bundle_dir`` was exported by the demo from this model: the same checkpoint path (None:
    none), the same demo config name, and the same weights (``weights_sha256``; a checkpoint changed in place, or an
    older demo's unseeded random weights, is exported again)."""
    meta_path = os.path.join(bundle_dir, "meta.json")
    if not os.path.isfile(meta_path):
        return False
    try:
        with open(meta_path, "r", encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, ValueError):
        return False  # unreadable: exported again (replaced only when it is a bundle: check_export_destination)
    wanted = os.path.abspath(source) if source else None
    return (
        isinstance(meta, dict)
        and meta.get("source_checkpoint") == wanted
        and meta.get("demo_config") == config
        and meta.get(WEIGHTS_FIELD) == weights
    )


WEIGHTS_FIELD = "demo_weights_sha256"  # meta.json: weights_sha256 of the model the demo exported


def run_demo(args) -> int:
    import cv2

    from zsseg_rt.image_io import read_image_bgr
    from zsseg_rt.runtime import Engine

    image_path = args.image or _sample_image()
    image = read_image_bgr(image_path)  # ImageReadError (one line from the CLI) if unreadable or over the limit
    model, source, title, bundle_name = _resolve_model(args)
    bundle_dir = os.path.join(args.workdir, "bundles", bundle_name)
    weights = weights_sha256(model)
    if _bundle_matches(bundle_dir, source, bundle_name, weights):
        print(f"[demo] reusing bundle {bundle_dir}")
    else:
        from zsseg_rt.assets import verification_images
        from zsseg_rt.export.onnx_export import export_bundle

        start = time.perf_counter()
        print(f"[demo] exporting + verifying the ONNX bundle -> {bundle_dir}", flush=True)
        export_bundle(
            model,
            bundle_dir,
            source=source,
            overwrite=True,
            verify_images=verification_images(None, count=1),
            extra_meta={"demo_config": bundle_name, WEIGHTS_FIELD: weights},
            weights=_weights(args, model, source, title),
            progress=lambda line: print(f"[demo] {line}", flush=True),  # stage lines, and bars on the long stages
        )
        print(f"[demo] bundle ready in {time.perf_counter() - start:.1f}s", flush=True)
    classes = args.classes or ",".join(model.config.class_names)
    engine = Engine(bundle_dir, classes=classes, backend="auto", prepare=None)  # the demo prepares below, in view
    start = time.perf_counter()
    result = engine(image)
    elapsed = time.perf_counter() - start
    os.makedirs(args.workdir, exist_ok=True)
    out_path = os.path.join(args.workdir, "demo_overlay.png")
    # a random-weight bundle's overlay carries its banner already (Result.overlay): no second copy as the title
    if not cv2.imwrite(out_path, result.overlay(image, alpha=0.5, title="" if result.banner == title else title)):
        raise OSError(f"OpenCV could not write the overlay {out_path!r} (disk full, or the folder was removed)")
    share = {result.class_names[i]: float((result.labels == i).mean()) for i in result.present_classes()}
    print(f"[demo] {title}")
    print(
        f"[demo] {image_path} ({image.shape[1]}x{image.shape[0]}) segmented in {elapsed:.2f}s "
        f"with backend={engine.backend.name}, {len(result.class_names)} classes"
    )
    print("[demo] pixels: " + ", ".join(f"{name} {frac:.1%}" for name, frac in list(share.items())[:8]))
    print(f"[demo] overlay written to {out_path}")
    _prepare_cpu_paths(args, engine, image)
    return 0


def _prepare_cpu_paths(args, engine, image) -> None:
    """The faster CPU paths the Engine could run, prepared here in the foreground with a progress bar (quantise,
    gate, measure: ``zsseg build-engine BUNDLE --backend auto``), saying what it prepared, how long it took and the
    disk it added, then the photo again on the path chosen; nothing runs after the demo (docs/precision.md).
    ``--no-prepare`` or ``$ZSSEG_AUTO_PREPARE=none`` skip it, saying how to do it later."""
    from zsseg_rt.runtime.upgrade import PREPARE_ENV, preparation_cost

    plan, bundle = engine.plan, engine.meta.path
    if not plan.missing:
        return
    paths = ", ".join(f"{c.backend} {c.precision}" for c in plan.missing)
    if args.no_prepare or os.environ.get(PREPARE_ENV, "").strip().lower() == "none":
        print(f"[demo] the faster CPU paths ({paths}) are not prepared: `zsseg build-engine {bundle} --backend auto`")
        return
    from zsseg_rt.console.progress import shown
    from zsseg_rt.prepare.auto import prepare_and_keep
    from zsseg_rt.runtime import Engine

    cost = preparation_cost(engine.meta, plan.missing)
    print(f"[demo] preparing the faster CPU paths ({paths}; --no-prepare skips this): {cost}", flush=True)
    start = time.perf_counter()
    engine(image)  # warm: the time the faster path is compared with
    exact = time.perf_counter() - start
    with shown():
        report = prepare_and_keep(bundle)
    print(f"[demo] {report.summary()}")
    faster = Engine(bundle, classes=engine.class_names, backend="auto", prepare=None)
    if faster.plan.path != plan.path:
        faster(image)  # its first call warms it up
        start = time.perf_counter()
        faster(image)
        again = time.perf_counter() - start
        print(f"[demo] the photo again on {' '.join(faster.plan.path)}: {again:.2f}s (was {exact:.2f}s)")


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``demo`` on an argparse subparsers object (``zsseg demo``)."""
    p = command_parser(
        subparsers,
        "demo",
        description="Export a bundle (or reuse the one it exported before, under --workdir) and segment a photo "
        "with it, printing where the overlay went. Weights: an official checkpoint (--official), a native one "
        "(--native), or stock CLIP weights for a training-free method (--clip-weights, --method); with none of them "
        "to be had, --allow-random-weights runs the whole pipeline on random weights, clearly labelled as such.",
    )
    p.add_argument("--official", help="official checkpoint (.pth; its family found from the keys)")
    p.add_argument("--native", help="native checkpoint directory (from `zsseg convert`)")
    p.add_argument(
        "--clip-weights",
        default=None,
        help="stock CLIP weights for training-free mode: local file or open_clip tag (default: openai)",
    )
    p.add_argument(
        "--method",
        default=DEMO_METHOD,
        help="training-free method used with stock CLIP weights: scclip-vitb16 (default: SC-CLIP, the best "
        "published mIoU of them), naclip-vitb16, sclip-vitb16, clearclip-vitb16 or maskclip-vitb16",
    )
    p.add_argument(
        "--config",
        default=None,
        help="model config name or JSON path for an --official checkpoint (default: inferred from the checkpoint) "
        "and for the random-weights check (default: zegclip_vitb16_voc_inductive)",
    )
    p.add_argument("--image", default=None, help="photo to segment (default: a VOC sample)")
    p.add_argument("--classes", default=None, help="comma-separated classes (default: the 20 VOC classes)")
    p.add_argument("--workdir", default="out", help="where the bundle and the overlay go (default out)")
    p.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="when no weights can be had, run a clearly labelled random-weights pipeline check",
    )
    p.add_argument(
        "--no-prepare",
        action="store_true",
        help="leave the faster CPU paths unprepared (by default the demo prepares them after the overlay, in the "
        "foreground with a progress bar: minutes for a full-size model; `zsseg build-engine BUNDLE --backend auto` "
        "does it later)",
    )
    p.set_defaults(func=run_demo)
    return p
