"""One-line error messages for every ``zsseg`` subcommand (``--debug`` shows the traceback instead), and the one
rule for signals.

``run_command(args)`` calls the subcommand and turns an exception into one line on stderr,
``zsseg <command>: error: <what was wrong and what to do>``, and a non-zero exit code.

Signals: while a command runs, SIGTERM (what ``docker stop``, systemd, Kubernetes and CI runners send) is handled as
Ctrl-C (SIGINT) is: it raises :class:`Terminated`, a ``KeyboardInterrupt``, in the main thread, so every cleanup that
runs on Ctrl-C runs on SIGTERM too (an export's staging folder and lock removed, output files finalised, Ray shut
down). A command ended by a signal exits with ``128 + the signal's number`` (:func:`exit_code_for_signal`), the
shell's convention: 130 after Ctrl-C, 143 after SIGTERM, whatever the command (``zsseg camera`` and ``zsseg serve``,
which stop cleanly on their own handlers, return the same codes). Each signal the handlers raise for is recorded
(:func:`signal_of`): Ray's ``ray.get``, inside which a handler may run, re-raises its own plain ``KeyboardInterrupt``
in place of a ``Terminated``. Inside calls into Ray a command holds the signals instead (``zsseg_rt.console.signal_phases``).
"""

from __future__ import annotations

import contextlib
import errno
import re
import signal
import sys
import threading
import traceback
from typing import Callable, Iterable, Iterator, List, Optional

from zsseg_rt.errors import ZssegError
from zsseg_rt.options import ENGINE_OPTIONS

__all__ = [
    "CliError",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "Terminated",
    "command_line_advice",
    "exit_code_for_signal",
    "format_error",
    "interrupt_handler",
    "interrupted",
    "refuse_stdout",
    "run_command",
    "signal_of",
    "sigterm_interrupts",
]

EXIT_ERROR = 1


def exit_code_for_signal(signum: int) -> int:
    """The exit code of a command ended by signal ``signum``: ``128 + signum`` (130 SIGINT, 143 SIGTERM), as a shell
    reports a process a signal ended."""
    return 128 + int(signum)


EXIT_INTERRUPTED = exit_code_for_signal(signal.SIGINT)  # 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises ``KeyboardInterrupt`` (it is one: the same cleanup runs); ``signum`` is
    the signal's number."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


_received: List[int] = []  # the signals interrupt_handler raised for, first first (signal_of)


def interrupt_handler(signum, _frame) -> None:
    """The command line's handler of SIGINT and SIGTERM: records the signal (:func:`signal_of`) and raises
    ``KeyboardInterrupt`` (SIGINT) or :class:`Terminated` (SIGTERM; one too: the same cleanup runs)."""
    _received.append(int(signum))
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def signal_of(exc: KeyboardInterrupt) -> int:
    """The signal that interrupted the command: the exception's own (:class:`Terminated`), else the first one the
    command's handler raised for (a plain ``KeyboardInterrupt`` may stand in for it: Ray re-raises its own when a
    handler raised inside ``ray.get``), else SIGINT (Python's own Ctrl-C)."""
    signum = getattr(exc, "signum", None)
    if signum is None:
        signum = _received[0] if _received else signal.SIGINT
    return int(signum)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While in this block, SIGTERM raises :class:`Terminated` in the main thread and SIGINT ``KeyboardInterrupt``,
    each recorded (:func:`interrupt_handler`; SIGINT only where Python's own handler was set: an ignored Ctrl-C, as
    under ``nohup`` or ``&`` in a script, stays ignored); the previous handlers are put back after it. Elsewhere than
    in the main thread (where no handler can be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    del _received[:]
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt_handler)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, interrupt_handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


MAX_MESSAGE_CHARS = 600

# Built-in exception types whose messages are meant for the user (raised by the package for bad input or by the
# system for missing/unwritable files). Exceptions defined in zsseg_rt are user-facing too.
_USER_FACING = (OSError, ValueError, ImportError, MemoryError, LookupError, RuntimeError)

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}  # the disk or the user's quota is full
_HINTS = {
    MemoryError: "not enough memory for this input: use a smaller image (--max-pixels), fewer classes, or --mode fast",
    PermissionError: "check that you may read the input and write the output path",
}


# Library messages advise Engine(...) arguments ("raise the limit with Engine(..., max_windows=N)"). On the command
# line that advice names the flag that sets the argument (its row of zsseg_rt.options.ENGINE_OPTIONS), or says that no
# flag does.
_ENGINE_ADVICE = re.compile(r"Engine\(\.\.\., (\w+)=([^()]*?)\)")


def command_line_advice(message: str, command: str = "", flags: Optional[Iterable[str]] = None) -> str:
    """``message`` with each ``Engine(..., name=value)`` turned into the command-line flag that sets ``name``
    (``--max-pixels N``; a value whose flag text differs written as that text, ``--prepare none``), or, where no flag
    does, into the Python argument with a note that no flag sets it. ``flags``: the Engine flags ``zsseg command``
    has (None: every command's); a flag it lacks is never named (``zsseg batch`` has no ``--prepare``),
    the Python argument is, with that note."""
    taken = None if flags is None else set(flags)

    def flag(match: "re.Match[str]") -> str:
        name, value = match.group(1), match.group(2).strip()
        option = ENGINE_OPTIONS.flag_of(name)
        if option is None:
            return f"the Python argument Engine(..., {name}={value}) (no command-line flag sets {name})"
        if taken is not None and option not in taken:
            return f"the Python argument Engine(..., {name}={value}) (zsseg {command} has no {option})"
        if value == "True":
            return option
        texts = {repr(value): text for text, value in ENGINE_OPTIONS[name].cli_values}
        return f"{option} {texts.get(value, value.strip(chr(39) + chr(34)))}"

    return _ENGINE_ADVICE.sub(flag, message)


