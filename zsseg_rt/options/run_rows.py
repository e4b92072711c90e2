"""Every option of a run (``zsseg_rt.stream.Session``, ``SessionOptions``' fields), declared once: one row each
(:class:`~zsseg_rt.options.run_table.RunOption`) in :data:`RUN_OPTIONS`, in the order of ``SessionOptions``.

The table generates the flags of ``zsseg camera`` and, where it takes the option, ``zsseg segment``
(``zsseg_rt.console.run_arguments``: the same flag, value check and help; a command's own words in ``helps``), checks
a value given in Python (``SessionOptions(...)``, ``Session(...)``) and on the command line in the same words (the
row's ``expected``), and writes the docs' table. Adding a run option: a row here, the ``SessionOptions`` field of the
same name and default (``python_tests/stream/test_run_options.py`` holds them equal), and the code that uses it."""

from __future__ import annotations

from zsseg_rt.options.run_table import (
    BOOL,
    MAPPING,
    OUTPUTS,
    PATH,
    PORT,
    REAL,
    TEXT,
    WHOLE,
    RunOption,
    RunOptionTable,
)

__all__ = ["RUN_OPTIONS", "VIDEO_GROUP"]

VIDEO_GROUP = "video labels (docs/video.md)"
_BOTH = ("camera", "segment")
_LIVE_HELP = (
    "{summary} (--keyframe-every K: another interval; with --adaptive-keyframes the longest gap); with the "
    "default --backend auto, the fastest precision that passed the accuracy gate on this CPU (prepare it once: zsseg "
    'build-engine BUNDLE --backend auto). The run says what it trades at its start and in --stats-json ("preset")'
)


def live_help() -> str:
    """``--live``'s help: the LIVE preset's summary first (read from the preset, never copied)."""
    from zsseg_rt.options.presets import LIVE

    return _LIVE_HELP.format(summary=LIVE.summary)


