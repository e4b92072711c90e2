#!/usr/bin/env python
"""Long runs (issue 64, items 3 and 4): memory, open files and threads stay flat, and every request is counted.

* **camera**: one ``zsseg camera`` process on a looped clip (the tiny bundle, 96x72 frames panning over a VOC
  photo, ``--labels-out`` and ``--stabilize`` on, the preview on a free port) for ``--frames`` frames (20,000). Its
  RSS, open file descriptors and threads are sampled from /proc every ``--every`` frames (1,000), read off the
  preview's ``/stats``; every ``/stats`` count must only grow and the final ``--stats-json`` must not be behind the
  last ``/stats`` (D13); every frame has its label map.
* **serve**: ``zsseg serve`` (tiny bundle, one replica, batches of 8, the default bound of 8 + 16 requests) on a
  local Ray cluster, ``--rounds`` rounds (10) of mixed requests (``_soak_serve.Mix``: 400 good images, 40 bodies of
  the wrong type, 20 misspelt queries, 20 bodies that are no image, 10 uploads closed mid-body, a burst of 48 good
  requests at once: over the bound, 503 with Retry-After): 5,380 POST /segment requests, and the pages. After each round the replica's outcome
  counters must equal what the clients saw (every request in exactly one counter), and the replica's and the HTTP
  proxy's RSS, files and threads are sampled.

Bounds (after warm-up: the first fifth of the frames, the first round): RSS at most ``RSS_BOUND_MIB`` above the
warm-up sample, open files and threads at most ``FD_BOUND`` / ``THREAD_BOUND`` above it; a MISS makes the run exit 1.

    .venv/bin/python -m benchmarks soak            # both parts, print the section (several minutes)
    .venv/bin/python -m benchmarks soak --quick    # a short smoke run (a few hundred frames and requests)
    .venv/bin/python -m benchmarks soak --write    # also put the section into BENCHMARKS.md

``--results FILE`` keeps each part's figures, so the parts can run apart (``--part camera``, then ``--part serve``:
the section shows both).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .common import REPO, machine_description, show_section

SECTION = "## Long runs: a 20,000-frame camera run and a 5,000-request serve soak (issue 64)"
CLASSES = "person,cat,dog,car,chair,sofa,table,plant,bottle,tv"
CLIP_SIZE, CLIP_FRAMES = (96, 72), 60
RSS_BOUND_MIB = {"camera": 16.0, "replica": 32.0, "proxy": 32.0}  # growth after warm-up
FD_BOUND, THREAD_BOUND = 4, 4  # open files / threads above the warm-up sample (a write or a request in progress)
COUNTS = ("processed", "captured", "dropped", "reconnects", "decode_errors", "engine_calls")


def sample_process(pid: int) -> Dict[str, float]:
    """``{"rss_mib", "fds", "threads"}`` of process ``pid`` (psutil when installed, else Linux /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        process = psutil.Process(pid)
        with process.oneshot():
            return {
                "rss_mib": process.memory_info().rss / 2**20,
                "fds": process.num_fds(),
                "threads": process.num_threads(),
            }
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
    }


def judge(samples: List[Dict[str, float]], warm: int, rss_bound: float) -> List[Dict[str, Any]]:
    """Per measure (rss_mib, fds, threads): the sample at the end of warm-up (index ``warm``), the largest after
    it, the bound on the difference and PASS / MISS."""
    rows = []
    for measure, bound in (("rss_mib", rss_bound), ("fds", FD_BOUND), ("threads", THREAD_BOUND)):
        after = [sample[measure] for sample in samples[warm:]]
        base, top = after[0], max(after)
        rows.append({"measure": measure, "warm": base, "max": top, "bound": bound, "ok": top - base <= bound})
    return rows


def make_clip(path: Path, frames: int = CLIP_FRAMES, size=CLIP_SIZE) -> Path:
    """A Motion JPEG clip of ``frames`` frames of ``size``: a window panning 2 px a frame over a VOC photo."""
    import cv2

    from zsseg_rt.assets import sample_images

    photo = cv2.imread(str(sorted(sample_images())[0]), cv2.IMREAD_COLOR)
    width, height = size
    scale = max((width + 2 * frames) / photo.shape[1], (height + 8) / photo.shape[0])
    photo = cv2.resize(photo, (math.ceil(photo.shape[1] * scale), math.ceil(photo.shape[0] * scale)))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
    for frame in range(frames):
        writer.write(photo[4 : 4 + height, 2 * frame : 2 * frame + width])
    writer.release()
    return path


