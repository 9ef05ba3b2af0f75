"""The visible alteration of a region in PNG sample space (blur, pixelate, noise, solid).

PNG samples can be 1- to 16-bit grey, grey+alpha, RGB(A) or palette indices, so every
look works on floats in [0, maxval] and is quantised back; a palette image stays a
palette image (its indices are replaced by the nearest palette entry) because changing
the colour type would rewrite every IDAT byte and defeat the splice restore.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sisafs.crypto.keys import PURPOSE_NOISE, subkey

LOOKS = ("blur", "pixelate", "noise", "solid")
BLUR_CELLS = 6  # information left across the larger side of a blurred region
PIXELATE_CELLS = 8


def keystream(image_key: bytes, file_id: bytes, index: int, n: int) -> np.ndarray:
    """`n` keyed pseudo-random bytes for region `index`: AES-CTR, one counter block each."""
    key = subkey(image_key, PURPOSE_NOISE, salt=file_id)
    nonce = index.to_bytes(8, "big") + bytes(8)
    enc = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    return np.frombuffer(enc.update(bytes(n)) + enc.finalize(), np.uint8)


def _resize(a: np.ndarray, w: int, h: int, interp: int) -> np.ndarray:
    out = cv2.resize(a, (w, h), interpolation=interp)
    return out.reshape(h, w, a.shape[2])


def blur(box: np.ndarray) -> np.ndarray:
    """Smooth blobs: average down to a few cells, then upsample smoothly.

    A plain Gaussian of moderate radius leaves faces recognisable to DNN matchers; keeping
    only ~6x6 colour cells of the whole region removes identity while still looking like
    a blur rather than a box.
    """
    h, w = box.shape[:2]
    scale = BLUR_CELLS / max(h, w)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = _resize(box, sw, sh, cv2.INTER_AREA)
    up = _resize(small, w, h, cv2.INTER_LINEAR)
    sigma = max(h, w) / (2 * BLUR_CELLS)
    k = min(2 * math.ceil(2 * sigma) + 1, 2 * (max(h, w) // 2) + 1)
    if k >= 3:
        up = cv2.GaussianBlur(up, (k, k), sigma, borderType=cv2.BORDER_REPLICATE)
    return up.reshape(h, w, box.shape[2])


def pixelate(box: np.ndarray) -> np.ndarray:
    h, w = box.shape[:2]
    cell = max(2, math.ceil(max(h, w) / PIXELATE_CELLS))
    sw, sh = math.ceil(w / cell), math.ceil(h / cell)
    small = _resize(box, sw, sh, cv2.INTER_AREA)
    return np.repeat(np.repeat(small, cell, axis=0), cell, axis=1)[:h, :w]


def alter(box: np.ndarray, look: str, maxval: int, has_alpha: bool, noise: np.ndarray | None
          ) -> np.ndarray:
    """Altered float samples for one region box (h, w, c) in [0, maxval]."""
    if look == "blur":
        out = blur(box)
    elif look == "pixelate":
        out = pixelate(box)
    elif look == "noise":
        assert noise is not None
        out = noise.reshape(box.shape).astype(np.float32) * (maxval / 255.0)
    elif look == "solid":
        out = np.full_like(box, maxval / 2)
    else:
        raise ValueError(f"unknown look {look!r} (use one of {', '.join(LOOKS)})")
    if has_alpha and look in ("noise", "solid"):
        out[..., -1] = maxval  # opaque, so the fill is what a viewer shows
    return out


def nearest_index(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette entry (RGBA floats) for each colour (N, 4)."""
    out = np.empty(len(colours), np.uint8)
    for i in range(0, len(colours), 4096):
        d = ((colours[i:i + 4096, None, :] - palette[None, :, :]) ** 2).sum(axis=2)
        out[i:i + 4096] = d.argmin(axis=1)
    return out


def alter_samples(box: np.ndarray, look: str, depth: int, has_alpha: bool,
                  palette: np.ndarray | None, noise: np.ndarray | None) -> np.ndarray:
    """Altered integer samples of the same dtype and shape as `box`."""
    if palette is not None:  # (K, 4) RGBA, 0..255
        idx = box[..., 0]
        if look == "noise":
            assert noise is not None
            return (noise.reshape(idx.shape).astype(np.int64) % len(palette)).astype(
                box.dtype).reshape(box.shape)
        rgba = palette[idx].astype(np.float32)
        if look == "solid":
            rgba[:] = (128, 128, 128, 255)
            new = rgba.reshape(-1, 4)
        else:
            new = alter(rgba, look, 255, True, None).reshape(-1, 4)
        return nearest_index(new, palette.astype(np.float32)).reshape(box.shape)
    maxval = (1 << depth) - 1
    out = alter(box.astype(np.float32), look, maxval, has_alpha, noise)
    return np.clip(np.rint(out), 0, maxval).astype(box.dtype)
