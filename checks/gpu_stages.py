"""The acceptance run's stages on a lent GPU machine and the plan that fits them into one lease: the one table.

``tools/gpu_check.sh --stage NAME[,NAME...]`` (or ``--command N``: the plan's command N) runs stages from this table,
``checks/gpu_record.py`` lists every stage in BENCHMARKS.md (those never run on a GPU as "never run"),
``tools/gpu_artifacts.sh`` downloads the Python wheels named here, ``checks/gpu_artifacts.py`` hashes what each stage
covers, and python_tests/test_gpu_check.py checks the budgets, the plan and that every test file is in exactly one
stage or on the CI-only list. Standard library only: it runs on a bare machine before anything is installed.

Usage:
    python -m checks gpu_stages list                  # name, budget, what: one stage per line, in order
    python -m checks gpu_stages steps NAME            # the stage's steps, one per line ("KIND ARG...")
    python -m checks gpu_stages budget NAME           # its budget in seconds
    python -m checks gpu_stages command N             # the stages of the plan's command N (1-based), one per line
    python -m checks gpu_stages files NAME...         # at most how many files those stages leave to bring back
    python -m checks gpu_stages pytest-targets PIECE...   # pytest's arguments for those pieces (top: python_tests/test_*.py)
    python -m checks gpu_stages pytest-options [--sanitized]   # pytest's scheduling and marker arguments
    python -m checks gpu_stages workers [--sanitized] # pytest-xdist workers (under compute-sanitizer: fewer)
    python -m checks gpu_stages carried-python        # the requirements of the carried wheels, one per line
    python -m checks gpu_stages check                 # what is wrong with the table or the plan, if anything

The lease (the device tool's README, docs/gpu.md): 15 minutes of device time per session (``LEASE_S``), machine
starts included; one command at most 10 minutes (``COMMAND_LIMIT_S``); at most 8 files come back per command; the
machine goes back 30 s after a command, so a plan's commands are issued back to back, and a later start costs again.
The acceptance and the probe run in at most ``MAX_COMMANDS`` commands of ``PLAN``, ordered by value (a lease cut short
keeps what ran first: each stage writes its record when it ends), within ``PLAN_LIMIT_S`` (11 minutes) with the start;
the rest of the lease is the rerun room: one stage again, or a ``DEFERRED`` stage when it is due (issue 72 item 5;
``lease_arithmetic``). Each stage's budget is its time bound (a step still running then is stopped); its expected
seconds come from its latest record in docs/gpu_runs/ (``measured``) or, where the stage changed since, an estimate
that says so ("est."); ``check`` fails when a record of the stage as defined now took longer than expected.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "python_tests"
RUNS = REPO / "docs" / "gpu_runs"

LEASE_S = 15 * 60  # the device tool: 15 minutes of device time per session, every start included
# The acceptance and the probe with the start (issue 72 item 5): 11 minutes, so that 4 minutes of the lease are left
# to rerun a stage (or run a DEFERRED one) in the same lease
PLAN_LIMIT_S = 11 * 60
# A cold machine's start and the first transfer of the tree and the carry (42 MiB): measured 32-38 s in the leases of
# 2026-11-26 (the artefacts built 08:16:26, the first stage started about 08:17:04; held 260 s for a 228 s command:
# docs/gpu.md); the device README says "a minute or more"; an H100 that does not open within 90 s falls back to an
# H200, 1-2 minutes more. 120 s: the review's upper end (gpu_review_0707000, section 6 item 5).
START_ALLOWANCE_S = 120
# A later command on the warm machine: the tree sent again and the command started. Measured between the stages
# of 2026-11-26 (their records' `finished` minus `seconds`): 9 s and 18 s where a new command began, 0 s within one.
COMMAND_GAP_S = 15
COMMAND_LIMIT_S = 600  # the device tool: one command at most 10 minutes (its timeout_s)
FILES_PER_COMMAND = 8  # the device tool brings back at most 8 files from $OUT per command
MAX_COMMANDS = 3
# Past a stage's budget: the 20 s between SIGINT and SIGKILL of a step at the bound, and the record (1-5 s measured)
STAGE_OVERHEAD_S = 25
RECORD_FILES = 2  # every stage: DATE_MACHINE_STAGE.json and .logs.tar.gz
# The probe (checks/gpu_probe.py, `--out DIR`): DIR/probe.json after every part and at most 2 other files. They are
# written straight under the record folder, so that a command cut during the probe still brings them back; when the
# stage ends its record keeps probe.json and the logs tarball takes all three (then 2 files). At most 3 at any time.
PROBE_FILES = 3
PYTEST_WORKERS = 16  # pytest-xdist workers: the GPU machine's 16 cores
SANITIZED_PYTEST_WORKERS = 8  # under compute-sanitizer each worker is an instrumented process on the one GPU
# Under compute-sanitizer (issue 86 item 1; python_tests/stage_order.py): the CUDA tests less those whose CUDA work
# runs in child processes (marked not_sanitized with the reason: their kernels run under memcheck in-process in other
# tests, the suite stage runs them natively); the must-runs first; each test bounded at SANITIZED_TEST_BOUND_S (the
# slowest under memcheck took 7.75 s at b235fde), and no test started after the step's bound less that bound and
# SANITIZED_REPORT_S, so that pytest writes its own report and XML (at the bound compute-sanitizer ended the tree
# with neither: the H200 run of 7f842ed lost every result of 256 finished tests).
SANITIZED_SELECT = "cuda and not not_sanitized"
SANITIZED_TEST_BOUND_S = 30
SANITIZED_REPORT_S = 15
PYTEST_DIST = "loadgroup"  # as CI (tools/run_tests.sh): xdist_group marks hold, long files spread over workers
# Tests marked host_only verify nothing a GPU changes: training pinned to the CPU (its bounds measured on CPUs), ONNX
# Runtime or OpenVINO on the CPU (the GPU image's onnxruntime has no CUDA provider and it has no OpenVINO, so those
# tests take the CPU path there as here), the CPU export. Each mark says why on its line. CI runs them, the lease
# deselects them as part of every pytest stage's definition, and the record names them (``host_only_tests``).
HOST_ONLY = "host_only"
DESELECT = f"not {HOST_ONLY}"

# What the GPU image lacks of the acceptance run's Python requirements (the device's KINDS.md lists the image:
# torch 2.11, numpy, onnx, onnxruntime, opencv-python-headless, pytest, pytest-xdist, hypothesis, timm, regex,
# huggingface-hub, safetensors, ... but not these): tools/gpu_artifacts.sh downloads them for CPython 3.12 and the
# acceptance run installs from them only what the machine lacks. Pins: requirements.txt where it pins them.
CARRIED_PYTHON = ("open_clip_torch==3.3.0", "ftfy==6.3.1", "wcwidth==0.9.4")


@dataclass(frozen=True)
class Stage:
    """Stages run in one command each or several to a command. ``steps``: "engine", "cpp", "bench", "probe",
    "pytest PIECE...", "sanitizer TOOL cpp|pytest" (tools/gpu_check.sh's step kinds); every stage first checks the
    carried artefacts, installs the carried wheel and runs the import check. ``expected_s``: what the plan counts;
    ``measured``: the record (docs/gpu_runs/) it comes from; ``expected_from``: how (an estimate starts "est.").
    ``covers``: files beyond what the steps imply (``covered``). ``must_run``: (test id, why) of Python GPU tests
    that must RUN in the stage: a skip or absence fails it. ``probe_parts``: a probe stage's parts (checks/gpu_probe.py
    ORDER), in its definition: a record of other parts is of another stage."""

    name: str
    budget_s: int
    steps: Tuple[str, ...]
    what: str
    expected_s: int
    expected_from: str
    measured: Optional[str] = None
    covers: Tuple[str, ...] = ()
    must_run: Tuple[Tuple[str, str], ...] = ()
    probe_parts: Tuple[str, ...] = ()  # a probe step's parts (checks/gpu_probe.py ORDER): part of its definition


OPS_MUST_RUN = (
    ("python_tests/runtime/test_cuda_graphs.py::test_real_cuda_graphs_match_the_eager_pipeline",
     "the Engine's frame captured and replayed as real CUDA graphs (torch on CUDA) equals the eager frame: the path "
     "every deployed frame takes; it skips by itself where torch sees no GPU"),
    ("python_tests/runtime/test_device_graphs_cuda.py::test_replayed_frames_equal_the_eager_pipeline_frame_after_frame",
     "the device pipeline's own graphs (the runtime driver's capture) replayed frame after frame on the device"),
    ("python_tests/runtime/test_device_pipeline_cuda.py::test_the_pipeline_runs_on_cuda_memory_and_matches_the_host_path",
     "the device pipeline on device memory (and mapped host memory) against the host path"),
    ("python_tests/runtime/test_batched_call_cuda.py::test_a_list_on_the_device_pipeline_equals_per_image_device_calls",
     "the batched call on the device path (the H200's ops records failed the batched call: a product defect)"),
    ("python_tests/ops/test_masks_cuda.py::test_segment_matches_reference",
     "segment_windows' kernel, the post-processing of every frame, against the reference"),
    ("python_tests/ops/test_masks_cuda.py::test_calibrated_upsample_matches_reference_and_torch",
     "upsample with sigmoid and bias on the device against the reference and torch"),
    ("python_tests/ops/test_dense_cuda.py::test_similarity_fp16_error_comparable_to_torch",
     "similarity on torch CUDA tensors in fp16 (DLPack on torch's stream)"),
    ("python_tests/ops/test_dense_cuda.py::test_relation_fp16_error_comparable_to_torch",
     "relation_descriptor on torch CUDA tensors in fp16"),
    ("python_tests/ops/test_preprocess_op.py::test_cuda_matches_cpu", "the preprocessing kernel against the CPU op"),
    ("python_tests/ops/test_warp.py::test_cuda_matches_cpu", "the warp kernel (the video filter) against the CPU op"),
    ("python_tests/ops/test_temporal_ops.py::test_cuda_matches_cpu",
     "the video filter's blend, hysteresis, propagation and class-state kernels against the CPU ops (issue 65: "
     "never ran on a device; equal bit for bit there only if __fmul_rn / __fadd_rn keep nvcc from contracting)"),
    ("python_tests/runtime/test_video_device_cuda.py::test_the_device_filter_is_the_cpu_filter",
     "the video filter with its state on the device against the CPU filter, frame by frame, and its copies per "
     "frame (the flow up, the labels down): the product's device filter (issue 65), emulator-tested only"),
    ("python_tests/runtime/test_video_device_cuda.py::test_video_segmenter_on_the_device_pipeline",
     "VideoSegmenter on a device pipeline (CudaMemory): class scores made on the device, the filter there"),
    ("python_tests/runtime/test_cuda_graphs.py::test_real_cuda_graphs_time_the_stages_inside_the_graph",
     "a timed frame replayed as a real CUDA graph with its stage events inside (torch external events)"),
    ("python_tests/runtime/test_device_graphs_cuda.py::test_timed_frames_are_replayed_with_their_stage_events",
     "the device pipeline's timed graphs on the runtime driver: event record nodes in a real capture"),
    ("python_tests/ops/test_segment_windows_plan.py::test_a_cuda_plan_equals_the_op_and_checks_an_unchecked_bias_once",
     "the prepared post-processing launch (every eager device frame's) against the op on the device"),
    ("python_tests/ops/test_stream_order_cuda.py::test_inputs_dropped_right_after_the_call_stay_alive_until_the_kernel_is_done",
     "stream order with torch's streams: an argument outlives the kernel that reads it"),
)  # fmt: skip
MODELS_MUST_RUN = (
    ("python_tests/train/test_training.py::test_resume_reproduces_uninterrupted_run[cuda]",
     "training on CUDA (resume within AdamW's bound): the only CUDA training in the suite; failed on the H200 at "
     "dc8fdc0 and fixed without a re-run"),
)  # fmt: skip
SANITIZERS_MUST_RUN = (
    ("python_tests/runtime/test_device_pipeline_cuda.py::test_the_pipeline_runs_on_cuda_memory_and_matches_the_host_path",
     "memcheck over the device pipeline's copies and kernels"),
    ("python_tests/runtime/test_device_graphs_cuda.py::test_replayed_frames_equal_the_eager_pipeline_frame_after_frame",
     "memcheck over graph capture and replay"),
    ("python_tests/ops/test_masks_cuda.py::test_segment_matches_reference", "memcheck over segment_windows' kernel"),
    ("python_tests/ops/test_dense_cuda.py::test_similarity_fp32_matches_reference", "memcheck over similarity"),
)  # fmt: skip

# Value order: the frame as deployed, the device ops and graphs, what never ran (the probe), CUDA training and the
# models, the GPU-relevant rest, the sanitizers (their kernels' inputs change least often; the stage is skipped
# while what it covers is unchanged since its last pass).
STAGES: Tuple[Stage, ...] = (
    Stage(
        "engine",
        200,
        ("engine", "cpp", "bench"),
        "the Engine end to end (torch on CUDA vs ONNX Runtime on the CPU: labels; the full-size ViT-B/16's "
        "per-stage times, post-processing <= 3 % of the encoder), the C++ tests (every CUDA kernel against the CPU "
        "op), every CUDA op against torch eager on the same GPU (within 2x)",
        145,
        "est.: its record 2026-11-28T171137_nvidia-h200_engine.json (H200, 7f842ed): 125 s (setup 6, the engine check "
        "83 with the full export 40.7, the candidates 20, the C++ tests 1, the CUDA benchmark 14); issue 86 adds to the "
        "engine check about 8 s (every candidate checked and timed on three kinds of logits at C=171), 10 s (ncu of the "
        "chosen kernels), 10 s (the encoder choice of graph and fp8 over the photos: FP8's build and gate) and 5 s "
        "(batched calls of 2, 4 and 8), and takes 12 s from the candidates program (C=20 only: the engine check times "
        "C=171): 145 s; budget 200 s",
        measured="2026-11-28T171137_nvidia-h200_engine.json",
        # the Engine check, the benchmark (every module of benchmarks/: its timing method, _cuda_timing.py, is the
        # verdict's), the C++ tests
        covers=("checks/gpu_engine.py", "checks/postprocess_variants.py", "benchmarks/**", "cpp_tests/**"),
    ),
    Stage(
        "ops",
        100,
        ("pytest ops runtime pipeline",),
        "the CUDA ops and their bindings, the device pipeline, the Engine and its backends (CUDA graphs) in pytest",
        71,
        "est.: its record 2026-11-28T171254_nvidia-h200_ops.json (H200, 7f842ed): 76 s, pytest 67.5 s on 16 workers (379 "
        "worker-seconds of tests: about 44 s of start and tail), 1192 passed, 17 of 17 must-runs; less 5 s: the "
        "command's site is reused (its record's install and python_deps took 6 s; tools/gpu_check.sh setup); budget "
        "1.4x",
        measured="2026-11-28T171254_nvidia-h200_ops.json",
        must_run=OPS_MUST_RUN,
    ),
    Stage(
        "probe",
        90,
        ("probe",),
        "what never ran on a device (checks/gpu_probe.py ORDER, its JSON after every part): the temporal kernels "
        "against the CPU bit for bit (their must-run tests, the first divergence), the video filter on the device and "
        "--live on CUDA, the batched call, the ctypes CudaDriver; the parts measured before are extras",
        60,
        "est.: its parts refitted to its record 2026-11-28T171349_nvidia-h200_probe.json (55 s on the H200 at 7f842ed: "
        "setup 6 s, the probe 47.3 s: P2 0.42 s reusing the engine stage's tiny bundle, P10 6.7 s, P9 25.4 s, P7 10.6 "
        "s, P6 0.77 s): gpu_probe.expected_seconds(ORDER) 57.4 s (P7 12 s est.: it captures a graph per batch size now) "
        "and 2 s of setup (the command's site reused); its budget lets every part start at 1.2x its time",
        measured="2026-11-28T171349_nvidia-h200_probe.json",
        # the probe, its parts, what they import of checks/ (the Engine check's helpers) and run of benchmarks/, and
        # the tests P10 runs with their helpers
        covers=(
            "checks/gpu_probe.py",
            "checks/_gpu_probe_parts.py",
            "checks/_gpu_probe_video.py",
            "checks/gpu_engine.py",
            "benchmarks/**",
            "python_tests/ops/test_temporal_ops.py",
            "python_tests/runtime/test_video_device_cuda.py",
            "python_tests/conftest.py",
            "python_tests/cuda_support.py",
            "python_tests/support.py",
            "python_tests/video_fakes.py",
        ),  # fmt: skip
        probe_parts=("P2", "P10", "P9", "P7", "P6"),
    ),
    Stage(
        "models",
        100,
        ("pytest models train eval data vocabulary",),
        "the model families, CUDA training and evaluation in pytest (on a GPU the models go to CUDA); the training "
        "pinned to the CPU and the families' ONNX Runtime runs on the CPU are CI's (host_only), the model contract "
        "too (CI_ONLY)",
        74,
        "its record 2026-11-28T171528_nvidia-h200_models.json (H200, 7f842ed): 74 s, 364 passed, the must-run passed; "
        "budget 1.35x",
        measured="2026-11-28T171528_nvidia-h200_models.json",
        must_run=MODELS_MUST_RUN,
    ),
    Stage(
        "suite",
        100,
        ("pytest export stream cli top",),
        "the rest of pytest that a GPU can change: streams and the video filter, torch precision, the CLI's device "
        "options, profiling; the rest is CI's (CI_ONLY, host_only)",
        72,
        "est.: its record 2026-11-28T171645_nvidia-h200_suite.json (H200, 7f842ed): 77 s, 696 passed, 1 failed (the Ray test, "
        "fixed since: it now calls the command past the install check, no longer slower), 38 skipped; less 5 s: the "
        "command's site is reused (tools/gpu_check.sh setup); budget 1.4x",
        measured="2026-11-28T171645_nvidia-h200_suite.json",
        covers=("benchmarks/**",),  # test_benchmark_streams.py and the CLI's profiling run benchmarks/ on the GPU
    ),
    Stage(
        "sanitizers",
        150,
        (
            "sanitizer memcheck cpp",
            "sanitizer racecheck cpp",
            "sanitizer synccheck cpp",
            "sanitizer memcheck pytest",
        ),
        "compute-sanitizer memcheck, racecheck and synccheck over the C++ CUDA tests, memcheck over the Python CUDA "
        "tests",
        99,
        "est.: its run on the H200 at b235fde (211623, information: 103 s, memcheck's pytest 94 s, 0 sanitizer "
        "errors) plus the 27 short CUDA tests added since (0.4-0.8 s natively each: about 7 s more on 8 workers "
        "under memcheck) less the 2 whose CUDA work runs in child processes, now deselected under the sanitizer "
        "(not_sanitized: python_tests/stage_order.py), and less about 6 s of collection: its workers collect the 31 "
        "files that hold CUDA tests, not the tree (3.9 against 20.1 CPU-s a worker on the 2-core EPYC here). Its "
        "records of 7f842ed (2026-11-28T171915 and 172307) timed out at 150 s and 215 s with 255 and 256 of 257 "
        "tests done, no error: the two child-process tests were the tail, and at the bound compute-sanitizer ended the "
        "tree with no report (the must-runs now go first, each test is bounded at 30 s and none starts within 45 s "
        "of the bound); less 5 s: the command's site is reused (tools/gpu_check.sh setup)",
        measured="2026-11-27T211249_nvidia-h200_sanitizers.json",
        must_run=SANITIZERS_MUST_RUN,
    ),
)

# The lease's commands, ordered by value, each one `tools/gpu_check.sh --stage A,B,...` call of the device tool: the
# engine, the device ops and graphs, and the probe first (the deployed frame and the post-processing chosen by
# measurement, what failed on defects fixed since, what never ran on a GPU), then the rest of pytest and the
# sanitizers. Two commands, not three: one gap (COMMAND_GAP_S) less, and each within the tool's 10 minutes and 8 files.
PLAN: Tuple[Tuple[str, ...], ...] = (("engine", "ops", "probe"), ("models", "suite", "sanitizers"))
# Stages outside the 11-minute acceptance, run in the rerun room only when due (checks/gpu_plan.py decides; for the
# engine: a file of what it failed on changed since its latest record, ENGINE_TRIGGERS). The rule: a stage is deferred
# only while the acceptance cannot hold it and its verdict is known (deterministic and unchanged). None is now: the
# engine, deferred while the five others took 653 of the 660 s, is in the plan since they were cut to 395 s (issue 78
# item 6: every stage in one lease), and what it measures is the lease's to choose (the post-processing candidates).
DEFERRED: Dict[str, str] = {}

STEP_KINDS = ("engine", "cpp", "bench", "pytest", "sanitizer", "probe")
SANITIZER_TOOLS = ("memcheck", "racecheck", "synccheck")

# Test files (or folders) of python_tests that are CI's, not the lease's: a GPU cannot change what they test. Each
# file of python_tests is in exactly one stage or here (problems()).
_RAY = ("Ray (the scale extra) is not on the GPU image: its tests skip there (33 skips in 2026-11-26T082542's "
        "record); the others drive ONNX Runtime or OpenVINO workers on the CPU")  # fmt: skip
_CPU_EXPORT = "the export command on the CPU (torch.onnx export, ONNX Runtime's CPU verification, file handling)"
_ORT_CPU = ("ONNX Runtime bundles on the CPU: the image's onnxruntime has no CUDA provider, so backend='auto' takes "
            "the CPU path there as here")  # fmt: skip
_NO_BUILD = "compiles with nvcc/cmake: skips on the GPU machine (ZSSEG_NO_BUILD=1)"
_STATIC = "reads the source and the tools (no device, no runtime)"
CI_ONLY: Dict[str, str] = {
    "scale": _RAY,
    "outputs": "the files of each image (segment's views, batch's label PNGs) written on the host: no device",
    "prepare": "preparing a bundle: quantisers, the accuracy gate, the auto policy (ONNX Runtime and OpenVINO on the "
    "CPU); the TensorRT builds and their gate on TensorRT's fakes (prepare/fake_tensorrt.py, host_cuda.py) and static "
    "checks, as TensorRT is not on the GPU image (the one real build skips there)",
    "export/test_fullsize.py": "PyTorch on the CPU against ONNX Runtime on the CPU (the full-size export, slow)",
    "export/test_numeric_bounds.py": "ONNX Runtime's CPU kernels, some under qemu (not on the GPU image)",
    "export/test_overwrite.py": _CPU_EXPORT,
    "export/test_onnx_export.py": f"{_CPU_EXPORT}: the bundle's files, refusals and the static TensorRT check",
    "export/test_text_graph.py": "the text graph's export and ONNX Runtime's CPU run against PyTorch on the CPU",
    "contract": "the model registry, configs, moved paths and official-checkpoint helpers: models built on the CPU or "
    "the meta device, checkpoints read on the CPU (no device)",
    "cli/test_cli_export.py": _CPU_EXPORT,
    "export/test_export_progress.py": _CPU_EXPORT,
    "export/test_export_signals.py": _CPU_EXPORT,
    "export/test_staging_cleanup.py": _CPU_EXPORT,
    "test_doc_snippets.py": "the docs' shell snippets: the CLI on ONNX Runtime bundles on the CPU, the tools' own "
    "commands (the lease runs docs/gpu.md's for real); its session fixture exports the full-size demo bundle",
    "cli/test_cli_demo.py": f"zsseg demo: {_CPU_EXPORT}; its run is backend='auto' on an ONNX Runtime bundle ({_ORT_CPU})",
    "test_every_family_bundle.py": "the runtime with torch blocked: ONNX Runtime on the CPU only",
    "test_benchmark_cpu.py": f"the CPU benchmark: {_ORT_CPU}",
    "test_benchmark_cpu_default.py": f"the CPU default's benchmark: {_ORT_CPU}",
    "test_sass_check.py": _NO_BUILD,
    "test_sass_dense.py": _NO_BUILD,
    "test_gpu_rehearsal.py": _NO_BUILD,
    "test_gpu_check.py": "the acceptance tooling's own tests, on fakes and the CPU",
    "test_gpu_evidence.py": "the acceptance tooling's own tests, on fakes and the CPU",
    "test_gpu_probe.py": "the probe's plumbing on stand-in parts (the lease runs the probe itself)",
    "test_gpu_plan_room.py": "the lease plan's arithmetic on the table (no device)",
    "test_gpu_harness.py": "the acceptance tooling's own tests, on fakes (a bare Python built from the running one's "
    "site: on the image, whose stage puts the carried pytest on PYTHONPATH, its 'other pytest' is the carried one and "
    "it fails: the image twin's suite stage, 2026-11-28)",
    "test_image_twin.py": "the image twin's machinery (tools/image_twin.sh) on synthetic cases in venvs of the image's "
    "versions made from PyPI (no device; the lease runs the stages themselves)",
    "test_mutants_table.py": _STATIC,
    "test_benchmark_cuda.py": "the CUDA benchmark's statistic on a simulated GPU clock (the lease runs it for real)",
    "runtime/test_stage_timing.py": "stage timing's bookkeeping on CPU stand-ins (its GPU tests are in test_cuda_graphs.py "
    "and test_device_graphs_cuda.py, on the must-run list)",
    "test_emulator_mutations.py": "the emulated CUDA runtime's mutations: every test skips without that build",
    "test_architecture.py": _STATIC,
    "test_twins.py": _STATIC + "; the duplicate finder reads git's file list (none in the device's copy)",
    "test_self_contained.py": _STATIC,
    "test_setup_jetson.py": "tools/setup_jetson.sh against a fake /etc, /proc and nvcc",
}

# Skips whose reason mentions CUDA or a GPU fail a stage on the GPU machine (a Python GPU test that skips proves
# nothing there), except those matching one of these (regex, why).
GPU_SKIP_ALLOWED: Tuple[Tuple[str, str], ...] = (
    (r"emulated CUDA", "tests of the emulated CUDA runtime (CI's ZSSEG_CUDA_EMULATION=1 build)"),
    (r"^checks the no-GPU message", "the message a machine without a GPU prints"),
    (r"^a GPU is present: covered by", "the no-GPU path, covered on the GPU by the test it names"),
    (r"ZSSEG_NO_BUILD=1", "builds with nvcc/cmake: nothing is built on the GPU machine; CI runs them"),
    (r"^onnxruntime-gpu is installed", "the message for a machine without ONNX Runtime's CUDA provider"),
)
GPU_WORDS = re.compile(r"cuda|gpu", re.I)


def stage(name: str) -> Stage:
    for found in STAGES:
        if found.name == name:
            return found
    raise KeyError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def test_pieces() -> List[str]:
    """The pytest pieces of python_tests: each folder holding tests, and ``top`` (the files directly in it)."""
    pieces = sorted(
        p.name for p in TESTS.iterdir() if p.is_dir() and (any(p.glob("test_*.py")) or any(p.glob("*/test_*.py")))
    )
    return pieces + ["top"]


def pieces_of(found: Stage) -> List[str]:
    return [piece for step in found.steps if step.split()[0] == "pytest" for piece in step.split()[1:]]


def piece_of(test_file: str) -> str:
    """The piece of a test file given relative to python_tests ("ops/test_x.py" -> "ops", "test_y.py" -> "top")."""
    return test_file.split("/", 1)[0] if "/" in test_file else "top"


def ci_only(test_file: str) -> Optional[str]:
    """Why a test file (relative to python_tests) is CI's only, or None."""
    for entry, why in CI_ONLY.items():
        if test_file == entry or test_file.startswith(entry + "/"):
            return why
    return None


