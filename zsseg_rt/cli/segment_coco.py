"""``zsseg segment --save-json FILE``: the run's label maps as COCO masks (:class:`zsseg_rt.runtime.coco.CocoMasks`)
in one file that follows the output policy of :mod:`zsseg_rt.outputs.plan` like the other outputs: checked and claimed
(an owner lock) before the bundle loads (an existing file refused without ``--overwrite``, an interrupted run's
temporary file named), written under a temporary name and put in place only when the run has ended (a run stopped by
a signal or a full disk leaves the old file as it was)."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from zsseg_rt.console.errors import CliError
from zsseg_rt.outputs.plan import CLI_FLAG, OutputPlan, OutputRefused

__all__ = ["CocoOutput", "OPTION"]

OPTION = "--save-json"


class CocoOutput:
    """The COCO file of one run: :meth:`add` each result, then :meth:`finish` (written, put in place) or
    :meth:`abort` (nothing replaced)."""

    def __init__(self, path: str, plan: OutputPlan):
        from zsseg_rt.runtime.coco import CocoMasks

        self.path = path
        self.plan = plan
        self.staged = plan.outputs(OPTION)[0]
        self.masks = CocoMasks("zsseg segment label maps")
        self.done = False

    @classmethod
    def claimed(cls, path: str, overwrite: bool, inputs: Sequence[str], outputs: Sequence[str]) -> "CocoOutput":
        """Check and claim ``path`` (not one of the run's ``inputs`` nor of its other ``outputs``).

        Raises:
            CliError: one line naming the path and what to do.
        """
        if not path.lower().endswith(".json"):
            raise CliError(
                f"{OPTION} {path!r}: expected a .json file name, got {os.path.splitext(path)[1] or 'none'!r}"
            )
        if os.path.isdir(path):
            raise CliError(f"{OPTION} {path!r} is a folder: give a file name such as masks.json")
        same = {os.path.realpath(other) for other in outputs}
        if os.path.realpath(path) in same:
            raise CliError(f"{OPTION} {path!r} is a file this run writes already (-o): choose another name")
        plan = OutputPlan(overwrite, CLI_FLAG, inputs=inputs)
        plan.file(OPTION, path)
        try:
            plan.check()
            plan.prepare()
        except OutputRefused as exc:
            raise CliError(str(exc)) from None
        return cls(path, plan)

    @property
    def images(self) -> int:
        return len(self.masks.images)

    def add(self, result: Any, path: str, frame: Optional[tuple] = None) -> None:
        """One image's (or a video frame's: ``frame`` ``(number, image)``; ``file_name`` ``STEM/frame_000042.png``:
        :func:`zsseg_rt.runtime.coco.frame_file_name`) labels."""
        from zsseg_rt.runtime.coco import frame_file_name

        extra = {} if frame is None else {"frame": int(frame[0]), "video": path}
        name = path if frame is None else frame_file_name(os.path.splitext(path)[0], int(frame[0]))
        unknown = getattr(result, "unknown_id", None) is not None
        found = getattr(result, "frame_objects", None)  # --objects: the image's objects, as instance annotations
        self.masks.add(result.labels, result.class_names, name, unknown, found, **extra)

    def finish(self) -> None:
        """Write the file and put it in place (raises ``OutputWriteError``: the old file stays)."""
        try:
            self.staged.write_json(self.masks.document())
            self.plan.commit()
        except BaseException:
            self.plan.abort()
            raise
        finally:
            self.done = True

    def abort(self) -> None:
        """Nothing put in place (a no-op after :meth:`finish`)."""
        if not self.done:
            self.done = True
            self.plan.abort()
