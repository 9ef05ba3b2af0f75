"""PNG chunk structure: find, insert and strip the restore record.

The record lives in one private, ancillary, unsafe-to-copy chunk `siSR` placed right
after IHDR: viewers skip it, editors that change the image drop it (as they should,
since the record would no longer match), and `getattr` finds its header in the first
hundred bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sisafs.formats.errors import RecordError, UnsupportedImage

SIGNATURE = b"\x89PNG\r\n\x1a\n"
RECORD_CHUNK = b"siSR"


def is_png(head: bytes) -> bool:
    return head[:8] == SIGNATURE


@dataclass(frozen=True)
class Chunk:
    type: bytes
    start: int  # offset of the length field
    end: int  # offset past the CRC

    def data(self, buf: bytes) -> bytes:
        return buf[self.start + 8 : self.end - 4]


def chunks(buf: bytes) -> Iterator[Chunk]:
    if not is_png(buf):
        raise UnsupportedImage("not a PNG (bad signature)")
    pos = 8
    while pos < len(buf):
        if pos + 12 > len(buf):
            raise UnsupportedImage("truncated PNG chunk")
        length, ctype = struct.unpack(">I4s", buf[pos : pos + 8])
        end = pos + 12 + length
        if end > len(buf):
            raise UnsupportedImage("truncated PNG chunk")
        yield Chunk(ctype, pos, end)
        pos = end
        if ctype == b"IEND":
            return


def make_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(
        ">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def split_record(buf: bytes) -> tuple[bytes | None, bytes]:
    found = [c for c in chunks(buf) if c.type == RECORD_CHUNK]
    if not found:
        return None, buf
    if len(found) > 1:
        raise RecordError("more than one restore record chunk")
    c = found[0]
    return c.data(buf), buf[: c.start] + buf[c.end :]


def embed_record(public_without_record: bytes, blob: bytes) -> bytes:
    first = next(chunks(public_without_record))
    if first.type != b"IHDR":
        raise UnsupportedImage("PNG does not start with IHDR")
    at = first.end
    return public_without_record[:at] + make_chunk(RECORD_CHUNK, blob) + \
        public_without_record[at:]


def read_record_header(f: BinaryIO, want: int = 64) -> bytes | None:
    f.seek(0)
    head = f.read(8 + 25 + 8 + want)
    if not is_png(head) or head[12:16] != b"IHDR" or head[33 + 4 : 33 + 8] != RECORD_CHUNK:
        return None
    return head[41 : 41 + want]
