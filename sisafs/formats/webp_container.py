"""WebP (RIFF) chunk structure: find, append and strip the restore record.

The record goes in one private chunk `SISR` at the end of the RIFF body. The WebP spec
lets the extended format (`VP8X`) carry unknown chunks, which decoders skip; a simple
file (a lone `VP8 ` or `VP8L` chunk) is first rewritten as an extended one, which changes
no image byte. `getattr` finds the record header by walking the few chunk headers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sisafs.formats.errors import RecordError, UnsupportedImage

RECORD_CHUNK = b"SISR"
_FLAG_ALPHA = 0x10
_MAX_CHUNKS = 4096


def is_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


@dataclass(frozen=True)
class Chunk:
    type: bytes
    start: int  # offset of the fourcc
    end: int  # offset past the data and its pad byte

    def data(self, buf: bytes) -> bytes:
        (n,) = struct.unpack("<I", buf[self.start + 4 : self.start + 8])
        return buf[self.start + 8 : self.start + 8 + n]


def chunks(buf: bytes) -> Iterator[Chunk]:
    if not is_webp(buf):
        raise UnsupportedImage("not a WebP (bad RIFF header)")
    (riff,) = struct.unpack("<I", buf[4:8])
    limit = 8 + riff
    if limit > len(buf) or riff < 4:
        raise UnsupportedImage("truncated WebP")
    pos = 12
    for _ in range(_MAX_CHUNKS):
        if pos >= limit:
            return
        if pos + 8 > limit:
            raise UnsupportedImage("truncated WebP chunk")
        ctype, n = struct.unpack("<4sI", buf[pos : pos + 8])
        end = pos + 8 + n + (n & 1)
        if pos + 8 + n > limit:
            raise UnsupportedImage("truncated WebP chunk")
        yield Chunk(ctype, pos, min(end, limit))
        pos = end
    raise UnsupportedImage("too many WebP chunks")


def make_chunk(ctype: bytes, data: bytes) -> bytes:
    return ctype + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"")


def _riff(body: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _canvas(ctype: bytes, data: bytes) -> tuple[int, int, bool]:
    """(width, height, has alpha) from a simple file's VP8 or VP8L bitstream header."""
    if ctype == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[6:10])
        return w & 0x3FFF, h & 0x3FFF, False
    if ctype == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
        (bits,) = struct.unpack("<I", data[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    raise UnsupportedImage("unrecognised WebP bitstream header")


def extended(buf: bytes) -> bytes:
    """The same image in the extended format (VP8X first), so it may carry our chunk."""
    cs = list(chunks(buf))
    if not cs:
        raise UnsupportedImage("empty WebP")
    if cs[0].type == b"VP8X":
        return buf
    if len(cs) != 1 or cs[0].type not in (b"VP8 ", b"VP8L"):
        raise UnsupportedImage("simple WebP with unexpected chunks")
    w, h, alpha = _canvas(cs[0].type, cs[0].data(buf))
    vp8x = struct.pack("<B3x", _FLAG_ALPHA if alpha else 0) + \
        (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return _riff(make_chunk(b"VP8X", vp8x) + buf[cs[0].start : cs[0].end])


def split_record(buf: bytes) -> tuple[bytes | None, bytes]:
    """(record blob or None, the WebP with the record chunk removed)."""
    found = [c for c in chunks(buf) if c.type == RECORD_CHUNK]
    if not found:
        return None, buf
    if len(found) > 1:
        raise RecordError("more than one restore record chunk")
    c = found[0]
    return c.data(buf), _riff(buf[12 : c.start] + buf[c.end :])


def embed_record(public_without_record: bytes, blob: bytes) -> bytes:
    ext = extended(public_without_record)
    return _riff(ext[12:] + make_chunk(RECORD_CHUNK, blob))


def read_record_header(f: BinaryIO, want: int = 64) -> bytes | None:
    """The first bytes of the record from an open file, reading chunk headers only."""
    f.seek(0)
    head = f.read(12)
    if not is_webp(head):
        return None
    limit = 8 + struct.unpack("<I", head[4:8])[0]
    pos = 12
    for _ in range(_MAX_CHUNKS):
        f.seek(pos)
        h = f.read(8)
        if len(h) < 8 or pos + 8 > limit:
            return None
        ctype, n = struct.unpack("<4sI", h)
        if ctype == RECORD_CHUNK:
            return f.read(min(want, n))
        pos += 8 + n + (n & 1)
    return None
