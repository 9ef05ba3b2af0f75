"""Build the public IDAT stream from original deflate blocks, and the splice payload.

Restore must be exact and about as fast as a copy, so the public file is built to
*share* bytes with the original: the zlib stream keeps the original compressed bytes
outside a few spans of whole deflate blocks; each span starts at the last block boundary
before the first altered filtered byte and ends at the first boundary at least 32 KiB
(the largest deflate distance) after the last one, so the original blocks that follow
see an unchanged window. Only those spans are recompressed. Empty filler blocks before a
span byte-align it (zlib's stored blocks assume it) and after it restore the original's
bit alignment, so the rest of the stream is copied byte-for-byte, never bit-shifted.

The payload is then an edit script over the public file: COPY ranges of public bytes and
DATA with the original bytes that the public file lacks (the replaced spans, chunk
headers/CRCs that changed, the zlib checksum, dropped metadata chunks). Restoring is a
sequence of memory copies plus a CRC-32 check. The CRC only guards against bugs: the record
layer already authenticates both the payload and the public bytes (AES-GCM, SHA-256 in
the associated data), and a second SHA-256 here would cost 8x more than the copies.

Payload layout, version 1 (little-endian):

    b"sPNG" | version u8 (1) | flags u8 | reserved u16 | original size u64 |
    public size u64 | CRC-32 of the original u32 | op count u32 | ops...
    op: b"C" | public offset u64 | length u64    (copy from the public file)
        b"D" | length u64 | bytes                 (original bytes carried here)

flags bit 0: the payload carries the whole original (no COPY ops).
"""

from __future__ import annotations

import bisect
import struct
import zlib
from dataclasses import dataclass

from sisafs.formats.errors import RecordError
from sisafs.formats.png_container import Chunk
from sisafs.formats.png_deflate import Boundary, filler, raw_deflate

MAGIC = b"sPNG"
VERSION = 1
FLAG_WHOLE = 1
WINDOW = 32768
_HEAD = struct.Struct("<4sBBHQQII")
_COPY = struct.Struct("<cQQ")
_DATA = struct.Struct("<cQ")


@dataclass(frozen=True)
class Piece:
    """A run of public bytes; `orig` is where the same bytes sit in the original, or -1."""

    data: bytes | memoryview
    orig: int = -1


