"""What a command or an output cannot run without beyond the core install: :class:`Needs` (Python modules, looked up
with ``importlib.util.find_spec`` and never imported, and the extras of pyproject.toml that install them), and the
one-line refusal when one is missing. The core's: ``zsseg_rt.stream.Session`` checks an output's
packages itself; ``zsseg_rt.cli.Needs`` is this class (the CLI's rows name what each command needs). Standard library
only (the CLI's ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

__all__ = ["Needs"]


@dataclass(frozen=True)
class Needs:
    """What a command cannot run without beyond the core install: Python modules (looked up with
    ``importlib.util.find_spec``, never imported) and the extras of pyproject.toml that install them."""

    what: str  # how the refusal names it: "zsseg CMD needs <what>, ..."
    extras: str  # pip install "zsseg_rt[<extras>]"
    modules: Tuple[str, ...]
    note: str = ""  # said after the install line

    @property
    def install(self) -> str:
        return f'pip install "zsseg_rt[{self.extras}]"'

    def missing(self) -> List[str]:
        """The modules not installed here."""
        import importlib.util

        return [name for name in self.modules if importlib.util.find_spec(name) is None]

    def refusal(self, command: str, missing: Sequence[str], who: str = "") -> str:
        """``zsseg CMD needs WHAT, which this environment lacks (...): pip install ...``; ``who`` names the needing
        one instead of the command (a Python caller's ``Session``)."""
        note = f" ({self.note})" if self.note else ""
        return (
            f"{who or 'zsseg ' + command} needs {self.what}, which this environment lacks ({', '.join(missing)} not installed): "
            f"{self.install}{note}"
        )
