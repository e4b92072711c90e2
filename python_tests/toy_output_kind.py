"""A toy output kind for the tests of the output table (python_tests/cli/test_cli_camera_output_kind.py: camera,
segment and batch's refusals; python_tests/scale/test_batch_output_kind.py: a batch run): ``-o out.count`` writes how
many results (frames, images) it counted, one in ``--count-every N``. What a new kind is: this module (its sink)
and its row, ``ROW`` (in production a line of ``OUTPUT_KINDS`` in ``zsseg_rt/outputs/kinds.py``; the tests put
it in the table for a block with ``OUTPUT_KINDS.adding(ROW, first=True)``). The row's own option gives the command
its flag and the Session its ``output_options`` entry; the row's ``wrote`` gives the "wrote ..." line."""

from __future__ import annotations

from zsseg_rt.console.arguments import whole_number
from zsseg_rt.outputs.kinds import NAMED, KindOption, OutputKind
from zsseg_rt.outputs.sink_base import FrameSink


class CountSink(FrameSink):
    """Counts one result in ``every``; ``finish()`` writes the count into the output plan's partial file."""

    def __init__(self, path: str, output, every: int):
        self.path, self.output, self.every = path, output, int(every)
        self.name = f"count:{path}"
        self.frames = self.counted = 0

    def write_result(self, frame, result):
        if self.frames % self.every == 0:
            self.counted += 1
        self.frames += 1

    def finish(self):
        with open(self.output.partial, "w", encoding="utf-8") as handle:
            handle.write(f"{self.counted}\n")

    def describe(self):
        return {"path": self.path, "kind": "count", "frames": self.frames, "counted": self.counted}


ROW = OutputKind(
    "count",
    "-o",
    "out.count (a frame count)",
    lambda spec: str(spec).strip().endswith(".count"),
    lambda spec, options: CountSink(str(spec).strip(), options.staged, options.value("count_every")),
    lambda plan, option, path: plan.stream(option, path),
    sources=NAMED,
    commands=("camera", "segment", "batch"),
    options=(KindOption("count_every", "--count-every", 1, "count one frame in N", type=whole_number(1), metavar="N"),),
    wrote=lambda output: f"wrote a count of {output['counted']} of {output['frames']} frames to {output['path']}",
)
