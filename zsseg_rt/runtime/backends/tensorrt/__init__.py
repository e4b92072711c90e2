"""The TensorRT backend, in one place: its runner and the row's factory (``runner.py``) and the engines it runs
(``engines.py``: found by their records, deserialised, executed through the CUDA driver shim). The engine cache's
keys and records are ``runtime/engine_cache.py`` (shared with the device pipeline); engines are built by
``zsseg_rt.prepare.tensorrt.build``."""

from .engines import TensorRTRunner, find_engines, import_tensorrt, load_engine
from .runner import TrtRunner, open_tensorrt

__all__ = ["TensorRTRunner", "TrtRunner", "find_engines", "import_tensorrt", "load_engine", "open_tensorrt"]
