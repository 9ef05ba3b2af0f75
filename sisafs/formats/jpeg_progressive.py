"""Selective progressive JPEG: alter the region blocks' coefficients, keep the rest exact.

Progressive scans code bands of coefficients with end-of-band runs spanning many blocks,
so the sequential codec's byte-span splice does not apply. This path works one level up:

- protect decodes every scan to coefficients (C, `_jpegprog`) and first proves that
  re-encoding them with the file's own Huffman tables and scan script reproduces every
  scan byte for byte (true of libjpeg-family encoders: the encoder follows jcphuff.c);
  files where it does not take the pixel fallback;
- the regions' blocks are altered with the sequential path's DCT-domain looks
  (`jpeg_looks`), and the public file is the same scan script re-encoded with tables
  optimised for the altered coefficients (so it is about the original's size);
- the payload holds the original bytes that are not entropy-coded data (segments, scan
  headers, tables, trailing data), each scan's tables, and the original coefficients of
  the altered blocks only (deflated).

Restore decodes the public scans, puts the original blocks back, and re-encodes every
scan with the original tables. The codec checks the result against the original's
sha256 at protect time, like every path.

Payload format, version 1 (big-endian):

    b"SJPP" | version u8 = 1 | scan count u16 | original size u64 | public size u64 |
    literal count u16 | literals (u32 length + bytes; one more than scans) |
    scans (component count u8, component indices u8 each, Ss Se Ah Al u8, per component
    DC and AC table bodies as u16 length + bytes) | per frame component: u32 length +
    (empty, or five u32-length parts: deflated (row u16, col u16) of each altered block;
    DC table; DC scan; AC table; AC scan of those blocks' original coefficients coded as
    a one-row progressive image)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sisafs.crypto.keys import PURPOSE_NOISE, subkey
from sisafs.formats import _jpegprog, jpeg_looks
from sisafs.formats.errors import FormatError, RecordError, UnsupportedImage
from sisafs.formats.jpeg_privacy import public_segment
from sisafs.formats.jpeg_structure import Frame, Layout, _parse_dht, _parse_dqt, _parse_sof
from sisafs.regions import Region

MAGIC = b"SJPP"
VERSION = 1
_HEAD = struct.Struct(">4sBHQQH")


@dataclass
class PScan:
    header: tuple[int, int]  # (SOS segment start, end)
    end: int  # offset of the marker after the entropy-coded data
    comps: list[int]
    band: tuple[int, int, int, int]  # Ss, Se, Ah, Al
    dc: list[bytes | None]  # per scan component: DHT body as it stood
    ac: list[bytes | None]


@dataclass
class PLayout:
    frame: Frame
    qtables: dict
    segments: list[tuple[int, int, int]]  # (marker, start, end) outside entropy data
    scans: list[PScan]
    eoi: int
    coefs: list[np.ndarray]


def _alloc(frame: Frame) -> list[np.ndarray]:
    return [np.zeros((frame.mcus_y * c.v, frame.mcus_x * c.h, 64), np.int16)
            for c in frame.components]


def _geometry(frame: Frame, comps: list[int]) -> tuple[int, int]:
    if len(comps) > 1:
        return frame.mcus_y, frame.mcus_x
    return frame.block_dims(frame.components[comps[0]])


def _comp_args(frame: Frame, coefs: list[np.ndarray], comps: list[int],
               dc: Sequence[bytes | None], ac: Sequence[bytes | None]) -> tuple:
    return tuple((frame.components[k].h, frame.components[k].v, d, a, coefs[k].shape[0],
                  coefs[k].shape[1], coefs[k]) for k, d, a in zip(comps, dc, ac, strict=True))


def parse(buf: bytes) -> PLayout:
    """Every segment and scan of a progressive JPEG, scans decoded."""
    if not buf.startswith(b"\xff\xd8"):
        raise UnsupportedImage("not a JPEG")
    frame: Frame | None = None
    qtables: dict = {}
    dc: list = [None] * 4
    ac: list = [None] * 4
    segments, scans, coefs = [], [], []
    pos = 2
    while True:
        if pos + 2 > len(buf) or buf[pos] != 0xFF:
            raise UnsupportedImage("corrupt progressive JPEG (no marker where one is due)")
        marker = buf[pos + 1]
        if marker == 0xD9:
            break
        if pos + 4 > len(buf):
            raise UnsupportedImage("truncated JPEG segment")
        (length,) = struct.unpack(">H", buf[pos + 2 : pos + 4])
        end = pos + 2 + length
        if length < 2 or end > len(buf):
            raise UnsupportedImage("truncated JPEG segment")
        body = buf[pos + 4 : end]
        segments.append((marker, pos, end))
        if marker == 0xC2:
            if frame is not None:
                raise UnsupportedImage("JPEG with more than one frame")
            frame = _parse_sof(body, marker)
            coefs = _alloc(frame)
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            raise UnsupportedImage("not a Huffman-coded progressive JPEG")
        elif marker == 0xC4:
            _parse_dht(body, dc, ac)
        elif marker == 0xDB:
            _parse_dqt(body, qtables)
        elif marker == 0xDD and body != b"\0\0":
            raise UnsupportedImage("progressive JPEG with restart markers")
        elif marker in (0xCC, 0xDC):
            raise UnsupportedImage("arithmetic coding or DNL in a progressive JPEG")
        elif marker == 0xDA:
            if frame is None:
                raise UnsupportedImage("JPEG scan before the frame header")
            scan = _scan(body, frame, (pos, end), dc, ac)
            scan.end = _decode(buf, frame, coefs, scan, end)
            scans.append(scan)
            end = scan.end
        pos = end
    if frame is None or not scans:
        raise UnsupportedImage("progressive JPEG without frame or scans")
    if any(c.tq not in qtables for c in frame.components):
        raise UnsupportedImage("JPEG component uses an undefined quantisation table")
    return PLayout(frame, qtables, segments, scans, pos, coefs)


def _scan(body: bytes, frame: Frame, header: tuple[int, int], dc: list, ac: list) -> PScan:
    n = body[0] if body else 0
    if n < 1 or n > 4 or len(body) != 4 + 2 * n:
        raise UnsupportedImage("corrupt JPEG scan header")
    comps, dcs, acs = [], [], []
    for i in range(n):
        cid, t = body[1 + 2 * i : 3 + 2 * i]
        found = [k for k, c in enumerate(frame.components) if c.cid == cid]
        if not found or t >> 4 > 3 or t & 15 > 3:
            raise UnsupportedImage("corrupt JPEG scan header")
        comps.append(found[0])
        dcs.append(dc[t >> 4])
        acs.append(ac[t & 15])
    ss, se, a = body[1 + 2 * n : 4 + 2 * n]
    band = (ss, se, a >> 4, a & 15)
    if ss == 0 and band[2] == 0 and None in dcs or ss > 0 and None in acs:
        raise UnsupportedImage("JPEG scan uses an undefined Huffman table")
    return PScan(header, 0, comps, band, dcs if ss == 0 else [None] * n,
                 acs if ss > 0 else [None] * n)


def _decode(buf: bytes, frame: Frame, coefs: list, scan: PScan, start: int) -> int:
    ny, nx = _geometry(frame, scan.comps)
    try:
        return _jpegprog.decode_prog(buf, start, _comp_args(frame, coefs, scan.comps, scan.dc,
                                                            scan.ac), ny, nx, *scan.band)
    except ValueError as e:
        raise UnsupportedImage(f"progressive JPEG scan: {e}") from None


def encode_scan(frame: Frame, coefs: list, scan: PScan, dc: Sequence, ac: Sequence,
                gather: bool = False):
    ny, nx = _geometry(frame, scan.comps)
    try:
        return _jpegprog.encode_prog(_comp_args(frame, coefs, scan.comps, dc, ac), ny, nx,
                                     *scan.band, gather)
    except LookupError as e:
        raise UnsupportedImage(f"progressive JPEG scan does not re-encode: {e}") from None


def optimal_table(freq: Sequence[int]) -> bytes:
    """A DHT body for these symbol counts: libjpeg's jpeg_gen_optimal_table."""
    f = list(freq[:256]) + [1]
    codesize = [0] * 257
    others = [-1] * 257
    while True:
        c1 = c2 = -1
        v1 = v2 = 1 << 62
        for i in range(257):
            if f[i] and f[i] <= v1:
                v2, c2, v1, c1 = v1, c1, f[i], i
            elif f[i] and f[i] <= v2:
                v2, c2 = f[i], i
        if c2 < 0:
            break
        f[c1] += f[c2]
        f[c2] = 0
        codesize[c1] += 1
        while others[c1] >= 0:
            c1 = others[c1]
            codesize[c1] += 1
        others[c1] = c2
        codesize[c2] += 1
        while others[c2] >= 0:
            c2 = others[c2]
            codesize[c2] += 1
    bits = [0] * 33
    for size in codesize:
        if size:
            bits[size] += 1
    for i in range(32, 16, -1):
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    i = 16
    while bits[i] == 0:
        i -= 1
    bits[i] -= 1
    vals = [s for size in range(1, 33) for s in range(256) if codesize[s] == size]
    return bytes(bits[1:17]) + bytes(vals)


