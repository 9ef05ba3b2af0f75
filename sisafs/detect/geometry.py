"""Box arithmetic shared by the detectors, the stack and the ranking.

Boxes are `(x, y, w, h)` tuples everywhere in sisafs (see `sisafs.regions`); the helpers
here keep the float/int rounding in one place so that a box never shrinks when it is
mapped between resolutions (rounding outwards keeps a sensitive edge covered).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Box = tuple[int, int, int, int]
FBox = tuple[float, float, float, float]


def outward(x0: float, y0: float, x1: float, y1: float) -> Box:
    """Integer box that contains the float corners (never smaller than them)."""
    ix0, iy0 = math.floor(x0), math.floor(y0)
    ix1, iy1 = math.ceil(x1), math.ceil(y1)
    return ix0, iy0, max(1, ix1 - ix0), max(1, iy1 - iy0)


def clip_box(box: Sequence[float], width: int, height: int) -> Box | None:
    """`box` clipped to a width x height image, or None if nothing is left."""
    x, y, w, h = box
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def grow(box: Sequence[float], fraction: float, width: int, height: int) -> Box | None:
    """`box` grown by `fraction` of its size on every side, clipped to the image.

    Detector boxes hug the eyes-to-chin area; hair, ears and the jaw line identify a
    person too, so faces are altered with a margin.
    """
    x, y, w, h = box
    dx, dy = w * fraction, h * fraction
    return clip_box((x - dx, y - dy, w + 2 * dx, h + 2 * dy), width, height)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    ax1, ay1 = a[0] + a[2], a[1] + a[3]
    bx1, by1 = b[0] + b[2], b[1] + b[3]
    iw = min(ax1, bx1) - max(a[0], b[0])
    ih = min(ay1, by1) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def overlap_of_smaller(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of the smaller box covered by the other: 1.0 when one contains the other."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min(a[2] * a[3], b[2] * b[3])
    return float(iw * ih / small) if small > 0 else 0.0


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression (boxes as x, y, w, h rows)."""
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = int(order.pop(0))
        keep.append(i)
        order = [j for j in order if iou(boxes[i], boxes[j]) < threshold]
    return keep
