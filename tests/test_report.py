"""`sisafs report`: a self-contained HTML page and a PNG contact sheet of a vault built
through a real mount, rendered in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_fuse
from helpers import CORPUS, Vault, run
from PIL import Image

from sisafs.report.thumbs import _TRANSPOSE, orient_box

PHOTOS = {"fr_rose_leslie_img1.jpg": "portrait.jpg",  # a face
          "eo_chinese.jpg": "Signs/street sign.jpg",  # text; a space in the name
          "fr_alex-lacamoire.png": "Family/alex.png"}  # PNG in a subdirectory
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A vault holding three protected corpus photos and one file stored whole."""
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    v = Vault(tmp_path_factory.mktemp("report"))
    v.mount("--workers", "1")
    try:
        for src, dst in PHOTOS.items():
            (v.mnt / dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(CORPUS / src, v.mnt / dst)
        (v.mnt / "notes.txt").write_bytes(b"not a photo\n")
    finally:
        v.unmount()
    yield v
    v.force_unmount()


def _images(html: str) -> list[Image.Image]:
    out = []
    for b64 in re.findall(r"src='data:image/jpeg;base64,([A-Za-z0-9+/=]+)'", html):
        out.append(Image.open(io.BytesIO(base64.b64decode(b64))))
    return out


def _not_blank(im: Image.Image) -> float:
    a = np.asarray(im.convert("L"), dtype=np.float32)
    return float(a.std())


@needs_fuse
def test_html_and_contact_sheet_show_every_photo(built, tmp_path):
    html_out, png_out = tmp_path / "r.html", tmp_path / "r.png"
    out = run("report", str(built.dir), "--html", str(html_out), "--png", str(png_out),
              "--passfile", str(built.passfile)).stdout
    assert "3 photos (3 with original), 1 files stored encrypted whole" in out
    html = html_out.read_text()
    for dst in PHOTOS.values():
        assert f"data-path='{dst}'" in html, dst
    assert "notes.txt" in html
    # Self-contained: no reference that would leave the page.
    refs = re.findall(r"""(?:src|href)=['"]?([^'" >]+)""", html)
    assert refs and all(r.startswith("data:") for r in refs), refs
    assert "http://" not in html and "https://" not in html
    # Protected and original for each photo; originals differ from the protected ones.
    images = _images(html)
    assert len(images) == 2 * len(PHOTOS)
    for protected, original in zip(images[::2], images[1::2], strict=True):
        assert protected.size == original.size
        diff = np.abs(np.asarray(protected, np.int16) - np.asarray(original, np.int16))
        assert diff.mean() > 5, "the protected thumbnail looks like the original"
    # Region outlines with labels, and the counts.
    assert html.count("class=box") >= 3 and ">face<" in html and ">text<" in html
    assert "regions per label" in html and "selective" in html
    sheet = Image.open(png_out)
    assert sheet.width > 360 and _not_blank(sheet) > 20


@needs_fuse
def test_report_says_why_and_shows_the_levels(built, tmp_path):
    html_out = tmp_path / "levels.html"
    res = run("report", str(built.dir), "--html", str(html_out), "--levels", check=False)
    assert res.returncode == 2 and "--levels" in res.stderr
    run("report", str(built.dir), "--html", str(html_out), "--levels", "--limit", "1",
        "--passfile", str(built.passfile))
    html = html_out.read_text()
    assert "altered because face: always altered" in html
    assert html.count("class=levels") == 1 and "sisafs preview" in html


@needs_fuse
def test_report_without_key_has_no_originals_and_through_mount_has_them(built, tmp_path):
    out = run("report", str(built.dir), "--html", str(tmp_path / "a.html")).stdout
    assert "3 photos (0 with original)" in out
    assert len(_images((tmp_path / "a.html").read_text())) == len(PHOTOS)
    built.mount("--workers", "1")
    try:
        out = run("report", str(built.mnt), "--html", str(tmp_path / "b.html")).stdout
    finally:
        built.unmount()
    assert "3 photos (3 with original)" in out
    assert len(_images((tmp_path / "b.html").read_text())) == 2 * len(PHOTOS)


@needs_fuse
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt install chromium)")
def test_html_renders_in_headless_chromium(built, tmp_path):
    html_out, shot = tmp_path / "r.html", tmp_path / "shot.png"
    run("report", str(built.dir), "--html", str(html_out), "--passfile", str(built.passfile))
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    res = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
         "--window-size=1200,1600", f"--screenshot={shot}", html_out.as_uri()],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert shot.is_file() and shot.stat().st_size > 0, res.stderr[-2000:]
    im = Image.open(shot).convert("RGB")
    assert im.size == (1200, 1600)
    # Not blank: the photos make the page far from uniform, and the first card's
    # thumbnails (dark portrait, coloured noise) are in view, not just the background.
    assert _not_blank(im) > 25
    colours = len(np.unique(np.asarray(im.resize((300, 400))).reshape(-1, 3), axis=0))
    assert colours > 2000, f"only {colours} colours: the images did not render"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_follow_exif_orientation(orientation):
    """A marked box in stored pixels lands where Pillow's transpose puts those pixels."""
    w, h, box = 40, 30, [5, 3, 7, 4]
    stored = np.zeros((h, w), np.uint8)
    stored[box[1]:box[1] + box[3], box[0]:box[0] + box[2]] = 255
    im = Image.fromarray(stored)
    if orientation in _TRANSPOSE:
        im = im.transpose(_TRANSPOSE[orientation])
    ys, xs = np.nonzero(np.asarray(im))
    upright = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
               int(ys.max() - ys.min() + 1)]
    assert orient_box(box, w, h, orientation) == upright


def test_report_refuses_something_that_is_not_a_vault(tmp_path):
    res = run("report", str(tmp_path), check=False)
    assert res.returncode == 2 and "neither a vault" in res.stderr
    assert Path(tmp_path).is_dir()
