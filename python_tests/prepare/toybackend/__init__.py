"""A toy built-in backend with a gated reduced precision, in the one folder a backend needs (``runner.py``: the
runner and the row's factory; ``precision.py``: its precisions from its row, its records, its gated choices) plus one
preparer module (``toy_prepare.py`` beside this folder, as ``zsseg_rt/prepare/<name>.py``). Its "int8" runs a copy of
the bundle's image encoder (so its gate passes exactly); docs/development.md "Adding a backend" walks through it."""

from zsseg_rt.runtime.backends import BackendSpec, WindowedGraphs

ROW = BackendSpec(
    name="toy",
    factory="toybackend.runner:open_toy",
    devices=("cpu",),
    precisions=("fp32", "int8"),
    default_precision="fp32",
    roles=WindowedGraphs.roles,
    summary="a toy backend with a gated int8 (the tests')",
    prepare="toy_prepare:prepare_toy",
    prepare_precisions=("int8",),
    gated_choices="toybackend.precision:gated_choices",
)
