"""The sinks of a :class:`~zsseg_rt.stream.loop.session.Session`: what its outputs, label folders, COCO file, tracks
and preview ask for, opened once every output was planned and claimed (``zsseg_rt.outputs.plan``)."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

from zsseg_rt.stream.loop.session_options import SessionOptions, output_names, shared_output, sink_options

__all__ = ["build_sinks"]


def build_sinks(
    options: SessionOptions,
    inputs: Sequence[Any],
    runner_stats: Callable[[], dict],
    outputs: Any,
    label_folders: Sequence[str],
    vocabulary: Optional[Callable] = None,
    command: str = "camera",
) -> Any:
    """The sinks the outputs, the label folders, COCO and the preview ask for (``outputs``: the checked
    ``RunOutputs``): a list per source and the shared ones (an MCAP file of every source, the preview); with none,
    a window per source."""
    from zsseg_rt.outputs.kinds import SinkOptions, open_output

    names = [item.name for item in inputs]
    several = len(inputs) > 1

    def open_one(spec: str, fps: float, shown: Sequence[str]) -> Any:  # one window per source, titled with its name
        title = f"zsseg {shown[0]}" if several else "zsseg"
        return open_output(spec, sink_options(options, fps, shown, outputs.staged(spec), title))

    per_source: List[list] = [[] for _ in inputs]
    shared: list = []
    try:
        for given, expanded in zip(options.outputs, [output_names(spec, names) for spec in options.outputs]):
            if shared_output(given):  # one output, every source in it (topics per source)
                shared.append(open_one(given, options.fps or 30.0, names))
                continue
            for index, item in enumerate(inputs):
                fps = options.fps or item.source.fps or 30.0  # a file keeps its rate; fps overrides; else 30
                per_source[index].append(open_one(expanded[index], fps, [item.name]))
        for index, folder in enumerate(label_folders):
            labels = SinkOptions(staged=outputs.labels(folder), sources=[inputs[index].name])
            per_source[index].append(open_output(folder, labels, "--labels-out"))
        if outputs.coco is not None:  # save_json: one file, every source's frames
            videos = [_video_file(item.source) for item in inputs]  # (zsseg segment names their frames by them)
            coco = SinkOptions(staged=outputs.coco, sources=names, command=command, values={"videos": videos})
            shared.append(open_output(str(options.save_json), coco, "--save-json"))
        tracks = output_names(options.tracks_out, names, "tracks_out") if options.tracks_out else []
        for index, path in enumerate(tracks):  # --tracks-out: one MOTChallenge file per source
            track_file = SinkOptions(staged=outputs.staged(path), sources=[inputs[index].name])
            per_source[index].append(open_output(path, track_file, "--tracks-out"))
        if options.preview is not None:  # the preview row: one page, a grid of every source
            page = {"host": options.preview_host, "readonly": options.preview_readonly, "stats": runner_stats}
            preview = SinkOptions(sources=names, values={**page, "vocabulary": vocabulary})
            shared.append(open_output(str(options.preview), preview, "--preview"))
        written = label_folders or outputs.coco is not None or tracks  # outputs without -o
        if not options.outputs and options.preview is None and not written:
            for index, item in enumerate(inputs):
                per_source[index].append(open_one("display://", 30.0, [item.name]))
    except BaseException:  # e.g. StreamCapabilityError: close what was opened; the command prints one line
        for sink in [sink for sinks in per_source for sink in sinks] + shared:
            sink.abort()
        raise
    return per_source, shared


def _video_file(source: Any) -> Optional[str]:
    """The video file a source reads (not a folder, not image files, not a live source), else None."""
    from zsseg_rt.stream.loop.session_inputs import source_path

    if source.live or hasattr(source, "image_paths") or getattr(source, "folder", None) is not None:
        return None
    return source_path(source)