def test_files(root: Optional[Path] = None) -> List[str]:
    tests = (root or REPO) / "python_tests"
    return sorted(p.relative_to(tests).as_posix() for p in tests.rglob("test_*.py") if "__pycache__" not in p.parts)


def stage_test_files(found: Stage, files: Iterable[str]) -> List[str]:
    """The test files (relative to python_tests) a stage's pytest steps run."""
    pieces = pieces_of(found)
    return [f for f in files if piece_of(f) in pieces and ci_only(f) is None]


def pytest_targets(pieces: List[str], root: Optional[Path] = None) -> List[str]:
    """pytest's arguments for ``pieces`` of the checkout at ``root``: the python_tests folder and an ``--ignore`` for
    each piece left out (top: the test files directly in it) and each CI-only entry of the pieces kept. Ignoring what
    is left out, rather than naming what is wanted, keeps pytest's --ignore working below (it does not apply to
    paths named on the command line)."""
    tests = (root or REPO) / "python_tests"
    known = test_pieces()
    unknown = [p for p in pieces if p not in known]
    if unknown:
        raise KeyError(f"no pytest piece {unknown[0]!r} (pieces: {', '.join(known)})")
    args = [str(tests)] + [f"--ignore={tests / p}" for p in known if p != "top" and p not in pieces]
    if "top" not in pieces:
        args.append(f"--ignore-glob={tests}/test_*.py")
    args += [f"--ignore={tests / entry}" for entry in sorted(CI_ONLY) if piece_of(entry) in pieces]
    return args


