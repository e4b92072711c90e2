"""Soak: a few thousand small frames through the stream loop with a REAL Engine (tiny bundle, ONNX Runtime on
CPU): bounded memory (RSS growth after warm-up under 2%), no leaked threads, no torch import.

The soak runs in a fresh interpreter that imports only the runtime, so its RSS (~150 MiB) is the deployment
footprint rather than pytest + torch (~1.1 GiB, where 2% would hide a 20 MiB leak)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from support import subprocess_env

FRAMES = 2000
WARMUP = 400
MAX_RSS_GROWTH = 0.02

SOAK_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    import numpy as np
    from zsseg_rt.runtime import Engine
    from zsseg_rt.stream import CallableSource, MjpegSink, NullSink, StreamRunner

    BUNDLE, FRAMES, WARMUP = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def rss_bytes():
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024

    import cv2
    from zsseg_rt.assets import sample_images

    vocabularies = [["person", "cat", "dog", "car", "chair", "sofa", "table", "plant", "bottle", "tv"],
                    ["car", "tree", "person", "sky"], ["floor", "wall", "chair", "lamp", "person", "sofa"]]
    engine = Engine(BUNDLE, classes=vocabularies[0], backend="onnxruntime", device="cpu", mode="fast", threads=1)
    rng = np.random.default_rng(0)
    photos = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sample_images()]
    pool = []  # 64x64 views of the real photos (a camera's frames), not noise
    for i in range(16):
        photo = photos[i % len(photos)]
        side = int(rng.integers(96, min(photo.shape[:2])))
        y, x = int(rng.integers(0, photo.shape[0] - side)), int(rng.integers(0, photo.shape[1] - side))
        pool.append(cv2.resize(photo[y : y + side, x : x + side], (64, 64), interpolation=cv2.INTER_AREA))
    threads_before = set(threading.enumerate())
    out = {"rss": {}, "bad_shapes": 0, "max_distinct_labels": 0}
    box = {}

    def on_result(frame, result, stats):
        if result.labels.shape != (64, 64):
            out["bad_shapes"] += 1
        if stats.processed % 97 == 0:
            out["max_distinct_labels"] = max(out["max_distinct_labels"], len(np.unique(result.labels)))
        if stats.processed in (WARMUP, FRAMES // 2, FRAMES):
            out["rss"][stats.processed] = rss_bytes()
        if stats.processed % 500 == 0:  # vocabulary hot-swaps during the soak
            box["runner"].set_classes(vocabularies[(stats.processed // 500) % len(vocabularies)])

    preview = MjpegSink(port=0, host="127.0.0.1")
    source = CallableSource(lambda: (pool[i % len(pool)] for i in range(FRAMES)), live=False, name="soak")
    runner = StreamRunner(engine, source, [NullSink(), preview], drop_stale=False, on_result=on_result)
    box["runner"] = runner
    start = time.perf_counter()
    stats = runner.run()
    out["seconds"] = time.perf_counter() - start
    out["rss_after_close"] = rss_bytes()
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out.update(stats=stats.as_dict(), leaked_threads=leaked, torch_imported="torch" in sys.modules)
    print(json.dumps(out))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="RSS is read from /proc (Linux)")
def test_soak_real_engine_bounded_memory_no_leaked_threads(tiny_bundle):
    env = subprocess_env()
    proc = subprocess.run(
        [sys.executable, "-c", SOAK_SCRIPT, tiny_bundle, str(FRAMES), str(WARMUP)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    stats = out["stats"]
    assert stats["processed"] == FRAMES and stats["dropped"] == 0 and out["bad_shapes"] == 0
    assert stats["vocabulary_changes"] == FRAMES // 500  # each swap applied before the next frame
    assert out["torch_imported"] is False  # the runtime + stream layers never import torch
    assert out["max_distinct_labels"] >= 3  # the soaked engine really segments (several classes win)
    rss = {int(k): v for k, v in out["rss"].items()}
    warm, end = rss[WARMUP], rss[FRAMES]
    growth = (end - warm) / warm
    print(
        f"soak: {FRAMES} frames in {out['seconds']:.1f}s ({FRAMES / out['seconds']:.0f} FPS); RSS after "
        f"{WARMUP}-frame warm-up {warm / 2**20:.1f} MiB, at {FRAMES // 2} {rss[FRAMES // 2] / 2**20:.1f} MiB, "
        f"at {FRAMES} {end / 2**20:.1f} MiB ({growth:+.2%})"
    )
    assert growth < MAX_RSS_GROWTH, f"RSS grew {growth:.2%} after warm-up ({warm} -> {end} bytes)"
    assert out["leaked_threads"] == []
