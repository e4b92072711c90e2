"""Every option of ``zsseg_rt.Engine``: one row each in :data:`ENGINE_OPTIONS` (docs/development.md, "Engine
options"). Standard library only."""

from __future__ import annotations

from zsseg_rt.options.table import EngineOption, Made, OptionTable

# the CUDA post-processing's kernels (ops.segment_windows_kernels(), the native list, read here without the native
# module; python_tests/runtime/test_postprocess_choice.py checks they are the same): the first is the reference
POSTPROCESS_KERNELS = ("tiled", "columns", "columns_chain", "warps", "ordered", "ordered_prebound")
# the device pipeline's image encoder variants (runtime/device/encoder_choice.py; the torch backend's:
# export/torch_encoders.py): the first is the reference, the bundle's graph at the Engine's precision
ENCODER_VARIANTS = ("graph", "compiled", "fp8")
_BACKENDS = "zsseg_rt.runtime.backends.table:backend_names"
_PRECISIONS = "zsseg_rt.runtime.backends.table:precision_names"
# examples (each row's ``example``: a value other than its default that the generic tests give every command; a
# real run on the tests' tiny bundle on a CPU takes it): a digest (the run's test gives its bundle's), a folder
# that holds no records anywhere
_DIGEST = "sha256:" + "0" * 64
_NO_RECORDS = "/nonexistent/zsseg-records"
_WINDOWED_ONLY = (
    "bundles of the two-stage pipeline run the whole image through the mask branch and CLIP on the proposals' crops, "
    "resized as the official code does"
)

