#!/usr/bin/env python
"""Labels for robots (issue 74): what ``zsseg camera --live -o out.mcap`` and ``-o foxglove://`` cost per frame,
against ``--live``'s own frame time measured in the same run, and the MCAP file's size per frame.

Every row runs the camera loop as ``zsseg camera CLIP --live`` runs it (``MultiStreamRunner`` over the clip's frames
with ``VideoSegmenter(engine, **live_options())`` on the ``--live`` Engine: one window a frame, the fastest path that
passed the accuracy gate on this CPU, prepared first when it is not), every frame processed, in one process with one
Engine; the rows take turns, round after round:

- ``--live``: no output (the peer: its frame time is the one the outputs are judged against);
- ``--live -o out.mcap``: labels (mono16 Image), the overlay (JPEG CompressedImage), LabelInfo;
- ``--live -o out.mcap --no-overlay-topic``: labels and LabelInfo only;
- ``--live -o foxglove://`` with no viewer connected;
- ``--live -o foxglove://`` with one viewer (another process, subscribed to every topic and reading);
- ``--live -o out.mcap --objects`` (issue 81): also each frame's objects (``Result.objects()``, found in the inference
  thread as ``zsseg camera --objects`` finds them) as ``vision_msgs/msg/Detection2DArray`` and
  ``foxglove_msgs/msg/ImageAnnotations``; its tracking column (issue 89): those objects through one
  ``ObjectTracker`` frame after frame, as ``--track`` does, timed apart like the objects (target: at most 2 %).

The cost of an output is the CPU time its writer thread spends on it per frame (``time.thread_time`` around the
drawing of the overlay and the sink's ``write_result``: encoding, compression, writing); it is judged against the
peer's frame time (target: at most 5 %). The process's CPU seconds per frame and the end-to-end frame time of every
row are shown too: on 2 cores the writer thread runs beside inference, so the frame rate moves less than the cost,
and with other work on the machine it moves by more than 5 % from round to round anyway. The Foxglove server's own
threads (the SDK's, in Rust) send the messages: with a viewer their CPU shows in the process's column only.

The objects' own cost is measured apart from the loop, on that row's label maps and scores (kept as it ran): finding
them (``Result.objects()`` with the Engine's limits) and encoding both messages, frame after frame, in this process
while nothing else runs in it, as its CPU time (``time.process_time``: OpenCV's connected components run on its own
threads too) and its wall time; judged against the peer's frame time (target: at most 5 %), with the messages' bytes
per frame and the objects per frame.

Clip: Debian's opencv-doc ``vtest.avi`` (768x576), its first ``--frames`` frames; the vocabulary: the first
``--classes`` (25) of ``benchmarks video``'s VOC-like classes, every row. The bundle: ``benchmarks video``'s
(ZegCLIP ViT-B/16, random weights): its labels are large blobs, which zstd shrinks far more than a trained model's
labels, so the file size per frame is a lower bound for trained weights (the overlay's JPEG is not), and so are the
objects per frame and their cost (a trained model's finer regions are more objects).

    .venv/bin/python -m benchmarks robots            # print the section (needs: apt-get install opencv-doc)
    .venv/bin/python -m benchmarks robots --write    # also put it into BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .common import machine_description, show_section

SECTION = "## Labels for robots: the MCAP and Foxglove outputs' cost per frame (issue 74)"
TARGET_SHARE = 5.0  # % of --live's frame time, per output (and for the objects: finding and encoding them)
TRACK_SHARE = 2.0  # % of --live's frame time for tracking the objects (--track, issue 89)
CLASSES = 25  # the vocabulary of every row: the first 25 of benchmarks video's classes (issue 81's objects row)
OBJECTS_ROW = "--live -o out.mcap --objects"
IDLE_LIVE_FRAME_MS = 157.0  # --live on vtest, idle (BENCHMARKS.md "Live video": 6.37 fps): the budget's reference
ROWS = [
    ("--live", None),
    ("--live -o out.mcap", {"kind": "mcap", "overlay": True}),
    ("--live -o out.mcap --no-overlay-topic", {"kind": "mcap", "overlay": False}),
    ("--live -o foxglove:// (no viewer)", {"kind": "foxglove", "viewer": False}),
    ("--live -o foxglove:// (one viewer)", {"kind": "foxglove", "viewer": True}),
    (OBJECTS_ROW, {"kind": "mcap", "overlay": True, "objects": True}),
]

_VIEWER = r"""
import json, sys
from websockets.sync.client import connect
with connect(sys.argv[1], subprotocols=["foxglove.sdk.v1"], max_size=None) as ws:
    while True:
        try:
            frame = ws.recv()
        except Exception:
            break
        if isinstance(frame, str):
            message = json.loads(frame)
            if message.get("op") == "advertise":
                wanted = [{"id": c["id"], "channelId": c["id"]} for c in message["channels"]]
                ws.send(json.dumps({"op": "subscribe", "subscriptions": wanted}))
