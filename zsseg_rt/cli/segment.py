"""``zsseg segment``: photos, folders and globs -> overlays, colour masks, label maps and a class map; torch-free
unless the torch backend is asked for.

Where results go: a new numbered folder per run (``runs/segment/exp``, ``exp2``, ... as Ultralytics does), or
``-o DIR``, or ``-o FILE.png`` for a single image. Output paths are planned and checked (extension, writable folder,
no two inputs sharing an output, never an input overwritten, never an existing file replaced without
``--overwrite``) before the bundle is loaded; an image that cannot be read is reported and skipped, and the exit code
is non-zero when any image failed. A truncated or damaged image is one of those (``image_io``: the same one-line
refusal as every entry point), unless ``--allow-partial-images`` asks for what it holds.

A photo over the pixel limit is segmented resized to fit it, with a note (``image_io.read_image_fitted``), unless
``--max-pixels`` (or ``$ZSSEG_MAX_PIXELS``) sets the limit, which then refuses larger images.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

from zsseg_rt.cli import command_parser
from zsseg_rt.cli.segment_inputs import (
    claim_output,
    existing_frame_files,
    frame_files,
    frame_note,
    is_video,
    refuse_missing,
    refuse_special_files,
    release,
    video_frames,
    views_left,
)
from zsseg_rt.console.arguments import add_engine_arguments, engine_kwargs
from zsseg_rt.console.errors import CliError, format_error, refuse_stdout
from zsseg_rt.console.run_arguments import in_flag_words, run_values
from zsseg_rt.input_files import expand_glob, sequence_of
from zsseg_rt.io_safety import OutputWriteError
from zsseg_rt.options.run_rows import RUN_OPTIONS
from zsseg_rt.outputs.meaning import CLASS_MAP, LabelMeaning, SegmentRecord
from zsseg_rt.outputs.owner import FOLDER_LOCK
from zsseg_rt.outputs.plan import check_free_space, next_run_directory
from zsseg_rt.outputs.views import VIDEO, VIEWS, name_views, one_image_files, view_kinds

__all__ = [
    "add_command",
    "expand_inputs",
    "next_run_directory",
    "plan_outputs",
    "check_outputs",
    "run_segment",
    "labels_path",
    "VIEWS",
    "RUNS_DIR",
]

RUNS_DIR = os.path.join("runs", "segment")
MULTI_FRAME_EXTENSIONS = (".gif", ".webp", ".png", ".apng", ".tif", ".tiff")  # an image that may hold frames
WRITABLE_EXTENSIONS = ".png, .jpg, .bmp, .tif, .webp"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def labels_path(image_path: str) -> str:
    """Where the label map of a single-file output goes (``-o out.png`` -> ``out_labels.png``)."""
    return os.path.splitext(image_path)[0] + "_labels.png"


# ---- inputs ----------------------------------------------------------------------------------------------------------
def expand_inputs(sources: Sequence[str]) -> List[str]:
    """The image files named by the command line, in order: a file as given (a video file too: its frames are
    segmented), a folder's images (its own files with an image extension, in name order; not its sub-folders), a
    glob (``"photos/*.jpg"``, ``"**/*.png"``: quoted, so that zsseg and not the shell expands it; ``**`` enters each
    real folder once, so a symbolic-link loop ends: ``zsseg_rt.input_files``). A path that does not exist is kept:
    it is refused before the model loads (``refuse_missing``).

    Raises:
        CliError: a folder without images, or a glob that matches no file.
    """
    images: List[str] = []
    for source in sources:
        if os.path.isdir(source):
            found = sorted(
                os.path.join(source, name)
                for name in os.listdir(source)
                if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(source, name))
            )
            if not found:
                raise CliError(f"the folder {source!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            images.extend(found)
        elif not os.path.exists(source) and glob.has_magic(source):
            found = [path for path in expand_glob(source) if os.path.isfile(path)]
            if not found:
                raise CliError(f"no file matches {source!r}")
            images.extend(found)
        else:
            images.append(source)
    return images


# ---- outputs ---------------------------------------------------------------------------------------------------------
def _has_image_extension(path: str) -> bool:
    import cv2

    return bool(os.path.splitext(path)[1]) and bool(cv2.haveImageWriter(path))


def _is_single_file(output: Optional[str], count: int) -> bool:
    """``-o out.png`` with one image: that file (a path with an image extension that is not a folder)."""
    if output is None or count != 1 or os.path.isdir(output) or output.endswith(("/", os.sep)):
        return False
    return bool(os.path.splitext(output)[1])


def plan_outputs(images: Sequence[str], output: Optional[str], views: Sequence[str], save_labels: bool) -> Dict:
    """Every file the run will write, decided before any inference.

    Args:
        images: the input paths, in order (``expand_inputs``).
        output: ``-o``: None (a new ``runs/segment/expN``), a folder, or a file path (one image only).
        views: the image views to write ("overlay", "mask"); save_labels: also the label ids (+ their mask).
    Returns:
        ``{"directory": folder, "class_map": path, "files": [{view: path, ...} per image]}``. File names in a
        folder are ``STEM_overlay.png``, ``STEM_mask.png``, ``STEM_labels.png``; the first image with a given stem
        gets ``STEM``, later ones ``STEM_2``, ``STEM_3``... (also on case-insensitive file systems), never a name
        that would overwrite an input.
    Raises:
        CliError: ``output`` names a file but several images were given.
    """
    kinds = view_kinds(views, save_labels)  # the views output's files (zsseg_rt.outputs.views)
    if output is not None and _is_single_file(output, len(images)):
        if is_video(images[0]):
            raise CliError(
                f"-o {output!r} names one image file, but {images[0]!r} is a video (a file per frame): give a "
                "folder (-o DIR), or `zsseg camera` for an overlay video"
            )
        single, class_map = one_image_files(output, kinds)  # out.png, out_mask.png, ..., out_classes.json
        directory = os.path.dirname(output) or "."
        return {"directory": directory, "class_map": class_map, "files": [single], "kinds": kinds}
    if output is not None and os.path.exists(output) and not os.path.isdir(output):
        raise CliError(f"-o {output!r} is an existing file but {len(images)} images were given: give a folder")
    if output is not None and len(images) > 1 and not os.path.exists(output) and _has_image_extension(output):
        raise CliError(
            f"-o {output!r} looks like an image file but {len(images)} images were given: "
            "give a folder for the results (e.g. -o out/)"
        )
    directory = output if output is not None else next_run_directory(RUNS_DIR)
    files = name_views(images, directory, kinds, is_video)  # a video: {"video": NAME}, a file per frame and kind
    return {"directory": directory, "class_map": os.path.join(directory, CLASS_MAP), "files": files, "kinds": kinds}


def _make_directory(directory: str) -> None:
    """Make an output folder the checks allowed (they write nothing); a failure in one line."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the output folder {directory!r}: {exc.strerror or exc}") from None


