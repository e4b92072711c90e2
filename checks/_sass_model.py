"""segment_windows' cost model for the photo case on an H100 (``python -m checks sass --model``), from the per-
iteration instruction counts checks/sass.py reads from the compiled kernel (``segment_windows_fast_costs``). Its own
module to keep sass.py short; sass.py loads it by path and re-exports ``segment_windows_model`` and ``render_model``.
Standard library only."""

from __future__ import annotations

import heapq
import struct
from typing import Optional, Sequence, Tuple

# The photo case of issue 36: VOC 2011_000006.jpg 500x375 -> rescaled 683x512, two 512x512 windows side by side
# (x 0..512 and 171..683), 32x32 logits per window, 171 classes.
PHOTO = dict(out=(375, 500), scaled=(512, 683), windows=((0, 512, 0, 512), (0, 512, 171, 683)), grid=32, head=512,
             classes=171)
H100 = dict(name="H100 SXM", sms=132, smsp=4, clock_hz=1.755e9, mufu_per_clock=16)
TILE = (8, 32)  # output rows x columns per block (kTileH x kTileW), 256 threads, 8 classes per chunk


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _tap(scale: float, i: int, size: int) -> Tuple[int, int]:
    src = max(_f32(_f32(scale) * _f32(i + 0.5) - 0.5), 0.0)
    i0 = min(int(src), size - 1)
    return i0, min(i0 + 1, size - 1)


