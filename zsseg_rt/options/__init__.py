"""Every option of ``zsseg_rt.Engine``, declared once: one row each (:class:`EngineOption`) in :data:`ENGINE_OPTIONS`.

A row holds the option's name, default, type, help (the command line's) and its longer Python description, the
command-line flag (None: Python only), its choices (a tuple, or ``"module:function"`` naming the registry that lists
them: the backend table's rows, read when a parser is built, never imported from here), the bundle kinds (runtime
pipelines) that take it and the refusal the others give, and whether a Ray worker (``zsseg batch``, ``zsseg serve``)
takes it. Everything else reads the table:

* ``Engine(bundle, **options)`` checks its keywords here (a misspelt one: "did you mean 'precision'?") and each value
  by its row before anything opens, fills in the defaults and hands the pipeline one :class:`OptionValues`, which
  the pipelines and backends read by name; its docstring's option list is generated from the rows; a row's ``kinds``
  refuse it on other bundles (:meth:`OptionTable.check_kind`);
* every command that opens an Engine gets the same flags with the same help and value checks
  (``zsseg_rt.console.arguments.add_engine_arguments``) and turns them back into keywords (``engine_kwargs``);
* a Ray worker's options are checked against the rows whose ``workers`` is True (``zsseg_rt.scale.engine``);
* the command line's error advice turns ``Engine(..., name=value)`` into the row's flag (``zsseg_rt.console.errors``).

Adding an option is one row here plus the code that uses it (docs/development.md, "Engine options").

A :class:`Preset` is a named set of Engine options and ``VideoSegmenter`` keywords: :data:`LIVE` (``zsseg camera
--live``) is one object that both take (``Engine(bundle, preset=LIVE)``; the ``VideoSegmenter`` takes it from its
Engine) and that says what it trades. The standard library and ``zsseg_rt.aliases`` only (the foundation layer).

The modules: :mod:`~zsseg_rt.options.table` (the row and table types), :mod:`~zsseg_rt.options.engine_rows` (the
Engine's rows), :mod:`~zsseg_rt.options.presets`; a run's options (a ``Session``'s, ``zsseg camera``'s flags), the
sibling table: :mod:`~zsseg_rt.options.run_table` (``RunOption``, ``RunOptionTable``) and
:mod:`~zsseg_rt.options.run_rows` (:data:`RUN_OPTIONS`). Both tables, the output kinds, the sources, the backends
and the model families are registries of one kind: :class:`~zsseg_rt.options.registry.Registry` (register, names,
get with did-you-mean, ``adding`` for a block, an optional entry-point group).
"""

from __future__ import annotations

from zsseg_rt.options.engine_rows import ENCODER_VARIANTS, ENGINE_OPTIONS, POSTPROCESS_KERNELS
from zsseg_rt.options.presets import LIVE, PRESETS, Preset, preset_named
from zsseg_rt.options.registry import Registry
from zsseg_rt.options.run_rows import RUN_OPTIONS
from zsseg_rt.options.run_table import RunOption, RunOptionTable
from zsseg_rt.options.table import EngineOption, OptionTable, OptionValues, did_you_mean

__all__ = [
    "ENCODER_VARIANTS",
    "ENGINE_OPTIONS",
    "EngineOption",
    "LIVE",
    "OptionTable",
    "OptionValues",
    "POSTPROCESS_KERNELS",
    "PRESETS",
    "Preset",
    "RUN_OPTIONS",
    "Registry",
    "RunOption",
    "RunOptionTable",
    "did_you_mean",
    "preset_named",
]
