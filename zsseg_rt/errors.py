"""Exception types shared by layers that must not import each other, and the one rule for failed writes. A leaf
module: it imports nothing of the package."""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
from typing import Iterator, Union

__all__ = [
    "BundleError",
    "CliWarning",
    "OptionError",
    "WRITE_FAILURES",
    "ZssegError",
    "FLAG_WORDS",
    "flag_words",
    "naming_path",
    "with_path",
]


class ZssegError(Exception):
    """The base of the errors the package raises for what its caller gave or asked (an option, an output, a source,
    a bundle): one line in a Python caller's words (its arguments' names, never a command-line flag); ``cli``, the
    same refusal in the command line's words where they differ (the flags that set those arguments), which ``zsseg``
    prints instead ("": the message says it for both). Each subclass keeps the built-in base its callers catch
    (``ValueError``, ``RuntimeError``, ``OSError``)."""

    def __init__(self, message: str = "", *args: object, cli: str = ""):
        super().__init__(message, *args)
        self.cli = cli


# Whether the command line speaks: set by ``zsseg_rt.console.run_arguments.in_flag_words`` around a command's run, so
# that what the library says meanwhile (a note, a refusal's advice) names the flags; here, below every layer that says
# something, so that none of them imports the command line's modules to ask.
FLAG_WORDS: "contextvars.ContextVar[bool]" = contextvars.ContextVar("zsseg_rt_flag_words", default=False)


def flag_words() -> bool:
    """Whether the command line speaks (inside ``zsseg_rt.console.run_arguments.in_flag_words``): what the library
    says while it runs (a Session's output plan: ``--overwrite`` or ``overwrite=True``) is then in the flags' words."""
    return FLAG_WORDS.get()


class OptionError(ZssegError, ValueError):
    """An option's value refused (``max_frames: expected a whole number >= 1, or None, got 0``), before anything
    opens; ``option``: its name."""

    def __init__(self, message: str, option: str = "", cli: str = ""):
        super().__init__(message, cli=cli)
        self.option = option


class BundleError(ZssegError, RuntimeError):
    """A bundle is missing, incomplete, corrupted or incompatible (``zsseg_rt.bundle.BundleError``)."""


class CliWarning(RuntimeWarning):
    """A warning that has its own words on the command line: ``cli``, one line naming flags instead of Python
    arguments ("" says nothing there). ``zsseg`` prints ``zsseg CMD: warning: <cli>`` instead of Python's
    ``file:line: RuntimeWarning: ...`` (``zsseg_rt.console.errors.run_command``); in Python it is a RuntimeWarning."""

    def __init__(self, message: str, cli: str = ""):
        super().__init__(message)
        self.cli = cli


# The errors of a write that the disk refused (full, over quota, file too large, read-only, I/O error): Python raises
# them from write() / flush() / close() without the file's name, so "[Errno 28] No space left on device" named no path.
WRITE_FAILURES = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG, errno.EROFS, errno.EIO) if code
)


def with_path(exc: BaseException, path: Union[str, "os.PathLike[str]"], what: str = "") -> BaseException:
    """``exc``, or for a refused write (:data:`WRITE_FAILURES`) that names no file an ``OSError`` naming ``path``:
    ``No space left on device (writing the bundle): '/data/bundles/.zsseg-export-x'`` (``what`` in the parentheses).
    Other errors, and those that name their file already, are returned unchanged."""
    code = getattr(exc, "errno", None)
    if not isinstance(exc, OSError) or exc.filename is not None or code is None or code not in WRITE_FAILURES:
        return exc
    reason = exc.strerror or os.strerror(code)
    return OSError(code, f"{reason} ({what})" if what else reason, os.fspath(path))


@contextlib.contextmanager
def naming_path(path: Union[str, "os.PathLike[str]"], what: str = "") -> Iterator[None]:
    """Re-raise a refused write raised in the block without a file name as one naming ``path`` (:func:`with_path`)."""
    try:
        yield
    except OSError as exc:
        named = with_path(exc, path, what)
        if named is exc:
            raise
        raise named from exc