def segment_windows_model(costs: dict, listed: Optional[int] = None, case: dict = PHOTO, hw: dict = H100) -> dict:
    """Warp-level cost of the fast path for `case`, every tile evaluating `listed` classes (default: all; the worst
    case, nothing pruned). Per tile the kernel's thread mapping is replayed: footprint, thread t on footprint column
    t % fw and row segment t / fw, each warp issuing the stage-0 loop for its lanes' logit rows, the stage-1 loop of
    each mode its lanes are in (divergent modes serialise) for the segment's rows plus a reload per head-row
    interval, the stage-2 block and the chunk's other code once per chunk, and the per-tile code once. Time on the
    H100 = the largest of issue (1 warp instruction per clock per SMSP), MUFU (16 lanes per clock per SM) and shared
    memory (one wavefront per clock per SM, one per LDS/STS); plus the last wave (tiles of unequal cost on 2 blocks per
    SM: list scheduling, a lone block at the full SM rate)."""
    out_h, out_w = case["out"]
    sh, sw = case["scaled"]
    grid, head, classes = case["grid"], case["head"], case["classes"]
    n_listed = classes if listed is None else listed
    chunks = -(-n_listed // 8)
    osy, osx, hs = _f32(sh / out_h), _f32(sw / out_w), _f32(grid / head)
    th, tw = TILE
    tiles = []
    for y0 in range(0, out_h, th):
        for x0 in range(0, out_w, tw):
            h, w = min(th, out_h - y0), min(tw, out_w - x0)
            fy0, fy1 = _tap(osy, y0, sh)[0], _tap(osy, y0 + h - 1, sh)[1]
            fx0, fx1 = _tap(osx, x0, sw)[0], _tap(osx, x0 + w - 1, sw)[1]
            fh, fw = fy1 - fy0 + 1, fx1 - fx0 + 1
            slots = [k for k, (a, b, c, d) in enumerate(case["windows"]) if not (b <= fy0 or a > fy1 or d <= fx0 or c > fx1)]
            segments = 256 // fw
            seg_rows = -(-fh // segments)
            intervals, rows = [], []
            for k in slots:
                taps = [_tap(hs, r - case["windows"][k][0], grid) for r in range(fy0, fy1 + 1)]
                intervals.append([t[0] for t in taps])
                rows.append(taps[-1][1] - taps[0][0] + 1)
            ins = mufu = smem = 0.0
            for warp in range(8):
                lanes = []
                for tid in range(warp * 32, warp * 32 + 32):
                    seg, fc = divmod(tid, fw)
                    if seg < segments:
                        q = fx0 + fc
                        cover = tuple(i for i, k in enumerate(slots) if case["windows"][k][2] <= q < case["windows"][k][3])
                        lanes.append((seg, seg * seg_rows, min(seg * seg_rows + seg_rows, fh), cover))
                stage0 = sum(max((len(range(l[0], rows[i], segments)) for l in lanes if i in l[3]), default=0)
                             for i in range(len(slots)))
                ins += chunks * stage0 * costs["stage0"]["instructions"]
                smem += chunks * stage0 * costs["stage0"]["smem"]
                for mode in {l[3] for l in lanes if l[3]}:
                    members = [l for l in lanes if l[3] == mode]
                    n = max(l[2] - l[1] for l in members)
                    iv = intervals[mode[0]]
                    reloads = sum(
                        1 for k in range(n)
                        if any(l[1] + k < l[2] and (k == 0 or iv[l[1] + k] != iv[l[1] + k - 1]) for l in members)
                    )
                    c = costs["pair" if len(mode) == 2 else "one"]
                    ins += chunks * (n * c["instructions"] + reloads * c["reload"])
                    mufu += chunks * n * c["mufu"]
                    smem += chunks * (n * c["smem"] + reloads * 2 * 8 * len(mode))
                ins += chunks * (costs["stage2"]["instructions"] + costs["glue"]["instructions"])
                smem += chunks * (costs["stage2"]["smem"] + costs["glue"]["smem"])
                ins += costs["tile"]["instructions"]
            tiles.append((ins, mufu, smem))
    per_sm = lambda key: sum(t[key] for t in tiles) / hw["sms"]
    issue, mufu_c, smem_c = per_sm(0) / hw["smsp"], per_sm(1) * 32 / hw["mufu_per_clock"], per_sm(2)
    alone = [max(t[0] / hw["smsp"], t[1] * 32 / hw["mufu_per_clock"], t[2]) for t in tiles]  # SM cycles, one block
    free = [(0.0, b) for b in range(2 * hw["sms"])]  # two blocks per SM, each at half the SM's rate while both run
    end = 0.0
    for c in alone:
        start, block = heapq.heappop(free)
        end = max(end, start + 2 * c)
        heapq.heappush(free, (start + 2 * c, block))
    bound = max(issue, mufu_c, smem_c)
    last_wave = max(end - bound, 0.0) / 2  # a lone last block runs at about the full SM rate, not half
    us = lambda cycles: cycles / hw["clock_hz"] * 1e6
    return {
        "listed": n_listed, "tiles": len(tiles), "warp_instructions": sum(t[0] for t in tiles),
        "issue_us": us(issue), "mufu_us": us(mufu_c), "smem_us": us(smem_c), "bound_us": us(bound),
        "last_wave_us": us(last_wave), "predicted_us": us(bound + last_wave),
    }


def render_model(costs: dict, listed_counts: Sequence[Optional[int]]) -> str:
    lines = [
        "segment_windows fast path, hot paths read from the SASS (sm_90), per iteration (8 classes):",
        f"  two windows: {costs['pair']['instructions']} instructions, {costs['pair']['mufu']} MUFU, "
        f"reload {costs['pair']['reload']}; one window: {costs['one']['instructions']}, {costs['one']['mufu']} MUFU, "
        f"reload {costs['one']['reload']}; stage 0: {costs['stage0']['instructions']} per logit row; "
        f"stage 2: {costs['stage2']['instructions']} per pixel; chunk code <= {costs['glue']['instructions']} "
        f"per warp; tile code ~{costs['tile']['instructions']} per warp (estimate)",
        "",
        "| classes evaluated per tile | warp instructions | issue us | MUFU us | smem us | bound us | last wave us "
        "| predicted us |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in listed_counts:
        m = segment_windows_model(costs, n)
        lines.append(
            f"| {m['listed']}{' (all: nothing pruned)' if n is None else ''} | {m['warp_instructions'] / 1e6:.1f} M | "
            f"{m['issue_us']:.1f} | {m['mufu_us']:.1f} | {m['smem_us']:.1f} | {m['bound_us']:.1f} | "
            f"{m['last_wave_us']:.1f} | {m['predicted_us']:.1f} |"
        )
    return "\n".join(lines)
