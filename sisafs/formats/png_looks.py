"""The visible alteration of a region in PNG sample space (blur, pixelate, noise, solid).

PNG samples can be 1- to 16-bit grey, grey+alpha, RGB(A) or palette indices, so every
look works on floats in [0, maxval] and is quantised back; a palette image stays a
palette image (its indices are replaced by the nearest palette entry) because changing
the colour type would rewrite every IDAT byte and defeat the splice restore.
"""

from __future__ import annotations

import numpy as np

from sisafs.formats.looks import LOOKS, alter, noise_cells

__all__ = ["LOOKS", "alter_samples", "nearest_index"]


def nearest_index(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette entry (RGBA floats) for each colour (N, 4)."""
    out = np.empty(len(colours), np.uint8)
    for i in range(0, len(colours), 4096):
        d = ((colours[i:i + 4096, None, :] - palette[None, :, :]) ** 2).sum(axis=2)
        out[i:i + 4096] = d.argmin(axis=1)
    return out


def alter_samples(box: np.ndarray, look: str, depth: int, has_alpha: bool,
                  palette: np.ndarray | None, noise_key: bytes, index: int) -> np.ndarray:
    """Altered integer samples of the same dtype and shape as `box`."""
    if palette is not None:  # (K, 4) RGBA, 0..255
        idx = box[..., 0]
        if look == "noise":
            cells = noise_cells(noise_key, index, (*idx.shape, 1))[..., 0]
            return (cells.astype(np.int64) % len(palette)).astype(box.dtype).reshape(box.shape)
        rgba = palette[idx].astype(np.float32)
        if look == "solid":
            rgba[:] = (128, 128, 128, 255)
            new = rgba.reshape(-1, 4)
        else:
            new = alter(rgba, look, 255, True, noise_key, index).reshape(-1, 4)
        return nearest_index(new, palette.astype(np.float32)).reshape(box.shape)
    maxval = (1 << depth) - 1
    out = alter(box.astype(np.float32), look, maxval, has_alpha, noise_key, index)
    return np.clip(np.rint(out), 0, maxval).astype(box.dtype)