RUN_OPTIONS = RunOptionTable(
    [
        RunOption(
            "outputs",
            (),
            OUTPUTS,
            "where the frames go: display://, out.mp4, frames/, out.mcap, foxglove://HOST:PORT (the output kinds' "
            "rows); a string is one output",
            none=False,
            commands=(),
            flag_from="`-o` (camera, repeatable; its help from the output kinds)",
            example=(None, ("out.mp4",)),
            writes=True,
        ),
        RunOption(
            "labels_out",
            None,
            PATH,
            "a folder of 16-bit label PNGs per frame, with classes.json",
            flag="--labels-out",
            metavar="DIR",
            output_kind="labels",
            group=VIDEO_GROUP,
            example=(("labels/",), "labels/"),
            writes=True,
        ),
        RunOption(
            "save_json",
            None,
            PATH,
            "the COCO masks of every frame (files and folders only)",
            flag="--save-json",
            metavar="FILE",
            commands=_BOTH,
            output_kind="coco",
            helps=(("camera", "(video files and image folders) {kind}"),),
            example=(("masks.json",), "masks.json"),
            writes=True,
        ),
        RunOption(
            "objects",
            False,
            BOOL,
            "find each frame's objects: each class's connected regions (box, centroid, area, score, mask; "
            "--object-min-area, --max-objects), written as COCO instances into --save-json",
            none=False,
            flag="--objects",
            commands=(*_BOTH, "batch"),
            helps=(
                (
                    "segment",
                    "find each image's objects: each class's connected regions (8-connectivity) of at least "
                    "--object-min-area of the image, at most --max-objects, as box [x, y, w, h], centroid, area, score "
                    "(the class's mean score over the region) and RLE mask: in --json ('objects') and --save-json",
                ),
                (
                    "batch",
                    "find each image's objects (each class's connected regions, --object-min-area, --max-objects) and "
                    "write them beside its label map as OUTPUT/KEY.objects.json, what zsseg segment --objects --json "
                    "gives an image; a resumed run redoes the images done without them",
                ),
            ),
            example=((), True),
        ),
        RunOption(
            "track",
            False,
            BOOL,
            "give each frame's objects (--objects) a track id that keeps an object's identity across frames, one "
            'tracker per source (docs/usage.md, "For robots"): in the robot outputs\' Detection2D.id and annotations, '
            "the COCO instances and --tracks-out; a track survives --track-max-missed frames unseen",
            none=False,
            flag="--track",
            commands=_BOTH,
            helps=(
                (
                    "segment",
                    "(a video file, or the images of a folder in name order: a sequence of frames) give the objects "
                    "(--objects) a track id that keeps an object's identity from frame to frame: in --json, "
                    "--save-json and --tracks-out; each video and each folder one tracker (images named one by one: "
                    "their folder's, in the order given)",
                ),
            ),
            example=((), True),
            engine_options=("track_max_missed",),
        ),
        RunOption(
            "tracks_out",
            None,
            PATH,
            "each source's tracks as MOTChallenge text (implies track)",
            flag="--tracks-out",
            metavar="FILE",
            commands=_BOTH,
            output_kind="tracks",
            example=(("tracks.txt",), "tracks.txt"),
            engine_options=("track_max_missed",),
            writes=True,
        ),
        RunOption(
            "stats_json",
            None,
            PATH,
            'write the final stream statistics to this JSON file (with "outputs": each video file\'s codec, '
            'frames and fps; "sources": per source fps, latency p50/p99, drops, reconnects, damaged packets skipped '
            '(decode_errors), state and error; "options": the run\'s resolved options, to replay it)',
            flag="--stats-json",
            output_kind="stats",
            example=(("stats.json",), "stats.json"),
            writes=True,
        ),
        RunOption(
            "overwrite",
            False,
            BOOL,
            "replace existing outputs (a video file, an image folder's frames, a --labels-out folder's maps, "
            "--stats-json) and remove what an interrupted run left (NAME.partial.EXT, a staging folder); without it "
            "they are refused before anything runs. Every output is staged (a video as NAME.partial.EXT) and put in "
            "place only when the run has ended well: a failed run replaces nothing",
            none=False,
            flag="--overwrite",
            commands=_BOTH,
            helps=(("segment", "replace files that exist already in -o (and --save-json FILE)"),),
            example=((), True),
        ),
        RunOption(
            "preview",
            None,
            PORT,
            "serve the preview page (MJPEG stream, a box to change the classes) on this port (0: any free port, "
            "printed at start)",
            flag="--preview",
            metavar="PORT",
            output_kind="preview",
            example=(("0",), 0),
        ),
        RunOption(
            "preview_host",
            "127.0.0.1",
            TEXT,
            "interface for --preview (default 127.0.0.1; 0.0.0.0 serves the network, no auth)",
            none=False,
            flag="--preview-host",
            example=(("localhost",), "localhost"),
        ),
        RunOption(
            "preview_readonly",
            False,
            BOOL,
            "the --preview page shows the stream only (by default it has a box to change the classes live)",
            none=False,
            flag="--preview-readonly",
            requires=("preview", "applies to the {} page"),
            example=((), True),
        ),
        RunOption(
            "class_file",
            None,
            PATH,
            "text file of class names (one per line or comma-separated), watched: edit it while streaming to change "
            "the vocabulary",
            flag="--class-file",
            example=(("classes.txt",), "classes.txt"),
        ),
        RunOption(
            "width", None, WHOLE, "requested capture width (V4L2 / CSI)", low=1, flag="--width", example=(("640",), 640)
        ),
        RunOption(
            "height",
            None,
            WHOLE,
            "requested capture height (V4L2 / CSI)",
            low=1,
            flag="--height",
            example=(("480",), 480),
        ),
        RunOption(
            "fps",
            None,
            REAL,
            "requested capture fps of a camera; the output video's fps (default: the input file's, else 30)",
            above=0,
            flag="--fps",
            example=(("12.5",), 12.5),
        ),
        RunOption(
            "loop",
            False,
            BOOL,
            "restart a video file / folder at its end",
            none=False,
            flag="--loop",
            example=((), True),
        ),
        RunOption(
            "every_frame",
            False,
            BOOL,
            "live sources too: process every frame instead of the newest (files and folders always are)",
            none=False,
            flag="--every-frame",
            example=((), True),
        ),
        RunOption(
            "max_frames",
            None,
            WHOLE,
            "stop after this many processed frames (of each source)",
            low=1,
            flag="--max-frames",
            example=(("2",), 2),
        ),
        RunOption(
            "max_reconnects",
            None,
            WHOLE,
            "give up on a source after this many failed reconnects (default: never); the others go on",
            low=0,
            flag="--max-reconnects",
            example=(("0",), 0),
        ),
        RunOption(
            "alpha",
            0.5,
            REAL,
            "overlay opacity in [0, 1]",
            low=0,
            high=1,
            none=False,
            flag="--alpha",
            commands=_BOTH,
            helps=(("segment", "overlay opacity in [0, 1] (default 0.5)"),),
            example=(("0",), 0.0),
        ),
        RunOption(
            "legend",
            True,
            BOOL,
            "no legend / FPS text on the overlay",
            none=False,
            flag="--no-legend",
            negated=True,
            commands=_BOTH,
            helps=(("segment", "no legend of the classes on the overlay and mask"),),
            example=((), False),
        ),
        RunOption(
            "allow_partial_images",
            False,
            BOOL,
            "decode what a truncated or damaged image file holds instead of refusing it",
            none=False,
            commands=(),
            flag_from="`--allow-partial-images` (the Engine's row of the same name)",
            example=(None, True),
        ),
        RunOption(
            "fit_images",
            False,
            BOOL,
            "an image file over the pixel limit is read resized to fit it, with a note, instead of skipped",
            none=False,
            commands=(),
            flag_from="`zsseg segment` without `--max-pixels` or `$ZSSEG_MAX_PIXELS` (its default)",
            example=(None, True),
        ),
        RunOption(
            "skipped_fails",
            False,
            BOOL,
            "an image that was skipped (it could not be read) makes the run's exit code 1, as a failed source does; "
            "the others are segmented either way; among several sources, a video file or folder that cannot be "
            "opened, or fails part-way (its frames so far kept), is skipped too and the others run",
            none=False,
            commands=(),
            flag_from="`zsseg segment` (always)",
            example=(None, True),
        ),
        RunOption(
            "in_order",
            False,
            BOOL,
            "the sources one after another, in the order given (every frame of one, then the next: zsseg segment's "
            "order), not side by side; with track, one tracker per sequence (a video file; the images of one folder, "
            "however given); files and folders only, not live sources",
            none=False,
            commands=(),
            flag_from="`zsseg segment` (always)",
            example=(None, True),
        ),
        RunOption(
            "live",
            False,
            BOOL,
            "the LIVE preset (zsseg_rt.options.LIVE): one window a frame, keyframes and the cheaper flow",
            none=False,
            flag="--live",
            help_from="zsseg_rt.options.run_rows:live_help",
            group=VIDEO_GROUP,
            example=((), True),
        ),
        RunOption(
            "stabilize",
            False,
            BOOL,
            "stable labels: each frame's class scores blended with the previous ones warped along the optical flow, "
            "with hysteresis against near-ties, reset on a scene cut (a windowed bundle without PAMR)",
            none=False,
            flag="--stabilize",
            group=VIDEO_GROUP,
            example=((), True),
        ),
        RunOption(
            "stabilize_delay",
            None,
            WHOLE,
            "recorded video (a file or folder): --stabilize with N frames of look-ahead: each frame's labels also use "
            "the N frames after it and are written when those have been read (smoother labels, a second optical flow "
            "per frame, N frames of latency); refused for a live camera",
            low=1,
            flag="--stabilize-delay",
            metavar="N",
            group=VIDEO_GROUP,
            example=(("2",), 2),
        ),
        RunOption(
            "keyframe_every",
            None,
            WHOLE,
            "run the encoder on every K-th frame only and propagate its labels along the optical flow in between "
            "(also a keyframe on a scene cut, a vocabulary change or a failed flow); with --adaptive-keyframes the "
            "longest gap (default 8)",
            low=1,
            flag="--keyframe-every",
            metavar="K",
            group=VIDEO_GROUP,
            example=(("1",), 1),
        ),
        RunOption(
            "adaptive_keyframes",
            False,
            BOOL,
            "a keyframe also as soon as the flow's confidence drops (fast motion, occlusions)",
            none=False,
            flag="--adaptive-keyframes",
            group=VIDEO_GROUP,
            example=((), True),
        ),
        RunOption(
            "temporal_consistency",
            False,
            BOOL,
            "also measure each source's flow-warped temporal consistency in --stats-json (a DIS flow per frame: "
            "costs CPU time; flicker and the end-to-end frame rate are always measured)",
            none=False,
            flag="--temporal-consistency",
            group=VIDEO_GROUP,
            example=((), True),
        ),
        RunOption(
            "in_flight",
            2,
            WHOLE,
            "frames in flight on a GPU's device pipeline",
            low=1,
            none=False,
            commands=(),
            example=(None, 1),
        ),
        RunOption(
            "frame_id",
            "{source}",
            TEXT,
            "the robot outputs' frame_id (their row's option)",
            none=False,
            commands=(),
            flag_from="`--frame-id` (the robot outputs' option: output_options)",
            example=(None, "camera"),
        ),
        RunOption(
            "overlay_topic",
            True,
            BOOL,
            "the robot outputs' overlay topic (their row's option)",
            none=False,
            commands=(),
            flag_from="`--no-overlay-topic` (the robot outputs' option: output_options)",
            example=(None, False),
        ),
        RunOption(
            "output_options",
            {},
            MAPPING,
            "the output kinds' own options by name (frame_id, overlay, a new kind's); a value here wins over the "
            "field of the same option",
            none=False,
            commands=(),
            flag_from="each output kind's option flags (add_output_arguments)",
            example=(None, {"frame_id": "camera"}),
        ),
    ]
)