def cuda_test_files(root: Optional[Path] = None) -> List[str]:
    """The test files that hold CUDA tests (``mark.cuda`` in their text, as tools/run_tests.sh's emulation stage
    selects them), relative to the checkout: what the sanitized pytest collects instead of the whole tree (each of
    its workers collected every module, 20 CPU-s here against 3.9 for these)."""
    tests = (root or REPO) / "python_tests"
    return sorted(
        str(path.relative_to(tests.parent))
        for path in tests.rglob("test_*.py")
        if re.search(rb"mark\.cuda", path.read_bytes())
    )


def pytest_options(sanitized: bool = False) -> List[str]:
    """The stage definition's own pytest arguments (not a user's filter): the marker selection and the scheduler."""
    return ["-m", SANITIZED_SELECT if sanitized else DESELECT, "--dist", PYTEST_DIST]


def host_only_tests(root: Optional[Path] = None, files: Optional[Iterable[str]] = None) -> List[str]:
    """The tests marked host_only: what the lease deselects. A file whose every test is (``pytestmark``), a function
    (``@pytest.mark.host_only`` among its decorators, before its ``def``), or a function's parameters marked in its
    decorators (``pytest.param("value", marks=pytest.mark.host_only)``, reported ``function[value]``)."""
    tests = (root or REPO) / "python_tests"
    found = []
    for rel in files if files is not None else test_files(root):
        text = (tests / rel).read_text(encoding="utf-8", errors="replace")
        if re.search(rf"^pytestmark\s*=.*\bmark\.{HOST_ONLY}\b", text, re.M):
            found.append(f"python_tests/{rel}")
            continue
        for match in re.finditer(
            rf"^@pytest\.mark\.{HOST_ONLY}\b[^\n]*\n(?:@[^\n]*\n|\s+[^\n]*\n)*?def (\w+)", text, re.M
        ):
            found.append(f"python_tests/{rel}::{match.group(1)}")
        marked = [f"python_tests/{rel}::" + name.split("[")[0] for name in found if name.count("::")]
        for match in re.finditer(r"^((?:@[^\n]*\n(?:[ \t]+[^\n]*\n|\)[^\n]*\n)*)+)def (\w+)", text, re.M):
            if f"python_tests/{rel}::{match.group(2)}" in marked:
                continue
            params = re.findall(rf'pytest\.param\(\s*"([^"]+)"\s*,\s*marks=pytest\.mark\.{HOST_ONLY}\b', match.group(1))
            found += [f"python_tests/{rel}::{match.group(2)}[{value}]" for value in params]
    return found


