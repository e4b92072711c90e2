"""TensorRT engines for this GPU (``build.py``: parse, build, gate, record; ``precision.py``: the precision recipes;
``memory.py``: the builder's workspace and peak memory) and the static checks of a bundle's graphs against
TensorRT's ONNX parser, which ``zsseg export`` runs too (``compat.py``, ``op_rules.py`` with its operator table in
``data/``, ``profile_check.py``). Import the modules directly; the runner is ``zsseg_rt.runtime.backends.tensorrt``.
"""
