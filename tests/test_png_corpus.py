"""Selective PNG codec on the real corpus PNGs (read in place, never copied)."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisafs.formats import codec, png_selective
from sisafs.formats.png_container import chunks
from sisafs.regions import Region

CORPUS = Path(os.environ.get("SISAFS_CORPUS",
                             Path(__file__).resolve().parents[1].parent / "shared" / "corpus"))
PNGS = ["eo_english.png", "fr_alex-lacamoire.png", "fr_lin-manuel-miranda.png",
        "ul_app_screenshot_step1.png"]
# files without annotated faces get a fixed box (text lines, the cat)
BOXES = {"eo_english.png": (300, 100, 200, 150), "ul_app_screenshot_step1.png": (400, 500, 300,
                                                                                 300)}
KEY = bytes(range(32))
FILE_ID = b"\x01" * 16


def load(name: str) -> tuple[bytes, tuple[int, int, int, int]]:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"corpus file {path} not found (set SISAFS_CORPUS)")
    faces = json.loads((CORPUS / "faces.json").read_text())["images"][name]["faces"]
    box = tuple(faces[0]["box"]) if faces else BOXES[name]
    return path.read_bytes(), box  # type: ignore[return-value]


def rgba(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGBA"))


@pytest.mark.parametrize("look", ["blur", "pixelate", "noise", "solid"])
@pytest.mark.parametrize("name", PNGS)
def test_corpus_exact_and_local(name: str, look: str) -> None:
    data, box = load(name)
    public, payload = png_selective.protect(data, [Region("face", 1.0, box)], look, KEY,
                                            FILE_ID)
    t = time.perf_counter()
    back = png_selective.restore(public, payload, KEY, FILE_ID)
    elapsed = time.perf_counter() - t
    assert back == data
    assert elapsed < 0.25, f"restore took {elapsed * 1000:.0f} ms: not a splice any more"
    before, after = rgba(data), rgba(public)
    x, y, w, h = box
    inside = np.zeros(before.shape[:2], bool)
    inside[y:y + h, x:x + w] = True
    assert (before[~inside] == after[~inside]).all()
    assert (before[inside] != after[inside]).any(axis=-1).mean() > 0.5
    assert len(payload) < len(data), "payload should be a part of the original, not all"


def test_corpus_metadata_dropped() -> None:
    data, box = load("fr_alex-lacamoire.png")
    public, _ = png_selective.protect(data, [Region("face", 1.0, box)], "blur", KEY, FILE_ID)
    before = {c.type for c in chunks(data)}
    after = {c.type for c in chunks(public)}
    assert {b"iTXt", b"iDOT"} <= before
    assert not {b"iTXt", b"iDOT"} & after  # XMP text and stale Apple IDAT offsets
    assert {b"iCCP", b"pHYs"} <= after


def test_corpus_through_codec_takes_selective_path() -> None:
    for name in PNGS:
        data, box = load(name)
        out = codec.protect(data, [Region("face", 1.0, box)], "blur", KEY)
        assert out.path == "selective", out.reason
        assert codec.restore(out.data, KEY) == data


def test_blurred_face_is_not_found_again() -> None:
    """The blur look must defeat the project's own face detector."""
    faces = pytest.importorskip("sisafs.detect.faces")
    try:
        detector = faces.CenterFaceDetector()
        detector.detect_array(np.zeros((64, 64, 3), np.uint8))
    except (faces.ModelMissing, ImportError) as e:
        pytest.skip(f"face detector unavailable: {e}")
    for name in ("fr_alex-lacamoire.png", "fr_lin-manuel-miranda.png"):
        data, box = load(name)
        assert detector.detect_array(rgba(data)[..., :3]), "detector misses the original face"
        public, _ = png_selective.protect(data, [Region("face", 1.0, box)], "blur", KEY,
                                          FILE_ID)
        found = detector.detect_array(rgba(public)[..., :3])
        bx, by, bw, bh = box
        for r in found:
            x, y, w, h = r.box
            cx, cy = x + w / 2, y + h / 2
            assert not (bx <= cx <= bx + bw and by <= cy <= by + bh), f"face found in {name}"


@pytest.mark.slow
def test_12mp_restore_is_a_splice() -> None:
    """12 MP photo PNG: exact, restore within a few AES-GCM times, payload ~ rows covered."""
    src = CORPUS / "fr_obama.jpg"
    if not src.is_file():
        pytest.skip(f"corpus file {src} not found")
    with Image.open(src) as im:
        rgb = np.asarray(im.convert("RGB").resize((4000, 3000), Image.BICUBIC))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    data = buf.getvalue()
    box = (1500, 900, 700, 600)  # 20 % of the rows
    public, payload = png_selective.protect(data, [Region("face", 1.0, box)], "blur", KEY,
                                            FILE_ID)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        back = png_selective.restore(public, payload, KEY, FILE_ID)
        times.append(time.perf_counter() - t)
    assert back == data
    assert min(times) < 0.05
    assert len(payload) < 0.3 * len(data)