def check_outputs(images: Sequence[str], plan: Dict, overwrite: bool, owner=None, folders: Sequence[str] = ()) -> None:
    """Refuse outputs that cannot or may not be written, before any inference, by the output plan's rules (the files of
    each image are its in-place entry: :class:`zsseg_rt.outputs.plan.InPlaceFiles`); then make the output folders and
    remove an interrupted run's temporaries (with ``overwrite``, each said). ``owner``: the run's claim on its folder
    (or its one file), taken already (``_claimed_plan``); None: the plan claims it. ``folders``: the input folders
    the images were read from (no output may lie inside one: the plan's rule, ``refuse_an_input``).

    Raises:
        CliError: an extension OpenCV has no writer for, then the plan's refusals (a folder that cannot be written, an
            output that is a folder or one of the inputs, an existing file without ``overwrite``, one that cannot be
            replaced, an interrupted run's temporaries without ``overwrite``, a full disk).
    """
    from zsseg_rt.outputs.plan import CLI_FLAG, OutputPlan, OutputRefused

    targets = [path for files in plan["files"] if VIDEO not in files for path in files.values()]
    for path in targets:
        if not _has_image_extension(path) and not os.path.isdir(path):
            raise CliError(
                f"cannot write {path!r}: OpenCV has no writer for "
                f"{os.path.splitext(path)[1] or 'a name without extension'!r}; use one of {WRITABLE_EXTENSIONS}"
            )
    found = [
        path
        for files in plan["files"]
        if VIDEO in files  # an earlier run's frames of a video of this name
        for path in existing_frame_files(plan["directory"], files[VIDEO], plan.get("kinds", VIEWS))
    ]
    single = bool(plan.get("single"))
    checks = OutputPlan(overwrite, CLI_FLAG, inputs=[*images, *folders])
    checks.in_place(
        "-o",
        targets[0] if single else plan["directory"],
        targets,
        found=found,
        others=SegmentRecord.files(plan["class_map"]),
        instead=f"leave out -o to write into a new numbered folder under {RUNS_DIR}",
        folder=not single,
        owner=owner,
    )
    try:
        checks.check()
        for directory in sorted({os.path.dirname(os.path.abspath(path)) for path in [*targets, plan["class_map"]]}):
            _make_directory(directory)
        checks.prepare(say=lambda line: print(f"zsseg segment: note: {line}", file=sys.stderr))
    except OutputRefused as exc:
        raise CliError(str(exc)) from None
    finally:
        if owner is None:
            checks.release()  # the checks' own claim (no owner taken before) ends with them