class CliError(ZssegError):
    """A user error the CLI itself found (bad argument, output path problem); the message says what to do. One of
    the package's errors (``zsseg_rt.errors.ZssegError``)."""


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 40].rstrip() + " ... (--debug shows the full message)"
    return line


def _is_user_facing(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith("zsseg_rt") or module == "cv2" or isinstance(exc, _USER_FACING)


def format_error(exc: BaseException, command: str = "", flags: Optional[Iterable[str]] = None) -> str:
    """The one-line description of ``exc``: its message (its advice in the flags of ``zsseg command``, which has the
    Engine flags ``flags``: :func:`command_line_advice`), a hint where the type calls for one, and for unexpected
    exception types their name and a pointer to ``--debug``."""
    said = getattr(exc, "cli", "") if isinstance(exc, ZssegError) else ""  # its command-line words, where it has them
    message = _one_line(command_line_advice(said or str(exc), command, flags)) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:  # "[Errno 2] ..." -> "No such file...: 'x'"
        message = _one_line(f"{exc.strerror}: {exc.filename!r}")
    for kind, hint in _HINTS.items():
        if isinstance(exc, kind):
            message = f"{message} ({hint})" if str(exc) else hint
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        message = f"{message} (free space there, or write to another disk)"
    if not _is_user_facing(exc):
        message = f"unexpected {type(exc).__name__}: {message} (rerun with --debug for the traceback and report it)"
    return message


def interrupted(exc: KeyboardInterrupt, command: str, debug: bool = False) -> int:
    """Say that ``zsseg command`` was interrupted (Ctrl-C, or SIGTERM: :class:`Terminated`) and return its exit code
    (128 + the signal); ``debug``: its traceback first."""
    signum = signal_of(exc)
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(f"zsseg {command}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
    return exit_code_for_signal(signum)


def refuse_stdout(args, instead: str) -> None:
    """Refuse ``-`` (standard output, by the usual convention) given to a file or folder output of ``args``: every
    output is written under a temporary name and put in place when the run ends, which a pipe cannot be (``-o -``
    made a folder named ``-``, ``--save-json -`` said "expected a .json file name, got 'none'"). The outputs are the
    command's ``-o`` and every run option row that ``writes`` (``--labels-out``, ``--save-json``, ``--tracks-out``,
    ``--stats-json``: a Session refuses the same values in its words, ``RunOption.check_value``); ``instead``: what
    prints on standard output instead.

    Raises:
        CliError: one line naming the flag.
    """
    from zsseg_rt.options.run_rows import RUN_OPTIONS
    from zsseg_rt.options.run_table import STANDARD_OUTPUT, standard_output_refusal

    flags = {"output": "-o", "outputs": "-o"}  # the command's own -o (segment's table kinds: args.outputs)
    flags.update((row.name, row.flag) for row in RUN_OPTIONS if row.writes and row.flag)
    for name, flag in flags.items():
        given = getattr(args, name, None)
        for value in given if isinstance(given, (list, tuple)) else [given]:
            if value == STANDARD_OUTPUT:
                raise CliError(standard_output_refusal(f"{flag} {STANDARD_OUTPUT}", instead))


@contextlib.contextmanager
def cli_warnings(command: str) -> Iterator[None]:
    """While a command runs, a :class:`~zsseg_rt.errors.CliWarning` is printed in the command line's words, one line
    ``zsseg CMD: warning: ...`` (or nothing, when it has none), instead of Python's ``file:line: RuntimeWarning: ...``
    with advice on Python arguments; other warnings as Python shows them."""
    import warnings

    from zsseg_rt.errors import CliWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if isinstance(message, CliWarning):
            if message.cli:
                print(f"zsseg {command}: warning: {message.cli}", file=sys.stderr)
            return
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def run_command(func: Callable, args) -> int:
    """Run ``func(args)``; return its exit code, or print one line and return non-zero if it raised.

    SIGTERM is handled as Ctrl-C while it runs (:func:`sigterm_interrupts`); either returns ``128 + signal``.
    ``args.debug`` (``--debug``) lets an error propagate with its traceback instead (an interruption prints its
    traceback and returns its code).
    """
    command = getattr(args, "command", None) or "zsseg"
    try:
        with sigterm_interrupts(), cli_warnings(command):
            return int(func(args) or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): the command's cleanup has run
        return interrupted(exc, command, bool(getattr(args, "debug", False)))
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one line (or a traceback with --debug)
        if getattr(args, "debug", False):
            traceback.print_exc()
            return EXIT_ERROR
        engine_flags = getattr(args, "engine_flags", None)  # the command's Engine flags (zsseg_rt.cli.main)
        flags = engine_flags() if callable(engine_flags) else None
        print(f"zsseg {command}: error: {format_error(exc, command, flags)}", file=sys.stderr)
        return EXIT_ERROR
