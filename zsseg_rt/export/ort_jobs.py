"""Run ONNX graphs on given inputs with ONNX Runtime (CPU), in this process or in a child process.

The export checks collect every graph run they need as a job ``(onnx_path, feeds)`` and run them all at once
(:func:`run_in_process` by default). :func:`subprocess_runner` runs the same jobs in a child Python started
behind a command prefix - e.g. ``qemu-x86_64-static -cpu Haswell``, so that ONNX Runtime picks the kernels of
another instruction set (AVX2 on an AVX-512 machine) and the checks can be tested on both code paths. The child
runs ``python -m zsseg_rt.export.ort_jobs JOBS.npz OUT.npz``, which imports only NumPy and ONNX Runtime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Job", "Runner", "cpu_session", "run_in_process", "subprocess_runner", "main"]

Job = Tuple[str, Dict[str, np.ndarray]]  # (path of an .onnx file, {input name: array})
Runner = Callable[[Sequence[Job]], List[List[np.ndarray]]]


def run_in_process(jobs: Sequence[Job], on_done: Optional[Callable[[], Any]] = None) -> List[List[np.ndarray]]:
    """Every output of every job, in order (one CPU session per graph file, reused across jobs); ``on_done()`` is
    called after each job (a progress bar's ``update``)."""
    import onnxruntime as ort

    sessions: Dict[str, "ort.InferenceSession"] = {}
    out: List[List[np.ndarray]] = []
    for path, feeds in jobs:
        if path not in sessions:
            sessions[path] = cpu_session(path)
        out.append(list(sessions[path].run(None, feeds)))
        if on_done is not None:
            on_done()
    return out


def cpu_session(path: str) -> Any:
    """An ONNX Runtime CPU session of ``path`` whose idle threads do not spin (ONNX Runtime's default is to spin):
    as the Engine's sessions (``runtime/backends/onnxruntime/runner.py: session_options``, which this module does not
    import: it stays NumPy + ONNX Runtime only). The same kernels and thread count, so the same outputs; a spinning
    thread only burns a core another process or thread could use (a check run beside other work: 8.6 -> 7.8 CPU-s
    for three ViT-B/16 images here, at the same wall time)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _save_jobs(jobs: Sequence[Job], path: str) -> None:
    arrays: Dict[str, np.ndarray] = {}
    index = []
    for j, (graph, feeds) in enumerate(jobs):
        names = sorted(feeds)
        index.append({"graph": os.path.abspath(graph), "inputs": names})
        for k, name in enumerate(names):
            arrays[f"j{j}_{k}"] = np.asarray(feeds[name])
    arrays["index"] = np.frombuffer(json.dumps(index).encode("utf-8"), dtype=np.uint8)
    np.savez(path, **arrays)


def _load_jobs(path: str) -> List[Job]:
    with np.load(path) as data:
        index = json.loads(bytes(data["index"]).decode("utf-8"))
        return [
            (entry["graph"], {name: data[f"j{j}_{k}"] for k, name in enumerate(entry["inputs"])})
            for j, entry in enumerate(index)
        ]


def subprocess_runner(prefix: Sequence[str] = (), timeout: Optional[float] = 900.0) -> Runner:
    """A runner that executes the jobs in ``[*prefix, sys.executable, "-m", "zsseg_rt.export.ort_jobs", ...]``.

    Args:
        prefix: the command in front of the interpreter (``["qemu-x86_64-static", "-cpu", "Haswell"]``).
        timeout: seconds before the child is killed (RuntimeError).
    """

    def run(jobs: Sequence[Job]) -> List[List[np.ndarray]]:
        with tempfile.TemporaryDirectory(prefix="zsseg-ort-jobs-") as tmp:
            src, dst = os.path.join(tmp, "jobs.npz"), os.path.join(tmp, "out.npz")
            _save_jobs(jobs, src)
            cmd = [*prefix, sys.executable, "-m", "zsseg_rt.export.ort_jobs", src, dst]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
            with np.load(dst) as data:
                counts = [int(n) for n in data["counts"]]
                return [[data[f"o{j}_{k}"] for k in range(n)] for j, n in enumerate(counts)]

    return run


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m zsseg_rt.export.ort_jobs JOBS.npz OUT.npz", file=sys.stderr)
        return 2
    results = run_in_process(_load_jobs(args[0]))
    arrays = {f"o{j}_{k}": a for j, outs in enumerate(results) for k, a in enumerate(outs)}
    np.savez(args[1], counts=np.array([len(o) for o in results], dtype=np.int64), **arrays)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