# ---- the run -----------------------------------------------------------------------------------------------------------
def _segment_one(engine, path: str, files: Dict[str, str], args, sink, frame=None, done=None, find=None):
    """Segment one image (``frame``: ``(index, BGR array)`` of a video's frame instead of the file ``path``) and
    write its views ``files`` through the views output's ``sink`` (the class map before the first of them),
    ``done(result)`` after the last (the speed summary, the COCO masks); ``find(result)``: its objects (--track:
    tracked)."""
    from zsseg_rt.image_io import first_frame_note, read_image_fitted

    resized = None
    if frame is not None:
        image = frame[1]
    else:
        partial = bool(getattr(args, "allow_partial_images", False))
        image, resized = read_image_fitted(path, args.max_pixels, resize=args.resize, allow_partial=partial)
        if path.lower().endswith(MULTI_FRAME_EXTENSIONS) and first_frame_note(path):  # said, not silent
            print(f"zsseg segment: note: {first_frame_note(path)}", file=sys.stderr)
    if resized:
        print(f"zsseg segment: note: {resized['note']}", file=sys.stderr)
    start = time.perf_counter()
    result = engine(image)
    if find is not None:  # --objects / --track: found once, for the COCO file, --json and --tracks-out
        result.frame_objects = find(result)
    elapsed = time.perf_counter() - start
    result.path = path
    sink.write_files(result, files, then=done)  # all of them or none
    summary: Dict = {"image": path, **files, "seconds": round(elapsed, 3), "backend": engine.backend.name}
    if frame is not None:
        summary["frame"] = frame[0]
    summary["precision"] = getattr(engine.backend, "precision", None)
    # "areas": class -> fraction of the pixels, most frequent first: the key Result.to_json(), photo.json and the
    # zsseg batch manifest use (before, --json called it "classes")
    summary["areas"] = {name: round(share, 4) for name, share in result.areas().items()}
    summary["timing_ms"] = {stage: round(ms, 2) for stage, ms in result.timing.items()}
    if result.inference:
        summary["inference"] = result.inference
    if resized:
        summary["resized"] = {"from": resized["from"], "to": resized["to"]}
    if result.banner:
        summary["banner"] = result.banner
    if result.frame_objects is not None:
        summary["objects"] = result.frame_objects.to_dict()  # {"objects": [...], "dropped": n}
    return summary


