"""The HEIF `meta` box as data: items, their locations, references and properties.

`heif_selective` needs to keep most of a phone HEIC's coded tiles byte for byte while
dropping its auxiliary items and pointing a few tiles at new data, so it parses the
boxes that describe items (`pitm`, `iinf`, `iloc`, `iref`, `iprp`/`ipco`/`ipma`,
`idat`) into plain Python values and writes a new `meta` box from them. Anything this
module does not understand raises UnsupportedImage, and the caller falls back to the
whole-image re-encode.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from sisafs.formats.errors import UnsupportedImage


@dataclass
class Item:
    id: int
    type: bytes
    infe: bytes  # the raw infe box
    method: int = 0  # iloc construction method (0 = file offset, 1 = idat)
    extents: list[tuple[int, int]] = field(default_factory=list)  # (offset, length)
    props: list[tuple[bool, int]] = field(default_factory=list)  # (essential, 1-based)


@dataclass
class Meta:
    handler: bytes  # raw hdlr box
    dinf: bytes  # raw dinf box (may be b"")
    primary: int
    items: dict[int, Item]
    refs: list[tuple[bytes, int, list[int]]]  # (type, from, to ids)
    props: list[bytes]  # raw property boxes, ipco order
    idat: bytes  # raw idat box (may be b"")

    def refs_from(self, rtype: bytes, item: int) -> list[int]:
        return [t for kind, f, to in self.refs if kind == rtype and f == item for t in to]

    def prop(self, item: int, btype: bytes) -> bytes | None:
        """The body of the first property of `btype` associated with `item`."""
        for _, idx in self.items[item].props:
            raw = self.props[idx - 1]
            if raw[4:8] == btype:
                return raw[8:]
        return None


def _children(buf: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, box start, box end) of the boxes in buf[start:end]."""
    out, pos = [], start
    while pos < end:
        if pos + 8 > end:
            raise UnsupportedImage("truncated HEIF box")
        size, btype = struct.unpack(">I4s", buf[pos : pos + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", buf[pos + 8 : pos + 16])
        if size < 8 or pos + size > end:
            raise UnsupportedImage("corrupt HEIF box size")
        out.append((btype, pos, pos + size))
        pos += size
    return out


def _uint(buf: bytes, pos: int, n: int) -> tuple[int, int]:
    return (int.from_bytes(buf[pos : pos + n], "big") if n else 0), pos + n


def parse(buf: bytes, meta_start: int, meta_end: int) -> Meta:
    boxes = {t: (s, e) for t, s, e in _children(buf, meta_start + 12, meta_end)}
    for need in (b"hdlr", b"pitm", b"iinf", b"iloc", b"iprp"):
        if need not in boxes:
            raise UnsupportedImage(f"HEIF meta has no {need.decode()} box")
    raw = {t: buf[s:e] for t, (s, e) in boxes.items()}
    s, _ = boxes[b"pitm"]
    primary = _uint(buf, s + 12, 2 if buf[s + 8] == 0 else 4)[0]
    items = _parse_iinf(raw[b"iinf"])
    _parse_iloc(raw[b"iloc"], items)
    props = _parse_iprp(raw[b"iprp"], items)
    refs = _parse_iref(raw[b"iref"]) if b"iref" in raw else []
    if primary not in items:
        raise UnsupportedImage("HEIF primary item is missing")
    return Meta(raw[b"hdlr"], raw.get(b"dinf", b""), primary, items, refs, props,
                raw.get(b"idat", b""))


def _parse_iinf(box: bytes) -> dict[int, Item]:
    version = box[8]
    pos = 12 + (2 if version == 0 else 4)
    items: dict[int, Item] = {}
    for btype, s, e in _children(box, pos, len(box)):
        if btype != b"infe":
            continue
        v = box[s + 8]
        if v < 2:
            raise UnsupportedImage("HEIF infe version < 2")
        n = 2 if v == 2 else 4
        item_id, p = _uint(box, s + 12, n)
        itype = box[p + 2 : p + 6]
        items[item_id] = Item(item_id, itype, box[s:e])
    return items


def _parse_iloc(box: bytes, items: dict[int, Item]) -> None:
    version = box[8]
    osz, lsz = box[12] >> 4, box[12] & 15
    bsz, isz = box[13] >> 4, (box[13] & 15) if version in (1, 2) else 0
    count, pos = _uint(box, 14, 2 if version < 2 else 4)
    for _ in range(count):
        item_id, pos = _uint(box, pos, 2 if version < 2 else 4)
        method = 0
        if version in (1, 2):
            method, pos = _uint(box, pos, 2)
            method &= 15
        dref, pos = _uint(box, pos, 2)
        base, pos = _uint(box, pos, bsz)
        n, pos = _uint(box, pos, 2)
        extents = []
        for _ in range(n):
            _, pos = _uint(box, pos, isz)
            off, pos = _uint(box, pos, osz)
            length, pos = _uint(box, pos, lsz)
            extents.append((base + off, length))
        if pos > len(box):
            raise UnsupportedImage("truncated HEIF iloc")
        if dref != 0 or method not in (0, 1):
            raise UnsupportedImage("HEIF item data outside this file")
        if item_id in items:
            items[item_id].method = method
            items[item_id].extents = extents


def _parse_iprp(box: bytes, items: dict[int, Item]) -> list[bytes]:
    kids = {t: (s, e) for t, s, e in _children(box, 8, len(box))}
    if b"ipco" not in kids or b"ipma" not in kids:
        raise UnsupportedImage("HEIF iprp without ipco/ipma")
    s, e = kids[b"ipco"]
    props = [box[a:b] for _, a, b in _children(box, s + 8, e)]
    s, e = kids[b"ipma"]
    version, flags = box[s + 8], box[s + 11]
    count, pos = _uint(box, s + 12, 4)
    for _ in range(count):
        item_id, pos = _uint(box, pos, 2 if version < 1 else 4)
        n, pos = _uint(box, pos, 1)
        assoc = []
        for _ in range(n):
            v, pos = _uint(box, pos, 2 if flags & 1 else 1)
            bits = 15 if flags & 1 else 7
            assoc.append((bool(v >> bits), v & ((1 << bits) - 1)))
        if item_id in items:
            items[item_id].props = assoc
    if pos > e:
        raise UnsupportedImage("truncated HEIF ipma")
    return props


def _parse_iref(box: bytes) -> list[tuple[bytes, int, list[int]]]:
    n = 2 if box[8] == 0 else 4
    out = []
    for btype, s, _ in _children(box, 12, len(box)):
        frm, pos = _uint(box, s + 8, n)
        count, pos = _uint(box, pos, 2)
        to = []
        for _ in range(count):
            t, pos = _uint(box, pos, n)
            to.append(t)
        out.append((btype, frm, to))
    return out


def box(btype: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), btype) + body


def full_box(btype: bytes, version: int, flags: int, body: bytes) -> bytes:
    return box(btype, bytes([version]) + flags.to_bytes(3, "big") + body)


def write(meta: Meta, offset_size: int = 4) -> bytes:
    """A new meta box. Items with method 0 get one extent each at their given offset."""
    wide = max(meta.items) > 0xFFFF
    idn = 4 if wide else 2
    ids = sorted(meta.items)
    pitm = full_box(b"pitm", 1 if wide else 0, 0, meta.primary.to_bytes(idn, "big"))
    iinf = full_box(b"iinf", 1 if wide else 0, 0,
                    len(ids).to_bytes(4 if wide else 2, "big")
                    + b"".join(meta.items[i].infe for i in ids))
    iloc = bytearray([2 if wide else 1, 0, 0, 0, (offset_size << 4) | 4, 0])
    iloc += len(ids).to_bytes(idn, "big")
    for i in ids:
        it = meta.items[i]
        iloc += i.to_bytes(idn, "big") + struct.pack(">HHH", it.method, 0, len(it.extents))
        for off, length in it.extents:
            iloc += off.to_bytes(offset_size, "big") + struct.pack(">I", length)
    refs = b"".join(box(t, f.to_bytes(idn, "big") + struct.pack(">H", len(to))
                        + b"".join(x.to_bytes(idn, "big") for x in to))
                    for t, f, to in meta.refs)
    ipma = bytearray(struct.pack(">I", len(ids)))
    for i in ids:
        props = meta.items[i].props
        ipma += i.to_bytes(idn, "big") + bytes([len(props)])
        for essential, idx in props:
            ipma += struct.pack(">H", (0x8000 if essential else 0) | idx)
    iprp = box(b"iprp", box(b"ipco", b"".join(meta.props))
               + full_box(b"ipma", 1 if wide else 0, 1, bytes(ipma)))
    body = (meta.handler + meta.dinf + pitm + iinf
            + (full_box(b"iref", 1 if wide else 0, 0, refs) if meta.refs else b"")
            + iprp + box(b"iloc", bytes(iloc)) + meta.idat)
    return full_box(b"meta", 0, 0, body)
