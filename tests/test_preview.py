"""CLI tier with the real detectors: `sisafs preview` writes one picture per photo, the
original and levels 1-5 in a 3 x 2 grid, mode 0600 (it holds the original)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
from helpers import run
from PIL import Image

from sisafs.report.preview import CAPTION_PX, GAP_PX

SAMPLE = Path(__file__).resolve().parents[1] / "sisafs" / "data" / "sample" / "dn_person.jpg"


def test_preview_writes_one_level_grid_per_photo(tmp_path):
    """Two photos in one run (the models load once): one picture each in --out."""
    png = tmp_path / "small.png"
    Image.new("RGB", (64, 48), "green").save(png)
    res = run("preview", str(png), str(SAMPLE), "--out", str(tmp_path / "out"),
              "--thumb", "160")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "dn_person.preview.png", "small.preview.png"], res.stdout
    out = tmp_path / "out" / "dn_person.preview.png"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    im = Image.open(out).convert("RGB")
    tile_w = 160  # the sample is landscape: tiles are 160 wide
    assert im.width == 3 * (tile_w + GAP_PX) + GAP_PX
    a = np.asarray(im, np.int16)
    top = CAPTION_PX + GAP_PX + CAPTION_PX  # title row, gap, caption of the first row

    def tile(i: int) -> np.ndarray:
        x = GAP_PX + (i % 3) * (tile_w + GAP_PX)
        y = top + (i // 3) * (im.height // 2)
        return a[y:y + 80, x:x + tile_w]

    # every level changes the photo, and level 5 changes it more than level 1
    diffs = [float(np.abs(tile(i) - tile(0)).mean()) for i in range(1, 6)]
    assert min(diffs) > 1 and diffs[4] > diffs[0]


def test_preview_of_a_missing_photo_is_exit_16(tmp_path):
    bad = run("preview", str(tmp_path / "missing.jpg"), check=False)
    assert bad.returncode == 16 and "Traceback" not in bad.stderr
