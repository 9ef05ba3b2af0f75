"""Looks in the DCT domain: how altered 8x8 blocks appear in the public JPEG.

Working on quantised coefficients (not pixels) is what keeps every other block of the
file bit-identical: nothing is decoded to pixels and re-quantised. Each look rewrites
whole blocks, in every component, of the MCUs a region touches. Values stay in the
8-bit baseline ranges; the entropy encoder may still nudge a value to one its Huffman
table can code (optimised tables lack unused symbols), which changes nothing visible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sisafs.formats.jpeg_structure import Layout
from sisafs.regions import Region

LOOKS = ("blur", "pixelate", "noise", "solid")
# Looks that show the region's local means by design: a span of them may end on a block
# that keeps its own original DC (see jpeg_selective), which shows nothing of a kind the
# look does not already show. Noise and solid show nothing of the content, so they never do.
SHOWS_MEANS = frozenset({"blur", "pixelate"})
NOISE_CELLS = 3  # noise cells across a region's smaller side (see noise_cell)
MAX_NOISE_CELL = 32  # MCUs
# Coefficients a look may set: the DC and the two lowest AC terms (blur's ramps). Every
# other coefficient of an altered block is zero, so the looks compute only these and
# apply zeroes the rest in place: building whole 64-term blocks for a region that covers
# most of a 12 MP frame, then copying them over, was a third of the alter stage.
TERMS = 3

# F(0,1) of an 8x8 block holding a horizontal ramp of slope 1 level/pixel (JPEG FDCT
# scaling); the same value serves F(1,0) for a vertical ramp.
_RAMP = sum((x - 3.5) * math.cos((2 * x + 1) * math.pi / 16) for x in range(8)) \
    * 8 / 4 / math.sqrt(2)


def region_cells(layout: Layout, regions: Sequence[Region]
                 ) -> list[tuple[Region, tuple[int, int, int, int], np.ndarray]]:
    """Per region: (region, MCU rect (y0, x0, y1, x1), bool mask of touched MCUs in it).

    A box is widened to whole MCUs so every component's blocks are altered together; a
    mask, when given, leaves out MCUs it does not touch at all.
    """
    f = layout.frame
    cw, ch = 8 * f.hmax, 8 * f.vmax
    out = []
    for r in regions:
        c = r.clipped(f.width, f.height)
        if c is None:
            continue
        x, y, w, h = c.box
        x0, y0 = x // cw, y // ch
        x1, y1 = -(-(x + w) // cw), -(-(y + h) // ch)
        cells = np.ones((y1 - y0, x1 - x0), bool)
        if c.mask is not None and c.mask.shape == (h, w):
            m = np.zeros(((y1 - y0) * ch, (x1 - x0) * cw), bool)
            m[y - y0 * ch : y - y0 * ch + h, x - x0 * cw : x - x0 * cw + w] = c.mask
            # rows of each MCU first (a contiguous pass), then columns: ten times faster
            # than any(axis=(1, 3)) on a full-frame person mask
            cells = m.reshape(y1 - y0, ch, -1).any(axis=1).reshape(y1 - y0, x1 - x0, cw) \
                .any(axis=2)
        if cells.any():
            out.append((c, (y0, x0, y1, x1), cells))
    return out


def apply(layout: Layout, regions: Sequence[Region], look: str, noise_key: bytes
          ) -> tuple[list[np.ndarray], np.ndarray]:
    """(public coefficients per component, bool grid of altered MCUs)."""
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r} (use one of {', '.join(LOOKS)})")
    f = layout.frame
    altered = np.zeros((f.mcus_y, f.mcus_x), bool)
    pub = [c.copy() for c in layout.coefs]
    for region, (y0, x0, y1, x1), cells in region_cells(layout, regions):
        altered[y0:y1, x0:x1] |= cells
        for ci, comp in enumerate(f.components):
            q = layout.qtables[comp.tq]
            sl = np.s_[y0 * comp.v : y1 * comp.v, x0 * comp.h : x1 * comp.h]
            block = pub[ci][sl]
            cell = (noise_cell(region, f.hmax, f.vmax) if look == "noise"
                    else max(1, round(min(region.box[2], region.box[3]) / 6 / (8 * f.hmax))))
            grain = (cell * comp.v, cell * comp.h)
            new = _LOOK_FUNCS[look](block, q, grain, noise_key, ci, (y0 * comp.v, x0 * comp.h))
            if cells.all():  # a plain box: no masks
                block[...] = 0
                block[..., :TERMS] = new
            else:
                mask = np.repeat(np.repeat(cells, comp.v, 0), comp.h, 1)
                block[mask] = 0  # whole blocks: contiguous rows of 64 terms
                np.copyto(block[..., :TERMS], new, where=mask[..., None])
    return pub, altered


def noise_cell(region: Region, hmax: int, vmax: int) -> int:
    """MCUs per side of one noise cell: about NOISE_CELLS cells across the region's
    smaller side, at most MAX_NOISE_CELL MCUs.

    Within a cell every block has the same DC, so most DC differences are zero and
    cost two bits: one cell per MCU (the old look) made the noise cost as much as a
    quarter of the photo it hid. The cell size carries nothing of the content (all AC
    terms stay zero and every cell's value is keystream), so the look is as strong.
    """
    across = min(region.box[2] / (8 * hmax), region.box[3] / (8 * vmax)) / NOISE_CELLS
    return int(min(MAX_NOISE_CELL, max(1, across)))


def _terms(block: np.ndarray) -> np.ndarray:
    """Zeroed first TERMS coefficients of every block of `block` (what a look returns)."""
    return np.zeros(block.shape[:2] + (TERMS,), block.dtype)


def _flat(block: np.ndarray, dc: np.ndarray) -> np.ndarray:
    out = _terms(block)
    out[..., 0] = np.clip(np.rint(dc), -1024, 1023)
    return out


def _solid(block, q, cell, key, ci, origin):
    """Mid grey in every component: no trace of the content, not even its mean."""
    return _terms(block)


def _pixelate(block, q, cell, key, ci, origin):
    """One flat colour per cell of several blocks (about six cells across a region)."""
    dc = block[..., 0].astype(np.float64)
    cy, cx = cell
    h, w = dc.shape
    out = np.empty_like(dc)
    for y in range(0, h, cy):
        for x in range(0, w, cx):
            out[y : y + cy, x : x + cx] = dc[y : y + cy, x : x + cx].mean()
    return _flat(block, out)


def _blur(block, q, cell, key, ci, origin):
    """A Gaussian blur of the block means, wide enough to wash out a face, with smooth
    ramps (the two lowest AC terms) inside each block so the result has no mosaic edges."""
    dc = block[..., 0].astype(np.float32)
    h, w = dc.shape
    sigma = max(1.0, min(h, w) / 4.0)
    # Blur twice as wide as pixelate's cells: a mean over a few blocks keeps too much.
    small = cv2.GaussianBlur(dc, (0, 0), sigmaX=sigma, sigmaY=sigma,
                             borderType=cv2.BORDER_REFLECT)
    out = _flat(block, small)
    level = small * float(q[0]) / 8.0  # mean pixel level of each block
    gy, gx = np.gradient(level) if min(h, w) > 1 else (np.zeros_like(level),) * 2
    out[..., 1] = np.clip(np.rint(_RAMP * gx / 8.0 / q[1]), -1023, 1023)
    out[..., 2] = np.clip(np.rint(_RAMP * gy / 8.0 / q[2]), -1023, 1023)
    # A ramp of one quantisation step is too faint to hide a block edge and costs as
    # many bits as the block's DC: only steeper ones stay (level 1 size, issue 11).
    ramps = out[..., 1:3]
    ramps[np.abs(ramps) <= 1] = 0
    return out


def _noise(block, q, cell, key, ci, origin):
    """Keyed noise (AES-256-CTR) in the DC coefficients only: every cell (`noise_cell`
    MCUs square) becomes a flat square of random brightness, keyed by position, so the
    same file and key give the same noise. Nothing of the content survives (all AC
    terms are zero), and flat blocks cost a few bits each: noise in the AC terms
    tripled file sizes. Only the first component (luma) is noise; the others are flat
    mid-level (neutral grey): random colour too cost 1.5 % more file for nothing a
    viewer needs (issue 11), and a constant carries no more of the content."""
    if ci != 0:
        return _terms(block)
    h, w = block.shape[:2]
    cy, cx = cell
    gh, gw = -(-h // cy), -(-w // cx)
    nonce = bytes([ci]) + origin[0].to_bytes(4, "big") + origin[1].to_bytes(4, "big")
    enc = Cipher(algorithms.AES(key), modes.CTR(nonce.ljust(16, b"\0"))).encryptor()
    r = np.frombuffer(enc.update(b"\0" * (gh * gw)), np.uint8).reshape(gh, gw)
    r = np.repeat(np.repeat(r, cy, 0), cx, 1)[:h, :w].astype(np.float64)
    r = r / 255.0 * 2.0 - 1.0
    out = _terms(block)
    out[..., 0] = np.clip(np.rint(r * 8 * 90 / q[0]), -1024, 1023)
    return out


_LOOK_FUNCS = {"blur": _blur, "pixelate": _pixelate, "noise": _noise, "solid": _solid}