# ---- what a stage covers: its pass counts at a later tree only while these files hash the same -----------------------
BUILD = ("zsseg_rt/**", "csrc/**", "cmake/**", "CMakeLists.txt", "pyproject.toml")  # the carried wheel's inputs
# The native code and the Python that makes CUDA calls or launches kernels: what compute-sanitizer can judge
DEVICE_CODE = (
    "csrc/**",
    "cmake/**",
    "CMakeLists.txt",
    "pyproject.toml",
    "zsseg_rt/ops/**",
    "zsseg_rt/runtime/**",
    "zsseg_rt/stream/**",
)  # the stream's device video filter: its buffers and ops under memcheck
# Emulator-only files: the host emulation of the CUDA runtime and its GoogleTest suite, in neither the wheel nor the
# C++ tests a GPU runs (CMakeLists.txt: ZS_BUILD_CUDA_EMULATION*); a change to them proves nothing about a GPU pass
EMULATOR_ONLY = ("csrc/emu/**", "cpp_tests/emulation/**")
# Timing stages: what they measure is the GPU's, so their pass counts only on the GPU kind that measured it (a pass
# on an H200 does not skip an H100's timing: the records' reader keys them by stage, coverage hash and GPU kind)
PER_GPU_KIND = ("engine", "probe")
# How every stage runs (the artefacts' check, the verdicts, the step runner); not the record and plan code
# (checks/_harness.py installs the test tools at requirements.txt's pins, read by checks/_requirements.py;
# benchmarks/_launch.py starts the programs' children)
HARNESS = ("tools/gpu_check.sh", "checks/__init__.py", "checks/__main__.py", "checks/gpu_check_support.py",
           "checks/gpu_artifacts.py", "checks/_harness.py", "checks/_requirements.py", "benchmarks/_launch.py",
           "requirements.txt")  # fmt: skip


