"""The objects of a label map computed independently of ``zsseg_rt.runtime.objects`` (issue 81, item 3): each
class's 8-connected regions by ``scipy.ndimage.label``, in the documented order (class id, area largest first, the
first pixel in raster order), for the tests of ``find_objects`` and of the commands that write objects."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

EIGHT = np.ones((3, 3), dtype=int)  # scipy.ndimage.label's 8-connectivity structure


def reference(labels, names, scores=None, unknown_id=None, min_pixels=1, cap=100):
    """Each class's 8-connected regions, by scipy: ``([dict per object, in the documented order], dropped)``."""
    found = []
    for class_id in range(len(names)):
        regions, count = ndimage.label(labels == class_id, structure=EIGHT)
        for index in range(1, count + 1):
            mask = regions == index
            area = int(mask.sum())
            if area < min_pixels:
                continue
            rows, columns = np.nonzero(mask)
            first = int(np.min(rows * labels.shape[1] + columns))  # the first pixel in raster order
            found.append(
                {
                    "key": (class_id, -area, first),
                    "class_id": class_id,
                    "name": names[class_id],
                    "box": (int(columns.min()), int(rows.min()), int(np.ptp(columns)) + 1, int(np.ptp(rows)) + 1),
                    "area": area,
                    "centroid": (float(columns.mean()), float(rows.mean())),
                    "score": 1.0 if scores is None else float(np.mean(scores[mask], dtype=np.float64)),
                    "mask": mask,
                }
            )
    found.sort(key=lambda item: item["key"])
    return found[:cap], max(0, len(found) - cap)


def min_pixels(min_area, pixels):
    """What ``min_area`` (a fraction of the frame) keeps, whole pixels: rounded up, at least one."""
    return max(1, math.ceil(min_area * pixels - 1e-9))
