"""The contract between the engines and the model families, below both: what a family is
(:mod:`~zsseg_rt.contract.family`), the one registry that names them (:mod:`~zsseg_rt.contract.registry`) and the
building blocks they share (:mod:`~zsseg_rt.contract.common`: base config, CLIP weights and text, native and
official checkpoints, the PyTorch inference glue).

Layering (enforced by ``python_tests/test_architecture.py``): the engines (``export``, ``eval``, ``train``) import
this package and never a family; the families (``zsseg_rt.models.<family>``) stand above the engines and call
their public toolkit APIs. The registry finds the families by name at run time (``zsseg_rt.models`` and the
``zsseg_rt.families`` entry points), so nothing here imports a family.
"""