def _matches(path: str, pattern: str) -> bool:
    if pattern.endswith("/**"):
        return path.startswith(pattern[:-2])
    return PurePosixPath(path).match(pattern) and path.count("/") == pattern.count("/")


def _python_helpers(path: str) -> bool:
    """python_tests files that are no test file (conftests, fakes, golden data): every pytest step uses them."""
    return path.startswith("python_tests/") and not re.fullmatch(r"test_.*\.py", PurePosixPath(path).name)


def checks_imports(programs: Iterable[str], files: Sequence[str], read: Callable[[str], bytes]) -> List[str]:
    """The ``checks/`` modules the ``programs`` (``checks/*.py`` paths) import, at any depth, lazy imports included
    (read as source: ``import checks.x``, ``from checks import x``, ``from checks.x import y``), the programs too: a
    stage's verdict depends on every helper its program runs, so a helper moved out of a program stays covered."""
    import ast

    present = set(files)
    seen: List[str] = []
    todo = [path for path in programs if path in present]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        try:
            tree = ast.parse(read(path))
        except SyntaxError:
            continue  # not Python the hash can read: the file itself is still covered
        for node in ast.walk(tree):
            names: List[str] = []
            if isinstance(node, ast.ImportFrom) and node.module == "checks":
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("checks."):
                names = [str(node.module)[len("checks.") :]]
            elif isinstance(node, ast.Import):
                names = [alias.name[len("checks.") :] for alias in node.names if alias.name.startswith("checks.")]
            todo += [f"checks/{name.replace('.', '/')}.py" for name in names]
            todo = [path for path in todo if path in present]
    return sorted(seen)


