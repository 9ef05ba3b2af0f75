"""Pixel-domain looks: how an altered region appears in a public image.

One implementation for every pixel path (the PNG codec and the fallback for any JPEG or
PNG): it works on float samples in [0, maxval], so 8- and 16-bit, grey, colour and alpha
all take the same code. None of the looks needs to be reversible: the exact original
lives in the encrypted restore record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sisafs.regions import Region

LOOKS = ("blur", "pixelate", "noise", "solid")
BLUR_CELLS = 6  # information left across the larger side of a blurred region
PIXELATE_CELLS = 8
NOISE_CELL = 8  # least pixels per keyed noise cell
NOISE_CELLS_ACROSS = 3  # cells across a region's smaller side (as the JPEG look)
MAX_NOISE_CELL = 128  # pixels


def keyed_noise(key: bytes, nbytes: int, index: int) -> np.ndarray:
    """`nbytes` bytes of AES-256-CTR keystream for region `index`."""
    enc = Cipher(algorithms.AES(key), modes.CTR(index.to_bytes(16, "big"))).encryptor()
    return np.frombuffer(enc.update(bytes(nbytes)) + enc.finalize(), np.uint8)


def _resize(a: np.ndarray, w: int, h: int, interp: int) -> np.ndarray:
    return cv2.resize(a, (w, h), interpolation=interp).reshape(h, w, a.shape[2])


def blur(box: np.ndarray) -> np.ndarray:
    """Smooth blobs: average down to a few cells, then upsample smoothly.

    A plain Gaussian of moderate radius leaves faces recognisable to DNN matchers; keeping
    only ~6x6 colour cells of the whole region removes identity while still looking like
    a blur rather than a box.
    """
    h, w = box.shape[:2]
    scale = BLUR_CELLS / max(h, w)
    small = _resize(box, max(1, round(w * scale)), max(1, round(h * scale)), cv2.INTER_AREA)
    up = _resize(small, w, h, cv2.INTER_LINEAR)
    sigma = max(h, w) / (2 * BLUR_CELLS)
    k = min(2 * math.ceil(2 * sigma) + 1, 2 * (max(h, w) // 2) + 1)
    if k >= 3:
        up = cv2.GaussianBlur(up, (k, k), sigma, borderType=cv2.BORDER_REPLICATE)
    return up.reshape(h, w, box.shape[2])


def pixelate(box: np.ndarray) -> np.ndarray:
    h, w = box.shape[:2]
    cell = max(2, math.ceil(max(h, w) / PIXELATE_CELLS))
    small = _resize(box, math.ceil(w / cell), math.ceil(h / cell), cv2.INTER_AREA)
    return np.repeat(np.repeat(small, cell, axis=0), cell, axis=1)[:h, :w]


def noise_cell(shape: tuple[int, ...]) -> int:
    """Pixels per noise cell for a region of `shape`: about NOISE_CELLS_ACROSS cells
    across its smaller side, never below NOISE_CELL nor above MAX_NOISE_CELL. Bigger
    cells compress better and, being keystream, carry no more of the content."""
    return int(min(MAX_NOISE_CELL, max(NOISE_CELL, min(shape[0], shape[1]) // NOISE_CELLS_ACROSS)))


def noise_cells(key: bytes, index: int, shape: tuple[int, ...], cell: int = NOISE_CELL
                ) -> np.ndarray:
    """Keyed bytes (0..255) of `shape` (h, w, c), constant over cell x cell squares and
    equal in every channel (grey, as the JPEG look): as unreadable as per-pixel noise,
    and encoders can still compress it (per-pixel noise tripled file sizes)."""
    h, w, c = shape
    ch, cw = -(-h // cell), -(-w // cell)
    raw = np.repeat(keyed_noise(key, ch * cw, index).reshape(ch, cw, 1), c, axis=2)
    return np.repeat(np.repeat(raw, cell, axis=0), cell, axis=1)[:h, :w]


def alter(box: np.ndarray, look: str, maxval: int, has_alpha: bool, noise_key: bytes,
          index: int) -> np.ndarray:
    """Altered float samples for one region box (h, w, c) in [0, maxval]."""
    if look == "blur":
        out = blur(box)
    elif look == "pixelate":
        out = pixelate(box)
    elif look == "noise":
        out = noise_cells(noise_key, index, box.shape, noise_cell(box.shape)).astype(
            np.float32) * (maxval / 255.0)
    elif look == "solid":
        out = np.full_like(box, maxval / 2)
    else:
        raise ValueError(f"unknown look {look!r} (use one of {', '.join(LOOKS)})")
    if has_alpha and look in ("noise", "solid"):
        out[..., -1] = maxval  # opaque, so the fill is what a viewer shows
    return out


def alter_pixels(pixels: np.ndarray, regions: Sequence[Region], look: str,
                 noise_key: bytes, has_alpha: bool = False) -> np.ndarray:
    """A copy of `pixels` (H×W or H×W×C, uint8 or uint16) with every region altered."""
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r}; choose one of {', '.join(LOOKS)}")
    out = pixels.copy()
    height, width = out.shape[:2]
    maxval = np.iinfo(out.dtype).max
    for n, region in enumerate(regions):
        r = region.clipped(width, height)
        if r is None:
            continue
        x, y, w, h = r.box
        patch = out[y : y + h, x : x + w]
        box = patch.reshape(h, w, -1).astype(np.float32)
        new = alter(box, look, maxval, has_alpha, noise_key, n)
        new = np.clip(np.rint(new), 0, maxval).astype(out.dtype).reshape(patch.shape)
        if r.mask is not None:
            m = r.mask.astype(bool)
            new = np.where(m[..., None] if patch.ndim == 3 else m, new, patch)
        out[y : y + h, x : x + w] = new
    return out