def _dht(tables: list[tuple[int, int, bytes]]) -> bytes:
    body = b"".join(bytes([tc << 4 | th]) + t for tc, th, t in tables)
    return b"\xff\xc4" + struct.pack(">H", len(body) + 2) + body


def protect(data: bytes, regions: Sequence[Region], look: str, image_key: bytes,
            file_id: bytes) -> tuple[bytes, bytes]:
    """-> (public JPEG without any restore record, restore payload)."""
    if look not in jpeg_looks.LOOKS:
        raise ValueError(f"unknown look {look!r}")
    try:
        lay = parse(data)
        for s in lay.scans:  # the original must be what its own tables re-encode to
            if encode_scan(lay.frame, lay.coefs, s, s.dc, s.ac) != data[s.header[1] : s.end]:
                raise UnsupportedImage("progressive scans do not re-encode byte for byte")
        layout = Layout(lay.frame, lay.qtables, [], [], lay.eoi, lay.coefs)
        noise_key = subkey(image_key, PURPOSE_NOISE, salt=file_id)
        pub_coefs, _ = jpeg_looks.apply(layout, regions, look, noise_key)
        public = _public(data, lay, pub_coefs)
        return public, _payload(data, lay, pub_coefs, len(public))
    except FormatError:
        raise
    except (ValueError, LookupError, IndexError, OverflowError, MemoryError,
            struct.error) as e:
        raise UnsupportedImage(f"selective progressive JPEG path failed: {e}") from None