ENGINE_OPTIONS = OptionTable(
    [
        EngineOption(
            "backend",
            "auto",
            "str or a Backend",
            "auto (default): TensorRT when engines were built (`zsseg build-engine`) and TensorRT imports; on a CPU "
            "the fastest "
            "path that passed the accuracy gate here (prepared by `zsseg build-engine BUNDLE --backend auto`), else "
            'ONNX Runtime fp32; or a backend of the table (docs/development.md, "Backends"; openvino: pip install '
            "openvino; torch: the checkpoint the bundle was exported from).",
            doc='One INFO line on the "zsseg_rt" logger says which path auto runs and why. Python also takes a '
            "ready ``Backend`` object (e.g. the accuracy gate's).",
            flag="--backend",
            choices=_BACKENDS,
            example=(("onnxruntime",), "onnxruntime"),
        ),
        EngineOption(
            "device",
            "auto",
            "str",
            "auto (default: a GPU when the backend can use one, else the CPU, said in one INFO line), cpu, or cuda "
            "(cuda:N: the torch backend's GPU N): a GPU, refused in one line with the reason where none is usable "
            "(never a silent CPU run). The ONNX Runtime and torch backends take cuda.",
            flag="--device",
            choices=("auto", "cpu", "cuda"),
            pattern=(r"cuda:\d+", "cuda:N"),
            example=(("cpu",), "cpu"),
        ),
        EngineOption(
            "mode",
            "exact",
            "str",
            "post-processing order: exact (the papers' order: calibrate every window at crop resolution, average the "
            "windows, resize, argmax) or fast (single-window images: one fused upsample+calibration+argmax straight "
            "to the output size, less memory and latency; multi-window images as exact). The default: exact; `zsseg "
            "camera`: fast where the bundle's pipeline has it. Not `zsseg eval --mode slide|whole`, which chooses the "
            "windows of PyTorch checkpoints.",
            doc="exact is in fp32, so labels can differ from another fp32 implementation only where two classes tie "
            "within ~1e-7. Bundles of the two-stage pipeline have the official order only (exact).",
            flag="--mode",
            choices=("exact", "fast"),
            cli_defaults=(("camera", "fast"),),
            example=(("fast",), "fast"),
        ),
        EngineOption(
            "unknown_below",
            None,
            "float or None",
            "label a pixel unknown when its best class's probability is below P (0 <= P <= 1): the reserved id 255 "
            "(65535 with more than 255 classes), named 'unknown' in classes.json, the COCO file, the robot outputs' "
            "LabelInfo and the legend, black in the views. Default: off, every pixel gets its best class (the "
            'official outputs). The probability of each model family: docs/usage.md, "Unknown pixels".',
            doc="The probability read is ``Result.probability`` where the bundle's pipeline gives one (the "
            "two-stage pipeline: the semantic score over the proposals' mask mass), else ``Result.scores`` (the "
            "post-processing's winning score: a calibrated sigmoid score, a softmax probability, a segment's class "
            "probability); docs/usage.md has each model family's. ``Result.unknown_id`` is the id, "
            "``Result.class_map()`` names it.",
            flag="--unknown-below",
            metavar="P",
            bounds=(0.0, 1.0),
            example=(("0.5",), 0.5),
        ),
        EngineOption(
            "max_batch",
            None,
            "int or None",
            "windows run through the image encoder together (two-stage pipeline: crops per CLIP encoder call); None: "
            "the pipeline's ({0} windows; {1} crops).",
            doc="A list of images packs the windows (crops) of all its images into calls of at most this many, "
            "holding at most one call's images at a time (docs/usage.md). In whole-image inference a call holds "
            "consecutive images whose rescaled sizes give the same graph input (one image per call otherwise).",
            minimum=1,
            default_from=(
                "zsseg_rt.runtime.pipelines.windowed:WindowedPipeline.default_max_batch",
                "zsseg_rt.runtime.pipelines.two_stage:TwoStagePipeline.default_max_batch",
            ),
            example=(None, 2),
        ),
        EngineOption(
            "verify",
            True,
            "bool",
            "check the sha256 of the bundle files the chosen backend opens (the tokenizer, and the ONNX graphs for "
            "ONNX Runtime; TensorRT engines are checked against their engine.json).",
            doc="Verified files are remembered by (size, mtime, ctime, inode, sha256), so a restart does not hash "
            "them again (``runtime/file_verification.py``).",
            example=(None, False),
        ),
        EngineOption(
            "model",
            None,
            "a PyTorch model or None",
            "(torch backend) the PyTorch model to run instead of loading the source checkpoint.",
            workers=False,
            not_in_workers="a PyTorch model object stays in the process that made it",
            example=(None, Made("torch.nn:Identity")),
        ),
        EngineOption(
            "precision",
            None,
            "str or None",
            "default: the backend's own (TensorRT fp16, else fp32); a reduced precision runs only after its accuracy "
            "gate passed on this machine, prepared and gated on first use or ahead by `zsseg build-engine` "
            "(docs/precision.md); auto: the fastest precision that passed the gate on this CPU, else fp32. Each "
            "backend's:",
            doc='backend="auto" on a CPU: None runs the fastest path that passed the accuracy gate on this CPU (a '
            'gate record\'s measured speed ranks it), else the exact fp32 graphs; "fp32" always runs the exact '
            "graphs. ``engine.backend.precision`` says what runs.",
            flag="--precision",
            choices=_PRECISIONS,
            more_help="zsseg_rt.runtime.backends.table:precision_help",
            example=(("fp32",), "fp32"),
        ),
        EngineOption(
            "threads",
            0,
            "int",
            "intra-op threads of the ONNX Runtime backend, INFERENCE_NUM_THREADS of the OpenVINO backend; 0 lets the "
            "runtime choose.",
            minimum=0,
            maximum=1024,  # threads=10**9 ended in ONNX Runtime's bad_alloc, reported as a damaged bundle
            example=(None, 1),
        ),
        EngineOption(
            "device_pipeline",
            "auto",
            "str or bool",
            "auto keeps a frame's data on the GPU where it can (TensorRT, torch on CUDA): one upload of the frame, "
            "pre-processing, encoder, head and the exact post-processing on one stream, one download of labels and "
            "scores (``runtime/device/device_pipeline.py``); True requires it, False uses the host path.",
            choices=("auto", True, False),
            example=(None, False),
        ),
        EngineOption(
            "postprocess_kernel",
            "auto",
            "str",
            "the device pipeline's CUDA post-processing kernel: auto (default) times each exact candidate on the "
            "first frame of each frame size and class count, before its CUDA graph is captured, and keeps the "
            "fastest whose labels and scores match the reference kernel's (tiled); a name pins that kernel. Only a "
            "device pipeline on a GPU (exact mode) launches it: elsewhere one INFO line says it changes nothing.",
            doc="``Engine.device_stats['postprocess_kernel']`` says which kernel runs for each geometry and, where "
            "it was timed, each candidate's device time and why any failed its check "
            "(``runtime/device/postprocess_choice.py``).",
            flag="--postprocess-kernel",
            choices=("auto",) + POSTPROCESS_KERNELS,
            kinds=("windowed",),
            refusal="bundles of the two-stage pipeline post-process on the host (no device pipeline)",
            example=(("columns",), "columns"),
        ),
        EngineOption(
            "encoder_variant",
            "auto",
            "str",
            "the device pipeline's image encoder: auto (default) runs graph (the bundle's graph at the Engine's "
            "precision) and fp8 (FP8 linear layers, a GPU of compute capability 8.9+, the torch backend) on the first "
            "frame, before its CUDA graph is captured, and keeps the fastest whose labels agree with graph's on at "
            "least 99.5 percent of the pixels; compiled (torch.compile, captured in the frame's graph; its first "
            "frame costs a compile of the encoder, so auto never runs it) only where pinned; a name pins that variant on "
            "the device pipeline (refused where it cannot run there); where no device pipeline runs the frames (the "
            "host path: a CPU) it changes nothing, said in one line.",
            doc="``Engine.device_stats['encoder_variant']`` says which variant runs and, where they were timed, each "
            "variant's time per encoder run, its share of labels equal to graph's and why any was skipped or failed "
            "(``runtime/device/encoder_choice.py``).",
            flag="--encoder-variant",
            choices=("auto",) + ENCODER_VARIANTS,
            kinds=("windowed",),
            refusal="bundles of the two-stage pipeline run on the host path (no device pipeline)",
            example=(("fp8",), "fp8"),
        ),
        EngineOption(
            "inference",
            "auto",
            "str",
            "whole: one pass over the whole rescaled image at its own size; windows: sliding windows of the bundle's "
            "input size; auto (default): the bundle's choice, its model's official test mode for the vocabulary; "
            "windows for bundles whose image graph has a fixed size.",
            doc="``Result.inference`` says which ran.",
            flag="--inference",
            choices=("auto", "whole", "windows"),
            kinds=("windowed",),
            refusal=_WINDOWED_ONLY,
            example=(("windows",), "windows"),
        ),
        EngineOption(
            "whole_fallback",
            None,
            "str or None",
            "whole-image inference of an image larger than the bundle's image graph was exported for "
            "(meta.json whole_image.max_side / max_short_side): windows runs it in windows instead of refusing it "
            "(default: refuse, InputLimitError).",
            doc='Its ``Result.inference`` is then "windows".',
            flag="--whole-fallback",
            choices=(None, "windows"),
            kinds=("windowed",),
            refusal=_WINDOWED_ONLY,
            example=(("windows",), "windows"),
        ),
        EngineOption(
            "max_pixels",
            None,
            "int or None",
            "pixel limit of an image, read from a file's header before decoding: larger images are refused "
            "(default: $ZSSEG_MAX_PIXELS or {0}, the package's one limit; 0 = no limit).",
            doc="An image over a limit is refused with ``InputLimitError`` (a ValueError) naming the limit, before "
            'any work (docs/usage.md, "Input limits and memory"). Sides longer than ``pipeline.limits.MAX_SIDE`` (262144) '
            "are always refused.",
            flag="--max-pixels",
            metavar="N",
            minimum=0,
            default_from=("zsseg_rt.image_io:DEFAULT_MAX_PIXELS",),
            example=(("50000000",), 50000000),
        ),
        EngineOption(
            "max_rescaled_pixels",
            None,
            "int or None",
            "input limit: pixels after the keep-ratio test rescale (an elongated image grows); None: "
            "``pipeline.InputLimits``' ({0}).",
            minimum=1,
            default_from=("zsseg_rt.pipeline.limits:InputLimits.max_rescaled_pixels",),
            example=(None, 4000000),
        ),
        EngineOption(
            "max_windows",
            None,
            "int or None",
            "input limit: sliding windows per image; None: ``pipeline.InputLimits``' ({0}).",
            minimum=1,
            default_from=("zsseg_rt.pipeline.limits:InputLimits.max_windows",),
            example=(None, 16),
        ),
        EngineOption(
            "max_memory_mb",
            None,
            "int or None",
            "input limit: the estimated working memory of one image, in MiB; None: ``pipeline.InputLimits``' ({0}).",
            minimum=1,
            default_from=("zsseg_rt.pipeline.limits:InputLimits.max_memory_mb",),
            example=(None, 2048),
        ),
        EngineOption(
            "expected_digest",
            None,
            "str or None",
            "refuse the bundle unless its digest is this one (sha256:HEX of its meta.json, which records every "
            "other file's hash; `zsseg export` prints it): the bundle's hashes show integrity, a pinned digest "
            "shows it is the bundle you exported.",
            doc="A bundle whose digest differs is refused with ``BundleError``. Needs ``verify=True``.",
            flag="--bundle-digest",
            metavar="sha256:HEX",
            example=((_DIGEST,), _DIGEST),
        ),
        EngineOption(
            "allow_partial_images",
            False,
            "bool",
            "decode what a truncated or damaged image file holds (the missing part filled) instead of refusing it "
            "(the default: refused in one line, or skipped with a warning where a command goes on with the next "
            "image).",
            doc="``zsseg_rt.image_io``: by default such a file is refused with ``CorruptImageError``, one line naming "
            "what is wrong. A header that declares more pixels than the data can hold is always refused.",
            flag="--allow-partial-images",
            example=((), True),
        ),
        EngineOption(
            "prepare",
            "auto",
            "str or None",
            "backend auto on a CPU, faster paths not prepared yet: auto (default: $ZSSEG_AUTO_PREPARE when set, "
            "else nothing is started and one line names them and the step that prepares them, `zsseg build-engine "
            "BUNDLE --backend auto`), none (run what is recorded, say nothing), now (prepare them first, the "
            "progress shown) or background (announced with its cost, prepared on idle CPU while the current path "
            "runs, switched to between frames; stopped with the Engine, what finished is kept).",
            doc="``runtime/upgrade.py``, docs/precision.md. Records go to ``<bundle>/engines``; ``close()`` or "
            "leaving ``with Engine(...)`` stops a background preparation.",
            flag="--prepare",
            choices=("auto", None, "now", "background"),
            cli_values=(("none", None),),
            workers=False,
            not_in_workers="a worker runs one path from its first image to its last, nothing prepared behind its "
            "back: prepare ahead with `zsseg build-engine BUNDLE --backend auto`",
            example=(("none",), None),
        ),
        EngineOption(
            "cache_dir",
            None,
            "str or None",
            "the folder of the prepared CPU paths' records (default: the bundle's engines/ folder): where `zsseg "
            "build-engine BUNDLE --backend auto --cache-dir DIR` prepared them, the bundle left untouched (a "
            "read-only bundle; one bundle, a folder per machine). backend auto, onnxruntime and openvino read it.",
            doc="Nothing is prepared into it at run time (``prepare='now'`` / ``'background'`` are refused with it); "
            "the one line of ``prepare='auto'`` names the step with ``--cache-dir DIR``.",
            flag="--cache-dir",
            metavar="DIR",
            example=((_NO_RECORDS,), _NO_RECORDS),
        ),
        EngineOption(
            "test_scale",
            None,
            "(long_max or None, short), 'window' or None",
            "(windowed pipeline) the keep-ratio test resize (long_max or None, short) instead of the bundle's "
            "(meta.json test_scale, e.g. (None, 512): the short side 512). Not the official resize: an option for speed.",
            doc='``"window"`` (or ``(S, S)`` with S the graph size) fits an image in one window of S x S (a 768x576 '
            "frame: 512x384 in one window, zero-padded, instead of 683x512 in two): about half the encoder's work, at "
            "a lower resolution (the :data:`LIVE` preset, ``zsseg camera --live``). The input limits follow it.",
            kinds=("windowed",),
            refusal=_WINDOWED_ONLY,
            example=(None, "window"),
        ),
        EngineOption(
            "window_size",
            None,
            "int or None",
            "the encoder's input: each image fitted in one window of N x N (N a multiple of the patch, at most the "
            "bundle's graph size, e.g. 512, 448, 384, 320, 256) and the encoder and head run at N: fewer tokens, "
            "faster, at a lower resolution (labels differ from the bundle's resize). A window below the graph's "
            "runs the exact fp32 graphs on ONNX Runtime on the CPU (a fixed-size graph rewritten for N: needs onnx). "
            "Default: the bundle's window and resize; with --live on that path, chosen on the first frame from a "
            'measured warm-up (docs/video.md, "Live video"); --window-size pins it.',
            doc="``Engine.pipeline.window_size`` says which window runs; ``runtime/pipelines/window.py``.",
            flag="--window-size",
            metavar="N",
            minimum=1,
            kinds=("windowed",),
            refusal=_WINDOWED_ONLY,
            example=(("48",), 48),
        ),
        EngineOption(
            "object_min_area",
            0.001,
            "float",
            "objects (`Result.objects()`, --objects): the smallest connected region of a class that becomes an "
            "object, as a fraction of the frame's pixels (0 <= F <= 1, rounded up to whole pixels; 0 keeps every "
            "region). The default, 0.001 (443 pixels of a 768x576 frame, 308 of 640x480), is a little more than one "
            "patch of the encoder at the bundle's resize (16x16 at a 512-pixel short side: 18x18 = 324 pixels of a "
            "576-row frame): smaller regions are below what the model resolves, mostly the argmax's speckle at "
            "class borders.",
            doc="``zsseg_rt.runtime.objects`` (``find_objects``); ``Result.objects(min_area=...)`` overrides it.",
            flag="--object-min-area",
            metavar="F",
            bounds=(0.0, 1.0),
            example=(("0.005",), 0.005),
        ),
        EngineOption(
            "max_objects",
            100,
            "int",
            "objects (`Result.objects()`, --objects): at most this many a frame, the first in their order (class, "
            "then area, largest first); the regions over it are counted (`dropped`). The default, 100, is COCO's "
            "detections per image (maxDets).",
            doc="``Result.objects(max_objects=...)`` overrides it.",
            flag="--max-objects",
            metavar="N",
            minimum=1,
            example=(("7",), 7),
        ),
        EngineOption(
            "track_max_missed",
            5,
            "int",
            "tracks (--track, `Session(track=True)`, `zsseg_rt.ObjectTracker`): the frames an object may go unseen and "
            "keep its track id; one more and its track ends (its id is never given again). The default, 5, keeps an "
            "object through a dropout of 3 frames with 2 to spare (at --live's 6 frames a second, about a second).",
            doc="``zsseg_rt.runtime.tracking`` (``ObjectTracker(max_missed=...)`` overrides it); 0 ends a track at "
            "its first missed frame. The Engine does not track: the stream (``Session``) and ``zsseg segment`` read it.",
            flag="--track-max-missed",
            metavar="N",
            minimum=0,
            workers=False,
            not_in_workers="a worker segments images one at a time (zsseg batch, zsseg serve): no tracks",
            example=(("2",), 2),
        ),
    ]
)