class _Results:
    """What a run keeps of its images: each one's summary only with ``--json`` (printed at the end), else the count
    of images written; a run over a large folder then holds nothing per image (the summaries of
    every image were kept without --json, 1.4 KB an image: 1.4 GB for a million)."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.summaries: List[Dict] = []
        self.written = 0

    def add(self, entry: Dict) -> None:
        self.written += "error" not in entry
        if self.keep:
            self.summaries.append(entry)


def _stopped(exc: OutputWriteError, number: int, total: int, written: int, summaries: List[Dict], as_json: bool):
    """The error that stops a run at a failed write (a full disk): the write's one line, and how far the run got
    (``--json``: the results so far are printed first)."""
    if as_json:
        print(json.dumps(summaries, indent=1))
    done = f"the results of {written} images before it are kept" if written else "no image was written"
    message = f"{exc}; stopped at image {number} of {total} ({done}; the others were not segmented)"
    return OutputWriteError(message, exc.path, exc.errno)


def _views(text: str) -> List[str]:
    views = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [view for view in views if view not in VIEWS]
    if unknown or not views:
        raise CliError(f"--visualize takes {' and/or '.join(VIEWS)} (comma-separated), got {text!r}")
    return views


def run_segment(args) -> int:
    """Entry point of ``zsseg segment`` (argparse namespace from ``add_command``). Returns the exit code: 0 when
    every image was segmented, 1 when any failed (the others are still written and reported)."""
    from zsseg_rt.console.signal_phases import phase
    from zsseg_rt.image_io import MAX_PIXELS_ENV, max_pixels_limit

    refuse_stdout(args, "--json prints the results on standard output")  # -o -, --save-json -: no pipe
    with in_flag_words():  # --track-max-missed without --track / --tracks-out (the run rows' engine_options)
        RUN_OPTIONS.check_engine_options(run_values(args, "segment"), engine_kwargs(args, "segment"))
    # no limit given: a photo over the default is resized to fit it (with a note) instead of refused
    args.resize = args.max_pixels is None and not os.environ.get(MAX_PIXELS_ENV, "").strip()
    args.max_pixels = max_pixels_limit(args.max_pixels)
    views = _views(args.visualize)
    images = expand_inputs(args.images)
    refuse_missing(images)  # a path that does not exist: one line now, not a skipped image once the model loaded
    refuse_special_files(images)  # a FIFO, a device, a socket: one line now, not a read that waits forever
    refuse_several_sequences(args, images)
    plan, owner = _claimed_plan(images, args, views)
    folders = [source for source in args.images if os.path.isdir(source)]  # no output inside one
    outputs = None
    try:  # the output is this run's from here to its end (one owner per output: zsseg_rt.outputs.owner)
        # The numbered folder segment picks itself (no -o: runs/segment/expN under the working folder) is a new
        # folder a folder input's listing never reads (segment takes a folder's own files, not its subfolders'):
        # `zsseg segment . ...` in a folder of photos runs, as before; an -o the user names inside an input is refused
        check_outputs(images, plan, args.overwrite, owner, folders if args.output is not None else ())
        if owner is None:
            raise CliError(f"cannot write -o {plan['directory']!r}: its owner lock cannot be made there")
        # --save-json, the table's -o kinds: checked and claimed now
        outputs = _result_outputs(args, [*images, *folders], plan)
        phase("segment:outputs-claimed")  # (a test hook: python_tests/cli/test_cli_segment_inputs.py)
        code = _segment_all(args, images, plan, outputs)
        if outputs is not None:  # in place: the run ended (some images may have failed: the others are in them)
            for kind, output in outputs.finish():
                _say_written(kind, output)
        return code
    finally:
        if outputs is not None:
            outputs.abort()  # (a no-op once finished) a stopped or failed run: nothing is put in place
        release(owner)  # and a folder it made that stayed empty (no empty runs/segment/expN after a failure)


def _claimed_plan(images: Sequence[str], args, views: Sequence[str]):
    """``(plan_outputs, the owner lock of its folder or file)``, claimed before any check may remove what an earlier
    run left there; a new numbered folder taken by a run starting at the same time is passed over for the next."""
    for _ in range(100):
        plan = plan_outputs(images, args.output, views, args.save_labels)
        single = args.output is not None and _is_single_file(args.output, len(images))
        plan["single"] = single  # -o names the one file: claimed and checked as a file
        target = next(iter(plan["files"][0].values())) if single else plan["directory"]
        check_free_space(plan["directory"], "-o")  # a full disk: said of the folder the user gave, before the lock
        if args.output is None:
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)  # runs/segment, as before
        try:
            return plan, claim_output(target, folder=not single)
        except CliError:
            if args.output is not None or os.listdir(target) != [FOLDER_LOCK]:
                raise
    raise CliError(f"no free numbered folder under {RUNS_DIR}: another run takes each one first")


def _result_outputs(args, inputs: Sequence[str], plan: Dict):
    """The outputs of the table's kinds that take results (:mod:`zsseg_rt.outputs.result_outputs`): ``--save-json
    FILE`` (the coco row) and the ``-o`` specs of kinds ``segment`` takes, checked, claimed and opened; None when
    there are none.

    Raises:
        CliError: one line naming the path and what to do; nothing was written.
    """
    specs = list(getattr(args, "outputs", None) or [])
    if not args.save_json and not specs and not getattr(args, "tracks_out", None):
        return None
    from zsseg_rt.outputs.kinds import output_values
    from zsseg_rt.outputs.plan import OutputRefused
    from zsseg_rt.outputs.run_outputs import RunOutputs

    path = args.save_json
    if path and not path.lower().endswith(".json"):
        raise CliError(f"--save-json {path!r}: expected a .json file name, got {os.path.splitext(path)[1] or 'none'!r}")
    if path and os.path.isdir(path):
        raise CliError(f"--save-json {path!r} is a folder: give a file name such as masks.json")
    planned = [path for files in plan["files"] for path in files.values() if VIDEO not in files]
    values = output_values(args, "-o", "segment")
    try:
        taken = planned + SegmentRecord.files(plan["class_map"])
        tracks = getattr(args, "tracks_out", None)
        return RunOutputs.opened("segment", specs, args.overwrite, values, inputs, taken, args.save_json, tracks=tracks)
    except OutputRefused as exc:
        raise CliError(str(exc)) from None


def _say_written(kind: str, output: Dict) -> None:
    """The line of an output put in place: its row's "wrote ..." line."""
    from zsseg_rt.outputs.kinds import wrote_line

    line = wrote_line(output, kind)
    if line:
        print(f"zsseg segment: {line}", file=sys.stderr)


