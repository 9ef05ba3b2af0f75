"""Unit tier: every altered region says why, and never names anyone; since record
version 2 the reasons are sealed with the labels (they name them), as are the regions
kept as they are (an exempted person's face) and why: only the image key opens them."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from sisafs.formats import codec
from sisafs.formats.errors import RecordError
from sisafs.rank import Preferences, select_regions
from sisafs.regions import FACE, PERSON, TEXT, Region

KEY = os.urandom(32)


def _jpeg() -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_manifest_says_why_and_sealed_notes_say_what_was_kept():
    regions = [Region(FACE, 0.9, (40, 40, 80, 80), identity="grandma"),
               Region(FACE, 0.8, (400, 60, 80, 80)),
               Region(TEXT, 0.7, (50, 50, 60, 60)),  # a face read as text: dropped
               Region(PERSON, 0.6, (300, 40, 240, 400))]
    kept: list[Region] = []
    chosen = select_regions(regions, 640, 480, 1, Preferences(never=frozenset({"grandma"})),
                            kept)
    assert all(r.why for r in chosen + kept)
    out = codec.protect(_jpeg(), chosen, "blur", KEY, kept=tuple(kept)).data
    assert b"grandma" not in out and b"never list" not in out

    public = codec.inspect(out)
    assert "kept" not in public
    # Record version 2: the reasons name the labels, so they are sealed too.
    assert all("why" not in r and "label" not in r for r in public["regions"])

    opened = codec.inspect(out, KEY)
    whys = {r["label"]: r["why"] for r in opened["regions"]}
    assert whys["face"] == "face: always altered"
    assert whys["person"].startswith("person: ranked 1 by centre")
    why = sorted(r["why"] for r in opened["kept"])
    assert why == ["face of grandma: on the never list",
                   "text box mostly over a face: judged as the face instead"]
    with pytest.raises(RecordError, match="authentication"):
        codec.inspect(out, os.urandom(32))
