"""``zsseg`` command line: one row per command in :data:`COMMANDS`, one module per command in this package.

A row is ``Command(name, "module:add_command", help, needs)``:

* ``add_command(subparsers)`` registers the command's parser (made with :func:`command_parser`, which gives it the
  row's help) with its arguments and ``func``. Its module holds the argparse wiring and the run that calls library
  code; it is imported only when its command runs (or when the whole parser tree is built), so ``zsseg -h`` and a
  command that needs no torch import no torch.
* ``help`` is the one-line help, written here only: ``zsseg -h`` lists it without importing the command's module, and
  the command's parser takes it from the row.
* ``needs``: what the command cannot run without beyond the core install (:class:`Needs`). Before the command runs,
  a missing module is refused in one line that says what to install.

A new command is a module with ``add_command`` and a row here.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

from zsseg_rt.needs import Needs  # the core's (zsseg_rt/needs.py); zsseg_rt.cli.Needs stays its alias
from zsseg_rt.options import did_you_mean

__all__ = [
    "COMMANDS",
    "Command",
    "Needs",
    "TORCH_SIDE_INSTALL",
    "build_parser",
    "command_help",
    "command_parser",
    "converting_families",
    "main",
]


# pyproject.toml's extras: torch = models, training (torch, open_clip); export = ONNX export and its verification
TORCH_SIDE = Needs(
    "the PyTorch side of zsseg_rt",
    "torch,export",
    ("torch", "open_clip", "onnx"),
    note="the runtime-only install runs bundles; it cannot make them",
)
TORCH = Needs("the PyTorch side of zsseg_rt", "torch", ("torch", "open_clip"))
OPENCV = Needs("OpenCV (images and video)", "opencv", ("cv2",))
RAY = Needs("Ray (the scale extra)", "scale", ("ray",))
TORCH_SIDE_INSTALL = TORCH_SIDE.install  # 'pip install "zsseg_rt[torch,export]"'


@dataclass(frozen=True)
class Command:
    """One ``zsseg`` command: see the module's docstring."""

    name: str
    add: str  # "module:function" that registers the command's parser on a subparsers object
    help: Union[str, Callable[[], str]]  # the one-line help (a function where it names registered families)
    needs: Tuple[Needs, ...] = ()

    def one_line(self) -> str:
        return self.help() if callable(self.help) else self.help


def converting_families() -> str:
    """The families whose official checkpoints ``zsseg convert`` takes, as prose ("A, B or C"; registry)."""
    from zsseg_rt.contract.registry import families, get_family

    labels = [get_family(name).label for name in families() if get_family(name).checkpoints.converts_official]
    return " or ".join([", ".join(labels[:-1]), labels[-1]]) if len(labels) > 1 else "".join(labels)


def _convert_help() -> str:
    return f"convert an official {converting_families()} checkpoint to a native one"


# In `zsseg -h` order.
COMMANDS: Tuple[Command, ...] = (
    Command(
        "export",
        "zsseg_rt.cli.export:add_command",
        "export a verified ONNX bundle from a model checkpoint",
        (TORCH_SIDE,),
    ),
    Command(
        "segment",
        "zsseg_rt.cli.segment:add_command",
        "segment photos, folders or globs with a bundle: overlays, colour masks, label maps",
        (OPENCV,),
    ),
    Command(
        "build-engine",
        "zsseg_rt.cli.build_engine:add_command",
        "build TensorRT 10 engines, or prepare a reduced precision of ONNX Runtime / OpenVINO / torch (accuracy-gated)",
    ),
    Command("convert", "zsseg_rt.cli.convert:add_command", _convert_help, (TORCH,)),
    Command(
        "camera",
        "zsseg_rt.cli.camera:add_command",
        "segment a live camera, RTSP/HTTP stream, video file or image folder",
        (OPENCV,),
    ),
    Command(
        "train",
        "zsseg_rt.cli.train:add_command",
        "train a model of a trainable family (inductive / transductive / fully supervised recipes)",
        (TORCH,),
    ),
    Command(
        "eval",
        "zsseg_rt.cli.eval:add_command",
        "evaluate a checkpoint or bundle: per-class IoU, mIoU(seen/unseen), hIoU, pAcc",
    ),
    Command(
        "batch",
        "zsseg_rt.cli.batch:add_command",
        "segment a folder / list file / URI of images on a Ray cluster: label PNGs + manifest.jsonl",
        (RAY,),
    ),
    Command(
        "serve",
        "zsseg_rt.cli.serve:add_command",
        "serve a bundle over HTTP on Ray Serve (request batching, metrics)",
        (RAY,),
    ),
    Command(
        "profile",
        "zsseg_rt.cli.profile:add_command",
        "per-stage latency profile of a bundle (p50/p90/p99, FPS), backends side by side",
        (OPENCV,),
    ),
    Command(
        "demo",
        "zsseg_rt.cli.demo:add_command",
        "end-to-end: export (or reuse) a bundle and segment a sample photo",
        (TORCH_SIDE, OPENCV),
    ),
)


def _row(name: str) -> Command:
    for row in COMMANDS:
        if row.name == name:
            return row
    raise LookupError(f"no zsseg command {name!r} in zsseg_rt.cli.COMMANDS")


def command_help(name: str) -> str:
    """The one-line help of command ``name`` (its row's)."""
    return _row(name).one_line()


def command_parser(subparsers, name: str, **options) -> argparse.ArgumentParser:
    """The parser of command ``name`` on ``subparsers``, with its row's help (``options``: ``add_parser``'s others,
    e.g. ``description``). Every command module's ``add_command`` makes its parser with this."""
    return subparsers.add_parser(name, help=command_help(name), **options)