def covered(found: Stage, files: Sequence[str], read: Callable[[str], bytes]) -> List[str]:
    """The files (of ``files``, repository-relative) whose content a stage's verdict depends on: how it runs
    (HARNESS), what it runs (BUILD, or DEVICE_CODE for the sanitizers), each step's programs (``covers``) with the
    ``checks/`` modules they import (:func:`checks_imports`), and its
    tests: the pytest pieces' test files less the CI-only ones, for memcheck's pytest run the test files holding a
    ``cuda`` mark (read, so that a file that gains one is covered), and the python_tests helpers and data; never the
    emulator's (EMULATOR_ONLY)."""
    kinds = {step.split()[0] for step in found.steps}
    programs = [path for path in found.covers if path.startswith("checks/") and path.endswith(".py")]
    patterns = list(HARNESS) + list(found.covers) + checks_imports(programs, files, read)
    patterns += list(DEVICE_CODE) if kinds == {"sanitizer"} else list(BUILD)
    if "sanitizer" in kinds:
        patterns.append("cpp_tests/**")
    own = {f"python_tests/{f}" for f in stage_test_files(found, (f[len("python_tests/"):] for f in files
                                                                 if f.startswith("python_tests/")))}  # fmt: skip
    sanitized_pytest = any(step.split()[-1] == "pytest" for step in found.steps if step.startswith("sanitizer"))
    chosen = []
    for path in files:
        if any(_matches(path, p) for p in EMULATOR_ONLY):
            continue
        if any(_matches(path, p) for p in patterns):
            chosen.append(path)
        elif path.startswith("python_tests/") and (pieces_of(found) or sanitized_pytest):
            if _python_helpers(path) or path in own:
                chosen.append(path)
            elif sanitized_pytest and path.endswith(".py") and b"mark.cuda" in read(path):
                chosen.append(path)
    return sorted(set(chosen))


def definition(found: Stage) -> dict:
    """What defines a stage beyond its files: its steps, pytest's own arguments, what is CI's, the must-run tests
    and the allowed GPU skips. Part of its coverage hash: a pass under another definition does not count."""
    sanitized = any(step.startswith("sanitizer") and step.endswith("pytest") for step in found.steps)
    return {
        "stage": found.name,
        "steps": list(found.steps),
        "pytest_options": pytest_options() if pieces_of(found) else [],
        "sanitized_pytest_options": pytest_options(sanitized=True) if sanitized else [],
        "ci_only": sorted(entry for entry in CI_ONLY if piece_of(entry) in pieces_of(found)),
        "must_run": [test for test, _ in found.must_run],
        "gpu_skip_allowed": [pattern for pattern, _ in GPU_SKIP_ALLOWED] if pieces_of(found) or sanitized else [],
        **({"probe_parts": list(found.probe_parts)} if found.probe_parts else {}),
    }


def definition_sha256(found: Stage) -> str:
    return hashlib.sha256(json.dumps(definition(found), sort_keys=True).encode()).hexdigest()


def coverage(found: Stage, files: Sequence[str], read: Callable[[str], bytes], sha: Callable[[str], str]) -> dict:
    """The stage's coverage hash over a tree (``files``: its repository-relative paths; ``read``: a file's bytes,
    for the marks ``covered`` looks for; ``sha``: a file's SHA-256): the definition's hash and each covered file's
    path and SHA-256, in path order."""
    definition_hash = definition_sha256(found)
    digest = hashlib.sha256(definition_hash.encode() + b"\n")
    paths = covered(found, sorted(files), read)
    for path in paths:
        digest.update(f"{path}\0{sha(path)}\n".encode())
    return {"sha256": digest.hexdigest(), "files": len(paths), "definition_sha256": definition_hash}


