"""The logits the post-processing is judged on at C=171 (issue 86 item 2), and its lines.

The Engine check's own logits come from random weights with "class i" names: zero bias, every sigmoid near 0.5, the
worst case for pruning and not what a trained model gives (the review of the H200 run of 7f842ed, section 4). The
post-processing is judged on three kinds instead, at the Engine check's geometry (the photo 2011_000006.jpg: two
windows of 32x32 logits side by side, a 16x head upsampling to 512, the 512x683 rescaled image, a 375x500 output):

* ``iid``: standard normal x 3 at every cell (nothing can be pruned): an efficiency line, at most ``LINES["iid"]``
  (6 %) of the fp16 image encoder;
* ``dominated``: one class per 2x4 region of logit cells at +3, every other in [-9, -4]: at most 3 %;
* ``label_map``: the photo's own VOC label map (``zsseg_rt/assets/samples/SegmentationClass/2011_000006.png``:
  background, chair, person, sofa; object-sized regions), read at each logit cell's centre: the cell's class at
  N(3, 1), a second class per VOC class (a trained model's runner-up) at N(-1, 1), every other at N(-7, 1.5); the
  VOC classes spread over the vocabulary by a fixed permutation: at most 3 %.

``case_logits`` makes them, the variants program (``checks/postprocess_variants.py``) and the engine check
(``checks/gpu_engine.py``) time them, ``judge_kinds`` says whether each kind's time is within its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
LABEL_MAP = REPO / "zsseg_rt" / "assets" / "samples" / "SegmentationClass" / "2011_000006.png"
KINDS = ("iid", "dominated", "label_map")
# post-processing at C=171 at most this share of the fp16 image encoder, per kind of logits (issue 86 item 2: 3 % on
# logits shaped like a trained model's, 6 % on i.i.d. ones, where the review's floor rules 3 % out for any exact kernel)
LINES: Dict[str, float] = {"iid": 0.06, "dominated": 0.03, "label_map": 0.03}
CLASSES = 171
WINNER, RUNNER_UP, REST = (3.0, 1.0), (-1.0, 1.0), (-7.0, 1.5)  # label_map: (mean, standard deviation) of each


def case_bias(classes: int) -> np.ndarray:
    """The class bias of every case: 0.1 on every third class (ZegCLIP's seen/unseen calibration's shape)."""
    return np.where(np.arange(classes) % 3 == 0, 0.1, 0.0).astype(np.float32)


def case_logits(kind: str, classes: int, windows: Sequence[Sequence[int]], grid: int, scaled: Sequence[int],
                seed: int = 0) -> np.ndarray:  # fmt: skip
    """``kind``'s logits [windows, classes, grid, grid] (float32) for ``windows`` ((y1, y2, x1, x2) in the
    ``scaled`` image, each covering ``grid`` logit cells a side)."""
    if kind == "label_map":
        return _label_map_logits(classes, windows, grid, scaled, np.random.default_rng(seed))
    return random_logits(kind, classes, len(windows), grid, seed)


def random_logits(kind: str, classes: int, count: int, grid: int, seed: int = 0) -> np.ndarray:
    """``iid`` or ``dominated`` logits [count, classes, grid, grid] (float32): no geometry needed."""
    rng = np.random.default_rng(seed)
    if kind == "iid":
        return (rng.standard_normal((count, classes, grid, grid)) * 3).astype(np.float32)
    if kind == "dominated":
        logits = rng.uniform(-9, -4, (count, classes, grid, grid)).astype(np.float32)
        for k in range(count):
            for by in range(0, grid, 2):
                for bx in range(0, grid, 4):
                    logits[k, rng.integers(classes), by : by + 2, bx : bx + 4] = 3.0
        return logits
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def _label_map_logits(classes: int, windows, grid: int, scaled: Sequence[int], rng) -> np.ndarray:
    from zsseg_rt.data.labels import read_label

    label = read_label(str(LABEL_MAP)).astype(np.int64)
    label[label == 255] = 0  # VOC's object borders: background (a model gives one of its neighbours there)
    order = rng.permutation(classes)
    winner_of = order[np.arange(21) % classes]  # VOC class v -> a class of the vocabulary
    runner_up_of = order[(np.arange(21) + 21) % classes]
    logits = rng.normal(REST[0], REST[1], (len(windows), classes, grid, grid)).astype(np.float32)
    height, width = label.shape
    for k, (y1, y2, x1, x2) in enumerate(tuple(int(v) for v in w) for w in windows):
        centre = (np.arange(grid) + 0.5) / grid  # the cells' centres, as fractions of the window
        ys = np.minimum(((y1 + centre * (y2 - y1)) * height / scaled[0]).astype(np.int64), height - 1)
        xs = np.minimum(((x1 + centre * (x2 - x1)) * width / scaled[1]).astype(np.int64), width - 1)
        voc = label[ys[:, None], xs[None, :]]  # [grid, grid]
        cells = np.indices((grid, grid)).reshape(2, -1)
        for of, (mean, spread) in ((runner_up_of, RUNNER_UP), (winner_of, WINNER)):
            logits[k, of[voc.ravel()], cells[0], cells[1]] = rng.normal(mean, spread, cells.shape[1])
    return logits


def judge_kinds(us: Mapping[str, Optional[float]], encoder_ms: Optional[float]) -> Dict[str, Any]:
    """Each kind's time (us per launch, None: not measured) against its line of ``encoder_ms``: ``{"kinds": {kind:
    {"us", "share", "line", "line_us", "pass"}}, "pass", "failed", "not_checked"}``; ``pass`` only when every kind
    was measured and met its line (one not measured is "not checked", never passed)."""
    kinds: Dict[str, Any] = {}
    failed, not_checked = [], []
    for kind in KINDS:
        line = LINES[kind]
        time_us = us.get(kind)
        if time_us is None or not encoder_ms:
            kinds[kind] = {"us": None, "line": line, "pass": None}
            not_checked.append(f"post-processing on {kind} logits <= {100 * line:.0f} % of the fp16 image encoder at "
                               f"C={CLASSES}: not measured")  # fmt: skip
            continue
        share = time_us * 1e-3 / encoder_ms
        met = bool(share <= line)
        kinds[kind] = {"us": time_us, "share": share, "line": line, "line_us": round(line * encoder_ms * 1e3, 2),
                       "pass": met}  # fmt: skip
        if not met:
            failed.append(f"post-processing on {kind} logits {time_us:.1f} us = {100 * share:.2f} % of the fp16 image "
                          f"encoder > {100 * line:.0f} % ({line * encoder_ms * 1e3:.1f} us) at C={CLASSES}")  # fmt: skip
    return {"kinds": kinds, "encoder_ms": encoder_ms, "failed": failed, "not_checked": not_checked,
            "pass": not failed and not not_checked}  # fmt: skip
