"""ISO-BMFF (HEIF, HEIC, AVIF) box structure: find, append and strip the restore record.

HEIF and AVIF files are trees of boxes; the `meta` box's `iloc` table addresses the coded
image data by *absolute file offset*, so inserting anything before `mdat` would move
every image. The record therefore goes in one top-level `uuid` box appended at the very
end of the file, with a sisafs user type: readers skip unknown top-level boxes (libheif,
libavif, Apple's ImageIO), the offsets of everything before it stay as they are, and
`getattr` finds its header by walking the three or four top-level box headers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sisafs.formats.errors import RecordError, UnsupportedImage

# A fixed, random UUID naming the sisafs restore record box.
RECORD_UUID = bytes.fromhex("5c1e8a7d0f3b4e2a9d61b2c4a8e0f7a1")
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs",
               b"mif1", b"msf1", b"mif2"}
AVIF_BRANDS = {b"avif", b"avis"}
_MAX_TOP_BOXES = 256  # a real file has four or five; this bounds a hostile one


def brand(head: bytes) -> bytes | None:
    """The major brand when `head` starts with an `ftyp` box, else None."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    (size,) = struct.unpack(">I", head[:4])
    return head[8:12] if size >= 16 else None


def is_heif(head: bytes) -> bool:
    return brand(head) in HEIF_BRANDS


def is_avif(head: bytes) -> bool:
    return brand(head) in AVIF_BRANDS


def compatible_brands(buf: bytes) -> set[bytes]:
    """Major and compatible brands of the `ftyp` box (a `mif1` file may be AVIF)."""
    first = next(boxes(buf))
    body = buf[first.body : first.end]
    return {body[:4], *(body[i : i + 4] for i in range(8, len(body) - 3, 4))}


@dataclass(frozen=True)
class Box:
    type: bytes
    start: int  # offset of the size field
    body: int  # offset of the first byte after the header (and user type)
    end: int
    usertype: bytes = b""


def _header(raw: bytes, pos: int, file_size: int) -> Box:
    if len(raw) < 8:
        raise UnsupportedImage("truncated ISO-BMFF box header")
    size, btype = struct.unpack(">I4s", raw[:8])
    hlen = 8
    if size == 1:
        if len(raw) < 16:
            raise UnsupportedImage("truncated ISO-BMFF box header")
        (size,) = struct.unpack(">Q", raw[8:16])
        hlen = 16
    elif size == 0:
        size = file_size - pos  # "extends to the end of the file"
    usertype = b""
    if btype == b"uuid":
        usertype = raw[hlen : hlen + 16]
        if len(usertype) < 16:
            raise UnsupportedImage("truncated ISO-BMFF uuid box")
        hlen += 16
    if size < hlen or pos + size > file_size:
        raise UnsupportedImage("truncated or corrupt ISO-BMFF box")
    return Box(btype, pos, pos + hlen, pos + size, usertype)


def boxes(buf: bytes) -> Iterator[Box]:
    """The top-level boxes; UnsupportedImage if the file does not start with `ftyp`."""
    if brand(buf[:16]) is None:
        raise UnsupportedImage("not an ISO-BMFF image (no ftyp box)")
    pos, n = 0, 0
    while pos < len(buf):
        n += 1
        if n > _MAX_TOP_BOXES:
            raise UnsupportedImage("too many top-level boxes")
        box = _header(buf[pos : pos + 32], pos, len(buf))
        yield box
        pos = box.end


def _is_record(box: Box) -> bool:
    return box.type == b"uuid" and box.usertype == RECORD_UUID


def split_record(buf: bytes) -> tuple[bytes | None, bytes]:
    """(record blob or None, the file without the record box)."""
    found = [b for b in boxes(buf) if _is_record(b)]
    if not found:
        return None, buf
    if len(found) > 1:
        raise RecordError("more than one restore record box")
    b = found[0]
    return buf[b.body : b.end], buf[: b.start] + buf[b.end :]


def embed_record(public_without_record: bytes, blob: bytes) -> bytes:
    """Append the record box; refuses a file whose last box runs 'to the end'."""
    tops = list(boxes(public_without_record))
    last = tops[-1]
    if struct.unpack(">I", public_without_record[last.start : last.start + 4])[0] == 0:
        raise UnsupportedImage("last box has no size; cannot append the record")
    size = 8 + 16 + len(blob)
    head = struct.pack(">I4s", size, b"uuid") if size < 1 << 32 else \
        struct.pack(">I4sQ", 1, b"uuid", size + 8)
    return public_without_record + head + RECORD_UUID + blob


def read_record_header(f: BinaryIO, want: int = 64) -> bytes | None:
    """The first bytes of the record from an open file, reading box headers only."""
    f.seek(0, 2)
    file_size = f.tell()
    f.seek(0)
    if brand(f.read(16)) is None:
        return None
    pos = 0
    for _ in range(_MAX_TOP_BOXES):
        if pos >= file_size:
            return None
        f.seek(pos)
        try:
            box = _header(f.read(32), pos, file_size)
        except UnsupportedImage:
            return None
        if _is_record(box):
            f.seek(box.body)
            return f.read(min(want, box.end - box.body))
        pos = box.end
    return None
