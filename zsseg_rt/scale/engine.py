"""The Engine of one ``zsseg batch`` actor or ``zsseg serve`` replica: built the same way in both, once per worker.
Ray-free (the workers call it inside Ray; nothing here imports Ray). Its options are the rows of
``zsseg_rt.options.ENGINE_OPTIONS`` that a worker takes (``workers=True``)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

from zsseg_rt.options import ENGINE_OPTIONS

__all__ = ["open_engine", "checked_engine_options", "check_worker_engine", "WORKER_PREPARE"]

WORKER_PREPARE = None  # Engine(prepare=) of every worker: one path from the first image to the last


def open_engine(bundle: str, classes: Union[str, Sequence[str]], **options: Any) -> Tuple[Any, Optional[int]]:
    """``(Engine, pixel limit)``: the worker's ``zsseg_rt.Engine`` on ``bundle`` with the vocabulary ``classes``
    and the pixel limit ``max_pixels`` resolved in the worker's process (``image_io.max_pixels_limit``: None reads
    ``$ZSSEG_MAX_PIXELS`` there, else 40 MP; 0: none); ``options`` are the Engine's that a worker takes
    (:func:`checked_engine_options`), nothing prepared behind its back (``prepare=None``)."""
    from zsseg_rt.console.signal_phases import phase
    from zsseg_rt.image_io import max_pixels_limit
    from zsseg_rt.runtime import Engine

    options = checked_engine_options(options, "open_engine()")
    phase("worker:model-load")  # (a test hook: python_tests/scale/test_ray_signal_phases.py)

    limit = max_pixels_limit(options.pop("max_pixels", None))
    engine = Engine(bundle, classes=classes, max_pixels=limit, prepare=WORKER_PREPARE, **options)
    return engine, limit


def checked_engine_options(options: Dict[str, Any], caller: str, leave_out: Sequence[str] = ()) -> Dict[str, Any]:
    """``options`` for :func:`open_engine`, checked where a worker's builder is called, not in the worker: a
    keyword that is no Engine option (the closest one named), one a worker does not take (the row's reason), or one
    of ``leave_out`` is refused in one line (TypeError); a value its row does not take, as the Engine refuses it
    (ValueError, ``threads: expected a whole number >= 0, got 'x'``), before any worker starts."""
    taken = [name for name in ENGINE_OPTIONS.worker_names() if name not in leave_out]
    for name in options:
        if name in ENGINE_OPTIONS and name not in taken:
            row = ENGINE_OPTIONS[name]
            why = row.not_in_workers if not row.workers else f"{caller} sets it itself"
            raise TypeError(
                f"{caller}: {name} is not an option of a Ray worker's Engine ({why}), got {name}={options[name]!r}"
            )
    ENGINE_OPTIONS.check_names(options, caller, taken)
    for name, value in options.items():
        ENGINE_OPTIONS[name].check_value(value)
    return dict(options)


def check_worker_engine(bundle: str, classes: Union[str, Sequence[str]], **options: Any) -> None:
    """Open the Engine a worker on this machine would open (:func:`open_engine`, the same arguments) in a child
    process, and raise here what the Engine raised there: a value the Engine refuses (``--precision fp16`` on ONNX
    Runtime, an int8 path whose accuracy gate failed, ...) is refused in one line before Ray starts, as ``zsseg
    camera`` refuses it, not by a deployment that fails 30-40 s later with the reason in Ray's logs only. A
    child, so that neither the model nor an accelerator's context stays in this process; it is killed if
    this one is interrupted meanwhile. Costs one model load.

    Raises:
        whatever :func:`open_engine` raised in the child (the exception itself, or a ``ValueError`` with its message
        when it cannot be passed between processes); RuntimeError when the child ended without an answer.
    """
    import os
    import pickle
    import subprocess
    import sys

    from zsseg_rt.console.signal_phases import PHASE_HOOK_ENV

    env = {name: value for name, value in os.environ.items() if name != PHASE_HOOK_ENV}  # not a phase of a worker
    code = "from zsseg_rt.scale.engine import _check_in_child; _check_in_child()"
    request = pickle.dumps((bundle, classes, options))
    done = subprocess.run([sys.executable, "-c", code], input=request, capture_output=True, env=env, check=False)
    try:
        outcome = pickle.loads(done.stdout) if done.stdout else RuntimeError("no answer")
    except Exception as exc:  # noqa: BLE001 - a garbled answer: said as such below
        outcome = RuntimeError(f"an unreadable answer ({exc})")
    if outcome is None:
        return
    if isinstance(outcome, RuntimeError) and done.returncode != 0 and not done.stdout:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(
            f"opening the replicas' Engine in a check process failed (exit code {done.returncode}): {last}"
        )
    raise outcome


def _check_in_child() -> None:
    """The child of :func:`check_worker_engine`: the request (pickled) on stdin, the answer on stdout: None, or the
    exception ``open_engine`` raised."""
    import pickle
    import sys

    bundle, classes, options = pickle.loads(sys.stdin.buffer.read())
    answer: Any = None
    try:
        open_engine(bundle, classes, **options)
    except Exception as exc:  # noqa: BLE001 - every refusal goes back to the parent, which raises it
        answer = exc
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - an exception that does not survive pickling: its message
            answer = ValueError(str(exc))
    sys.stdout.buffer.write(pickle.dumps(answer))
    sys.stdout.flush()