# ---- the plan ------------------------------------------------------------------------------------------------------------
def files_of(found: Stage) -> int:
    """At most how many files a stage leaves for the device tool to bring back."""
    return max(RECORD_FILES, PROBE_FILES) if any(s.split()[0] == "probe" for s in found.steps) else RECORD_FILES


def command_stages(number: int, plan: Sequence[Sequence[str]] = PLAN) -> List[str]:
    if not 1 <= number <= len(plan):
        raise KeyError(f"no command {number} in the plan (it has {len(plan)}: 1..{len(plan)})")
    return list(plan[number - 1])


def command_timeout(stages: Sequence[Stage]) -> int:
    """The device tool's timeout_s for one command: its stages' budgets and overheads, at most its limit."""
    return min(COMMAND_LIMIT_S, sum(s.budget_s + STAGE_OVERHEAD_S for s in stages))


def plan_seconds(plan: Sequence[Sequence[str]]) -> int:
    commands = [c for c in plan if c]
    if not commands:
        return 0
    return (
        START_ALLOWANCE_S + COMMAND_GAP_S * (len(commands) - 1) + sum(stage(n).expected_s for c in commands for n in c)
    )


def acceptance(plan: Sequence[Sequence[str]] = PLAN, due: Iterable[str] = ()) -> List[List[str]]:
    """The plan's commands less the DEFERRED stages that are not ``due`` (empty commands dropped)."""
    keep = set(due)
    commands = [[n for n in command if n not in DEFERRED or n in keep] for command in plan]
    return [command for command in commands if command]


def rerun_fits(room_s: float, full_budget: bool = False) -> List[str]:
    """The stages one rerun of which fits ``room_s`` (a later command: its gap and the stage's expected seconds, or
    with ``full_budget`` its budget and overhead: the worst a stage can take)."""
    cost = (lambda s: s.budget_s + STAGE_OVERHEAD_S) if full_budget else (lambda s: s.expected_s)
    return [s.name for s in STAGES if COMMAND_GAP_S + cost(s) <= room_s]


def lease_arithmetic(plan: Sequence[Sequence[str]] = PLAN, due: Iterable[str] = ()) -> dict:
    """The lease's arithmetic for the plan with the deferred stages ``due``: the acceptance's seconds with the start
    (START_ALLOWANCE_S, COMMAND_GAP_S before each later command, each stage's expected seconds), the room left of the
    lease, and which stages one rerun in that room fits (at their expected seconds; at their full budgets)."""
    commands = acceptance(plan, due)
    total = plan_seconds(commands)
    room = LEASE_S - total
    return {
        "commands": commands,
        "seconds": total,
        "start_s": START_ALLOWANCE_S,
        "gaps_s": COMMAND_GAP_S * max(len(commands) - 1, 0),
        "stages_s": total - START_ALLOWANCE_S - COMMAND_GAP_S * max(len(commands) - 1, 0),
        "room_s": room,
        "rerun_fits": rerun_fits(room),
        "rerun_fits_at_budget": rerun_fits(room, full_budget=True),
        "largest_stage": max(STAGES, key=lambda s: s.expected_s).name,
    }


def plan_problems(plan: Sequence[Sequence[str]] = PLAN) -> List[str]:
    """What makes a plan not fit the lease: too many commands, a stage twice or missing, a command over the tool's
    files or its 10 minutes (budgets and overheads), the acceptance (the plan less the DEFERRED stages) over
    PLAN_LIMIT_S with the start or leaving no room to rerun every stage at its full budget, and the plan with every
    deferred stage due over the lease."""
    found: List[str] = []
    if len(plan) > MAX_COMMANDS:
        found.append(f"the plan has {len(plan)} commands, at most {MAX_COMMANDS}")
    named = [n for command in plan for n in command]
    try:
        stages = [[stage(n) for n in command] for command in plan]
    except KeyError as exc:
        return found + [f"the plan names {exc.args[0]}"]
    for name in sorted({s.name for s in STAGES} - set(named)):
        found.append(f"stage {name!r} is in no command of the plan")
    found += [f"stage {n!r} is in the plan {named.count(n)} times" for n in sorted(set(named)) if named.count(n) > 1]
    for number, command in enumerate(stages, 1):
        files = sum(files_of(s) for s in command)
        if files > FILES_PER_COMMAND:
            found.append(
                f"command {number} returns up to {files} files, the device tool brings back {FILES_PER_COMMAND}"
            )
        worst = sum(s.budget_s + STAGE_OVERHEAD_S for s in command)
        if worst > COMMAND_LIMIT_S:
            found.append(
                f"command {number}: budgets and overheads {worst} s, over the command limit {COMMAND_LIMIT_S} s"
            )
    total = plan_seconds(acceptance(plan))
    if total > PLAN_LIMIT_S:
        found.append(f"the plan expects {total} s with the start, over its {PLAN_LIMIT_S} s of the {LEASE_S} s lease")
    else:
        short = sorted({s.name for s in STAGES} - set(lease_arithmetic(plan)["rerun_fits_at_budget"]))
        if short:
            found.append(f"the rerun room ({LEASE_S - total} s) holds no rerun of {', '.join(short)} at its budget")
    everything = plan_seconds(acceptance(plan, DEFERRED))
    if everything > LEASE_S:
        found.append(f"the plan with {', '.join(DEFERRED)} due expects {everything} s, over the {LEASE_S} s lease")
    return found


