"""Test material for WebP, AVIF and HEIF/HEIC, made with the libraries at test time.

The corpus has real HEICs but no faces in them, and no WebP or AVIF at all, so the
face photos of the JPEG corpus are re-encoded into each format (downscaled, to keep
the default suite quick); synthetic images cover alpha and grey.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from helpers import CORPUS
from PIL import Image

from sisafs.formats import heif_support

HEIC_DIR = CORPUS / "heic"
FACE_PHOTO = CORPUS / "fr_obama.jpg"


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    heif_support.ensure()
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def synthetic(w: int, h: int, mode: str = "RGB", seed: int = 1) -> Image.Image:
    """A gradient with 8-pixel checks and mild noise: compresses like a photo, not like
    flat fill, and a blur visibly changes it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    checks = ((x // 8 + y // 8) % 2) * 60
    rgb = np.stack([x * 180 // w + checks, y * 180 // h + checks,
                    (x + y) * 127 // (w + h) + rng.integers(0, 30, (h, w))], -1)
    a = rgb.astype(np.uint8)
    if mode == "L":
        return Image.fromarray(a[..., 0])
    if mode == "RGBA":
        alpha = np.full((h, w, 1), 255, np.uint8)
        alpha[: h // 3] = 90
        a = np.concatenate([a, alpha], -1)
    return Image.fromarray(a, mode)


def grid_heic(img: Image.Image, tile: int = 128, quality: int = 60) -> bytes:
    """A HEIC stored as a grid of tiles, as phones write them (at a small tile size)."""
    heif_support.ensure()
    import pillow_heif

    old = pillow_heif.options.GRID_TILE_SIZE
    pillow_heif.options.GRID_TILE_SIZE = tile
    try:
        return encode(img, "HEIF", quality=quality)
    finally:
        pillow_heif.options.GRID_TILE_SIZE = old


def face_photo(side: int = 480) -> Image.Image:
    if not FACE_PHOTO.exists():
        import pytest

        pytest.skip(f"corpus photo not found: {FACE_PHOTO}")
    img = Image.open(FACE_PHOTO).convert("RGB")
    img.thumbnail((side, side))
    return img


def generated(face: Image.Image | None = None) -> dict[str, bytes]:
    """name -> bytes for every variant the format matrix covers."""
    face = face if face is not None else synthetic(320, 240)
    return {
        "lossy.webp": encode(face, "WEBP", quality=80),
        "lossless.webp": encode(face, "WEBP", lossless=True),
        "alpha.webp": encode(synthetic(320, 240, "RGBA"), "WEBP", quality=75),
        "photo.avif": encode(face, "AVIF", quality=60, speed=8),
        "alpha.avif": encode(synthetic(256, 192, "RGBA"), "AVIF", quality=60, speed=8),
        "photo.heic": encode(face, "HEIF", quality=60),
        "grid.heic": grid_heic(face),
        "grey.heic": encode(synthetic(200, 150, "L"), "HEIF", quality=60),
        "alpha.heic": encode(synthetic(256, 192, "RGBA"), "HEIF", quality=60),
    }


def corpus_heics() -> list[Path]:
    return sorted(HEIC_DIR.glob("*.heic")) if HEIC_DIR.is_dir() else []
