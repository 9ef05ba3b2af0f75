"""`sisafs preview`: what each security level does to one of the user's own photos.

Nobody can choose a level from a table of percentages. This runs the real engine on the
photo (sisafs/pipeline/worker.py: detect once, then rank and seal at levels 1 to 5 with a
throwaway key, so nothing here can restore anything) and lays the results side by side,
the original first, each with its altered regions outlined and labelled. With a vault's
settings and enrolled people, the strip shows what that vault would store.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from sisafs.rank import LEVELS, Preferences, coverage_for_level, look_for_level, select_regions
from sisafs.report.thumbs import Thumb, make_thumb

CAPTION_PX = 22
GAP_PX = 6


@dataclass
class Tile:
    caption: str
    thumb: Thumb


def level_tiles(data: bytes, config, side: int = 360) -> list[Tile]:
    """The original and one tile per level. `config` is a WorkerConfig (its image key is
    only used to seal results that are then thrown away)."""
    from sisafs.pipeline import worker

    worker.init_worker(config)
    regions, width, height, eff = worker.detect_regions(data)
    prefs = Preferences.from_dict(eff["preferences"])
    tiles = [Tile("original", make_thumb(data, side))]
    for level in LEVELS:
        chosen = select_regions(regions, width, height, level, prefs)
        look = look_for_level(level)
        sealed = worker.seal(data, worker.Choice(tuple(chosen), width, height, look),
                             config.image_key)
        boxes = [{"label": r.label, "box": list(r.box)} for r in chosen]
        tiles.append(Tile(f"level {level}: {look}, >= {coverage_for_level(level):.0%}",
                          make_thumb(sealed.data, side, boxes)))
    return tiles


def strip(tiles: list[Tile], title: str = "", columns: int = 3) -> Image.Image:
    """The tiles in rows of `columns` (original, 1, 2 / 3, 4, 5), captions above each,
    outlines drawn in (not on the original)."""
    ims = [t.thumb.outlined() if t.caption != "original" else t.thumb.image for t in tiles]
    cell_w = max(im.width for im in ims)
    cell_h = max(im.height for im in ims) + CAPTION_PX
    rows = -(-len(ims) // columns)
    head = CAPTION_PX if title else 0
    sheet = Image.new("RGB", (columns * (cell_w + GAP_PX) + GAP_PX,
                              head + rows * (cell_h + GAP_PX) + GAP_PX), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    if title:
        draw.text((GAP_PX, 5), title, fill="black", font=font)
    for i, (tile, im) in enumerate(zip(tiles, ims, strict=True)):
        x = GAP_PX + (i % columns) * (cell_w + GAP_PX)
        y = head + GAP_PX + (i // columns) * (cell_h + GAP_PX)
        draw.text((x, y + 5), tile.caption, fill="black", font=font)
        sheet.paste(im, (x, y + CAPTION_PX))
    return sheet


def preview_png(data: bytes, config, side: int = 360, title: str = "") -> bytes:
    buf = io.BytesIO()
    strip(level_tiles(data, config, side), title).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def out_paths(photos: list[str], out: str | None) -> list[str]:
    """Where each photo's strip goes: OUT itself for one photo, else files named after
    the photos in OUT (a directory) or in the current directory."""
    names = [os.path.splitext(os.path.basename(p))[0] + ".preview.png" for p in photos]
    if out is None:
        return names
    if len(photos) == 1 and not os.path.isdir(out):
        return [out]
    os.makedirs(out, exist_ok=True)
    return [os.path.join(out, n) for n in names]
