"""Unit tier: a text box over a face is trimmed to the text or dropped, so an exempted
face stays untouched and every face is judged only as a face."""

from __future__ import annotations

import numpy as np

from sisafs.rank import Preferences, select_regions, trim_text
from sisafs.regions import FACE, TEXT, Region

FACE_BOX = (100, 100, 200, 200)


def test_text_mostly_on_a_face_is_dropped():
    regions = [Region(FACE, 0.9, FACE_BOX), Region(TEXT, 0.8, (110, 120, 180, 150))]
    assert [r.label for r in trim_text(regions)] == [FACE]


def test_text_partly_on_a_face_keeps_only_the_text():
    caption = Region(TEXT, 0.8, (50, 250, 400, 100))  # a caption under the chin
    out = trim_text([Region(FACE, 0.9, FACE_BOX), caption])
    text = next(r for r in out if r.label == TEXT)
    assert text.box == caption.box and text.mask is not None
    assert not text.mask[0:50, 50:250].any()  # the face's rows inside the caption
    assert text.mask[60:, :].all() and text.mask[:, :50].all()


def test_text_away_from_faces_is_untouched():
    sign = Region(TEXT, 0.8, (400, 400, 50, 20))
    assert trim_text([Region(FACE, 0.9, FACE_BOX), sign])[1] is sign


def test_exempt_face_under_a_text_box_is_not_altered():
    me = Region(FACE, 0.9, FACE_BOX, identity="me")
    stranger = Region(FACE, 0.9, (500, 100, 150, 150))
    ghost = Region(TEXT, 0.7, (120, 110, 160, 170))  # the face read as text
    chosen = select_regions([me, stranger, ghost], 800, 600, 3,
                            Preferences(never=frozenset({"me"})))
    canvas = np.zeros((600, 800), bool)
    for r in chosen:
        x, y, w, h = r.box
        canvas[y:y + h, x:x + w] |= True if r.mask is None else r.mask
    assert not canvas[100:300, 100:300].any()
    assert canvas[100:250, 500:650].all()
