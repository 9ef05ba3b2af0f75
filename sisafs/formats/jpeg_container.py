"""JPEG marker-segment structure: find, insert and strip the restore record.

Only the segments before the first scan are parsed: that is where every metadata
segment lives, and it keeps `getattr` cheap (it reads the record header from the first
few kilobytes). The record goes in APP15 segments tagged b"SISA", placed after the
leading APPn run so EXIF stays where readers expect it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sisafs.formats.errors import RecordError, UnsupportedImage
from sisafs.formats.pieces import Pieces

SOI = b"\xff\xd8"
APP15 = 0xEF
TAG = b"SISA"
_SEQ = struct.Struct(">4sHH")  # tag, index, count
MAX_SEGMENT_DATA = 65533
CHUNK = MAX_SEGMENT_DATA - _SEQ.size
# Markers without a length field.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def is_jpeg(head: bytes) -> bool:
    return head[:3] == b"\xff\xd8\xff"


@dataclass(frozen=True)
class Segment:
    marker: int
    start: int  # offset of the 0xFF byte
    end: int  # offset just past the segment

    def data(self, buf: bytes) -> bytes:
        return buf[self.start + 4 : self.end]


def header_segments(buf: bytes) -> Iterator[Segment]:
    """Segments from SOI up to (not including) the first SOS."""
    if not buf.startswith(SOI):
        raise UnsupportedImage("not a JPEG (no SOI marker)")
    pos = 2
    while True:
        while pos < len(buf) and buf[pos] == 0xFF and pos + 1 < len(buf) \
                and buf[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(buf) or buf[pos] != 0xFF:
            raise UnsupportedImage("truncated or corrupt JPEG header")
        marker = buf[pos + 1]
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # SOS, EOI
            return
        (length,) = struct.unpack(">H", buf[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > len(buf):
            raise UnsupportedImage("truncated or corrupt JPEG segment")
        yield Segment(marker, pos, pos + 2 + length)
        pos += 2 + length


def _is_record(seg: Segment, buf: bytes) -> bool:
    return seg.marker == APP15 and buf[seg.start + 4 : seg.start + 8] == TAG


def split_record(buf: bytes) -> tuple[bytes | None, bytes]:
    """(record blob or None, the JPEG with every record segment removed)."""
    blob, public = split_record_pieces(buf)
    return (None if blob is None else blob.tobytes()), public.tobytes()


def split_record_pieces(buf: bytes) -> tuple[Pieces | None, Pieces]:
    """`split_record` as views of `buf`: the read path authenticates and splices these
    without copying the record or the public bytes (several MB for a 12 MP photo)."""
    parts: dict[int, tuple[int, int]] = {}
    count = None
    cuts: list[Segment] = []
    for seg in header_segments(buf):
        if _is_record(seg, buf):
            tag, index, n = _SEQ.unpack(buf[seg.start + 4 : seg.start + 4 + _SEQ.size])
            if count not in (None, n) or index >= n or index in parts:
                raise RecordError("restore record segments are inconsistent")
            count = n
            parts[index] = seg.start + 4 + _SEQ.size, seg.end
            cuts.append(seg)
    if not cuts:
        return None, Pieces.of(buf)
    if len(parts) != count:
        raise RecordError(f"restore record incomplete: {len(parts)} of {count} segments")
    view, out, pos = memoryview(buf), [], 0
    for seg in cuts:
        out.append(view[pos : seg.start])
        pos = seg.end
    out.append(view[pos:])
    blob = Pieces(view[a:b] for a, b in (parts[i] for i in range(count)))
    return blob, Pieces(out)


def insertion_point(buf: bytes) -> int:
    """After SOI and the leading run of APP0..APP14 segments."""
    pos = 2
    for seg in header_segments(buf):
        if 0xE0 <= seg.marker <= 0xEE:
            pos = seg.end
        else:
            break
    return pos


def record_segments(blob: bytes) -> bytes:
    chunks = [blob[i : i + CHUNK] for i in range(0, len(blob), CHUNK)] or [b""]
    if len(chunks) > 0xFFFF:
        raise RecordError("restore record too large for APP15 segments")
    out = []
    for i, chunk in enumerate(chunks):
        data = _SEQ.pack(TAG, i, len(chunks)) + chunk
        out.append(bytes([0xFF, APP15]) + struct.pack(">H", len(data) + 2) + data)
    return b"".join(out)


def embed_record(public_without_record: bytes, blob: bytes) -> bytes:
    at = insertion_point(public_without_record)
    return public_without_record[:at] + record_segments(blob) + public_without_record[at:]


def read_record_header(f: BinaryIO, want: int = 64) -> bytes | None:
    """The first bytes of the record from an open file, reading segment headers only."""
    f.seek(0)
    if f.read(2) != SOI:
        return None
    pos = 2
    while True:
        f.seek(pos)
        head = f.read(4)
        if len(head) < 4 or head[0] != 0xFF:
            return None
        marker = head[1]
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):
            return None
        (length,) = struct.unpack(">H", head[2:4])
        if marker == APP15:
            data = f.read(min(length - 2, _SEQ.size + want))
            if data[:4] == TAG and _SEQ.unpack(data[: _SEQ.size])[1] == 0:
                return data[_SEQ.size :]
        pos += 2 + length