def _segments(spans: list[tuple[int, int]], bounds: list[Boundary]
              ) -> list[tuple[Boundary, Boundary | None]]:
    """Merge altered byte spans into (start boundary, resume boundary or None = to end).

    Spans closer than a window are merged first: they would share a segment anyway.
    """
    merged: list[list[int]] = []
    for a, e in sorted(spans):
        if merged and a < merged[-1][1] + WINDOW:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([a, e])
    outs = [b.out for b in bounds]  # non-decreasing
    segs: list[tuple[Boundary, Boundary | None]] = []
    for a, e in merged:
        start = bounds[bisect.bisect_right(outs, a) - 1]
        i = bisect.bisect_left(outs, e + WINDOW)
        resume = bounds[i] if i < len(bounds) else None
        if segs:
            prev_start, prev_resume = segs[-1]
            if prev_resume is None:
                continue
            if start.bit < 8 * ((prev_resume.bit + 7) // 8):
                if resume is None or resume.bit > prev_resume.bit:
                    segs[-1] = (prev_start, resume)
                continue
        segs.append((start, resume))
    return segs


def public_stream(z: bytes, bounds: list[Boundary], raw_public: bytes | bytearray,
                  spans: list[tuple[int, int]]) -> list[tuple[int, int] | bytes]:
    """The public zlib stream as pieces: (start, end) ranges of `z`, or new bytes."""
    if not spans:
        return [(0, len(z))]
    wbits = (z[0] >> 4) + 8
    view = memoryview(raw_public)
    out: list[tuple[int, int] | bytes] = []
    cursor = 0
    for start, resume in _segments(spans, bounds):
        head = start.bit % 8
        out.append((cursor, start.bit // 8))
        end = resume.out if resume else len(raw_public)
        mid = raw_deflate(view[start.out:end], bytes(view[max(0, start.out - WINDOW):start.out]),
                          wbits, final=resume is None)
        # stored blocks (sync flushes, incompressible data) are byte-aligned, so the new
        # blocks must start on a byte boundary: pad the kept prefix with empty blocks
        val = z[start.bit // 8] & ((1 << head) - 1)
        fill, nfill = filler(-head)
        val |= fill << head
        pos = head + nfill
        assert pos % 8 == 0
        val |= int.from_bytes(mid, "little") << pos
        pos += 8 * len(mid)
        if resume is None:
            out.append(val.to_bytes((pos + 7) // 8, "little"))
            cursor = -1
            break
        fill, nfill = filler(resume.bit - pos)
        val |= fill << pos
        pos += nfill
        tail = resume.bit % 8
        assert pos % 8 == tail
        if tail:
            val |= (z[resume.bit // 8] >> tail) << pos
            pos += 8 - tail
        out.append(val.to_bytes(pos // 8, "little"))
        cursor = (resume.bit + 7) // 8
    if cursor >= 0:
        out.append((cursor, len(z) - 4))
    out.append(struct.pack(">I", zlib.adler32(raw_public) & 0xFFFFFFFF))
    return [p for p in out if not (isinstance(p, tuple) and p[0] == p[1])]


def idat_pieces(data: bytes, idats: list[Chunk], stream: list[tuple[int, int] | bytes]
                ) -> list[Piece]:
    """Public IDAT chunks for a piece list, keeping original chunks where untouched.

    Original chunk boundaries that fall inside kept ranges stay chunk boundaries, so an
    untouched original chunk reappears with its own header and CRC (shared bytes, nothing
    in the payload); chunks that mix new and old bytes get a new header and CRC.
    """
    zstart = []
    pos = 0
    for c in idats:
        zstart.append(pos)
        pos += c.end - c.start - 12
    zend = zstart[1:] + [pos]
    # split kept ranges at original chunk boundaries, remembering the chunk index
    parts: list[tuple[int, bytes | memoryview, int]] = []  # (chunk index or -1, bytes, orig)
    mv = memoryview(data)
    for p in stream:
        if isinstance(p, bytes):
            parts.append((-1, p, -1))
            continue
        a, e = p
        k = next(i for i in range(len(idats)) if zend[i] > a)
        while a < e:
            stop = min(e, zend[k])
            off = idats[k].start + 8 + a - zstart[k]
            parts.append((k, mv[off:off + stop - a], off))
            a = stop
            k += 1
    groups: list[list[tuple[int, bytes | memoryview, int]]] = [[]]
    for k, b, off in parts:
        starts_chunk = k >= 0 and off == idats[k].start + 8
        if starts_chunk and groups[-1]:
            groups.append([])
        groups[-1].append((k, b, off))
        if k >= 0 and off + len(b) == idats[k].end - 4:
            groups.append([])
    pieces: list[Piece] = []
    for g in groups:
        if not g:
            continue
        if len(g) == 1 and g[0][0] >= 0 and len(g[0][1]) == idats[g[0][0]].end - \
                idats[g[0][0]].start - 12:
            c = idats[g[0][0]]
            pieces.append(Piece(mv[c.start:c.end], c.start))
            continue
        length = sum(len(b) for _, b, _ in g)
        crc = zlib.crc32(b"IDAT")
        for _, b, _ in g:
            crc = zlib.crc32(b, crc)
        pieces.append(Piece(struct.pack(">I", length) + b"IDAT"))
        pieces.extend(Piece(b, off) for _, b, off in g)
        pieces.append(Piece(struct.pack(">I", crc & 0xFFFFFFFF)))
    return pieces


def edit_script(data: bytes, pieces: list[Piece]) -> tuple[bytes, list[tuple[int, int, int]]]:
    """Join the public file and list (public offset, original offset, length) it shares."""
    shared, pos = [], 0
    for p in pieces:
        if p.orig >= 0 and len(p.data):
            if shared and shared[-1][0] + shared[-1][2] == pos and \
                    shared[-1][1] + shared[-1][2] == p.orig:
                shared[-1] = (shared[-1][0], shared[-1][1], shared[-1][2] + len(p.data))
            else:
                shared.append((pos, p.orig, len(p.data)))
        pos += len(p.data)
    return b"".join(p.data for p in pieces), shared


def encode_payload(data: bytes, public: bytes, shared: list[tuple[int, int, int]]) -> bytes:
    """Ops that rebuild `data` from `public`; anything not shared travels as DATA."""
    ops: list[bytes | memoryview] = []
    count = at = 0
    mv = memoryview(data)
    for pub, orig, n in sorted(shared, key=lambda s: s[1]):
        if orig < at:  # overlapping share: use only its new part
            cut = at - orig
            if cut >= n:
                continue
            pub, orig, n = pub + cut, at, n - cut
        if orig > at:
            ops += [_DATA.pack(b"D", orig - at), mv[at:orig]]
            count += 1
        ops.append(_COPY.pack(b"C", pub, n))
        count += 1
        at = orig + n
    if at < len(data):
        ops += [_DATA.pack(b"D", len(data) - at), mv[at:]]
        count += 1
    flags = FLAG_WHOLE if not shared else 0
    head = _HEAD.pack(MAGIC, VERSION, flags, 0, len(data), len(public),
                      zlib.crc32(data), count)
    return head + b"".join(ops)


def apply_payload(public: bytes, payload: bytes) -> bytes:
    """Rebuild the original; any inconsistency is a RecordError, never wrong bytes."""
    if len(payload) < _HEAD.size:
        raise RecordError("PNG restore payload truncated")
    magic, version, _flags, _, size, pub_size, crc, count = _HEAD.unpack_from(payload)
    if magic != MAGIC or version != VERSION:
        raise RecordError(f"unknown PNG restore payload (magic {magic!r}, version {version})")
    if pub_size != len(public):
        raise RecordError("public PNG does not match its restore payload (size differs)")
    parts: list[memoryview] = []
    pv, lv, at, pos = memoryview(public), memoryview(payload), 0, _HEAD.size
    for _ in range(count):
        kind = payload[pos:pos + 1]
        if pos + (_COPY.size if kind == b"C" else _DATA.size) > len(payload):
            raise RecordError("PNG restore payload truncated")
        if kind == b"C":
            _, src, n = _COPY.unpack_from(payload, pos)
            pos += _COPY.size
            if src + n > len(public):
                raise RecordError("PNG restore payload copy out of range")
            parts.append(pv[src:src + n])
        elif kind == b"D":
            _, n = _DATA.unpack_from(payload, pos)
            pos += _DATA.size
            if pos + n > len(payload):
                raise RecordError("PNG restore payload data out of range")
            parts.append(lv[pos:pos + n])
            pos += n
        else:
            raise RecordError("PNG restore payload has an unknown op")
        at += n
    if at != size or pos != len(payload):
        raise RecordError("PNG restore payload does not cover the original exactly")
    out = b"".join(parts)
    if zlib.crc32(out) != crc:
        raise RecordError("restored PNG fails its CRC-32 check")
    return out