def _segment_all(args, images: Sequence[str], plan: Dict, outputs=None) -> int:
    """Load the Engine and segment every image (and every frame of a video), writing each one's views."""
    from zsseg_rt.console.speed import SpeedMeter
    from zsseg_rt.outputs.views import ViewsSink
    from zsseg_rt.runtime import Engine

    options = engine_kwargs(args, "segment")  # every Engine flag (zsseg_rt.options)
    options["max_pixels"] = args.max_pixels  # the limit the images were read with (0: none): --max-pixels 0 works
    with in_flag_words():  # what the Engine says of its options, in the flags' words (option_notes)
        engine = Engine(args.bundle, classes=args.classes, **options)
    for note in getattr(engine.pipeline, "option_notes", ()):  # a pinned device-pipeline option on the host path
        print(f"zsseg segment: note: {note}", file=sys.stderr)
    if engine.weights_banner:
        print(f"zsseg segment: note: {args.bundle}: {engine.weights_banner}", file=sys.stderr)
    # what the label values mean (classes.json): one meaning per folder, written before the first map
    record = SegmentRecord(plan["class_map"], LabelMeaning.of_engine(engine))
    record.check(args.overwrite, lambda: views_left(plan, VIEWS), f"-o {plan['directory']!r}")
    class_map_first = record.write
    sink = ViewsSink(plan["directory"], plan["kinds"], alpha=args.alpha, legend=args.legend, record=record)

    finder = _object_finder(args, engine)
    results = _Results(keep=bool(args.json))  # (O(1) per image without --json)
    summaries = results.summaries
    failed = 0
    speed = SpeedMeter()  # the "Speed: ..." line at the end (zsseg_rt.console.speed)

    def one(number: int, path: str, files: Dict[str, str], frame=None) -> bool:
        def observe(result) -> None:  # after its views: the speed summary and the table's outputs take it
            speed.add(result.timing, result.labels.shape)
            if outputs is not None:
                from zsseg_rt.outputs.result_outputs import ResultFrame

                seen = ResultFrame(number - 1, path=path) if frame is None else ResultFrame(frame[0], video=path)
                outputs.add(result, seen)

        try:
            summary = _segment_one(engine, path, files, args, sink, frame, observe, finder(path, frame))
        except OutputWriteError as exc:  # the disk, not this image: every later one would fail alike, so stop
            raise _stopped(exc, number, len(images), results.written, summaries, args.json) from None
        except (ValueError, OSError, MemoryError) as exc:  # this image only: report, skip, go on with the others
            what = path if frame is None else f"{path} frame {frame[0]}"
            results.add({"image": path, **({"frame": frame[0]} if frame else {}), "error": format_error(exc)})
            print(f"zsseg segment: skipped {what}: {format_error(exc)}", file=sys.stderr)
            return False
        results.add(summary)
        if not args.json:
            shares = ", ".join(f"{k} {v:.1%}" for k, v in summary["areas"].items())
            if "objects" in summary:
                shares += f"; {len(summary['objects']['objects'])} objects"
            what = path if frame is None else f"{path} frame {frame[0]}"
            print(f"{what}: {summary['seconds']:.2f}s -> {next(iter(files.values()))}  {shares}")
        return True

    try:
        for number, (path, files) in enumerate(zip(images, plan["files"]), 1):
            if VIDEO not in files:
                failed += not one(number, path, files)
                continue
            print(frame_note(path), file=sys.stderr)
            good = True
            try:
                for index, frame in video_frames(path, args.max_pixels):
                    files_of = frame_files(plan["directory"], files[VIDEO], index, plan["kinds"])
                    good &= one(number, path, files_of, (index, frame))
            except OutputWriteError:
                raise
            except (ValueError, OSError, RuntimeError) as exc:  # the video cannot be opened or decoded further
                results.add({"image": path, "error": format_error(exc)})
                print(f"zsseg segment: skipped {path}: {format_error(exc)}", file=sys.stderr)
                good = False
            failed += not good
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: what was done is said as at the end, then the signal's code
        if speed.images:
            _closing_lines(args, plan, engine, speed, summaries)
        raise
    if failed == len(images):  # nothing to describe: no classes.json, no "results in", no empty run folder
        if args.json:
            print(json.dumps(summaries, indent=1))
        what = "the image" if len(images) == 1 else f"all {len(images)} images"
        print(f"zsseg segment: error: {what} failed (see above): no results, no {CLASS_MAP}", file=sys.stderr)
        return 1
    class_map_first()  # written with the first label map; a run whose every map was written before has it already
    _closing_lines(args, plan, engine, speed, summaries)
    if failed:
        print(f"zsseg segment: {failed} of {len(images)} images failed (see above)", file=sys.stderr)
    return 1 if failed else 0


