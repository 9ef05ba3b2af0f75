"""The upright, 8-bit RGB, bounded-size view that detectors look at, and the way back.

Files store pixels in sensor order and an EXIF Orientation tag says how to turn them for
display. Models are trained on upright photos, so detection runs on the displayed view;
the codecs alter stored pixels, so every box and mask is mapped back here. Doing the
mode conversion (16-bit, CMYK, palette, alpha) in one place means no detector has to
care what the file held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sisafs.detect.geometry import clip_box, outward
from sisafs.regions import Region

ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# numpy equivalents of the transposes above, applied to an (h, w) stored array
_ARRAY_OPS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).T,
    8: lambda a: np.rot90(a, 1),
}
_INVERSE = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


def orientation_of(image: Image.Image) -> int:
    """EXIF orientation 1..8 of `image`; anything unreadable or out of range counts as 1."""
    try:
        value = int(image.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # a corrupt EXIF block must not stop protection
        return 1
    return value if value in _TRANSPOSE or value == 1 else 1


def to_rgb8(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB, whatever its mode.

    Transparent pixels are shown over white, as a viewer would show them; 16- and 32-bit
    grey is scaled by its actual range so that dark medical or scientific images are not
    flattened to black.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16") and hi > 255:
            lo, hi = 0.0, 65535.0
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        grey = np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class View:
    """An upright RGB view of a stored image, plus what is needed to map back.

    `sx`, `sy`: view pixels per upright pixel (≤ 1 when the view was shrunk).
    """

    rgb: np.ndarray
    stored_width: int
    stored_height: int
    orientation: int
    sx: float
    sy: float

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def _upright_to_stored(self, u: float, v: float) -> tuple[float, float]:
        w, h, o = self.stored_width, self.stored_height, self.orientation
        return {
            1: (u, v), 2: (w - u, v), 3: (w - u, h - v), 4: (u, h - v),
            5: (v, u), 6: (v, h - u), 7: (w - v, h - u), 8: (w - v, u),
        }[o]

    def _stored_to_upright(self, x: float, y: float) -> tuple[float, float]:
        w, h, o = self.stored_width, self.stored_height, self.orientation
        return {
            1: (x, y), 2: (w - x, y), 3: (w - x, h - y), 4: (x, h - y),
            5: (y, x), 6: (h - y, x), 7: (h - y, w - x), 8: (y, w - x),
        }[o]

    def box_to_view(self, box: tuple[float, float, float, float]) -> tuple[int, ...] | None:
        """A stored-pixel box as a box on this view (rounded outwards, clipped), or None."""
        x, y, bw, bh = box
        a = self._stored_to_upright(x, y)
        b = self._stored_to_upright(x + bw, y + bh)
        u0, u1 = min(a[0], b[0]) * self.sx, max(a[0], b[0]) * self.sx
        v0, v1 = min(a[1], b[1]) * self.sy, max(a[1], b[1]) * self.sy
        return clip_box(outward(u0, v0, u1, v1), self.width, self.height)

    def box_to_stored(self, box: tuple[float, float, float, float]) -> tuple[int, ...] | None:
        """A view box as a stored-pixel box (rounded outwards, clipped), or None."""
        x, y, bw, bh = box
        u0, v0, u1, v1 = x / self.sx, y / self.sy, (x + bw) / self.sx, (y + bh) / self.sy
        a = self._upright_to_stored(u0, v0)
        b = self._upright_to_stored(u1, v1)
        fbox = outward(min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1]))
        return clip_box(fbox, self.stored_width, self.stored_height)

    def region_to_stored(self, region: Region) -> Region | None:
        """`region` (found on this view) in stored coordinates, mask turned and resized."""
        box = self.box_to_stored(region.box)
        if box is None:
            return None
        mask = region.mask
        if mask is not None:
            mask = self._mask_to_stored(region, box)
        return Region(region.label, region.score, box, region.source, mask, region.identity)

    def _mask_to_stored(self, region: Region, box: tuple[int, ...]) -> np.ndarray:
        """The region's mask turned to stored orientation and sampled on the stored box."""
        assert region.mask is not None
        inverse = _INVERSE[self.orientation]
        turned = np.ascontiguousarray(_ARRAY_OPS[inverse](region.mask.astype(np.uint8)))
        bx, by, bw, bh = box
        # sample the turned mask at the centre of every stored pixel of the box
        rx, ry, rw, rh = region.box
        corner = self._upright_to_stored(rx / self.sx, ry / self.sy)
        far = self._upright_to_stored((rx + rw) / self.sx, (ry + rh) / self.sy)
        x0, y0 = min(corner[0], far[0]), min(corner[1], far[1])
        x1, y1 = max(corner[0], far[0]), max(corner[1], far[1])
        cols = ((np.arange(bx, bx + bw) + 0.5 - x0) / max(x1 - x0, 1e-9) * turned.shape[1])
        rows = ((np.arange(by, by + bh) + 0.5 - y0) / max(y1 - y0, 1e-9) * turned.shape[0])
        cols = np.clip(cols.astype(int), 0, turned.shape[1] - 1)
        rows = np.clip(rows.astype(int), 0, turned.shape[0] - 1)
        # columns, then rows, on 0/1 bytes: ten times faster than one np.ix_ lookup for
        # person masks of several megapixels, and the result is C-ordered (rows first
        # would leave it column-major, which slows every later pass over the mask)
        return np.ascontiguousarray(turned[:, cols][rows]).view(bool)


def reduced_decode(image: Image.Image, max_side: int) -> Image.Image | None:
    """A fresh decode of an unloaded JPEG at the smallest DCT scale (1/2, 1/4 or 1/8)
    whose long side is still at least `max_side`, or None when that would not shrink it.

    libjpeg scales in the inverse DCT, so a 12 MP photo decodes to 3 MP in a quarter of
    the time and needs no resize pass; the result is an area average, as good as or
    better than shrinking the full decode bilinearly. `image` itself is left untouched
    (it stays lazy and full size): the draft runs on a second open of the same file.
    """
    if (image.format not in ("JPEG", "MPO") or not image.tile
            or max(image.size) < 2 * max_side):
        return None
    fp = getattr(image, "fp", None)
    if fp is None:
        return None
    width, height = image.size
    factor = max_side / max(width, height)
    fp.seek(0)
    fresh = Image.open(fp)
    if fresh.size != image.size:
        return None
    fresh.draft(None, (max(1, math.ceil(width * factor)), max(1, math.ceil(height * factor))))
    fresh.load()
    return fresh if fresh.size != image.size else None


def make_view(image: Image.Image, max_side: int) -> View:
    """Upright 8-bit RGB view of `image` whose long side is at most `max_side`."""
    orientation = orientation_of(image)
    width, height = image.size
    reduced = reduced_decode(image, max_side)
    rgb = to_rgb8(reduced or image)
    scale = min(1.0, max_side / max(rgb.size))
    if scale < 1.0:
        # An area average, in C: Pillow's antialiased bilinear took 113 ms to bring a
        # 12 MP photo whose long side is under 2 x max_side (no DCT scale fits) down to
        # the view, cv2's INTER_AREA about a tenth of that (issue 11's drain).
        import cv2

        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = Image.fromarray(cv2.resize(np.asarray(rgb), size, interpolation=cv2.INTER_AREA))
    if orientation != 1:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    arr = np.asarray(rgb)
    upright_w, upright_h = (height, width) if orientation >= 5 else (width, height)
    return View(arr, width, height, orientation, arr.shape[1] / upright_w, arr.shape[0] / upright_h)
