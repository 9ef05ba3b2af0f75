"""How one altered region is described in the record's clear manifest.

The manifest is what `sisafs inspect` and the report show without a key. A masked
region (a person's shape) says how much of its box the mask covers (`mask_share`) and
carries its outline as polygons in stored pixels, so the report can draw the shape.
The outline is simplified to about one JPEG block (8 px): the public image already
shows which blocks were altered, so the outline tells no more than the pixels do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sisafs.regions import Region

OUTLINE_STEP = 8.0  # px: polygon simplification tolerance, one DCT block
MAX_POINTS = 96  # per region, all its polygons together


def entry(region: Region, look: str) -> dict[str, Any]:
    """The manifest entry of `region` (label, box, score, look, mask_share[, outline])."""
    out: dict[str, Any] = {"label": region.label, "box": [int(v) for v in region.box],
                           "score": round(float(region.score), 3), "look": look,
                           "mask_share": round(region.mask_share, 3)}
    if region.mask is not None:
        outline = outline_of(region)
        if outline:
            out["outline"] = outline
    return out


def outline_of(region: Region) -> list[list[list[int]]]:
    """Outer contours of the region's mask as [[x, y], ...] polygons in stored pixels,
    simplified until they hold at most MAX_POINTS points."""
    import cv2

    assert region.mask is not None
    mask = np.ascontiguousarray(region.mask, dtype=np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = [c for c in contours if cv2.contourArea(c) >= OUTLINE_STEP ** 2]
    step = OUTLINE_STEP
    while True:
        polys = [cv2.approxPolyDP(c, step, True).reshape(-1, 2) for c in contours]
        polys = [p for p in polys if len(p) >= 3]
        if sum(len(p) for p in polys) <= MAX_POINTS or not polys:
            break
        step *= 1.5
    x, y = int(region.box[0]), int(region.box[1])
    return [[[int(px) + x, int(py) + y] for px, py in p] for p in polys]


def with_defaults(regions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Manifest entries as `inspect` gives them: records written before masks were
    described lack `mask_share`, and their regions were plain boxes (1.0)."""
    return [{**r, "mask_share": r.get("mask_share", 1.0)} for r in regions]