def _object_finder(args, engine):
    """``finder(path, frame)``: the ``find(result)`` of an image or a video's frame: None without --objects and
    --track; with --track (--tracks-out) each video, and the images of each folder in their order, one tracker."""
    from zsseg_rt.outputs.kinds import FOUND, TRACKED, objects_needed

    need = objects_needed(args)  # --objects; --track, --tracks-out: tracked (the output kinds' rows)
    if need != TRACKED:
        return lambda path, frame: (lambda result: result.objects()) if need == FOUND else None
    from zsseg_rt.runtime.tracking import SourceTrackers

    trackers = SourceTrackers(getattr(engine.options, "track_max_missed", None))
    return lambda path, frame: lambda result: trackers(sequence_of(path), result)


def refuse_several_sequences(args, images: Sequence[str]) -> None:
    """--tracks-out FILE holds one sequence: one video file, or the images of one folder (:func:`sequence_of`)."""
    if getattr(args, "tracks_out", None):
        sequences = list(dict.fromkeys(sequence_of(image) for image in images))
        if len(sequences) > 1:
            shown = ", ".join(sequences[:3]) + (f" and {len(sequences) - 3} more" if len(sequences) > 3 else "")
            raise CliError(
                f"--tracks-out {args.tracks_out} holds one sequence of frames, and these inputs are {len(sequences)} "
                f"(each video, and the images of each folder, however named, is one: {shown}): give one video file, "
                "or the images of one folder"
            )


