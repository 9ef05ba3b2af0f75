"""Selective HEIC protection: re-encode only the grid tiles an altered region touches.

Phone HEICs store the picture as a grid of 512x512 HEVC tiles. Protect decodes the
picture once (pillow-heif, rotation applied, so region boxes mean what detection saw),
alters it with the shared pixel looks, turns it back to the stored orientation, and
encodes only the tiles whose pixels changed, each as its own small HEVC image whose
`hvcC` goes into `ipco` as a new property. The public file is `ftyp`, a rewritten
`meta` and one `mdat` holding the kept tiles' original bytes, the new tiles and a
filtered Exif item. Every other item (depth maps, HDR gain maps and `tmap`, thumbnails,
XMP, the second image of a stereo pair, anything unknown) leaves the public file: its
bytes exist only in the encrypted record.

The payload rebuilds the original from the public file: a list of ops, each either
"copy n bytes from public offset p" (a kept tile) or literal original bytes (boxes,
replaced tiles, auxiliary items). Restore is a splice, nothing is decoded.

Payload format, version 1 (big-endian):

    b"SHGS" | version u8 = 1 | op count u32 | original size u64 | public size u64 | ops
    op: kind u8 (0 = copy, 1 = literal) | length u64 | copy: public offset u64 |
        literal: the bytes
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence

import numpy as np
from PIL import Image

from sisafs.crypto.keys import PURPOSE_NOISE, subkey
from sisafs.formats import bmff_container, heif_meta, heif_support
from sisafs.formats.errors import FormatError, RecordError, UnsupportedImage
from sisafs.formats.heif_meta import Item, Meta
from sisafs.formats.looks import alter_pixels
from sisafs.formats.metadata import public_exif
from sisafs.formats.reencode import open_image
from sisafs.regions import Region

MAGIC = b"SHGS"
VERSION = 1
_HEAD = struct.Struct(">4sBIQQ")
# Tile qualities tried in turn until a new tile is at most TILE_SLACK times the size of
# the tile it replaces (phone encoders compress hard; a fixed quality doubled some files).
TILE_QUALITIES = (70, 55, 42, 30)
TILE_SLACK = 1.15
TILE_PRESET = "medium"  # x265 default ("slow") costs 2x the time for 2 % smaller tiles
# The public picture must match the intended altered picture this closely (mean
# absolute difference per sample, 0-255) or the file takes the whole re-encode path:
# in kept tiles (only chroma upsampling across tile edges differs) and in the
# unaltered pixels of re-encoded tiles (compression error at the lowest tile quality).
MAX_KEPT_ERROR = 1.0
MAX_PUBLIC_ERROR = 12.0


def protect(data: bytes, regions: Sequence[Region], look: str, image_key: bytes,
            file_id: bytes) -> tuple[bytes, bytes]:
    """-> (public HEIC without any restore record, restore payload)."""
    if not heif_support.ensure():
        raise UnsupportedImage("pillow-heif is not installed")
    try:
        return _protect(data, regions, look, subkey(image_key, PURPOSE_NOISE, salt=file_id))
    except FormatError:
        raise
    except (ValueError, LookupError, IndexError, OverflowError, struct.error, OSError,
            StopIteration, MemoryError, RuntimeError) as e:
        raise UnsupportedImage(f"selective HEIC path failed: {e}") from None


def _protect(data: bytes, regions: Sequence[Region], look: str, noise_key: bytes
             ) -> tuple[bytes, bytes]:
    tops = list(bmff_container.boxes(data))
    kinds = [b.type for b in tops]
    if kinds.count(b"meta") != 1 or kinds[0] != b"ftyp":
        raise UnsupportedImage("HEIC without one meta box")
    mbox = tops[kinds.index(b"meta")]
    meta = heif_meta.parse(data, mbox.start, mbox.end)
    grid, tiles = _grid(meta, data)
    shown = open_image(data, "HEIF")
    if shown.mode != "RGB":
        raise UnsupportedImage(f"selective HEIC handles RGB pictures, not {shown.mode}")
    before = np.asarray(shown)
    after = alter_pixels(before, regions, look, noise_key)
    steps = _transforms(meta)
    stored_before, stored_after = _unshow(before, steps), _unshow(after, steps)
    if stored_before.shape[:2] != (grid[1], grid[0]):
        raise UnsupportedImage("HEIC picture size does not match its grid")
    new_tiles = _encode_changed(stored_before, stored_after, grid, tiles, meta)
    public, ops = _assemble(data, tops[0], meta, tiles, new_tiles, shown.info.get("exif"))
    replaced = np.zeros(stored_before.shape[:2], bool)
    for n, item in enumerate(tiles):
        if item in new_tiles:
            y0, x0 = (n // grid[2]) * grid[3], (n % grid[2]) * grid[3]
            replaced[y0 : y0 + grid[3], x0 : x0 + grid[3]] = True
    _check_public(public, before, after, _show(replaced, steps))
    return public, _payload(ops, data, public)


def _grid(meta: Meta, data: bytes) -> tuple[tuple[int, int, int, int], list[int]]:
    """((width, height, columns, tile size), tile item ids) of the primary picture."""
    primary = meta.items[meta.primary]
    if primary.type != b"grid":  # a single coded picture: the re-encode path fits it
        raise UnsupportedImage(f"HEIC primary item is {primary.type.decode('latin-1')!r}, "
                               "not a tile grid")
    desc = _item_data(data, meta, primary)
    flags = desc[1]
    n = 4 if flags & 1 else 2
    rows, cols = desc[2] + 1, desc[3] + 1
    width = int.from_bytes(desc[4 : 4 + n], "big")
    height = int.from_bytes(desc[4 + n : 4 + 2 * n], "big")
    tiles = meta.refs_from(b"dimg", meta.primary)
    if len(tiles) != rows * cols or any(meta.items[t].type != b"hvc1" for t in tiles):
        raise UnsupportedImage("HEIC grid tiles are not plain HEVC images")
    sizes = {_ispe(meta, t) for t in tiles}
    if len(sizes) != 1:
        raise UnsupportedImage("HEIC grid tiles differ in size")
    tw, th = sizes.pop()
    if tw != th or tw * cols < width or th * rows < height:
        raise UnsupportedImage("unusual HEIC grid layout")
    for t in tiles:
        hvcc = meta.prop(t, b"hvcC")
        if hvcc is None or hvcc[16] & 3 != 1 or hvcc[17] & 7 or hvcc[18] & 7:
            raise UnsupportedImage("HEIC tiles are not 8-bit 4:2:0")
    return (width, height, cols, tw), tiles


def _ispe(meta: Meta, item: int) -> tuple[int, int]:
    body = meta.prop(item, b"ispe")
    if body is None:
        raise UnsupportedImage("HEIC item without ispe")
    return struct.unpack(">II", body[4:12])


def _item_data(data: bytes, meta: Meta, item: Item) -> bytes:
    if item.method == 1:
        base = meta.idat[8:]
        return b"".join(base[o : o + n] for o, n in item.extents)
    return b"".join(data[o : o + n] for o, n in item.extents)


def _transforms(meta: Meta) -> list[tuple[bytes, int]]:
    """The primary's irot/imir steps in order; other transforms are refused."""
    steps = []
    for _, idx in meta.items[meta.primary].props:
        raw = meta.props[idx - 1]
        kind = raw[4:8]
        if kind in (b"irot", b"imir"):
            steps.append((kind, raw[8] & (3 if kind == b"irot" else 1)))
        elif kind == b"clap":
            raise UnsupportedImage("HEIC with a clean-aperture crop")
    return steps


