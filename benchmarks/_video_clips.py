"""The clips, the camera-loop run and the metrics of the live-video benchmarks (``benchmarks/video.py``, its exact-path
section ``benchmarks/_video_window.py``, and the benchmarks that take clips from them): below both, so that neither
imports the other for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
CLASSES = (
    "person,bicycle,car,motorbike,bus,train,boat,aeroplane,bird,cat,dog,horse,sheep,cow,bottle,chair,sofa,"
    "diningtable,pottedplant,tvmonitor,road,sky,building,tree,grass,wall,floor"
)
# (name, file, first frame): Megamind from frame 85, so that its cut at frame 97 is inside the window
CLIPS = {"vtest": ("vtest.avi", 0), "tree": ("tree.avi", 0), "Megamind": ("Megamind.avi", 85)}
LIVE_FPS_TARGET = 5.0  # >= 5 fps end to end; the flow <= 10 % of the frame time
VOTE_RADIUS = 4  # the oracle of the verdict: a vote over 9 frames (video_metrics.voted)


def clip_frames(name: str, count: int, folder: Path) -> List[Any]:
    """``count`` frames of a clip from its first frame (``CLIPS``), kept in memory and written as PNG files into
    ``folder`` (the camera loop's source)."""
    import cv2

    file, start = CLIPS[name]
    path = DATA / file
    if not path.is_file():
        raise SystemExit(f"{path} is missing: install Debian's opencv-doc (apt-get install opencv-doc)")
    capture = cv2.VideoCapture(str(path))
    frames = []
    index = 0
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        if index >= start:
            frames.append(frame)
            cv2.imwrite(str(folder / f"{len(frames) - 1:06d}.png"), frame)
        index += 1
    capture.release()
    if len(frames) < count:
        raise SystemExit(f"{path} gave {len(frames)} frames from frame {start}, {count} wanted")
    return frames


def run_mode(engine: Any, folder: Path, out: Path, options: Dict[str, Any]) -> Dict[str, Any]:
    """One mode through the camera loop over the frames in ``folder``: its stats (video metrics of the loop) and the
    label maps it wrote into ``out``."""
    from zsseg_rt.stream import ImageFolderSource, LabelFolderSink, MultiStreamRunner, VideoSegmenter

    segment = VideoSegmenter(engine, **options) if options else engine
    source = ImageFolderSource(str(folder), max_pixels=0)
    source.open()
    runner = MultiStreamRunner(
        segment, [source], [[LabelFolderSink(str(out))]], drop_stale=False, legend=False, opened=True
    )
    stats = runner.run(handle_signals=False)
    return dict(stats.sources[0].video, processed=stats.processed)


class ClipMotion:
    """The clip's grey frames and, for each pair, the pixels that the metric's flow moves by more than 1 px
    (``video_metrics.moved``) and whether the filter takes it as a scene cut (its own test: under
    ``cut_confidence`` of the frame has a valid flow to the previous one): computed once per clip, for every mode.
    A pair across a cut is left out of the diagnostics (its "still" pixels merely have the same grey level in two
    scenes); the flicker column keeps it (the target's metric)."""

    def __init__(self, frames: List[Any]):
        import cv2
        import numpy as np

        from zsseg_rt.stream.video_filter.temporal import FlowEstimator, TemporalOptions
        from zsseg_rt.stream.video_filter.video_metrics import STILL_THRESHOLD, grey, moved

        self.greys = [grey(frame) for frame in frames]
        options = TemporalOptions()
        estimator = FlowEstimator(options.flow_preset, options.flow_stride, options.photometric_tolerance)
        small = [estimator.prepare(frame) for frame in frames]
        dis: Any = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.cuts: List[int] = []  # k: the pair (k - 1, k) is a scene cut
        self.moved: List[Any] = [None]
        shares = []
        for k in range(1, len(frames)):
            step = estimator.flow(small[k], small[k - 1])
            if float(estimator.check(small[k], small[k - 1], step).mean()) < options.cut_confidence:
                self.cuts.append(k)
                self.moved.append(None)
                continue
            self.moved.append(moved(self.greys[k - 1], self.greys[k], dis))
            still = np.abs(self.greys[k].astype(np.int16) - self.greys[k - 1].astype(np.int16)) < STILL_THRESHOLD
            if still.any():
                shares.append(float((still & self.moved[k]).sum()) / float(still.sum()))
        self.moved_share = 100.0 * sum(shares) / len(shares) if shares else None  # % of the still pixels

    def unmoved_flicker(self, labels: List[Any]) -> Optional[float]:
        """Flicker (%) within the still pixels that the flow does not move, the pairs across a cut left out (mean
        over pairs, as ``flicker_pct``)."""
        from zsseg_rt.stream.video_filter.video_metrics import flicker

        values = [
            flicker(self.greys[k - 1], self.greys[k], labels[k - 1], labels[k], within=~self.moved[k])
            for k in range(1, len(labels))
            if self.moved[k] is not None
        ]
        kept = [value for value in values if value is not None]
        return 100.0 * sum(kept) / len(kept) if kept else None


def measure(frames: List[Any], out: Path, reference: Optional[Path], motion: ClipMotion) -> Dict[str, Any]:
    """Flicker, changed, TC (DIS MEDIUM) and agreement with ``reference``'s label maps (docs/video.md), in %; the
    flicker within the still pixels that the flow does not move (``unmoved``); for the reference itself
    (``reference`` None: the per-frame run) also the same for the vote oracle's labels (``vote_unmoved``)."""
    import numpy as np

    from zsseg_rt.outputs.labels import read_labels
    from zsseg_rt.stream.video_filter.video_metrics import VideoMetrics, agreement, carried, voted

    metrics = VideoMetrics(consistency=True)
    agree = []
    maps = []
    for index, frame in enumerate(frames):
        labels = read_labels(str(out), index)
        if labels is None:
            raise RuntimeError(f"{out} has no label map for frame {index}")
        metrics.update(frame, labels.astype(np.int32))
        maps.append(labels)
        if reference is not None:
            agree.append(agreement(labels, read_labels(str(reference), index)))
    summary = metrics.summary()
    return {
        "flicker": summary["flicker_pct"],
        "changed": summary["changed_pct"],
        "tc": summary["tc_pct"],
        "agreement": 100.0 * float(np.mean(agree)) if agree else 100.0,
        "unmoved": motion.unmoved_flicker(maps),
        "vote_unmoved": motion.unmoved_flicker(voted(maps, VOTE_RADIUS)) if reference is None else None,
        # the keyframe oracle at K=4 (video_metrics.carried): what propagation can agree with per frame
        "carried_agreement": (
            100.0 * float(np.mean([agreement(c, m) for c, m in zip(carried(motion.greys, maps, 4), maps)]))
            if reference is None
            else None
        ),
    }