def _preview_stats(port: int) -> Optional[Dict[str, Any]]:
    """The preview's ``/stats``, or None once the preview has stopped (the end of the run)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/stats")
        return json.loads(connection.getresponse().read())
    except (OSError, ValueError):
        return None
    finally:
        connection.close()


def _preview_port(process: subprocess.Popen, log: Path, timeout_s: float = 300.0) -> int:
    """The port ``zsseg camera --preview 0`` picked (its log line "MJPEG preview at http://HOST:PORT/")."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"MJPEG preview at http://[^:]+:(\d+)/", log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            raise RuntimeError(f"zsseg camera exited {process.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise TimeoutError(f"zsseg camera printed no preview address in {timeout_s:g} s:\n{log.read_text()[-3000:]}")


def camera_command(bundle: str, clip: Path, frames: int, work: Path) -> List[str]:
    return [
        *(sys.executable, "-m", "zsseg_rt.cli", "camera", str(clip), "--bundle", bundle, "--classes", CLASSES),
        *("--loop", "--max-frames", str(frames), "--labels-out", str(work / "labels"), "--stabilize"),
        *("--preview", "0", "--preview-readonly", "--stats-json", str(work / "stats.json"), "--no-progress"),
        *("--backend", "onnxruntime", "--device", "cpu", "--prepare", "none"),
    ]


