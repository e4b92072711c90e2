"""``zsseg segment``: photos, folders, globs and video files -> overlays, colour masks, label maps and a class map;
torch-free unless the torch backend is asked for. The command is a :class:`zsseg_rt.stream.Session` over its inputs:
every image file one source (``ImageFilesSource`` of the files, folders and globs given, in order), each video file
another, run one after another (``in_order``) into the ``views`` output (``zsseg_rt.outputs.views``: STEM_overlay.png,
STEM_mask.png, STEM_labels.png and classes.json), with an unreadable image skipped and the exit code 1
(``skipped_fails``) and a photo over the pixel limit resized to fit it (``fit_images``). What this module keeps is
the command's: its refusals in its words before anything opens, its numbered run folder, a line per image once its
files are written, ``--json``, the Speed line and where the results are.

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
import contextlib
import os
import sys
from typing import Any, Dict, List, Sequence

from zsseg_rt.cli import command_parser
from zsseg_rt.cli.segment_inputs import (
    RUNS_DIR,
    expand_inputs,
    is_single_file,
    refuse_missing,
    refuse_several_sequences,
    refuse_special_files,
    session_sources,
    views_target,
)
from zsseg_rt.cli.segment_lines import ImageLines, said_in_segment_words
from zsseg_rt.console.arguments import add_engine_arguments, engine_kwargs
from zsseg_rt.console.errors import CliError, refuse_stdout
from zsseg_rt.console.run_arguments import in_flag_words, run_values
from zsseg_rt.io_safety import OutputWriteError
from zsseg_rt.options.run_rows import RUN_OPTIONS
from zsseg_rt.outputs.meaning import CLASS_MAP
from zsseg_rt.outputs.plan import OutputRefused, next_run_directory
from zsseg_rt.outputs.views import VIEWS, one_image_files, view_kinds

__all__ = ["add_command", "expand_inputs", "next_run_directory", "run_segment", "labels_path", "VIEWS", "RUNS_DIR"]


def labels_path(image_path: str) -> str:
    """Where the label map of a single-file output goes (``-o out.png`` -> ``out_labels.png``)."""
    return os.path.splitext(image_path)[0] + "_labels.png"


def _views(text: str) -> List[str]:
    views = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [view for view in views if view not in VIEWS]
    if unknown or not views:
        raise CliError(f"--visualize takes {' and/or '.join(VIEWS)} (comma-separated), got {text!r}")
    return views


def run_segment(args) -> int:
    """Entry point of ``zsseg segment`` (argparse namespace from ``add_command``). Returns the exit code: 0 when
    every image was segmented, 1 when any failed (the others are still written and reported)."""
    from zsseg_rt.image_io import MAX_PIXELS_ENV, max_pixels_limit

    refuse_stdout(args, "--json prints the results on standard output")  # -o -, --save-json -: no pipe
    with in_flag_words():  # --track-max-missed without --track / --tracks-out (the run rows' engine_options)
        RUN_OPTIONS.check_engine_options(run_values(args, "segment"), engine_kwargs(args, "segment"))
    # no limit given: a photo over the default is resized to fit it (with a note) instead of refused
    args.resize = args.max_pixels is None and not os.environ.get(MAX_PIXELS_ENV, "").strip()
    args.max_pixels = max_pixels_limit(args.max_pixels)
    kinds = view_kinds(_views(args.visualize), args.save_labels)
    if args.save_json and not args.save_json.lower().endswith(".json"):
        ext = os.path.splitext(args.save_json)[1] or "none"
        raise CliError(f"--save-json {args.save_json!r}: expected a .json file name, got {ext!r}")
    if args.save_json and os.path.isdir(args.save_json):
        raise CliError(f"--save-json {args.save_json!r} is a folder: give a file name such as masks.json")
    images = expand_inputs(args.images)
    refuse_missing(images)  # a path that does not exist: one line now, not a skipped image once the model loaded
    refuse_special_files(images)  # a FIFO, a device, a socket: one line now, not a read that waits forever
    refuse_several_sequences(args, images)
    target = views_target(args, images)
    single = target == args.output and is_single_file(args.output, len(images))
    class_map = one_image_files(target, kinds)[1] if single else os.path.join(target, CLASS_MAP)
    # the numbered folder segment picks itself is no input's; an -o the user names inside an input folder is refused
    folders = [source for source in args.images if os.path.isdir(source)] if args.output is not None else []
    lines = ImageLines(args, images)
    try:
        session = _session(args, images, folders, f"views:{','.join(kinds)}:{target}", lines)
        try:
            with in_flag_words(), said_in_segment_words():
                code = session.run()
        except OutputRefused as exc:  # the plan's advice in segment's words (it picks a folder when -o is left out)
            said = str(exc)
            for tail in (", or choose another folder", ", or choose another file"):
                if args.output is not None and said.endswith(tail):
                    said = (
                        said[: -len(tail)] + f", or leave out -o to write into a new numbered folder under {RUNS_DIR}"
                    )
            raise OutputRefused(said, exc.path, exc.errno) from None
        except KeyboardInterrupt:  # Ctrl-C raised inside a call: what was done is said as at the end
            if getattr(session, "speed", None) is not None and session.speed.images:  # (none before the model)
                _closing_lines(args, session, lines, target, class_map)
            raise
        except OutputWriteError:  # a full disk stopped the run: --json's results of the images written, as before
            if args.json:
                lines.print_json(session.skipped)
            raise
    finally:
        if args.output is None:
            with contextlib.suppress(OSError):  # an empty one only: no empty runs/segment/expN after a failure
                os.rmdir(target)
    return _ended(args, session, lines, images, target, class_map, code)


def _session(args, images: Sequence[str], folders: Sequence[str], views: str, lines: ImageLines) -> Any:
    """The Session of the parsed flags: the inputs in order into the views output and the table's ``-o`` kinds."""
    from zsseg_rt.outputs.kinds import output_values
    from zsseg_rt.stream.loop.session import Session
    from zsseg_rt.stream.loop.session_options import SessionOptions

    values = run_values(args, "segment")  # --save-json, --objects, --track, --tracks-out, --overwrite, --alpha, ...
    values.update(allow_partial_images=bool(args.allow_partial_images), fit_images=args.resize)
    outputs = [views, *(values.pop("outputs", None) or [])]  # the views first, then the table's -o kinds
    values.pop("output_options", None)
    options = SessionOptions(
        outputs=outputs,
        output_options=output_values(args, "-o", "segment"),
        in_order=True,  # the inputs one after another, as given
        skipped_fails=True,  # an image that cannot be read: skipped, said, and the exit code 1
        every_frame=True,
        **values,
    )
    engine_options = engine_kwargs(args, "segment")  # every Engine flag (zsseg_rt.options): segment's mode exact
    session = Session(
        session_sources(images, folders, args),
        args.bundle,
        args.classes,
        options=options,
        engine_options=engine_options,
        max_pixels=args.max_pixels,
        command="segment",
        on_written=lines.written,
    )
    lines.session = session
    return session


