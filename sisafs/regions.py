"""The record that crosses every stage of the pipeline: one sensitive region.

Detectors produce regions, the ranking chooses among them, the codecs alter them.
Keeping it in one small module lets `formats/` and `detect/` share it without
depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FACE = "face"
TEXT = "text"
PERSON = "person"


@dataclass(frozen=True)
class Region:
    """A sensitive area of an image, in *stored* pixel coordinates.

    Stored coordinates are those of the pixel array as encoded in the file, before any
    EXIF orientation is applied, because that is what the codecs alter.

    label: "face", "text" or a COCO class name ("person", "car", ...).
    box: (x, y, w, h) in stored pixels, clipped to the image.
    mask: optional boolean array of shape (h, w) aligned to `box`; True = sensitive.
    identity: name of an enrolled person this face matched with certainty, else None.
    source: which detector produced it (for reports and evaluation).
    why: why the ranking altered or kept it (set by sisafs.rank; shown by inspect and the
      report).
    """

    label: str
    score: float
    box: tuple[int, int, int, int]
    source: str = ""
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    identity: str | None = None
    why: str = field(default="", compare=False)

    @property
    def area(self) -> int:
        return int(self.box[2]) * int(self.box[3])

    @property
    def pixels(self) -> int:
        """Pixels this region alters: its mask's, or its whole box without a mask."""
        if self.mask is None:
            return self.area
        return int(np.count_nonzero(self.mask))

    @property
    def mask_share(self) -> float:
        """Share of the box the mask covers (1.0 for a plain box)."""
        return self.pixels / self.area if self.area else 1.0

    def clipped(self, width: int, height: int) -> Region | None:
        """This region clipped to an image of the given size, or None if outside it."""
        x, y, w, h = self.box
        x0, y0 = max(0, int(x)), max(0, int(y))
        x1, y1 = min(width, int(x + w)), min(height, int(y + h))
        if x1 <= x0 or y1 <= y0:
            return None
        mask = self.mask
        if mask is not None:
            mask = mask[y0 - int(y) : y1 - int(y), x0 - int(x) : x1 - int(x)]
        return Region(self.label, self.score, (x0, y0, x1 - x0, y1 - y0), self.source, mask,
                      self.identity, self.why)
