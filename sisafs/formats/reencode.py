"""The re-encode path for WebP, AVIF and HEIF/HEIC: decode, alter, encode the same format.

These formats have no splice-friendly structure that sisafs edits yet, so the public file
is a fresh encode of the altered pixels in the original's own format, and the restore
payload is the whole original (record path "fallback"). What keeps the backing file
near two originals rather than more is the quality search in `_fit`: the public encode
aims at the original's byte size, which for the same encoder family means roughly the
original's quality.

Privacy of the public file: EXIF is filtered by the same whitelist as JPEG (no GPS, no
thumbnail, no maker notes), XMP is dropped, and only the primary image is written, so
HEIF auxiliary images (depth maps, HDR gain maps, thumbnails, the second image of a
stereo pair, any further top-level image) exist only inside the encrypted record.
Animated WebP and AVIF are refused: they stay encrypted whole.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from sisafs.formats import fallback, heif_support, webp_container
from sisafs.formats.errors import UnsupportedImage
from sisafs.formats.looks import alter_pixels
from sisafs.formats.metadata import public_exif
from sisafs.regions import Region

FORMATS = ("webp", "avif", "heif")
_PIL_NAMES = {"webp": "WEBP", "avif": "AVIF", "heif": "HEIF"}
# Encoder settings: fast enough for a 12 MP photo on a laptop core or two.
HEIF_PRESET = "ultrafast"
AVIF_SPEED = 8
# Try these qualities in turn until the encode is no larger than SIZE_SLACK times the
# original; the first that fits is kept.
QUALITIES = {"webp": (80, 65, 50, 35), "avif": (70, 55, 40, 25), "heif": (60, 45, 30)}
SIZE_SLACK = 1.1


def protect_pixels(data: bytes, fmt: str, regions: Sequence[Region], look: str,
                   noise_key: bytes) -> bytes:
    """Public image (without record) in the same format, regions altered in pixels."""
    if fmt == "heif" and not heif_support.ensure():
        raise UnsupportedImage("pillow-heif is not installed")
    img = open_image(data, _PIL_NAMES[fmt])
    if fmt != "heif" and getattr(img, "n_frames", 1) > 1:
        raise UnsupportedImage(f"animated or multi-frame {fmt} is stored encrypted whole")
    mode = img.mode if img.mode in ("L", "RGB", "RGBA") else (
        "RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
    pixels = np.asarray(img.convert(mode) if img.mode != mode else img)
    altered = Image.fromarray(alter_pixels(pixels, regions, look, noise_key,
                                           has_alpha=mode == "RGBA"), mode=mode)
    exif = public_exif(img.info.get("exif"))
    if fmt == "heif":
        exif = _without_orientation(exif)  # pillow-heif decodes with irot/imir applied
    params: dict = {"exif": exif} if exif else {}
    if img.info.get("icc_profile"):
        params["icc_profile"] = img.info["icc_profile"]
    encode = _encoder(fmt, altered, params, _webp_lossless(data) if fmt == "webp" else False)
    public = _fit(encode, fmt, len(data))
    if fmt == "webp":
        public = webp_container.extended(public)
    _check_viewable(public, fmt, altered.size)
    return public


def _encoder(fmt: str, img: Image.Image, params: dict, lossless: bool
             ) -> Callable[[int], bytes]:
    def encode(quality: int) -> bytes:
        buf = io.BytesIO()
        if fmt == "webp":
            extra = {"lossless": True, "quality": 75, "exact": True} if lossless else \
                {"quality": quality}
            img.save(buf, "WEBP", method=4, **extra, **params)
        elif fmt == "avif":
            img.save(buf, "AVIF", quality=quality, speed=AVIF_SPEED, **params)
        else:
            img.save(buf, "HEIF", quality=quality, enc_params={"preset": HEIF_PRESET},
                     **params)
        return buf.getvalue()

    encode.lossless = lossless  # type: ignore[attr-defined]
    return encode


def _fit(encode: Callable[[int], bytes], fmt: str, target: int) -> bytes:
    """The first quality whose encode fits near the original's size (the last tried
    otherwise); a lossless WebP is encoded once, losslessly."""
    if getattr(encode, "lossless", False):
        return encode(100)
    out = b""
    for q in QUALITIES[fmt]:
        out = encode(q)
        if len(out) <= SIZE_SLACK * target:
            break
    return out


def _webp_lossless(data: bytes) -> bool:
    return any(c.type == b"VP8L" for c in webp_container.chunks(data))


def _without_orientation(exif: bytes | None) -> bytes | None:
    if not exif:
        return exif
    e = Image.Exif()
    e.load(exif)
    e.pop(0x0112, None)
    return e.tobytes() if len(e) else None


def open_image(data: bytes, expect: str) -> Image.Image:
    """fallback.open_image, plus the RuntimeError that Pillow's AVIF plugin and
    pillow-heif raise for damaged files (libavif/libheif error codes)."""
    try:
        return fallback.open_image(data, expect)
    except RuntimeError as e:
        raise UnsupportedImage(f"cannot decode {expect}: {e}") from None


def _check_viewable(public: bytes, fmt: str, size: tuple[int, int]) -> None:
    """The public file must decode, at the same size, before it is ever used."""
    img = open_image(public, _PIL_NAMES[fmt])
    if img.size != size:
        raise UnsupportedImage(f"public {fmt} decodes at {img.size}, not {size}")