"""


class _Timed:
    """Wraps the runner's overlay drawing and the sink's ``write_result``: the writer thread's CPU and wall time in
    them, summed."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 0.0

    def wrap(self, function):
        def timed(*args, **kwargs):
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.cpu += time.thread_time() - cpu
                self.wall += time.perf_counter() - wall

        return timed


def _viewer(url: str):
    """A viewer in a process of its own (its CPU is not the output's), subscribing to every channel advertised."""
    return subprocess.Popen([sys.executable, "-c", _VIEWER, url])


class _Kept:
    """The objects row's sink, watched: each frame's label map and scores (to time the objects on afterwards), and
    the bytes of the objects' messages it sends."""

    def __init__(self, sink: Any) -> None:
        self.maps: List[Tuple[Any, Any]] = []
        self.message_bytes = 0
        write, send = sink.write_result, sink._send

        def write_result(frame, result, *args, **kwargs):
            self.maps.append((result.labels.astype("uint8"), result.scores.copy()))
            return write(frame, result, *args, **kwargs)

        def counted(source, kind, stamp_ns, data):
            if kind in ("objects", "annotations"):
                self.message_bytes += len(data)
            return send(source, kind, stamp_ns, data)

        sink.write_result, sink._send = write_result, counted


def time_objects(maps: List[Tuple[Any, Any]], names: List[str]) -> Dict[str, float]:
    """Per frame of ``maps`` (label map, scores): the CPU and wall milliseconds of finding its objects
    (``Result.objects()``) and of encoding its Detection2DArray and ImageAnnotations, in this process (nothing else
    running in it: its CPU time is theirs, OpenCV's threads included); the objects and the messages' bytes."""
    from zsseg_rt.outputs import object_messages
    from zsseg_rt.runtime.result import Result, palette
    from zsseg_rt.runtime.tracking import ObjectTracker

    colors = palette(len(names))
    tracker = ObjectTracker()  # --track: the frame's objects through one tracker, frame after frame (issue 89)
    import scipy.optimize  # noqa: F401 - the first assignment's import, once a run: not a frame's cost

    find_cpu = encode_cpu = track_cpu = wall = 0.0
    objects = message_bytes = 0
    for k, (labels, scores) in enumerate(maps):
        result = Result(labels=labels, scores=scores, class_names=list(names))
        cpu, start = time.process_time(), time.perf_counter()
        found = result.objects()
        tracking = time.thread_time()  # the tracker runs in this thread alone (see benchmarks/tracking.py)
        tracker.update(found)
        track_cpu += time.thread_time() - tracking
        middle = time.process_time()
        detections = object_messages.detection_2d_array(k, "vtest", found)
        annotations = object_messages.image_annotations(k, found, colors)
        find_cpu, encode_cpu = find_cpu + middle - cpu, encode_cpu + time.process_time() - middle
        wall += time.perf_counter() - start
        objects += len(found)
        message_bytes += len(detections) + len(annotations)
    frames = max(len(maps), 1)
    return {
        "objects_find_ms": 1000.0 * find_cpu / frames,
        "objects_encode_ms": 1000.0 * encode_cpu / frames,
        "objects_track_ms": 1000.0 * track_cpu / frames,
        "objects_ms": 1000.0 * (find_cpu + encode_cpu) / frames,
        "objects_wall_ms": 1000.0 * wall / frames,
        "objects_per_frame": objects / frames,
        "objects_bytes": message_bytes / frames,
    }


