"""Pixel-domain looks: how an altered region appears in the public image.

Used by the fallback path and by the PNG codec. Every look destroys the region's
content beyond recognition; none of them needs to be reversible, because the exact
original lives in the encrypted restore record.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sisafs.regions import Region

LOOKS = ("blur", "pixelate", "noise", "solid")


def keyed_noise(key: bytes, nbytes: int, nonce: bytes = b"\0" * 16) -> np.ndarray:
    """`nbytes` bytes of AES-256-CTR keystream: noise no one can tell from the content."""
    enc = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    return np.frombuffer(enc.update(b"\0" * nbytes) + enc.finalize(), dtype=np.uint8)


def _blur(patch: np.ndarray) -> np.ndarray:
    h, w = patch.shape[:2]
    # Shrink to a handful of cells, then smooth back up: a face becomes a colour wash.
    small = cv2.resize(patch, (max(1, w // 24), max(1, h // 24)), interpolation=cv2.INTER_AREA)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    k = max(3, (min(h, w) // 8) | 1)
    out = cv2.GaussianBlur(out, (k, k), 0)
    return out.reshape(patch.shape)


def _pixelate(patch: np.ndarray) -> np.ndarray:
    h, w = patch.shape[:2]
    cell = max(8, min(h, w) // 6)
    small = cv2.resize(patch, (max(1, w // cell), max(1, h // cell)),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).reshape(patch.shape)


NOISE_CELL = 8


def _noise(patch: np.ndarray, key: bytes, index: int) -> np.ndarray:
    """Keyed noise in 8-pixel cells: as unreadable as per-pixel noise, and a JPEG or PNG
    encoder can still compress it (per-pixel noise tripled file sizes)."""
    h, w = patch.shape[:2]
    ch, cw = -(-h // NOISE_CELL), -(-w // NOISE_CELL)
    shape = (ch, cw, *patch.shape[2:])
    count = int(np.prod(shape)) * patch.dtype.itemsize
    cells = np.frombuffer(keyed_noise(key, count, index.to_bytes(16, "big")).tobytes(),
                          dtype=patch.dtype).reshape(shape)
    big = np.repeat(np.repeat(cells, NOISE_CELL, axis=0), NOISE_CELL, axis=1)
    return np.ascontiguousarray(big[:h, :w])


def alter_pixels(pixels: np.ndarray, regions: Sequence[Region], look: str,
                 noise_key: bytes) -> np.ndarray:
    """A copy of `pixels` (H×W or H×W×C, uint8 or uint16) with every region altered."""
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r}; choose one of {', '.join(LOOKS)}")
    out = pixels.copy()
    height, width = out.shape[:2]
    for n, region in enumerate(regions):
        r = region.clipped(width, height)
        if r is None:
            continue
        x, y, w, h = r.box
        patch = out[y : y + h, x : x + w]
        if look == "blur":
            new = _blur(patch)
        elif look == "pixelate":
            new = _pixelate(patch)
        elif look == "solid":
            new = np.empty_like(patch)
            new[...] = np.array(patch.reshape(-1, *patch.shape[2:]).mean(axis=0),
                                dtype=patch.dtype)
        else:
            new = _noise(patch, noise_key, n)
        if r.mask is not None:
            m = r.mask.astype(bool)
            if patch.ndim == 3:
                m = m[..., None]
            new = np.where(m, new, patch)
        out[y : y + h, x : x + w] = new
    return out
