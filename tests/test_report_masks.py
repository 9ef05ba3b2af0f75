"""The report draws mask outlines from the clear manifest (no key, no mount needed)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisafs.formats import codec
from sisafs.regions import FACE, PERSON, Region
from sisafs.report.collect import Entry, Report
from sisafs.report.html import render
from sisafs.report.thumbs import LABEL_COLOURS, make_thumb, orient_box, orient_point

KEY = bytes(range(32))
PHOTO = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "dn_person.jpg"


def _ellipse(w: int, h: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2 <= 1


@pytest.fixture(scope="module")
def protected() -> bytes:
    if not PHOTO.is_file():
        pytest.skip(f"corpus photo {PHOTO} not found")
    data = PHOTO.read_bytes()
    regions = [Region(PERSON, 0.9, (200, 60, 120, 300), "t", _ellipse(120, 300)),
               Region(FACE, 0.9, (40, 40, 60, 60), "t")]
    return codec.protect(data, regions, "noise", KEY).data


def test_manifest_outline_reaches_the_thumbnail_and_the_html(protected: bytes) -> None:
    info = codec.inspect(protected, KEY)  # labels are sealed (record version 2)
    person, face = info["regions"]
    assert face["mask_share"] == 1.0 and "outline" not in face
    assert 0.7 < person["mask_share"] < 0.85  # an ellipse fills pi/4 of its box
    thumb = make_thumb(protected, 360, info["regions"])
    assert len(thumb.outlines) == 1 and thumb.outlines[0][0] == PERSON
    w, h = thumb.image.size
    points = [p for poly in thumb.outlines[0][1] for p in poly]
    assert all(0 <= x <= w and 0 <= y <= h for x, y in points)
    entry = Entry("a.jpg", len(protected), "protected", 3, format="jpeg", path="selective",
                  regions=info["regions"], public=thumb)
    html = render(Report(Path("/v"), None, 3, [entry]))
    polygons = re.findall(r"<polygon class=outline data-label='person' points='([^']+)'", html)
    assert len(polygons) == len(thumb.outlines[0][1])
    assert "<script" not in html and "mask 7" in html  # "mask 7x% of its box"
    assert "http" not in html  # self-contained: the SVG names no namespace URL


def test_contact_sheet_draws_the_outline(protected: bytes) -> None:
    info = codec.inspect(protected, KEY)  # labels are sealed (record version 2)
    thumb = make_thumb(protected, 360, info["regions"][:1])
    drawn = np.asarray(thumb.outlined(), np.int16)
    colour = np.array(Image.new("RGB", (1, 1), LABEL_COLOURS[PERSON]).getpixel((0, 0)))
    assert (np.abs(drawn - colour).sum(axis=2) == 0).sum() > 50
    buf = io.BytesIO()
    thumb.outlined().save(buf, "PNG")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_outline_points_turn_with_their_box(orientation: int) -> None:
    width, height, box = 300, 200, [40, 30, 100, 50]
    ox, oy, ow, oh = orient_box(box, width, height, orientation)
    x, y, w, h = box
    for px, py in ((x, y), (x + w, y), (x, y + h), (x + w, y + h), (x + 10, y + 20)):
        ux, uy = orient_point(px, py, width, height, orientation)
        assert ox <= ux <= ox + ow and oy <= uy <= oy + oh
