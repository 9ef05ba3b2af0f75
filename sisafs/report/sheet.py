"""The `--png` contact sheet: every photo's protected thumbnail with its region
outlines (and the original beside it for key holders) on one image, for a quick look
where no browser is at hand or to paste into an issue."""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw, ImageFont

from sisafs.report.collect import Report

PAD, CAPTION = 8, 16
MAX_COLUMNS = 4


def contact_sheet(report: Report, side: int = 360) -> bytes:
    """PNG bytes; one cell per photo, captioned with its path and region count."""
    photos = report.photos
    pair = any(e.original is not None for e in photos)
    cell_w = side * (2 if pair else 1) + PAD * (3 if pair else 2)
    cell_h = side + CAPTION + PAD * 2
    cols = max(1, min(MAX_COLUMNS // (2 if pair else 1), len(photos)))
    rows = max(1, math.ceil(len(photos) / cols))
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "#f4f4f2")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for n, e in enumerate(photos):
        x0, y0 = (n % cols) * cell_w + PAD, (n // cols) * cell_h + PAD
        for k, thumb in enumerate([e.public, e.original] if pair else [e.public]):
            if thumb is None:
                continue
            im = thumb.outlined() if k == 0 else thumb.image
            sheet.paste(im, (x0 + k * (side + PAD), y0))
        caption = f"{e.relpath}  ({len(e.regions)} regions, {e.path or e.kind})"
        draw.text((x0, y0 + side + 2), caption[: cell_w // 6], fill="#222", font=font)
    if not photos:
        draw.text((PAD, PAD), "no photos in this vault", fill="#222", font=font)
    buf = io.BytesIO()
    sheet.save(buf, "PNG", optimize=True)
    return buf.getvalue()
