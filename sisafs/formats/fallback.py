"""The pixel-domain path: works for every JPEG and PNG Pillow can decode.

The image is decoded, its regions altered in pixels, and re-encoded in the same format
with the same size, mode and (for JPEG) quantisation tables and sampling; the restore
payload is the whole original file. It is exact by construction and costs a second copy
of the file, so the selective codecs take over wherever they can prove an exact restore.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, JpegImagePlugin

from sisafs.formats.errors import UnsupportedImage
from sisafs.formats.looks import alter_pixels
from sisafs.formats.metadata import public_exif
from sisafs.regions import Region

# Refuse before decoding anything larger: a 100000x100000 PNG header must not cost
# 30 GB of memory. 150 MP covers every camera sold today.
MAX_PIXELS = 150_000_000

_PNG_MODES = {"1": "L", "P": None, "L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA",
              "I;16": "I;16", "I;16B": "I;16", "I": "I"}


def open_image(data: bytes, expect: str) -> Image.Image:
    """Open and fully decode, with the checks that keep hostile input harmless."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format != expect:
                raise UnsupportedImage(f"content is {img.format}, not {expect}")
            w, h = img.size
            if w <= 0 or h <= 0 or w * h > MAX_PIXELS:
                raise UnsupportedImage(f"absurd dimensions {w}x{h}")
            img.load()
    except UnsupportedImage:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
            Image.DecompressionBombError, EOFError, struct_error()) as e:
        raise UnsupportedImage(f"cannot decode {expect}: {e}") from None
    return img


def struct_error() -> type[Exception]:
    import struct

    return struct.error


def protect_pixels(data: bytes, fmt: str, regions: Sequence[Region], look: str,
                   noise_key: bytes) -> bytes:
    """Public image (without record) in the same format, regions altered in pixels."""
    img = open_image(data, "JPEG" if fmt == "jpeg" else "PNG")
    return _encode_jpeg(img, regions, look, noise_key) if fmt == "jpeg" else \
        _encode_png(img, regions, look, noise_key)


def _altered(img: Image.Image, regions: Sequence[Region], look: str, key: bytes
             ) -> Image.Image:
    pixels = np.asarray(img)
    out = alter_pixels(pixels, regions, look, key, has_alpha=img.mode in ("LA", "RGBA"))
    return Image.fromarray(out, mode=img.mode) if out.ndim == 3 or img.mode in ("L",) \
        else Image.fromarray(out)


def _encode_jpeg(img: Image.Image, regions: Sequence[Region], look: str, key: bytes) -> bytes:
    params: dict = {}
    try:
        params["qtables"] = img.quantization
        params["subsampling"] = JpegImagePlugin.get_sampling(img)
    except Exception:
        params["quality"] = 90
    if params.get("subsampling", 0) == -1:
        params.pop("subsampling")
    if img.info.get("progressive") or img.info.get("progression"):
        params["progressive"] = True
    exif = public_exif(img.info.get("exif"))
    if exif:
        params["exif"] = exif
    if img.info.get("icc_profile"):
        params["icc_profile"] = img.info["icc_profile"]
    if img.info.get("dpi"):
        params["dpi"] = img.info["dpi"]
    out = _altered(img, regions, look, key)
    buf = io.BytesIO()
    out.save(buf, "JPEG", **params)
    return buf.getvalue()


def _encode_png(img: Image.Image, regions: Sequence[Region], look: str, key: bytes) -> bytes:
    mode = _PNG_MODES.get(img.mode, "RGBA")
    if mode is None:  # palette: blur in colour, not in palette indices
        mode = "RGBA" if "transparency" in img.info else "RGB"
    if img.mode != mode:
        img = img.convert(mode)
    params: dict = {}
    if img.info.get("icc_profile"):
        params["icc_profile"] = img.info["icc_profile"]
    out = _altered(img, regions, look, key)
    buf = io.BytesIO()
    out.save(buf, "PNG", compress_level=6, **params)
    return buf.getvalue()