def _watch_camera(process: subprocess.Popen, port: int, every: int) -> Dict[str, Any]:
    """Sample the camera process each time its /stats passes a multiple of ``every`` frames (the sample is taken
    before the /stats read: no request of ours in flight then); /stats counts must never go down."""
    samples, last, shrank, mark = [], None, [], every
    while process.poll() is None:
        try:
            sample = sample_process(process.pid)
        except (OSError, ProcessLookupError):
            break
        stats = _preview_stats(port)
        if stats is None:
            break
        if "processed" not in stats:  # the preview is up, the stream not yet (its /stats is empty)
            time.sleep(0.2)
            continue
        if last is not None:
            shrank += [f"{name} {last[name]} -> {stats[name]}" for name in COUNTS if stats[name] < last[name]]
        last = stats
        if stats["processed"] >= mark:
            samples.append({"frames": stats["processed"], **sample})
            mark = (stats["processed"] // every + 1) * every
        time.sleep(0.2)  # a poll interval: what is asserted does not depend on it
    return {"samples": samples, "last": last, "shrank": shrank}


def camera_soak(bundle: str, frames: int, every: int, work: Path) -> Dict[str, Any]:
    """Run the camera part (see the module docstring) in ``work``; returns its samples, verdicts and checks."""
    clip = make_clip(work / "clip.avi")
    log = work / "camera.log"
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    start = time.perf_counter()
    with open(log, "wb") as handle:
        process = subprocess.Popen(camera_command(bundle, clip, frames, work), stdout=handle, stderr=handle, env=env)
        try:
            watched = _watch_camera(process, _preview_port(process, log), every)
            code = process.wait(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if code != 0:
        raise RuntimeError(f"zsseg camera exited {code}:\n{log.read_text()[-3000:]}")
    final = json.loads((work / "stats.json").read_text())
    last = watched["last"] or {}
    behind = [f"{name} {final[name]} < /stats {last[name]}" for name in COUNTS if final[name] < last.get(name, 0)]
    maps = len([name for name in os.listdir(work / "labels") if name.endswith(".png")])
    samples = watched["samples"]
    return {
        "frames": final["processed"],
        "wall_s": time.perf_counter() - start,
        "fps": final["fps"],
        "samples": samples,
        "warm": max(0, len(samples) // 5 - 1),
        "label_maps": maps,
        "keyframes": final["sources"][0]["video"].get("keyframes"),
        "checks": {"stats_shrank": watched["shrank"], "final_behind_stats": behind},
    }


def _tiny_bundle(args, work: Path) -> str:
    """``--bundle``, else the golden tiny ZegCLIP (64 px, the tests' bundle) exported under ``out/bench_soak``
    (once; reused by later runs)."""
    if args.bundle:
        return args.bundle
    path = REPO / "out" / "bench_soak" / "bundle"
    if not (path / "meta.json").is_file():
        sys.path.insert(0, str(REPO / "python_tests"))
        from support import export_tiny_bundle

        print(f"exporting the tiny bundle into {path.parent} ...", flush=True)
        export_tiny_bundle(str(path.parent))
    return str(path)


def _photo_png(width: int = 96) -> bytes:
    import cv2

    from zsseg_rt.assets import sample_images

    photo = cv2.imread(str(sorted(sample_images())[1]), cv2.IMREAD_COLOR)
    photo = cv2.resize(photo, (width, int(round(width * photo.shape[0] / photo.shape[1]))))
    ok, data = cv2.imencode(".png", photo)
    assert ok
    return data.tobytes()


def serve_part(bundle: str, rounds: int, mix) -> Dict[str, Any]:
    """The serve part on a local Ray cluster of its own (127.0.0.1, 2 CPUs): one replica, batches of 8."""
    from zsseg_rt.scale import init_ray

    from ._soak_serve import serve_soak

    init_ray(num_cpus=2)
    from ray import serve

    from zsseg_rt.scale.serve import run_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    try:
        run_server(bundle, CLASSES.split(","), host="127.0.0.1", port=port, backend="onnxruntime")
        result = serve_soak(f"http://127.0.0.1:{port}", _photo_png(), rounds, mix, sample_process)
    finally:
        from zsseg_rt.scale.serve import APP_NAME

        serve.delete(APP_NAME)  # (as zsseg serve on its private cluster: serve.shutdown() only adds Ray's noise)
        import ray

        ray.shutdown()
    result["wall_s"] = time.perf_counter() - start
    return result


def _verdict_rows(name: str, rows: List[Dict[str, Any]]) -> List[str]:
    return [
        f"| {name} | {row['measure']} | {row['warm']:.1f} | {row['max']:.1f} | +{row['max'] - row['warm']:.1f} "
        f"| <= +{row['bound']:g} | {'PASS' if row['ok'] else '**MISS**'} |"
        for row in rows
    ]


def slope_kib(xs: List[float], samples: List[Dict[str, float]]) -> float:
    """The least-squares slope of the samples' RSS in KiB per 1,000 units of ``xs`` (frames, requests)."""
    import numpy as np

    if len(samples) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(xs, float), [s["rss_mib"] * 1024 for s in samples], 1)[0]) * 1000


def _series(samples: List[Dict[str, float]], key: str, fmt: str = "{:.0f}") -> str:
    return " / ".join(fmt.format(sample[key]) for sample in samples)


def render(result: Dict[str, Any], args) -> str:
    lines = [
        SECTION,
        "",
        f"Regenerate: `.venv/bin/python -m benchmarks soak{' --quick' if args.quick else ''} --write` (minutes; "
        "or the parts apart: `--part camera --results F`, then `--part serve --results F --write`). Not run in CI: "
        "`python_tests/test_benchmark_soak.py` and `python_tests/scale/test_serve_soak.py` run its machinery on a "
        "few hundred frames and requests. Numbers measured on the machine below, with other work running on it.",
        "",
        *machine_description(1),
    ]
    verdicts = [
        "",
        f"Bounds: after warm-up (camera: the first fifth of the frames; serve: the first round) RSS grows by at most "
        f"{RSS_BOUND_MIB['camera']:g} MiB (camera) / {RSS_BOUND_MIB['replica']:g} MiB (each serve process), open "
        f"files by at most {FD_BOUND} and threads by at most {THREAD_BOUND} (a write or a request in progress at "
        "the sample); a MISS, a /stats count that went down, a missing label map or a request not counted as its "
        "client saw it makes the run exit 1.",
        "",
        "| process | measure | after warm-up | max after | growth | bound | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    camera = result.get("camera")
    if camera:
        samples, warm = camera["samples"], camera["warm"]
        lines += [
            f"- camera: `zsseg camera` on a looped {CLIP_FRAMES}-frame {CLIP_SIZE[0]}x{CLIP_SIZE[1]} clip, tiny "
            f"bundle, ONNX Runtime (1 thread), `--labels-out --stabilize --preview 0`: {camera['frames']} frames in "
            f"{camera['wall_s']:.0f} s ({camera['fps']:.1f} fps at the end), {camera['label_maps']} label maps, "
            f"{camera['keyframes']} keyframes; sampled every {args.every} frames, warm-up to frame "
            f"{samples[warm]['frames']}",
            f"  - RSS MiB: {_series(samples, 'rss_mib')}",
            f"  - open files: {_series(samples, 'fds')}; threads: {_series(samples, 'threads')}",
            f"  - preview /stats counts only grew: {not camera['checks']['stats_shrank']}; final stats not behind "
            f"the last /stats: {not camera['checks']['final_behind_stats']}",
            f"  - RSS slope after warm-up: {slope_kib([x['frames'] for x in samples[warm:]], samples[warm:]):.0f} KiB "
            "per 1,000 frames (the label folder's manifest keeps an entry per map written, about 110 B: by design, "
            "as the folder grows)",
        ]
        verdicts += _verdict_rows("zsseg camera", judge(samples, warm, RSS_BOUND_MIB["camera"]))
    serve = result.get("serve")
    if serve:
        rows = serve["rounds"]
        tally, replica = rows[-1]["tally"], [row["replica"] for row in rows]
        lines += [
            f"- serve: `zsseg serve`, tiny bundle, 1 replica (ONNX Runtime), batches of 8, bound {serve['limit']} "
            f"requests; {len(rows)} rounds of mixed requests, {serve['sent']} in all, in {serve['wall_s']:.0f} s: "
            + ", ".join(f"{name} {count}" for name, count in tally.items() if count),
            f"  - counted by the replica (+ refused by Ray Serve's proxy) = sent: {serve['counted']} = "
            f"{serve['sent']}; rounds whose counters differ from what the clients saw: {len(serve['mismatches'])}",
            f"  - replica RSS MiB: {_series(replica, 'rss_mib')}; open files: {_series(replica, 'fds')}; threads: "
            f"{_series(replica, 'threads')}",
        ]
        verdicts += _verdict_rows("serve replica", judge(replica, 0, RSS_BOUND_MIB["replica"]))
        sent = [row["requests"] for row in rows]
        if rows[0]["proxy"]:
            proxy = [r["proxy"] for r in rows]
            lines.append(f"  - HTTP proxy RSS MiB: {_series(proxy, 'rss_mib')}; open files: {_series(proxy, 'fds')}")
            lines.append(
                f"  - RSS slope: replica {slope_kib(sent, replica):.0f}, HTTP proxy {slope_kib(sent, proxy):.0f} KiB "
                "per 1,000 requests (not explained: the replica runs this project's SegmentationServer; a growth "
                "of ~1 KiB a request would stay under the 32 MiB bound for ~30,000 requests)"
            )
            verdicts += _verdict_rows("serve HTTP proxy", judge(proxy, 0, RSS_BOUND_MIB["proxy"]))
    return "\n".join(lines + verdicts) + "\n"


def failures(result: Dict[str, Any]) -> List[str]:
    """What makes the run fail: a MISS, a /stats count that went down or ran ahead of the final stats, a missing
    label map, counters that differ from what the clients saw, a problem a client met."""
    found = []
    camera = result.get("camera")
    if camera:
        found += [
            f"camera {r['measure']}"
            for r in judge(camera["samples"], camera["warm"], RSS_BOUND_MIB["camera"])
            if not r["ok"]
        ]
        found += camera["checks"]["stats_shrank"] + camera["checks"]["final_behind_stats"]
        if camera["label_maps"] != camera["frames"]:
            found.append(f"{camera['label_maps']} label maps for {camera['frames']} frames")
    serve = result.get("serve")
    if serve:
        for name in ("replica", "proxy"):
            samples = [r[name] for r in serve["rounds"] if r[name]]
            if not samples:  # (the proxy's pid not found)
                continue
            found += [f"serve {name} {r['measure']}" for r in judge(samples, 0, RSS_BOUND_MIB[name]) if not r["ok"]]
        found += [f"counters differ: {m}" for m in serve["mismatches"]] + serve["problems"]
        if serve["counted"] != serve["sent"]:
            found.append(f"{serve['counted']} requests counted of {serve['sent']} sent")
    return found


def main(argv: Optional[List[str]] = None) -> int:
    from ._soak_serve import Mix

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=None, help="bundle (default: the tiny test bundle, exported once)")
    parser.add_argument(
        "--part",
        choices=("both", "camera", "serve", "none"),
        default="both",
        help="what to run (none: render the --results only)",
    )
    parser.add_argument("--frames", type=int, default=20000, help="camera frames (default 20000)")
    parser.add_argument("--every", type=int, default=1000, help="sample every this many frames (default 1000)")
    parser.add_argument("--rounds", type=int, default=10, help="serve rounds of the mix (default 10: 5380 requests)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 400 frames, 2 small rounds")
    parser.add_argument(
        "--results",
        default=None,
        help="a JSON file keeping each part's figures: a part not run now is taken from it (run --part camera and "
        "--part serve apart, e.g. on a busy machine where Ray's start can time out), each part run is saved to it",
    )
    parser.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    args = parser.parse_args(argv)
    mix = Mix()
    if args.quick:
        args.frames, args.every, args.rounds = 400, 100, 2
        mix = Mix(good=40, wrong_type=6, bad_query=4, garbage=4, aborted=4, burst=32)
    saved = Path(args.results) if args.results else None
    result: Dict[str, Any] = json.loads(saved.read_text()) if saved and saved.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="zsseg-soak-") as folder:
        work = Path(folder)
        bundle = _tiny_bundle(args, work) if args.part != "none" else ""
        if args.part in ("both", "camera"):
            result["camera"] = camera_soak(bundle, args.frames, args.every, work)
            if saved:
                saved.write_text(json.dumps(result))
        if args.part in ("both", "serve"):
            result["serve"] = serve_part(bundle, args.rounds, mix)
            if saved:
                saved.write_text(json.dumps(result))
    show_section(SECTION, render(result, args), args.write)
    problems = failures(result)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