def _public(data: bytes, lay: PLayout, coefs: list[np.ndarray]) -> bytes:
    out = [b"\xff\xd8"]
    scan_at = {s.header[0]: s for s in lay.scans}
    for marker, start, end in lay.segments:
        if marker == 0xC4:
            continue  # every scan gets its own optimised tables below
        if marker == 0xDA:
            s = scan_at[start]
            dc_ids, ac_ids = _table_ids(data, s)
            tables, dc, ac = [], list(s.dc), list(s.ac)
            if s.band[0] > 0 or s.band[2] == 0:
                dcc, acc = encode_scan(lay.frame, coefs, s, s.dc, s.ac, gather=True)
                dcc = np.frombuffer(dcc, np.uint32).reshape(-1, 257)
                acc = np.frombuffer(acc, np.uint32).reshape(-1, 257)
                kind, ids, counts = (0, dc_ids, dcc) if s.band[0] == 0 else (1, ac_ids, acc)
                for tid in sorted(set(ids)):
                    merged = sum(counts[j] for j, t in enumerate(ids) if t == tid)
                    body = optimal_table(merged.tolist())
                    tables.append((kind, tid, body))
                    for j, t in enumerate(ids):
                        if t == tid:
                            (dc if kind == 0 else ac)[j] = body
                out.append(_dht(tables))
            out.append(data[start:end])
            out.append(encode_scan(lay.frame, coefs, s, dc, ac))
            continue
        body = public_segment(marker, data[start + 4 : end])
        if body is not None:
            out.append(bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body)
    out.append(b"\xff\xd9")
    return b"".join(out)


def _table_ids(data: bytes, s: PScan) -> tuple[list[int], list[int]]:
    n = data[s.header[0] + 4]
    sel = data[s.header[0] + 5 : s.header[0] + 5 + 2 * n]
    return [sel[2 * i + 1] >> 4 for i in range(n)], [sel[2 * i + 1] & 15 for i in range(n)]


def _payload(data: bytes, lay: PLayout, pub: list[np.ndarray], public_size: int) -> bytes:
    lits, cur = [], 0
    for s in lay.scans:
        lits.append(data[cur : s.header[1]])
        cur = s.end
    lits.append(data[cur:])
    out = [_HEAD.pack(MAGIC, VERSION, len(lay.scans), len(data), public_size, len(lits))]
    out += [struct.pack(">I", len(x)) + x for x in lits]
    for s in lay.scans:
        out.append(bytes([len(s.comps), *s.comps, *s.band]))
        for t in (*s.dc, *s.ac):
            t = t or b""
            out.append(struct.pack(">H", len(t)) + t)
    for orig, new in zip(lay.coefs, pub, strict=True):
        rows, cols = np.nonzero(np.any(orig != new, axis=-1))
        out.append(_pack_blocks(rows, cols, orig[rows, cols]))
    return b"".join(out)


