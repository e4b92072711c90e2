"""The one registry idiom of zsseg_rt (timm's ``register_model`` / ``list_models`` in one class): rows by name, in
order, each with a ``name``.

* ``register(row)`` puts a row in (a name another row has is refused unless ``replace=True``; ``first=True`` puts it
  before the others, for a table read in order whose first match wins: the output kinds, the sources);
* ``names()`` lists them (and the names of an entry-point group's plugins not loaded yet);
* ``get(name)`` returns one, loading an entry point of that name on first use, or raises a one-line error
  ``unknown output kind 'vidoe': did you mean 'video'?`` (the registry's ``error`` class: KeyError by default);
* ``adding(row)`` is a context manager that holds the row in the table while in the block (a test's toy row, never a
  monkeypatched tuple); ``kept()`` puts the table back as it was after a block that registered rows;
* ``group``: the ``importlib.metadata`` entry-point group of other distributions' rows (``zsseg_rt.backends``,
  ``zsseg_rt.families``); ``load(entry)`` registers what one names (default: ``entry.load()`` is the row).

The Engine's and the run's option tables (:class:`zsseg_rt.options.table.RowTable`), the output kinds
(``zsseg_rt.outputs.kinds.OUTPUT_KINDS``), the frame sources (``zsseg_rt.stream.sources.SOURCE_KINDS``), the backends
(``zsseg_rt.runtime.backends.table.BACKENDS``) and the model families (``zsseg_rt.contract.registry.FAMILIES``) are
registries of this kind. The standard library only (the foundation layer).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
import typing
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set

__all__ = ["Registry", "did_you_mean"]


# importlib.metadata.entry_points(group=...) reads the entry_points.txt of every installed distribution (8.5 ms here),
# and every Engine() reads the backends' group 3 times (its option checks): the answer is kept per group while the
# path is the same, its entries and their modification times (a distribution installed or removed changes its
# folder's, which is how importlib.metadata itself notices one; an entry_points.txt edited in place is not seen).
_ENTRY_POINTS: Dict[str, tuple] = {}


def _path_state() -> tuple:
    state: List[tuple] = []
    for entry in sys.path:
        where = os.path.abspath(entry or ".")  # "" is the current directory, whichever it is now
        try:
            state.append((where, os.stat(where).st_mtime_ns))
        except OSError:
            state.append((where, None))
    return tuple(state)


def _group_entry_points(group: str) -> tuple:
    from importlib.metadata import entry_points

    state = _path_state()
    known = _ENTRY_POINTS.get(group)
    if known is None or known[0] != state:
        known = _ENTRY_POINTS[group] = (state, tuple(entry_points(group=group)))
    return known[1]


def did_you_mean(given: str, known: Iterable[str]) -> str:
    """``"did you mean 'precision'?"`` for the closest of ``known`` to ``given`` (difflib), or ``""`` when none is
    close."""
    close = difflib.get_close_matches(given, list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


class _Named(typing.Protocol):
    @property
    def name(self) -> str: ...


T = typing.TypeVar("T", bound=_Named)


class Registry(typing.Generic[T]):
    """Rows by name, in order (see the module).

    Args:
        what: what a row is, in messages ("output kind", "backend").
        rows: the built-in rows, in order.
        error: the exception class ``get`` raises for an unknown name (KeyError; ValueError where callers expect it).
        group: the entry-point group of plugins (None: none).
        load: ``load(entry)`` registers the row(s) an entry point names (default: ``self.register(entry.load())``).
        populate: registers the built-in rows that are registered by importing their modules (the families'
            :func:`zsseg_rt.contract.registry.discover`), once: :meth:`kept` calls it before taking its copy, so that
            a first import inside the block does not register rows the block then forgets (and never registers again).
    """

    def __init__(
        self,
        what: str,
        rows: Iterable[T] = (),
        *,
        error: Callable[[str], Exception] = KeyError,
        group: Optional[str] = None,
        load: Optional[Callable[[Any], Any]] = None,
        populate: Optional[Callable[[], None]] = None,
    ):
        self.what = what
        self.error = error
        self.group = group
        self._load = load
        self._populate = populate
        self._rows: Dict[str, T] = {}
        self._loaded: Set[str] = set()  # entry points loaded (a family's entry point may be named otherwise)
        for row in rows:
            self.register(row)

    # ---- rows in and out --------------------------------------------------------------------------------------
    def register(self, row: T, *, replace: bool = False, first: bool = False) -> T:
        """Put ``row`` in (ValueError for a name another row has, unless ``replace``; the same row again is no
        change); ``first``: before every other row. Returns ``row`` (a decorator's use)."""
        name = row.name
        if name in self._rows and not replace and self._rows[name] != row:
            raise ValueError(f"{self.what} {name!r} is already registered")
        if first:
            self._rows = {name: row, **{key: value for key, value in self._rows.items() if key != name}}
        else:
            self._rows[name] = row
        return row

    def unregister(self, name: str) -> Optional[T]:
        """Take the row ``name`` out (None: there was none); an entry point of that name may be loaded again."""
        self._loaded.discard(name)
        return self._rows.pop(name, None)

    @contextlib.contextmanager
    def adding(self, row: T, *, first: bool = False) -> Iterator[T]:
        """The table with ``row`` while in the block (a name another row has is refused: ``register``), as it was
        before after it."""
        with self.kept():
            yield self.register(row, first=first)

    @contextlib.contextmanager
    def kept(self) -> Iterator["Registry[T]"]:
        """The table as it is now again after the block, whatever was registered in it (a test of a registering
        function: ``register_backend``, ``register_family``)."""
        if self._populate is not None:
            self._populate()  # the rows registered by importing their modules: in the copy, not only in the block
        before, loaded = dict(self._rows), set(self._loaded)
        try:
            yield self
        finally:
            self._rows, self._loaded = before, loaded

    # ---- reading ----------------------------------------------------------------------------------------------
    def names(self) -> List[str]:
        """Every row's name, in order, then the names of the group's entry points not loaded yet."""
        return list(self._rows) + [entry.name for entry in self.entry_points() if entry.name not in self._rows]

    def get(self, name: str) -> T:
        """The row ``name``: registered, or an entry point of that name (loaded now).

        Raises:
            ``error`` (KeyError by default): no such row, in one line with the closest name or the known ones.
        """
        row = self.find(name)
        if row is not None:
            return row
        for entry in self.entry_points():
            if entry.name == name:
                self.load(entry)
                if name in self._rows:
                    return self._rows[name]
        raise self.error(self.unknown(name))

    def find(self, name: str) -> Optional[T]:
        """The registered row ``name``, or None (no entry point is loaded)."""
        return self._rows.get(name)

    def unknown(self, name: Any) -> str:
        """The one-line refusal of a name no row has: ``unknown backend 'tensorrtt': did you mean 'tensorrt'?``."""
        known = self.names()
        hint = did_you_mean(str(name), known) if isinstance(name, str) else ""
        return f"unknown {self.what} {name!r}: " + (hint if hint else f"expected one of {', '.join(known)}")

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._rows.values()))

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._rows)})"

    # ---- plugins ----------------------------------------------------------------------------------------------
    def entry_points(self) -> List[Any]:
        """The group's entry points not loaded yet (none without a group)."""
        if self.group is None:
            return []
        return [entry for entry in _group_entry_points(self.group) if entry.name not in self._loaded]

    def load(self, entry: Any) -> None:
        """Register what the entry point ``entry`` names (``load``, else its object is the row), once."""
        if self._load is not None:
            self._load(entry)
        else:
            self.register(entry.load())
        self._loaded.add(entry.name)

    def load_all(self, skip: tuple = ()) -> None:
        """Load every entry point of the group not loaded yet; an exception of a class in ``skip`` leaves that one
        out (listed by name, refused with its reason when asked for)."""
        for entry in self.entry_points():
            if entry.name in self._rows:
                continue
            try:
                self.load(entry)
            except skip:
                continue
