"""PNG scanline layout, unfiltering and refiltering for the selective PNG codec.

The codec must know exactly which bytes of the filtered stream it changes, so it works on
filtered rows (and Adam7 passes) itself instead of letting an image library re-encode.
Unfiltering Paeth/Average rows in Python is sequential and far too slow for 12 MP, so
`unfilter` hands the rows to libpng/Pillow's C decoders under a stand-in colour type that
has the same bytes-per-pixel (filters only see bytes and that distance) and reads the
reconstructed bytes back unchanged. Refiltering the few altered rows is vectorised numpy.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from sisafs.formats.errors import UnsupportedImage
from sisafs.formats.png_container import SIGNATURE, make_chunk

# Pixel and byte limits: checked against IHDR before anything is allocated.
MAX_PIXELS = 80_000_000
MAX_RAW_BYTES = 400_000_000

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
          (1, 0, 2, 2), (0, 1, 1, 2))


@dataclass(frozen=True)
class Pass:
    """One sub-image of the filtered stream (the whole image when not interlaced)."""

    xs: int
    ys: int
    dx: int
    dy: int
    width: int
    height: int
    rowbytes: int  # without the filter-type byte
    offset: int  # where its first row's filter byte sits in the filtered stream

    @property
    def stride(self) -> int:
        return self.rowbytes + 1

    @property
    def size(self) -> int:
        return self.stride * self.height


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    depth: int
    color_type: int
    interlace: int

    @property
    def channels(self) -> int:
        return _CHANNELS[self.color_type]

    @property
    def bpp(self) -> int:
        """Filter byte distance: bytes per complete pixel, at least 1."""
        return max(1, self.channels * self.depth // 8)

    @property
    def maxval(self) -> int:
        return (1 << self.depth) - 1

    def passes(self) -> list[Pass]:
        specs = _ADAM7 if self.interlace else ((0, 0, 1, 1),)
        out, offset = [], 0
        for xs, ys, dx, dy in specs:
            w = (self.width - xs + dx - 1) // dx if self.width > xs else 0
            h = (self.height - ys + dy - 1) // dy if self.height > ys else 0
            if w == 0 or h == 0:
                continue
            rowbytes = (w * self.channels * self.depth + 7) // 8
            p = Pass(xs, ys, dx, dy, w, h, rowbytes, offset)
            out.append(p)
            offset += p.size
        return out

    @property
    def raw_size(self) -> int:
        return sum(p.size for p in self.passes())


def parse_ihdr(data: bytes) -> Header:
    """Validate IHDR before any allocation: absurd sizes must fail fast and cheaply."""
    if len(data) != 13:
        raise UnsupportedImage("IHDR has the wrong length")
    w, h, depth, ct, comp, filt, inter = struct.unpack(">IIBBBBB", data)
    if not (0 < w < 2**31 and 0 < h < 2**31):
        raise UnsupportedImage(f"invalid PNG dimensions {w}x{h}")
    if ct not in _DEPTHS or depth not in _DEPTHS[ct]:
        raise UnsupportedImage(f"invalid PNG colour type {ct} / bit depth {depth}")
    if comp != 0 or filt != 0 or inter not in (0, 1):
        raise UnsupportedImage("unknown PNG compression, filter or interlace method")
    if w * h > MAX_PIXELS:
        raise UnsupportedImage(f"PNG of {w}x{h} exceeds the {MAX_PIXELS} pixel limit")
    hdr = Header(w, h, depth, ct, inter)
    if hdr.raw_size > MAX_RAW_BYTES:
        raise UnsupportedImage(f"PNG of {w}x{h} exceeds the raw data limit")
    return hdr


def filter_types(raw: bytes | bytearray, p: Pass) -> np.ndarray:
    view = np.frombuffer(raw, np.uint8, p.size, p.offset).reshape(p.height, p.stride)
    types = view[:, 0].copy()
    if types.size and types.max() > 4:
        raise UnsupportedImage("invalid PNG row filter type")
    return types


# stand-in colour type for each filter distance: (colour type, depth, channels)
_STANDIN = {1: (0, 8, 1), 2: (4, 8, 2), 3: (2, 8, 3), 4: (6, 8, 4), 6: (2, 16, 3),
            8: (6, 16, 4)}


def unfilter(raw: bytes | bytearray, p: Pass, bpp: int, rows: int) -> np.ndarray:
    """Reconstructed bytes of the first `rows` rows of a pass, shape (rows, rowbytes)."""
    ct, depth, ch = _STANDIN[bpp]
    width = p.rowbytes // bpp
    ihdr = struct.pack(">IIBBBBB", width, rows, depth, ct, 0, 0, 0)
    body = zlib.compress(bytes(memoryview(raw)[p.offset:p.offset + rows * p.stride]), 0)
    png = SIGNATURE + make_chunk(b"IHDR", ihdr) + make_chunk(b"IDAT", body) + \
        make_chunk(b"IEND", b"")
    try:
        if depth == 8:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(png)) as im:
                    flat = np.frombuffer(im.tobytes(), np.uint8)
        else:
            arr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
            if arr is None:
                raise ValueError("OpenCV could not decode")
            arr = arr[..., [2, 1, 0, 3][:ch]]  # BGR(A) -> RGB(A)
            flat = np.ascontiguousarray(arr).astype(">u2").view(np.uint8).reshape(-1)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UnsupportedImage(f"cannot unfilter PNG rows: {e}") from None
    return flat.reshape(rows, width * bpp)


def to_samples(rows: np.ndarray, width: int, depth: int, channels: int) -> np.ndarray:
    """Packed row bytes -> samples (rows, width, channels), uint8 or uint16."""
    n = rows.shape[0]
    if depth == 8:
        return rows[:, :width * channels].reshape(n, width, channels)
    if depth == 16:
        be = np.ascontiguousarray(rows[:, :width * channels * 2]).view(">u2")
        return be.astype(np.uint16).reshape(n, width, channels)
    bits = np.unpackbits(rows, axis=1)[:, :width * depth].reshape(n, width, depth)
    weights = (1 << np.arange(depth - 1, -1, -1)).astype(np.uint8)
    return (bits * weights).sum(axis=2, dtype=np.uint8).reshape(n, width, 1)


def from_samples(samples: np.ndarray, rowbytes: int, depth: int) -> np.ndarray:
    """Samples -> packed row bytes (rows, rowbytes); padding bits are zero."""
    n = samples.shape[0]
    if depth == 8:
        flat = samples.reshape(n, -1).astype(np.uint8)
    elif depth == 16:
        flat = samples.reshape(n, -1).astype(">u2").view(np.uint8).reshape(n, -1)
    else:
        vals = samples.reshape(n, -1).astype(np.uint8)
        shifts = np.arange(depth - 1, -1, -1, dtype=np.uint8)
        bits = ((vals[:, :, None] >> shifts) & 1).reshape(n, -1)
        flat = np.packbits(bits, axis=1)
    out = np.zeros((n, rowbytes), np.uint8)
    out[:, :flat.shape[1]] = flat
    return out


def filter_row(ftype: int, cur: np.ndarray, prior: np.ndarray | None, bpp: int) -> np.ndarray:
    """Apply one PNG filter to a reconstructed row; `prior` None means the first row."""
    x = cur.astype(np.int16)
    b = np.zeros_like(x) if prior is None else prior.astype(np.int16)
    a = np.zeros_like(x)
    a[bpp:] = x[:-bpp]
    c = np.zeros_like(x)
    c[bpp:] = b[:-bpp]
    if ftype == 0:
        pred = np.zeros_like(x)
    elif ftype == 1:
        pred = a
    elif ftype == 2:
        pred = b
    elif ftype == 3:
        pred = (a + b) >> 1
    else:
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    return ((x - pred) & 0xFF).astype(np.uint8)


def decode_image(raw: bytes | bytearray, hdr: Header) -> tuple[np.ndarray, list[np.ndarray]]:
    """Full image samples (H, W, C) plus each pass's reconstructed rows."""
    dtype = np.uint16 if hdr.depth == 16 else np.uint8
    image = np.zeros((hdr.height, hdr.width, hdr.channels), dtype)
    recon = []
    for p in hdr.passes():
        filter_types(raw, p)
        rows = unfilter(raw, p, hdr.bpp, p.height)
        recon.append(rows)
        image[p.ys::p.dy, p.xs::p.dx] = to_samples(rows, p.width, hdr.depth, hdr.channels)
    return image, recon