def _unshow(shown: np.ndarray, steps: list[tuple[bytes, int]]) -> np.ndarray:
    """Undo the display transforms: the picture as the tiles store it."""
    out = shown
    for kind, v in reversed(steps):
        if kind == b"irot":
            out = np.rot90(out, -v)  # irot turns anti-clockwise by v quarter turns
        else:
            out = out[:, ::-1] if v == 0 else out[::-1]  # axis 0: the vertical axis
    return np.ascontiguousarray(out)


def _show(stored: np.ndarray, steps: list[tuple[bytes, int]]) -> np.ndarray:
    """Apply the display transforms (the inverse of `_unshow`)."""
    out = stored
    for kind, v in steps:
        if kind == b"irot":
            out = np.rot90(out, v)
        else:
            out = out[:, ::-1] if v == 0 else out[::-1]
    return np.ascontiguousarray(out)


def _encode_changed(before: np.ndarray, after: np.ndarray, grid: tuple, tiles: list[int],
                    meta: Meta) -> dict[int, tuple[bytes, bytes]]:
    """{tile item: (hvcC property box, coded data)} for every tile whose pixels changed."""
    width, height, cols, size = grid
    out: dict[int, tuple[bytes, bytes]] = {}
    start = 0  # neighbouring tiles need similar qualities: start where the last one fit
    for n, item in enumerate(tiles):
        y0, x0 = (n // cols) * size, (n % cols) * size
        a = before[y0 : y0 + size, x0 : x0 + size]
        b = after[y0 : y0 + size, x0 : x0 + size]
        if a.size == 0 or np.array_equal(a, b):
            continue
        tile = np.pad(b, ((0, size - b.shape[0]), (0, size - b.shape[1]), (0, 0)), "edge")
        budget = TILE_SLACK * sum(length for _, length in meta.items[item].extents)
        for k in range(start, len(TILE_QUALITIES)):
            out[item] = _encode_tile(tile, TILE_QUALITIES[k])
            start = k
            if len(out[item][1]) <= budget:
                break
    return out


def _encode_tile(tile: np.ndarray, quality: int) -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    Image.fromarray(tile, "RGB").save(buf, "HEIF", quality=quality,
                                      enc_params={"preset": TILE_PRESET})
    coded = buf.getvalue()
    tops = list(bmff_container.boxes(coded))
    mbox = next(b for b in tops if b.type == b"meta")
    meta = heif_meta.parse(coded, mbox.start, mbox.end)
    item = meta.items[meta.primary]
    if item.type != b"hvc1":
        raise UnsupportedImage("the tile encoder wrote no plain HEVC image")
    hvcc = meta.prop(meta.primary, b"hvcC")
    if hvcc is None:
        raise UnsupportedImage("the tile encoder wrote no hvcC")
    return heif_meta.box(b"hvcC", hvcc), _item_data(coded, meta, item)


def _assemble(data: bytes, ftyp, meta: Meta, tiles: list[int],
              new: dict[int, tuple[bytes, bytes]], exif_in: bytes | None
              ) -> tuple[bytes, list[tuple[int, int, int]]]:
    """-> (public file, [(original offset, length, public offset)] of kept tile bytes)."""
    keep = {meta.primary, *tiles}
    items = {i: meta.items[i] for i in keep}
    for i in tiles:
        if meta.items[i].method != 0:
            raise UnsupportedImage("HEIC tile data inside idat")
    props = list(meta.props)
    for i, (hvcc, _) in new.items():
        props.append(hvcc)
        old = items[i]
        assoc = [(e, len(props) if meta.props[x - 1][4:8] == b"hvcC" else x)
                 for e, x in old.props]
        items[i] = Item(old.id, old.type, old.infe, 0, old.extents, assoc)
    refs = [(b"dimg", meta.primary, list(tiles))]
    exif = public_exif(exif_in)
    exif = _no_orientation(exif)
    chunks: list[tuple[int, bytes | None, tuple[int, int] | None]] = []
    if exif:
        exif_id = max(meta.items) + 1
        infe = heif_meta.full_box(b"infe", 2, 0, exif_id.to_bytes(2, "big") + b"\0\0Exif\0")
        if exif_id > 0xFFFF:
            raise UnsupportedImage("HEIC item ids too large")
        items[exif_id] = Item(exif_id, b"Exif", infe)
        refs.append((b"cdsc", exif_id, [meta.primary]))
        chunks.append((exif_id, b"\0\0\0\0" + exif[6:], None))
    for i in tiles:
        if i in new:
            chunks.append((i, new[i][1], None))
        else:
            chunks.append((i, None, _single_extent(meta.items[i])))
    if meta.items[meta.primary].method == 0:  # grid descriptor in mdat: a fresh copy
        chunks.append((meta.primary, _item_data(data, meta, meta.items[meta.primary]), None))
    idat = b""
    if items[meta.primary].method == 1:  # only the grid descriptor stays in idat
        desc = _item_data(data, meta, meta.items[meta.primary])
        idat = heif_meta.box(b"idat", desc)
        old = items[meta.primary]
        items[meta.primary] = Item(old.id, old.type, old.infe, 1, [(0, len(desc))], old.props)
    pub_meta = Meta(meta.handler, meta.dinf, meta.primary, items, refs,
                    _prune_props(items, props), idat)
    total = sum(len(c) if c is not None else ext[1] for _, c, ext in chunks)
    osz = 4 if len(data) + total < 1 << 31 else 8
    for item_id, chunk, ext in chunks:  # sizes first: offsets do not change the length
        items[item_id].extents = [(0, len(chunk) if chunk is not None else ext[1])]
        items[item_id].method = 0
    head = data[ftyp.start : ftyp.end]
    pos = len(head) + len(heif_meta.write(pub_meta, osz)) + 8
    body, kept = [], []
    for item_id, chunk, ext in chunks:
        piece = chunk if chunk is not None else data[ext[0] : ext[0] + ext[1]]
        items[item_id].extents = [(pos, len(piece))]
        if chunk is None:
            kept.append((ext[0], ext[1], pos))
        body.append(piece)
        pos += len(piece)
    mdat = b"".join(body)
    public = head + heif_meta.write(pub_meta, osz) + struct.pack(">I4s", 8 + len(mdat),
                                                                  b"mdat") + mdat
    return public, kept


def _prune_props(items: dict[int, Item], props: list[bytes]) -> list[bytes]:
    """Only the properties kept items use (removed items' hvcC, auxC and the like go),
    renumbered in place in the items' associations."""
    used = sorted({idx for it in items.values() for _, idx in it.props})
    new_index = {old: n + 1 for n, old in enumerate(used)}
    for it in items.values():
        it.props = [(e, new_index[idx]) for e, idx in it.props]
    return [props[i - 1] for i in used]


def _single_extent(item: Item) -> tuple[int, int]:
    if len(item.extents) != 1:
        raise UnsupportedImage("HEIC tile stored in several extents")
    return item.extents[0]


def _no_orientation(exif: bytes | None) -> bytes | None:
    if not exif:
        return None
    e = Image.Exif()
    e.load(exif)
    e.pop(0x0112, None)
    raw = e.tobytes() if len(e) else b""
    return raw if raw.startswith(b"Exif\0\0") else None


def _check_public(public: bytes, before: np.ndarray, after: np.ndarray,
                  replaced: np.ndarray) -> None:
    """The public file decodes to the intended picture. Outside the replaced tiles it
    must be the original (a little slack: chroma is upsampled across tile edges);
    inside them, close to the altered picture where nothing was altered, and inside the
    regions no nearer the original than half its distance to the intended picture. A
    tile put back in the wrong place or orientation fails one of these; heavily
    compressed noise does not."""
    got = np.asarray(open_image(public, "HEIF").convert("RGB")).astype(np.int16)
    if got.shape != after.shape or replaced.shape != after.shape[:2]:
        raise UnsupportedImage("public HEIC decodes at another size")
    kept = ~replaced
    if kept.any() and float(np.abs(got[kept] - before[kept]).mean()) > MAX_KEPT_ERROR:
        raise UnsupportedImage("public HEIC changed outside the replaced tiles")
    mask = np.any(before != after, axis=-1)
    plain = replaced & ~mask
    if plain.any():
        err = float(np.abs(got[plain] - after[plain]).mean())
        if err > MAX_PUBLIC_ERROR:
            raise UnsupportedImage(f"re-encoded HEIC tiles are too far off ({err:.1f})")
    if mask.any():
        near_after = float(np.abs(got[mask] - after[mask]).mean())
        near_before = float(np.abs(got[mask] - before[mask]).mean())
        if near_before * 2 < near_after:
            raise UnsupportedImage("public HEIC regions are not altered as intended")


def _payload(kept: list[tuple[int, int, int]], data: bytes, public: bytes) -> bytes:
    ops, cur = [], 0
    for off, length, pub in sorted(kept):
        if off < cur:
            raise UnsupportedImage("overlapping HEIC tile extents")
        if off > cur:
            ops.append(struct.pack(">BQ", 1, off - cur) + data[cur:off])
        ops.append(struct.pack(">BQQ", 0, length, pub))
        cur = off + length
    if cur < len(data):
        ops.append(struct.pack(">BQ", 1, len(data) - cur) + data[cur:])
    return _HEAD.pack(MAGIC, VERSION, len(ops), len(data), len(public)) + b"".join(ops)


def restore(public_without_record: bytes, payload: bytes, image_key: bytes,
            file_id: bytes) -> bytes:
    """-> the original bytes exactly (RecordError if the payload does not fit)."""
    pub = public_without_record
    if len(payload) < _HEAD.size:
        raise RecordError("HEIC restore payload too short")
    magic, version, count, orig_size, pub_size = _HEAD.unpack_from(payload)
    if magic != MAGIC or version != VERSION:
        raise RecordError(f"unknown HEIC restore payload (magic {magic!r}, v{version})")
    if pub_size != len(pub):
        raise RecordError("HEIC restore payload belongs to another public file")
    out: list[bytes | memoryview] = []
    view, pay, pos = memoryview(pub), memoryview(payload), _HEAD.size
    for _ in range(count):
        if pos + 9 > len(payload):
            raise RecordError("HEIC restore payload truncated")
        kind, length = struct.unpack_from(">BQ", payload, pos)
        pos += 9
        if kind == 0:
            (src,) = struct.unpack_from(">Q", payload, pos)
            pos += 8
            if src + length > len(pub):
                raise RecordError("HEIC restore payload is inconsistent")
            out.append(view[src : src + length])
        elif kind == 1 and pos + length <= len(payload):
            out.append(pay[pos : pos + length])
            pos += length
        else:
            raise RecordError("HEIC restore payload is inconsistent")
    result = b"".join(out)
    if pos != len(payload) or len(result) != orig_size:
        raise RecordError("HEIC restore payload is inconsistent")
    return result