def problems() -> List[str]:
    """What is wrong with the table: unknown step kinds, budgets over the command limit, pytest pieces or test files
    missing or twice, CI-only entries that are no test file, must-run tests outside their stage, and the plan."""
    found: List[str] = []
    names = [s.name for s in STAGES]
    if len(set(names)) != len(names):
        found.append(f"a stage name twice: {names}")
    for s in STAGES:
        if not 0 < s.budget_s <= COMMAND_LIMIT_S - STAGE_OVERHEAD_S:
            found.append(f"{s.name}: budget {s.budget_s} s, not within 1..{COMMAND_LIMIT_S - STAGE_OVERHEAD_S} s")
        for step in s.steps:
            kind, *args = step.split()
            if kind not in STEP_KINDS:
                found.append(f"{s.name}: unknown step kind {kind!r} ({', '.join(STEP_KINDS)})")
            if kind == "sanitizer" and (
                len(args) != 2 or args[0] not in SANITIZER_TOOLS or args[1] not in ("cpp", "pytest")
            ):
                found.append(f"{s.name}: bad sanitizer step {step!r} (sanitizer TOOL cpp|pytest)")
        for test, why in s.must_run:
            path = test.split("::", 1)[0]
            if not why or "::" not in test or not (REPO / path).is_file():
                found.append(f"{s.name}: must-run {test!r} is no test of a file in this checkout (or has no reason)")
            elif ci_only(path[len("python_tests/") :]) is not None or (
                pieces_of(s) and piece_of(path[len("python_tests/") :]) not in pieces_of(s)
            ):
                found.append(f"{s.name}: must-run {test!r} is not run by this stage")
    counted: Dict[str, int] = {}
    for s in STAGES:
        for piece in pieces_of(s):
            counted[piece] = counted.get(piece, 0) + 1
    for piece in test_pieces():
        if counted.get(piece, 0) > 1:
            found.append(f"pytest piece {piece!r} is in {counted[piece]} stages (every piece in at most one)")
    found += [f"pytest piece {p!r} of a stage is no folder of python_tests" for p in counted if p not in test_pieces()]
    for test_file in test_files():
        listed = ci_only(test_file) is not None
        where = 1 if listed else counted.get(piece_of(test_file), 0)
        if where != 1:
            found.append(f"python_tests/{test_file} is in {where} stages or lists (every test file in exactly one "
                         "stage, or on CI_ONLY with a reason)")  # fmt: skip
    for entry, why in CI_ONLY.items():
        if not why or not (TESTS / entry).exists():
            found.append(f"CI_ONLY entry {entry!r} is no file or folder of python_tests (or has no reason)")
    return found + plan_problems()


def calibration_problems(runs: Optional[Path] = None) -> List[str]:
    """Expected seconds against the records: each ``measured`` record exists and is of its stage; an expectation
    below what its record took says it is an estimate ("est."); and no record of the stage as defined now (same
    definition hash, schema v2) took longer than expected: then the plan must change, not the record. The one
    exception: an estimate ("est.") that names that record by its file name, saying why the stage is shorter now (a
    defect fixed since that made the run longer); the next record of the stage is held to it again."""
    found: List[str] = []
    records = []
    for path in sorted((runs or RUNS).glob("*.json")):
        try:
            records.append((path.name, json.loads(path.read_text())))
        except ValueError:
            found.append(f"{path.name}: not JSON")
    by_name = dict(records)
    for s in STAGES:
        if s.measured is not None:
            record = by_name.get(s.measured)
            if record is None or record.get("stage") != s.name:
                found.append(f"{s.name}: its measured record {s.measured} is not a record of it in docs/gpu_runs/")
            elif s.expected_s < record.get("seconds", 0) and not s.expected_from.startswith("est."):
                found.append(f"{s.name}: expects {s.expected_s} s, its record took {record['seconds']} s: "
                             "say why (an estimate starts 'est.')")  # fmt: skip
        same = [r for _, r in records if r.get("stage") == s.name
                and (r.get("coverage") or {}).get("definition_sha256") == definition_sha256(s)]  # fmt: skip
        latest_name, latest = max(
            ((name, r) for name, r in records if r in same),
            key=lambda item: item[1].get("finished", ""),
            default=(None, None),
        )
        answered = s.expected_from.startswith("est.") and latest_name is not None and latest_name in s.expected_from
        if latest is not None and latest.get("seconds", 0) > s.expected_s and not answered:
            found.append(f"{s.name}: its latest record as defined now took {latest['seconds']} s, the plan expects "
                         f"{s.expected_s} s: raise expected_s and refit the plan")  # fmt: skip
    return found


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else ""
    try:
        if command in ("-h", "--help") and not args:
            print(
                "usage: python -m checks gpu_stages {list | steps STAGE | budget STAGE | command N | files STAGE... | "
                "pytest-targets PIECE... | pytest-options [--sanitized] | workers [--sanitized] | sanitized-bounds | "
                "must-run STAGE | cuda-files | carried-python | "
                "check} (the lease's calls: python -m checks gpu_plan)"
            )
            print(__doc__.split("\n\n")[1])
        elif command == "list" and not args:
            for s in STAGES:
                print(f"{s.name}\t{s.budget_s}\t{s.what}")
        elif command == "steps" and len(args) == 1:
            print("\n".join(stage(args[0]).steps))
        elif command == "budget" and len(args) == 1:
            print(stage(args[0]).budget_s)
        elif command == "command" and len(args) == 1:
            if not args[0].isdigit():
                raise KeyError(f"command takes a number 1..{len(PLAN)}, got {args[0]!r}")
            print("\n".join(command_stages(int(args[0]))))
        elif command == "files" and args:
            print(sum(files_of(stage(name)) for name in args))
        elif command == "pytest-targets" and args:
            print("\n".join(pytest_targets(args)))
        elif command == "pytest-options" and args in ([], ["--sanitized"]):
            print("\n".join(pytest_options(sanitized=bool(args))))
        elif command == "workers" and args in ([], ["--sanitized"]):
            print(SANITIZED_PYTEST_WORKERS if args else PYTEST_WORKERS)
        elif command == "sanitized-bounds" and not args:  # tools/gpu_check.sh: the per-test bound, the report's time
            print(SANITIZED_TEST_BOUND_S, SANITIZED_REPORT_S)
        elif command == "cuda-files" and not args:  # the sanitized pytest's files, one a line
            print("\n".join(cuda_test_files()))
        elif command == "must-run" and len(args) == 1:  # the stage's must-run tests, one a line
            print("\n".join(nodeid for nodeid, _ in stage(args[0]).must_run))
        elif command == "carried-python" and not args:
            print("\n".join(CARRIED_PYTHON))
        elif command == "plan":  # the plan reads the records too: checks/gpu_plan.py (no import back from here)
            print("gpu_stages: the plan is `python -m checks gpu_plan [--all] [--json]`", file=sys.stderr)
            return 2
        elif command == "check" and not args:
            found = problems() + calibration_problems()
            for line in found:
                print(line)
            if not found:
                sums = lease_arithmetic()
                due = (
                    f"; with {', '.join(DEFERRED)} due {plan_seconds(acceptance(PLAN, DEFERRED))} s" if DEFERRED else ""
                )
                print(f"the table and the plan fit: the acceptance {sums['seconds']} s of {PLAN_LIMIT_S} s in "
                      f"{len(sums['commands'])} commands; {sums['room_s']} s of room (a rerun of any stage at its "
                      f"budget){due}")  # fmt: skip
            return 1 if found else 0
        else:
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            print(f"gpu_stages: unknown command {' '.join([command] + args)!r} (--help lists them)", file=sys.stderr)
            return 2
    except KeyError as exc:
        print(f"gpu_stages: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