def refilter(raw: bytes | bytearray, public_raw: bytearray, hdr: Header,
             recon: list[np.ndarray], new_image: np.ndarray, changed: np.ndarray
             ) -> list[tuple[int, int]]:
    """Write the filtered rows of `new_image` where `changed` (H, W bool) is set.

    Each altered row keeps its original filter type; the row after it is refiltered too,
    because its Up/Average/Paeth predictor reads the altered row. Returns the byte ranges
    of the filtered stream that now differ from the original.
    """
    spans: list[tuple[int, int]] = []
    for p, rows in zip(hdr.passes(), recon, strict=True):
        sub = changed[p.ys::p.dy, p.xs::p.dx]
        hit = np.flatnonzero(sub.any(axis=1))
        if hit.size == 0:
            continue
        ftypes = filter_types(raw, p)
        new_rows = dict(zip(hit.tolist(), from_samples(
            new_image[p.ys::p.dy, p.xs::p.dx][hit], p.rowbytes, hdr.depth), strict=True))
        todo = sorted(set(hit.tolist()) | {j + 1 for j in hit.tolist() if j + 1 < p.height})
        for j in todo:
            cur = new_rows.get(j, rows[j])
            prior = None if j == 0 else new_rows.get(j - 1, rows[j - 1])
            filtered = filter_row(int(ftypes[j]), cur, prior, hdr.bpp)
            at = p.offset + j * p.stride + 1
            if bytes(filtered) != bytes(raw[at:at + p.rowbytes]):
                public_raw[at:at + p.rowbytes] = filtered.tobytes()
                spans.append((at - 1, at + p.rowbytes))
    return spans