def _description() -> str:
    """The top-level help: what zsseg does and every registered model family (the registry; torch-free)."""
    from zsseg_rt.contract.registry import families, get_family

    names = ", ".join(get_family(name).display_name for name in families())
    return f"Open-vocabulary semantic segmentation: label every pixel with class names given at run time. Families: {names}."


def _command_in(argv: List[str]) -> str:
    """The subcommand named on a command line ("" when none, e.g. `zsseg -h`)."""
    return next((token for token in argv if not token.startswith("-")), "")


def _register(subparsers, row: Command) -> None:
    """Build ``row``'s parser in full (its module imported); a module that cannot be imported gives a parser that
    says what the command needs instead."""
    from zsseg_rt.aliases import resolve_reference

    try:
        add_command = resolve_reference(row.add)
    except ImportError as exc:
        needs = " and ".join(f"{needs.what}: {needs.install}" for needs in row.needs) or "a dependency"
        p = subparsers.add_parser(row.name, help=f"(unavailable: needs {needs})")

        def unavailable(_args, _exc=exc, _needs=needs):
            from zsseg_rt.console.errors import CliError

            raise CliError(f"this command needs {_needs} ({_exc})")

        p.set_defaults(func=unavailable)
        return
    add_command(subparsers)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose "unrecognized arguments" names the closest option of the command run ("did you mean
    '--precision'?"), or the commands that have an option this one does not ("--live is an option of zsseg camera"),
    on the command's own parser (its usage shown); a required option missing because it was misspelt says so too
    ("--clases: did you mean '--classes'?"). The subcommands' parsers are of this class too."""

    _argv: List[str] = []  # the command line being parsed (a subcommand's error reads it)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ArgumentParser._argv = list(sys.argv[1:] if args is None else args)
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self._chosen(parsed)
            hints = [hint for hint in map(parser._hint, extras) if hint]
            more = f" ({'; '.join(hints)})" if hints else ""
            parser.error(f"unrecognized arguments: {' '.join(extras)}{more}")
        return parsed

    def error(self, message: str):  # type: ignore[override]
        if message.startswith("the following arguments are required:"):  # one of them misspelt?
            own = {flag for action in self._actions for flag in action.option_strings}
            given = [token.split("=", 1)[0] for token in ArgumentParser._argv if token.startswith("--")]
            hints = [hint for hint in map(self._hint, [flag for flag in given if flag not in own]) if hint]
            message += f" ({'; '.join(hints)})" if hints else ""
        super().error(message)

    def _hint(self, extra: str) -> str:
        """What to say of an option this parser does not take: the commands that take it, else its closest one."""
        flag = extra.split("=", 1)[0]
        if not flag.startswith("--"):
            return ""
        command = self.prog.split()[-1]
        elsewhere = [name for name, flags in _flags_of_commands().items() if flag in flags and name != command]
        if elsewhere and command in _flags_of_commands():
            return f"{flag} is an option of {', '.join(f'zsseg {name}' for name in elsewhere)}, not of {self.prog}"
        known = [option for action in self._actions for option in action.option_strings if option.startswith("--")]
        hint = did_you_mean(flag, known)
        return f"{flag}: {hint}" if hint else ""

    def _chosen(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The parser of the subcommand ``parsed`` ran (this parser when none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(chosen, ArgumentParser):
                    return chosen._chosen(parsed)
        return self


@functools.lru_cache(maxsize=1)
def _flags_of_commands() -> Dict[str, frozenset]:
    """Each command's options (every parser built in full: on an error's path only)."""
    parser = build_parser()
    found: Dict[str, frozenset] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = frozenset(flag for each in sub._actions for flag in each.option_strings)
    return found


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The ``zsseg`` parser. ``command``: the subcommand about to run, the only one whose module is imported and
    whose parser is built in full (the others are there by name and help); None builds every command in full."""
    import zsseg_rt

    parser = ArgumentParser(prog="zsseg", description=_description())
    parser.add_argument("--version", action="version", version=f"zsseg_rt {zsseg_rt.__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for row in COMMANDS:
        if command is None or command == row.name:
            _register(sub, row)
        else:
            sub.add_parser(row.name, help=row.one_line())
    for subparser in sub.choices.values():  # `zsseg CMD ... --debug` works as well as `zsseg --debug CMD ...`
        subparser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error"
        )
    return parser


def _checked(func: Callable, needs: Tuple[Needs, ...]) -> Callable:
    """``func`` preceded by the check of what its command needs: a missing module is a one-line refusal."""

    def run(args) -> int:
        for each in needs:
            missing = each.missing()
            if missing:
                from zsseg_rt.console.errors import CliError

                raise CliError(each.refusal(args.command, missing))
        return func(args)

    return run


def main(argv: Optional[List[str]] = None) -> int:
    """``zsseg`` entry point. A failing command prints one line (``zsseg CMD: error: ...``) and returns non-zero;
    ``--debug`` shows the traceback instead."""
    from zsseg_rt.console.errors import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    if getattr(args, "debug", False):
        os.environ["ZSSEG_RAY_LOGS"] = "1"  # zsseg_rt.scale: Ray's own log lines shown as well
    args.engine_flags = functools.partial(_engine_flags, args.command)  # read by an error's advice (console.errors)
    return run_command(_checked(args.func, _row(args.command).needs), args)


def _engine_flags(command: str) -> List[str]:
    """The Engine flags ``zsseg command`` has (none for a command that opens no Engine from its flags): an error's
    advice names no other (``zsseg batch`` has no ``--prepare``)."""
    from zsseg_rt.console.arguments import engine_rows

    try:
        return [str(row.flag) for row in engine_rows(command)]
    except ValueError:
        return []