def _ended(args, session: Any, lines: ImageLines, images: Sequence[str], target: str, class_map: str, code: int) -> int:
    """The end of a run: the Engine's notes, the all-failed error, ``--json``, the Speed line, where the results are,
    how many failed; a run a signal stopped: its images so far said, then the interruption."""
    from zsseg_rt.stream.loop.session_inputs import source_path
    from zsseg_rt.stream.sources import missing_note

    for item in session.inputs:  # a video's frames lost to damaged data: their numbers, said once at its end
        missing = missing_note(getattr(item.source, "missing_count", 0), getattr(item.source, "missing", ()))
        if missing and not hasattr(item.source, "image_paths"):
            print(f"zsseg segment: note: {source_path(item.source)}: {missing}", file=sys.stderr)
    for note in getattr(session.engine.pipeline, "option_notes", ()):  # a pinned device-pipeline option on the host
        print(f"zsseg segment: note: {note}", file=sys.stderr)
    failed = len(session.skipped)
    if not session.speed.images and failed:  # nothing to describe: no classes.json, no "results in", no empty folder
        if args.json:
            lines.print_json(session.skipped)
        what = "the image" if len(images) == 1 else f"all {len(images)} images"
        print(f"zsseg segment: error: {what} failed (see above): no results, no {CLASS_MAP}", file=sys.stderr)
        return 1
    _closing_lines(args, session, lines, target, class_map)
    for kind, output in session.written:
        _say_written(kind, output)
    if session.runner is not None and session.runner.signalled is not None:
        from zsseg_rt.console.errors import Terminated

        signum = session.runner.signalled
        raise KeyboardInterrupt if signum == 2 else Terminated(signum)
    if failed:
        print(f"zsseg segment: {failed} of {len(images)} images failed (see above)", file=sys.stderr)
    return code


def _say_written(kind: str, output: Dict) -> None:
    """The line of an output put in place: its row's "wrote ..." line (the views' files are the run's own lines)."""
    from zsseg_rt.outputs.kinds import wrote_line

    line = wrote_line(output, kind) if kind != "views" else ""
    if line:
        print(f"zsseg segment: {line}", file=sys.stderr)


def _closing_lines(args, session: Any, lines: ImageLines, target: str, class_map: str) -> None:
    """The end of a run, or of one stopped by a signal (its images so far): ``--json``'s results, the Speed line and
    where the results are."""
    backend = session.engine.backend
    line = session.speed.line(backend.name, getattr(backend, "precision", None))
    if args.json:
        lines.print_json(session.skipped)
        print(line, file=sys.stderr)  # stdout holds the JSON only
    else:
        print(line)
        directory = os.path.dirname(target) or "." if class_map != os.path.join(target, CLASS_MAP) else target
        print(f"results in {directory} (label ids -> class names: {class_map})")
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