def _chunk(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _pack_blocks(rows: np.ndarray, cols: np.ndarray, blocks: np.ndarray) -> bytes:
    """The original coefficients of one component's altered blocks, entropy-coded as a
    one-row progressive image (DC scan, AC scan, optimised tables): zlib on raw int16
    coefficients made payloads as large as the whole original."""
    if not len(rows):
        return _chunk(b"")
    where = zlib.compress(np.stack([rows, cols], 1).astype(">u2").tobytes(), 9)
    arr = np.ascontiguousarray(blocks.reshape(1, -1, 64).astype(np.int16))
    parts = [where]
    for band in ((0, 0, 0, 0), (1, 63, 0, 0)):
        kind = 0 if band[0] == 0 else 1
        comp = (1, 1, None, None, 1, arr.shape[1], arr)
        counts = _jpegprog.encode_prog((comp,), 1, arr.shape[1], *band, True)[kind]
        table = optimal_table(np.frombuffer(counts, np.uint32).tolist())
        tabs = (table, None) if kind == 0 else (None, table)
        comp = (1, 1, *tabs, 1, arr.shape[1], arr)
        parts += [table, _jpegprog.encode_prog((comp,), 1, arr.shape[1], *band, False)]
    return _chunk(b"".join(_chunk(x) for x in parts))


def _unpack_blocks(raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not raw:
        empty = np.zeros(0, np.intp)
        return empty, empty, np.zeros((0, 64), np.int16)
    parts, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from(">I", raw, pos)
        parts.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    if len(parts) != 5:
        raise RecordError("progressive JPEG payload: bad block section")
    where = np.frombuffer(zlib.decompress(parts[0]), ">u2").reshape(-1, 2).astype(np.intp)
    arr = np.zeros((1, len(where), 64), np.int16)
    for table, stream, band in ((parts[1], parts[2], (0, 0, 0, 0)),
                                (parts[3], parts[4], (1, 63, 0, 0))):
        tabs = (table, None) if band[0] == 0 else (None, table)
        comp = (1, 1, *tabs, 1, len(where), arr)
        _jpegprog.decode_prog(stream + b"\xff\xd9", 0, (comp,), 1, len(where), *band)
    return where[:, 0], where[:, 1], arr[0]


def restore(public_without_record: bytes, payload: bytes, image_key: bytes,
            file_id: bytes) -> bytes:
    """-> the original bytes exactly (RecordError if the payload does not fit)."""
    try:
        return _restore(public_without_record, payload)
    except RecordError:
        raise
    except (FormatError, ValueError, LookupError, IndexError, struct.error, zlib.error) as e:
        raise RecordError(f"progressive JPEG restore failed: {e}") from None


def _restore(pub: bytes, payload: bytes) -> bytes:
    magic, version, nscans, orig_size, pub_size, nlits = _HEAD.unpack_from(payload)
    if magic != MAGIC or version != VERSION:
        raise RecordError(f"unknown progressive JPEG payload (magic {magic!r}, v{version})")
    if pub_size != len(pub) or nlits != nscans + 1:
        raise RecordError("progressive JPEG payload belongs to another public file")
    pos = _HEAD.size
    lits = []
    for _ in range(nlits):
        (n,) = struct.unpack_from(">I", payload, pos)
        lits.append(payload[pos + 4 : pos + 4 + n])
        pos += 4 + n
    scans = []
    for _ in range(nscans):
        n = payload[pos]
        comps = list(payload[pos + 1 : pos + 1 + n])
        band = tuple(payload[pos + 1 + n : pos + 5 + n])
        pos += 5 + n
        tabs = []
        for _ in range(2 * n):
            (m,) = struct.unpack_from(">H", payload, pos)
            tabs.append(payload[pos + 2 : pos + 2 + m] or None)
            pos += 2 + m
        scans.append(PScan((0, 0), 0, comps, band, tabs[:n], tabs[n:]))
    lay = parse(pub)
    coefs = lay.coefs
    for k in range(len(coefs)):
        (m,) = struct.unpack_from(">I", payload, pos)
        rows, cols, blocks = _unpack_blocks(payload[pos + 4 : pos + 4 + m])
        coefs[k][rows, cols] = blocks
        pos += 4 + m
    if pos != len(payload):
        raise RecordError("progressive JPEG payload is inconsistent")
    out = [lits[0]]
    for s, lit in zip(scans, lits[1:], strict=True):
        out.append(encode_scan(lay.frame, coefs, s, s.dc, s.ac))
        out.append(lit)
    result = b"".join(out)
    if len(result) != orig_size:
        raise RecordError("progressive JPEG restore gives the wrong size")
    return result
