"""Thumbnails for the report: decoded upright, with region boxes moved along.

Region boxes are in stored pixels (EXIF orientation not applied, as the codec works on
stored pixels), while people expect photos upright; so a thumbnail is turned the way a
viewer would turn it and every box is mapped through the same turn.
"""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

from sisafs.formats import heif_support
from sisafs.formats.fallback import MAX_PIXELS

ORIENTATION_TAG = 0x0112
# EXIF orientation → the Pillow transpose that makes the stored image upright.
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
LABEL_COLOURS = {"face": "#e6194b", "text": "#4363d8", "person": "#f58231",
                 "area": "#9a9a9a"}
OTHER_COLOUR = "#3cb44b"


def colour(label: str) -> str:
    return LABEL_COLOURS.get(label, OTHER_COLOUR)


def orient_point(x: float, y: float, width: int, height: int,
                 orientation: int) -> tuple[float, float]:
    """Point (x, y) of a stored image of width x height, as seen upright."""
    return {2: (width - x, y), 3: (width - x, height - y), 4: (x, height - y),
            5: (y, x), 6: (height - y, x), 7: (height - y, width - x),
            8: (y, width - x)}.get(orientation, (x, y))


def orient_box(box: list[int], width: int, height: int, orientation: int) -> list[int]:
    """`box` [x, y, w, h] in a stored image of width x height, as seen upright."""
    x, y, w, h = box
    if orientation == 2:
        return [width - x - w, y, w, h]
    if orientation == 3:
        return [width - x - w, height - y - h, w, h]
    if orientation == 4:
        return [x, height - y - h, w, h]
    if orientation == 5:
        return [y, x, h, w]
    if orientation == 6:
        return [height - y - h, x, h, w]
    if orientation == 7:
        return [height - y - h, width - x - w, h, w]
    if orientation == 8:
        return [y, width - x - w, h, w]
    return [x, y, w, h]


@dataclass
class Thumb:
    """An upright thumbnail and the boxes (and mask outlines: polygons of [x, y]) to
    draw on it, in thumbnail pixels."""

    image: Image.Image
    boxes: list[tuple[str, list[int]]]
    outlines: list[tuple[str, list[list[list[int]]]]] = field(default_factory=list)

    def data_uri(self, quality: int = 80) -> str:
        buf = io.BytesIO()
        self.image.save(buf, "JPEG", quality=quality)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()

    def outlined(self) -> Image.Image:
        """A copy with the boxes and their labels drawn in (for the PNG contact sheet)."""
        im = self.image.copy()
        draw = ImageDraw.Draw(im)
        font = ImageFont.load_default()
        for label, (x, y, w, h) in self.boxes:
            draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour(label), width=1)
            draw.text((x + 3, y + 2), label, fill=colour(label), font=font)
        for label, polygons in self.outlines:
            for poly in polygons:
                draw.line([tuple(p) for p in poly + poly[:1]], fill=colour(label), width=2)
        return im


def make_thumb(data: bytes, side: int, regions: list[dict] | None = None) -> Thumb:
    """Decode `data`, turn it upright, shrink to `side` px on the long edge, and map the
    regions' boxes onto it. Raises ValueError for anything Pillow cannot show."""
    heif_support.ensure()  # HEIC photos too
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.width * im.height > MAX_PIXELS:
                raise ValueError(f"too large to show ({im.width}x{im.height})")
            orientation = int(im.getexif().get(ORIENTATION_TAG, 1) or 1)
            full_w, full_h = im.size
            im.draft("RGB", (side, side))  # JPEG: decode at a reduced scale, much faster
            im = im.convert("RGB")
    except (OSError, SyntaxError, RuntimeError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"cannot decode: {e}") from None
    if orientation in _TRANSPOSE:
        im = im.transpose(_TRANSPOSE[orientation])
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    upright_w = full_h if orientation in (5, 6, 7, 8) else full_w
    scale = im.width / upright_w
    boxes, outlines = [], []
    for r in regions or []:
        ox, oy, ow, oh = orient_box(r["box"], full_w, full_h, orientation)
        boxes.append((r.get("label", "region"), [round(ox * scale), round(oy * scale),
                                   max(1, round(ow * scale)), max(1, round(oh * scale))]))
        if r.get("outline"):
            outlines.append((r.get("label", "region"), [
                [[round(c * scale) for c in orient_point(px, py, full_w, full_h, orientation)]
                 for px, py in poly] for poly in r["outline"]]))
    return Thumb(im, boxes, outlines)