def run_row(engine: Any, folder: Path, out: Path, spec: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """One row: the loop over the frames in ``folder`` with the output ``spec`` asks for."""
    from zsseg_rt.stream import FoxgloveSink, ImageFolderSource, McapSink, MultiStreamRunner, VideoSegmenter
    from zsseg_rt.stream.loop.live import live_options

    segment = VideoSegmenter(engine, **live_options())
    source = ImageFolderSource(str(folder), max_pixels=0)
    source.open()
    sinks: List[Any] = []
    viewer = None
    timed = _Timed()
    objects = bool(spec is not None and spec.get("objects"))
    kept: Optional[_Kept] = None
    if spec is not None and spec["kind"] == "mcap":
        mcap = McapSink(
            str(out / "out.mcap"), sources=["vtest"], overlay=spec["overlay"], overwrite=True, objects=objects
        )
        kept = _Kept(mcap) if objects else None
        sinks.append(mcap)
    elif spec is not None:
        sink = FoxgloveSink(0, sources=["vtest"])
        sinks.append(sink)
        if spec["viewer"]:  # its subscriptions in place before the first frame
            viewer = _viewer(sink.url)
            deadline = time.monotonic() + 60
            while not all(sink.subscribed(topic) for topic in sink.topics()):
                assert viewer.poll() is None and time.monotonic() < deadline, "the viewer did not subscribe"
                time.sleep(0.01)
    for sink in sinks:
        sink.write_result = timed.wrap(sink.write_result)
    runner = MultiStreamRunner(segment, [source], [sinks], drop_stale=False, opened=True, objects=objects)
    runner.render = timed.wrap(runner.render)  # type: ignore[method-assign]
    try:
        stats = runner.run(handle_signals=False)  # closes the sinks: the server stops, the viewer ends
    finally:
        segment.close()
        if viewer is not None:
            viewer.wait(60)
    frames = stats.processed
    row: Dict[str, Any] = {
        "frames": frames,
        "frame_ms": 1000.0 * stats.elapsed_s / frames,
        "cpu_ms": 1000.0 * stats.cpu_s / frames,
        "output_cpu_ms": 1000.0 * timed.cpu / frames,
        "output_wall_ms": 1000.0 * timed.wall / frames,
    }
    if spec is not None and spec["kind"] == "mcap":
        row["bytes_per_frame"] = os.path.getsize(out / "out.mcap") / frames
    if spec is not None and spec["kind"] == "foxglove":
        row["messages"] = sinks[0].messages
    if kept is not None:  # the objects' own cost, timed on the maps this row made (see the module)
        row.update(time_objects(kept.maps, list(engine.class_names)))
        row["objects_sent_bytes"] = kept.message_bytes / frames
    return row


def main(argv: Optional[List[str]] = None) -> int:
    from . import video

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", help="a ViT-B/16 bundle (default: benchmarks video's, exported once)")
    parser.add_argument("--config", default="zegclip_vitb16_voc_inductive", help="exported with random weights")
    parser.add_argument("--frames", type=int, default=60, help="frames of vtest.avi (768x576)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--classes", type=int, default=CLASSES, help="the first N of benchmarks video's classes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--live-backend", default="auto", help="the --live Engine's backend (default auto)")
    parser.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    args = parser.parse_args(argv)
    begin, load_before = time.perf_counter(), os.getloadavg()[0]
    bundle = video.bundle_path(args)
    engine = video.open_live_engine(bundle, args)
    engine.set_classes(video.CLASSES.split(",")[: args.classes])
    work = Path(tempfile.mkdtemp(prefix="zsseg-bench-robots-"))
    folder = work / "frames"
    folder.mkdir()
    frames = video.clip_frames("vtest", args.frames, folder)
    engine.segment_with_class_scores([frames[0]])  # warm-up (not timed)
    results: Dict[str, List[Dict[str, Any]]] = {label: [] for label, _ in ROWS}
    for round_ in range(args.rounds):
        for label, spec in ROWS:
            out = work / f"round{round_}_{len(results[label])}_{label.replace(' ', '_').replace('/', '')}"
            out.mkdir()
            row = run_row(engine, folder, out, spec)
            results[label].append(row)
            print(f"round {round_ + 1}: {label}: {row}", flush=True)
    path = f"{engine.backend.name} {getattr(engine.backend, 'precision', None) or 'fp32'}"
    text = render(results, args, path, (load_before, os.getloadavg()[0]), time.perf_counter() - begin)
    show_section(SECTION, text, args.write)
    return 0


def _median(rows: List[Dict[str, Any]], key: str) -> Optional[float]:
    values = [row[key] for row in rows if key in row]
    return statistics.median(values) if values else None


def render(results: Dict[str, List[Dict[str, Any]]], args, path: str, load, seconds: float) -> str:
    peer, peer_cpu = _median(results["--live"], "frame_ms"), _median(results["--live"], "cpu_ms")
    assert peer is not None and peer_cpu is not None
    lines = [
        SECTION,
        "",
        f"Regenerate: `.venv/bin/python -m benchmarks robots --write` (needs Debian's `opencv-doc`). This run took "
        f"{seconds:.0f} s.",
        "",
        *machine_description(2)[:1],
        *machine_description(2)[2:],
        f"- Load average (1 min) before / after: {load[0]:.1f} / {load[1]:.1f} (other work shares this machine: "
        "the shares are taken within one run, the rows taking turns)",
        f"- `--live` on vtest.avi (768x576), its first {args.frames} frames, every frame processed; {path}, one "
        f"window a frame (512x384), a keyframe every 4; {args.rounds} rounds, the rows taking turns, medians",
        "",
        "| row | frame time ms | process CPU ms / frame | output CPU ms / frame (writer thread) | share of `--live`'s "
        "frame time | share of `--live`'s CPU / frame | file / frame | tracking CPU ms / frame (`--track`) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for label, _ in ROWS:
        rows = results[label]
        frame, cpu = _median(rows, "frame_ms"), _median(rows, "cpu_ms")
        output = _median(rows, "output_cpu_ms") if label != "--live" else None
        size = _median(rows, "bytes_per_frame")
        share = 100.0 * output / peer if output is not None else None
        cpu_share = 100.0 * output / peer_cpu if output is not None else None
        lines.append(
            f"| {label} | {frame:.1f} | {cpu:.1f} | {'-' if output is None else f'{output:.2f}'} | "
            f"{'-' if share is None else f'{share:.2f} %'} | {'-' if cpu_share is None else f'{cpu_share:.2f} %'} | "
            f"{'-' if size is None else f'{size / 1024:.1f} KiB'} | {_shown(_median(rows, 'objects_track_ms'))} |"
        )
        if share is not None and label in ("--live -o out.mcap", "--live -o foxglove:// (one viewer)"):
            verdicts.append(
                f"- `{label}`: {output:.2f} ms of CPU a frame = {share:.2f} % of `--live`'s frame time ({peer:.1f} ms; "
                f"target <= {TARGET_SHARE:.0f} %): {'met' if share <= TARGET_SHARE else '**missed**'}; "
                f"{cpu_share:.2f} % of the CPU time `--live` spends on a frame ({peer_cpu:.1f} ms: the share that does "
                "not shrink when other work slows the frames down)"
            )
    lines += [
        "",
        *verdicts,
        *_objects_verdict(results[OBJECTS_ROW], peer, peer_cpu),
        *_tracking_verdict(results[OBJECTS_ROW], peer),
        "",
        *_reading(results, peer, peer_cpu, load),
    ]
    return "\n".join(lines) + "\n"


def _objects_verdict(rows: List[Dict[str, Any]], peer: float, peer_cpu: float) -> List[str]:
    """The objects' line: their own cost per frame (timed apart, see the module) against ``--live``'s frame time."""
    cost, wall = _median(rows, "objects_ms"), _median(rows, "objects_wall_ms")
    if cost is None or wall is None:
        return []
    share, cpu_share, idle = 100.0 * cost / peer, 100.0 * cost / peer_cpu, 100.0 * cost / IDLE_LIVE_FRAME_MS
    return [
        f"- objects (`--objects`: finding them and encoding Detection2DArray + ImageAnnotations, timed apart on the "
        f"row's {int(_median(rows, 'frames') or 0)} label maps): {cost:.2f} ms of CPU a frame (finding "
        f"{_median(rows, 'objects_find_ms'):.2f}, encoding {_median(rows, 'objects_encode_ms'):.2f}; wall "
        f"{wall:.2f} ms) = {share:.2f} % of `--live`'s frame time ({peer:.1f} ms; target <= {TARGET_SHARE:.0f} %): "
        f"{'met' if share <= TARGET_SHARE else '**missed**'}; {cpu_share:.2f} % of the CPU time `--live` spends on a "
        f"frame ({peer_cpu:.1f} ms), {idle:.1f} % of an idle machine's {IDLE_LIVE_FRAME_MS:.0f} ms frame time "
        f"({'within' if idle <= TARGET_SHARE else '**over**'} the target there); "
        f"{_median(rows, 'objects_per_frame'):.1f} objects a frame, their messages "
        f"{(_median(rows, 'objects_bytes') or 0) / 1024:.1f} KiB a frame (before the file's compression)"
    ]


def _shown(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def _tracking_verdict(rows: List[Dict[str, Any]], peer: float) -> List[str]:
    """The tracking's line (issue 89): ``ObjectTracker.update`` on the objects row's objects, frame after frame."""
    cost = _median(rows, "objects_track_ms")
    if cost is None:
        return []
    share, idle = 100.0 * cost / peer, 100.0 * cost / IDLE_LIVE_FRAME_MS
    return [
        f"- tracking (`--track`: `ObjectTracker.update` on those objects, frame after frame, {CLASSES} classes, "
        f"{_median(rows, 'objects_per_frame'):.1f} objects a frame): {cost:.3f} ms of CPU a frame = {share:.2f} % of "
        f"`--live`'s frame time ({peer:.1f} ms; target <= {TRACK_SHARE:.0f} %): "
        f"{'met' if share <= TRACK_SHARE else '**missed**'}; {idle:.2f} % of an idle machine's "
        f"{IDLE_LIVE_FRAME_MS:.0f} ms ({'within' if idle <= TRACK_SHARE else '**over**'} the target there)"
    ]


def _reading(results: Dict[str, List[Dict[str, Any]]], peer: float, peer_cpu: float, load) -> List[str]:
    """How to read the table: the load, the shares, where the output's time and the file's bytes go."""
    full = _median(results["--live -o out.mcap"], "output_cpu_ms") or 0.0
    labels = _median(results["--live -o out.mcap --no-overlay-topic"], "output_cpu_ms") or 0.0
    idle = _median(results["--live -o foxglove:// (no viewer)"], "output_cpu_ms") or 0.0
    size = (_median(results["--live -o out.mcap"], "bytes_per_frame") or 0.0) / 1024
    label_size = (_median(results["--live -o out.mcap --no-overlay-topic"], "bytes_per_frame") or 0.0) / 1024
    budget = TARGET_SHARE / 100.0 * IDLE_LIVE_FRAME_MS
    text = (
        f"**Reading it.** Load average {load[0]:.1f} / {load[1]:.1f} on 2 logical cores: `--live` took {peer:.0f} ms a "
        f'frame here, where an idle machine gave {IDLE_LIVE_FRAME_MS:.0f} ms ("Live video" above, another run), so '
        "the share of the frame time shrinks as the load grows; the share of the CPU time `--live` spends on a frame "
        f"({peer_cpu:.0f} ms) does less so, both sides being slowed alike. On an idle machine the target asks for at "
        f"most {budget:.1f} ms of CPU a frame: the labels and LabelInfo alone take {labels:.2f} ms here "
        f"(`--no-overlay-topic`), drawing the overlay and its JPEG the other {full - labels:.2f} ms (measured under "
        f"this run's load, not on an idle machine). With no viewer the live server takes {idle:.2f} ms a frame (nothing "
        f"is encoded). The file: {size:.1f} KiB a frame, {label_size:.1f} KiB of it the labels (768x576 mono16 is 864 "
        "KiB raw: these random weights' labels are large blobs, a trained model's finer regions compress less) and "
        f"{size - label_size:.1f} KiB the overlay's JPEG (as an rgb8 Image: 1296 KiB)."
    )
    return _wrapped(text)


def _wrapped(text: str, width: int = 120) -> List[str]:
    import textwrap

    return textwrap.wrap(text, width, break_on_hyphens=False)


if __name__ == "__main__":
    sys.exit(main())
