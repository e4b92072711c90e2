"""Training checkpoints: atomic writes, RNG capture/restore, finding the newest readable checkpoint.

A checkpoint is a ``torch.save`` dict readable with ``torch.load(weights_only=True)`` (only tensors, numbers,
strings, lists and dicts)::

    {"format": "zsseg_rt.train.v1", "iteration": int (iterations completed), "model": full state_dict,
     "model_config": dict, "train_config": dict, "optimizer": ..., "schedule": ..., "scaler": ... | None,
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor], "numpy": {...}, "python": [...]}}

Written to ``<name>.tmp-<pid>`` in the same directory, flushed + fsynced, then ``os.replace``d, so a run
killed mid-write never leaves a truncated checkpoint under the final name; ``last_checkpoint`` (a text
file naming the newest one) is replaced the same way afterwards.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from zsseg_rt.errors import naming_path

FORMAT = "zsseg_rt.train.v1"
POINTER = "last_checkpoint"

__all__ = [
    "atomic_save",
    "save_checkpoint",
    "prune_checkpoints",
    "checkpoint_name",
    "load_checkpoint",
    "model_from_config",
    "load_trained_model",
    "find_resume_checkpoint",
    "capture_rng",
    "restore_rng",
    "FORMAT",
]


class _KeptWriteError:
    """A binary file for ``torch.save`` that keeps the ``OSError`` a write raised: torch reports a failed write as
    "unexpected pos N vs M", the disk's reason (full) is what to say."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.error: Optional[OSError] = None

    def write(self, data: Any) -> Any:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def _atomic_write(path: Path, write, text: bool = False) -> None:
    """``write(f)`` into ``<path>.tmp-<pid>``, flushed + fsynced, then ``os.replace``d onto ``path`` (a crash leaves
    the old file intact, never a truncated one). ``f`` is binary, or with ``text`` UTF-8 text with ``newline=""``
    (as the csv module wants). A write the disk refuses (full) raises an ``OSError`` naming ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with naming_path(path, "writing it"):
            with open(tmp, "w", newline="", encoding="utf-8") if text else open(tmp, "wb") as f:
                sink = f if text else _KeptWriteError(f)
                try:
                    write(sink)
                except RuntimeError:
                    if isinstance(sink, _KeptWriteError) and sink.error is not None:
                        raise sink.error from None
                    raise
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename durable
        fd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def atomic_save(obj: Any, path: Union[str, Path]) -> None:
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def capture_rng() -> Dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [int(py_state[0]), list(py_state[1]), py_state[2]],
    }


def restore_rng(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.warn(
                f"checkpoint holds {len(cuda)} CUDA RNG states for {torch.cuda.device_count()} devices; "
                "CUDA RNG not restored",
                RuntimeWarning,
            )
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def checkpoint_name(iteration: int) -> str:
    return f"iter_{int(iteration):07d}.pt"


def prune_checkpoints(ckpt_dir: Union[str, Path], keep: int = 3, protect: Sequence[int] = ()) -> List[Path]:
    """Delete all but the newest ``keep`` ``iter_*.pt`` files (0 keeps all), never one whose iteration is in
    ``protect`` (e.g. the inductive checkpoint a transductive recipe starts from). Returns the deleted paths."""
    if not keep or keep <= 0:
        return []
    protected = {checkpoint_name(i) for i in protect or ()}
    deleted = []
    for old in sorted(Path(ckpt_dir).glob("iter_*.pt"))[:-keep]:
        if old.name not in protected:
            old.unlink(missing_ok=True)
            deleted.append(old)
    return deleted


def save_checkpoint(
    state: Dict[str, Any], work_dir: Union[str, Path], iteration: int, keep: int = 3, protect: Sequence[int] = ()
) -> Path:
    """Write ``checkpoints/iter_<N>.pt`` atomically, then point ``last_checkpoint`` at it; keep the newest
    ``keep`` (0 keeps all) plus the iterations in ``protect``."""
    ckpt_dir = Path(work_dir) / "checkpoints"
    path = ckpt_dir / checkpoint_name(iteration)
    for stale in ckpt_dir.glob("*.tmp-*"):  # left by a run killed mid-write
        if not stale.name.endswith(f".tmp-{os.getpid()}"):
            stale.unlink(missing_ok=True)
    atomic_save(dict(state, format=FORMAT, iteration=int(iteration)), path)
    _atomic_write(ckpt_dir / POINTER, lambda f: f.write(path.name.encode() + b"\n"))
    prune_checkpoints(ckpt_dir, keep, protect)
    return path


def load_checkpoint(path: Union[str, Path], map_location="cpu") -> Dict[str, Any]:
    path = Path(path)
    try:
        state = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"cannot read training checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RuntimeError(f"{path} is not a zsseg_rt training checkpoint (format {FORMAT})")
    return state


def model_from_config(config: Dict[str, Any]) -> Any:
    """An untrained model of the family a training checkpoint's ``model_config`` names (weights come after):
    the family is resolved by the model registry (no ``"family"`` -> the default family); only families that are
    trained are accepted."""
    from zsseg_rt.contract.registry import create_model, families, family_of, get_family

    if not isinstance(config, dict):
        raise TypeError(f"model_config must be a dict, got {type(config).__name__}")
    family = get_family(family_of(config))
    if family.training is None:
        trained = ", ".join(get_family(name).label for name in families() if get_family(name).training is not None)
        raise ValueError(
            f"training checkpoint holds a model of family {family.name!r}; only {trained} checkpoints are trained"
        )
    return create_model(dict(config))


def load_trained_model(path: Union[str, Path], device: Optional[str] = None) -> Any:
    """The model a training checkpoint holds (its family's, from the stored ``model_config``), with the stored
    weights (strict), on ``device`` when given, in train mode as built (the caller sets ``eval()``)."""
    state = load_checkpoint(path)
    model = model_from_config(state["model_config"])
    model.load_state_dict(state["model"], strict=True)
    if device:
        model = model.to(device)
    return model


def _candidates(work_dir: Path) -> List[Path]:
    ckpt_dir = work_dir / "checkpoints"
    out = []
    if (ckpt_dir / POINTER).is_file():
        name = (ckpt_dir / POINTER).read_text().strip()
        if name:
            out.append(ckpt_dir / name)
    out += sorted(ckpt_dir.glob("iter_*.pt"), reverse=True)
    return list(dict.fromkeys(out))


def find_resume_checkpoint(work_dir: Union[str, Path]) -> Optional[Path]:
    """The newest checkpoint in ``work_dir`` that loads; unreadable ones are skipped with a warning."""
    for cand in _candidates(Path(work_dir)):
        if not cand.is_file():
            continue
        try:
            load_checkpoint(cand)
            return cand
        except RuntimeError as exc:
            warnings.warn(f"skipping unreadable checkpoint: {exc}", RuntimeWarning)
    return None
