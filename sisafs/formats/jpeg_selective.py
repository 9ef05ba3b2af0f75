"""Selective JPEG protection: alter quantised DCT coefficients, restore by splicing bytes.

Protect decodes every scan once (C entropy codec), alters the blocks of the MCUs the
regions touch (`jpeg_looks`), and re-encodes only short *spans* of MCUs: from the first
altered MCU of a run through one unaltered MCU after it (which re-synchronises the DC
predictors). The new bits are sized so that the bits after a span sit at the same bit
phase as in the original (a spare +-1 coefficient in an altered block adds the missing
bits), so every byte after the span is the original byte. A span that reaches the end of
a restart interval or scan simply ends there. Metadata is filtered by `jpeg_privacy`.

The public file therefore differs from the original in a few byte ranges only, and the
payload lists them: restore is a splice of original bytes into the public file, at
memcpy speed, with nothing decoded or re-encoded. That also makes restore exact by
construction, whatever rules the original encoder followed.

Payload format (big-endian head):

    b"SJPS" | version u8 | flags u8 = 0 | edit count u32 | original size u64 |
    public size u64 | body

    version 1 body: per edit, public offset u64 | public length u32 |
                    original length u32 | original bytes
    version 2 body: a table of three unsigned LEB128 varints per edit (gap, public
                    length, stored length << 1 | deflated), then every edit's stored
                    bytes back to back. gap is the public offset less the end of the
                    previous edit's public bytes (0 for the first edit). With
                    deflated = 1 the stored bytes are the original bytes as raw
                    deflate with the edit's public bytes as preset dictionary; only
                    metadata edits use it (scan bytes are Huffman-coded already)

Edits are sorted and do not overlap; the public bytes between them are original bytes.
Version 2 (written since issue 11) takes 3-6 bytes of table per edit instead of 16: a
small photo with a face mask has hundreds of edits, and the fixed-width table alone was
half a percent of the file; the table comes first so a read decodes it in one vectorised
pass. Moved metadata (EXIF with maker notes, the EXIF thumbnail's
wrapper) is deflated against what stays public, another half percent of a small photo.
Version 1 records still restore.

Looks that show the region's local means anyway (blur, pixelate: `jpeg_looks.SHOWS_MEANS`)
end a span on its last altered MCU instead of re-encoding the unaltered one after it: the
last block of each component takes its original DC, so the DC predictors already agree
with the original bits that follow. That block then shows its own 8x8 mean; the MCU it
saves would otherwise be stored twice (re-encoded in the public file, original in the
record), about 2 % of a small photo at level 1.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

from sisafs.crypto.keys import PURPOSE_NOISE, subkey
from sisafs.formats import jpeg_check, jpeg_looks
from sisafs.formats.errors import FormatError, RecordError, UnsupportedImage
from sisafs.formats.jpeg_privacy import public_segment
from sisafs.formats.jpeg_spans import Edit, scan_edits
from sisafs.formats.jpeg_structure import Layout, Scan, parse
from sisafs.formats.pieces import Pieces
from sisafs.regions import Region
from sisafs.stagecost import stage

MAGIC = b"SJPS"
VERSION = 2
# restore() takes the record's payload as a memoryview (codec.restore then skips a copy
# of a megabyte or more per first read); other codecs get bytes. codec.restore_pieces
# calls restore_pieces, which also takes the public bytes as Pieces and returns Pieces.
RESTORES_FROM_VIEW = True
_HEAD = struct.Struct(">4sBBIQQ")
_EDIT_V1 = struct.Struct(">QII")
# Check at protect time that the public file decodes to the intended coefficients (the
# re-encoded spans in their context, sisafs/formats/jpeg_check.py): a splice bug must
# never produce an unreadable public file.
VERIFY_PUBLIC = True


def protect(data: bytes, regions: Sequence[Region], look: str, image_key: bytes,
            file_id: bytes) -> tuple[bytes, bytes]:
    """-> (public JPEG without any restore record, restore payload)."""
    if look not in jpeg_looks.LOOKS:
        raise ValueError(f"unknown look {look!r}")
    try:
        with stage("decode scans"):
            layout = parse(data)
        _refuse_records(data, layout)
        with stage("alter"):
            noise_key = subkey(image_key, PURPOSE_NOISE, salt=file_id)
            pub_coefs, altered = jpeg_looks.apply(layout, regions, look, noise_key)
            edits = _header_edits(data, layout)
            pin = look in jpeg_looks.SHOWS_MEANS
            spans: list[tuple[int, Scan, int]] = []
            for scan in layout.scans:
                edits += scan_edits(data, layout, scan, pub_coefs, altered, pin, spans)
            edits.sort(key=lambda e: e[0])
            public, payload = _assemble(data, edits)
        with stage("self-check"):
            if restore(public, payload, image_key, file_id) != data:
                raise UnsupportedImage("selective JPEG restore did not reproduce the input")
            if VERIFY_PUBLIC:
                jpeg_check.verify_public(public, data, layout, pub_coefs, edits, spans)
    except FormatError:
        raise
    except (ValueError, LookupError, IndexError, OverflowError, MemoryError) as e:
        raise UnsupportedImage(f"selective JPEG path failed: {e}") from None
    return public, payload


def restore(public_without_record: bytes, payload: bytes, image_key: bytes,
            file_id: bytes) -> bytes:
    """-> the original bytes exactly (RecordError if the payload does not fit)."""
    return restore_pieces(Pieces.of(public_without_record), payload, image_key,
                          file_id).tobytes()


def restore_pieces(public_without_record: Pieces, payload: bytes | memoryview,
                   image_key: bytes, file_id: bytes) -> Pieces:
    """`restore` as a piece table: views of the public bytes between the edits and of
    the stored original bytes (inflated ones for deflated metadata edits), nothing
    joined, so the caller decides whether and when to copy (issue 11: the public bytes
    arrive as views of the backing file, never joined on the read path)."""
    pub = public_without_record
    if len(payload) < _HEAD.size:
        raise RecordError("JPEG restore payload too short")
    magic, version, _flags, count, orig_size, pub_size = _HEAD.unpack_from(payload)
    if magic != MAGIC or version not in (1, 2):
        raise RecordError(f"unknown JPEG restore payload (magic {magic!r}, v{version})")
    if pub_size != len(pub):
        raise RecordError("JPEG restore payload belongs to another public file")
    table, end = (_table_v1 if version == 1 else _table_v2)(payload, count)
    out: list[bytes | memoryview] = []
    stored_all, cur, pub_size, stored_size = memoryview(payload), 0, len(pub), len(payload)
    # The record sits before the scans, so nearly every gap lies in the last public
    # part: sliced directly, without a lookup per edit (hundreds of them).
    last = memoryview(pub.parts[-1]) if pub_size else memoryview(b"")
    last_at = pub_size - len(last)
    for off, plen, at, olen, deflated in table:
        if off < cur or off + plen > pub_size or at + olen > stored_size:
            raise RecordError("JPEG restore payload is inconsistent")
        if cur >= last_at:
            out.append(last[cur - last_at : off - last_at])
        else:
            out += pub.views(cur, off)
        stored = stored_all[at : at + olen]
        out.append(_inflate(stored, pub.read(off, plen), orig_size) if deflated
                   else stored)
        cur = off + plen
    out += pub.views(cur, len(pub))
    result = Pieces(out)
    if end != len(payload) or len(result) != orig_size:
        raise RecordError("JPEG restore payload is inconsistent")
    return result


_Row = tuple[int, int, int, int, int]  # public offset, public length, stored at, length, deflated


def _table_v1(payload: bytes, count: int) -> tuple[list[_Row], int]:
    """Version 1 edits, each header followed by its bytes; -> (rows, end of the last)."""
    rows, pos = [], _HEAD.size
    for _ in range(count):
        if pos + _EDIT_V1.size > len(payload):
            raise RecordError("JPEG restore payload truncated")
        off, plen, olen = _EDIT_V1.unpack_from(payload, pos)
        rows.append((off, plen, pos + _EDIT_V1.size, olen, 0))
        pos += _EDIT_V1.size + olen
    return rows, pos


def _table_v2(payload: bytes, count: int) -> tuple[list[_Row], int]:
    """Version 2: the 3 x count varints decoded at once (a 12 MP photo has hundreds of
    edits; a Python loop over them cost half a millisecond per read); -> (rows, end of
    the last edit's bytes). RecordError if the table is cut or a number is over 42 bits."""
    start = _HEAD.size
    need = 3 * count
    if not need:
        return [], start
    window = np.frombuffer(payload, np.uint8, max(0, min(len(payload) - start, 10 * need)),
                           start)
    ends = np.flatnonzero(window < 0x80)[:need]
    if len(ends) < need:
        raise RecordError("JPEG restore payload truncated")
    firsts = np.concatenate(([0], ends[:-1] + 1))
    widths = ends - firsts + 1
    if int(widths.max()) > 6:  # 42 bits: no sum of them can wrap
        raise RecordError("JPEG restore payload is inconsistent")
    values = np.zeros(need, np.uint64)
    for k in range(int(widths.max())):
        has = widths > k
        values[has] |= (window[firsts[has] + k].astype(np.uint64) & np.uint64(0x7F)) \
            << np.uint64(7 * k)
    v = values.reshape(count, 3)
    plen, olen, deflated = v[:, 1], v[:, 2] >> np.uint64(1), v[:, 2] & np.uint64(1)
    offs = np.cumsum(v[:, 0] + plen) - plen  # previous edit's public end + gap
    body = start + int(ends[-1]) + 1
    ats = body + np.cumsum(olen) - olen
    rows = list(zip(offs.tolist(), plen.tolist(), ats.tolist(), olen.tolist(),
                    deflated.tolist(), strict=True))
    return rows, body + int(olen.sum())


def _deflate(original: bytes, public: bytes) -> bytes:
    """Raw deflate of `original` with `public` (what replaced it) as preset dictionary."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=public) if public else \
        zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(original) + c.flush()


def _inflate(stored: memoryview, public: bytes | memoryview, limit: int) -> bytes:
    try:
        d = zlib.decompressobj(-15, zdict=public) if len(public) else zlib.decompressobj(-15)
        out = d.decompress(stored, limit + 1)
    except zlib.error:
        raise RecordError("JPEG restore payload is inconsistent") from None
    if not d.eof or d.unused_data or len(out) > limit:
        raise RecordError("JPEG restore payload is inconsistent")
    return out


_BYTE = [bytes((i,)) for i in range(0x80)]


def _varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits a byte, low bits first, high bit set on all but the last."""
    if 0 <= n < 0x80:  # most gaps and lengths: one byte
        return _BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _refuse_records(data: bytes, layout: Layout) -> None:
    for seg in layout.segments:
        if seg.marker == 0xEF and data[seg.start + 4 : seg.start + 8] == b"SISA":
            raise UnsupportedImage("input already contains a sisafs restore record")


def _header_edits(data: bytes, layout: Layout) -> list[Edit]:
    """Edits that drop or clean metadata segments and any data after EOI."""
    edits: list[Edit] = []
    for seg in layout.segments:
        body = seg.body(data)
        new = public_segment(seg.marker, body)
        if new is None:
            edits.append((seg.start, seg.end, b"", True))
        elif new != body:
            head = bytes([0xFF, seg.marker]) + struct.pack(">H", len(new) + 2)
            edits.append((seg.start, seg.end, head + new, True))
    if layout.eoi + 2 < len(data):
        edits.append((layout.eoi + 2, len(data), b"", True))
    return edits


def _assemble(data: bytes, edits: list[Edit]) -> tuple[bytes, bytes]:
    pub: list[bytes] = []
    table: list[bytes] = []
    pay: list[bytes] = []
    cur = plen = 0
    for start, end, new, meta in edits:
        if start < cur:
            raise UnsupportedImage("overlapping JPEG edits (internal error)")
        pub.append(data[cur:start])
        gap = start - cur
        plen += gap
        stored, deflated = data[start:end], 0
        if meta:
            packed = _deflate(stored, new)
            if len(packed) < len(stored):
                stored, deflated = packed, 1
        table.append(_varint(gap) + _varint(len(new)) + _varint(len(stored) << 1 | deflated))
        pay.append(stored)
        pub.append(new)
        plen += len(new)
        cur = end
    pub.append(data[cur:])
    public = b"".join(pub)
    head = _HEAD.pack(MAGIC, VERSION, 0, len(edits), len(data), len(public))
    return public, b"".join([head, *table, *pay])