def _closing_lines(args, plan: Dict, engine, speed, summaries: List[Dict]) -> None:
    """The end of a run, or of one stopped by a signal (its images so far): ``--json``'s results, the Speed line and
    where the results are."""
    line = speed.line(engine.backend.name, getattr(engine.backend, "precision", None))
    if args.json:
        print(json.dumps(summaries, indent=1))
        print(line, file=sys.stderr)  # stdout holds the JSON only
    else:
        print(line)
        print(f"results in {plan['directory']} (label ids -> class names: {plan['class_map']})")
    sys.stdout.flush()


# ---- the command line -------------------------------------------------------------------------------------------
def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``segment`` on an argparse subparsers object (``zsseg segment``); the run options it shares with
    ``zsseg camera`` are generated from their rows (``zsseg_rt.options.run_rows``)."""
    from zsseg_rt.console.run_arguments import add_run_arguments

    p = command_parser(
        subparsers,
        "segment",
        description="Segment images with a bundle and the class names you give. IMAGES are files, folders (their "
        "images) or quoted globs ('photos/*.jpg'). Results go to a new numbered folder runs/segment/exp, exp2, ... "
        "(or -o DIR, or -o FILE.png for one image); an existing file is never replaced without --overwrite. A "
        "photo over the pixel limit is segmented resized to fit it, with a note, unless --max-pixels (or "
        "$ZSSEG_MAX_PIXELS) sets the limit: then it is refused.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders of images, or quoted globs")
    p.add_argument("--bundle", required=True, help="bundle directory written by `zsseg export`")
    p.add_argument(
        "--classes",
        required=True,
        help='comma-separated class names, e.g. "cat,sofa,floor" (a trailing comma is ignored); synonyms of one '
        'class with ";" ("person; man; woman, sofa"); or a named vocabulary: the standard benchmarks\' official '
        "class files with their synonyms and background class (" + ", ".join(_named_vocabularies()) + ")",
    )
    from zsseg_rt.outputs.result_outputs import add_result_outputs, results_help

    p.add_argument(
        "-o",
        "--output",
        action=add_result_outputs(p, "segment"),  # the table's kinds segment takes (their rows): args.outputs
        help="output folder (default: a new runs/segment/expN), or an image file such as out.png for one image"
        + results_help("segment"),
    )
    p.add_argument(
        "--visualize",
        default="overlay",
        metavar="VIEWS",
        help="views to write, comma-separated: overlay (labels blended on the photo), mask (colour labels only); "
        "default overlay",
    )
    p.add_argument(
        "--save-labels",
        action="store_true",
        help="also write the label ids (STEM_labels.png: 8-bit up to 256 classes, else 16-bit) with their colour "
        "view (STEM_mask.png); classes.json maps the ids to class names",
    )
    add_run_arguments(p, "segment")  # --alpha, --no-legend, --overwrite, --save-json, --objects, --track, --tracks-out
    p.add_argument(
        "--json",
        action="store_true",
        help='print the results as JSON on stdout (per image: output paths, "areas": class -> fraction of the '
        'pixels, "timing_ms") instead of lines',
    )
    add_engine_arguments(p, "segment")  # --backend, --precision, --max-pixels, ... (zsseg_rt.options)
    p.set_defaults(func=run_segment)
    return p


def _named_vocabularies():
    from zsseg_rt.vocabulary import named_vocabularies

    return named_vocabularies()
