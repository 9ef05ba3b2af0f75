"""Selective PNG codec: alter regions in pixels, restore the original bytes by splicing.

`protect` changes only the filtered rows that hold region pixels (plus the next row,
whose predictor reads them), recompresses only the deflate blocks around those rows and
keeps every other original byte in place (see `png_splice`), so `restore` is a handful
of memory copies instead of a recompression that is slow and only sometimes exact.
Palette images keep their palette: region indices are replaced by the nearest entry of
the altered colour. The caller (`sisafs.formats.codec`) seals the payload in the `siSR`
record and falls back to keeping the whole original when this raises UnsupportedImage.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

from sisafs.crypto.keys import PURPOSE_NOISE, subkey
from sisafs.formats.errors import RecordError, UnsupportedImage
from sisafs.formats.png_container import RECORD_CHUNK, Chunk, chunks, make_chunk
from sisafs.formats.png_deflate import inflate_with_boundaries
from sisafs.formats.png_looks import LOOKS, alter_samples
from sisafs.formats.png_meta import DROP_CHUNK, KEEP_CHUNK, policy
from sisafs.formats.png_pixels import Header, decode_image, parse_ihdr, refilter
from sisafs.formats.png_splice import (
    Piece,
    apply_payload,
    edit_script,
    encode_payload,
    idat_pieces,
    public_stream,
)
from sisafs.regions import Region

__all__ = ["protect", "restore"]


def _parse(data: bytes) -> tuple[list[Chunk], Header]:
    """All chunks up to IEND with CRCs checked, and a validated IHDR."""
    found = list(chunks(data))
    if not found or found[0].type != b"IHDR":
        raise UnsupportedImage("PNG does not start with IHDR")
    if found[-1].type != b"IEND":
        raise UnsupportedImage("PNG has no IEND (truncated)")
    for c in found:
        want = struct.unpack(">I", data[c.end - 4:c.end])[0]
        if zlib.crc32(memoryview(data)[c.start + 4:c.end - 4]) & 0xFFFFFFFF != want:
            raise UnsupportedImage(f"bad CRC in PNG chunk {c.type!r}")
        if c.type == RECORD_CHUNK:
            raise UnsupportedImage("PNG already carries a sisafs restore record")
    idx = [i for i, c in enumerate(found) if c.type == b"IDAT"]
    if not idx:
        raise UnsupportedImage("PNG has no IDAT")
    if idx != list(range(idx[0], idx[-1] + 1)):
        raise UnsupportedImage("PNG IDAT chunks are not consecutive")
    return found, parse_ihdr(found[0].data(data))


def _palette(data: bytes, found: list[Chunk]) -> np.ndarray:
    """RGBA palette (K, 4) from PLTE and tRNS."""
    plte = next((c.data(data) for c in found if c.type == b"PLTE"), b"")
    if not plte or len(plte) % 3 or len(plte) > 768:
        raise UnsupportedImage("palette PNG without a valid PLTE")
    pal = np.full((len(plte) // 3, 4), 255, np.uint8)
    pal[:, :3] = np.frombuffer(plte, np.uint8).reshape(-1, 3)
    trns = next((c.data(data) for c in found if c.type == b"tRNS"), b"")
    n = min(len(trns), len(pal))
    pal[:n, 3] = np.frombuffer(trns[:n], np.uint8)
    return pal


def _alter(image: np.ndarray, hdr: Header, regions: Sequence[Region], look: str,
           palette: np.ndarray | None, image_key: bytes, file_id: bytes
           ) -> tuple[np.ndarray, np.ndarray]:
    """The altered image and the (H, W) mask of pixels that belong to a region."""
    new = image.copy()
    changed = np.zeros(image.shape[:2], bool)
    noise_key = subkey(image_key, PURPOSE_NOISE, salt=file_id)
    for i, region in enumerate(regions):
        r = region.clipped(hdr.width, hdr.height)
        if r is None:
            continue
        x, y, w, h = r.box
        mask = np.ones((h, w), bool) if r.mask is None else np.asarray(r.mask, bool)
        if mask.shape != (h, w):
            raise ValueError(f"region mask shape {mask.shape} does not match box {r.box}")
        box = new[y:y + h, x:x + w]
        altered = alter_samples(box, look, hdr.depth, hdr.color_type in (4, 6), palette,
                                noise_key, i)
        box[mask] = altered[mask]
        changed[y:y + h, x:x + w] |= mask
    return new, changed


def _public_pieces(data: bytes, found: list[Chunk], idat: list[Piece]) -> list[Piece]:
    """Signature, chunks the metadata policy lets through, and the new IDAT run."""
    mv = memoryview(data)
    pieces = [Piece(mv[:8], 0)]
    placed = False
    for c in found:
        if c.type == b"IDAT":
            if not placed:
                pieces += idat
                placed = True
            continue
        decision = policy(c.type, bytes(c.data(data)))
        if decision == KEEP_CHUNK:
            pieces.append(Piece(mv[c.start:c.end], c.start))
        elif decision != DROP_CHUNK:
            assert isinstance(decision, bytes)
            pieces.append(Piece(make_chunk(c.type, decision)))
    return pieces


def protect(data: bytes, regions: Sequence[Region], look: str, image_key: bytes,
            file_id: bytes) -> tuple[bytes, bytes]:
    """-> (public PNG without the restore record, payload).

    Raises UnsupportedImage for anything whose exact restore this codec cannot vouch
    for, so the caller can take the whole-original fallback instead.
    """
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r} (use one of {', '.join(LOOKS)})")
    data = bytes(data)
    found, hdr = _parse(data)
    for c in found:  # policy raises on APNG and unknown critical chunks, before any work
        if c.type != b"IDAT":
            policy(c.type, b"")
    idats = [c for c in found if c.type == b"IDAT"]
    z = b"".join(c.data(data) for c in idats)
    if len(z) < 6 or z[0] & 0x0F != 8 or (z[0] << 8 | z[1]) % 31 or z[1] & 0x20:
        raise UnsupportedImage("IDAT is not a plain zlib stream")
    raw, bounds = inflate_with_boundaries(z, hdr.raw_size)
    public_raw = raw
    spans: list[tuple[int, int]] = []
    if any(r.clipped(hdr.width, hdr.height) is not None for r in regions):
        palette = _palette(data, found) if hdr.color_type == 3 else None
        image, recon = decode_image(raw, hdr)
        new_image, changed = _alter(image, hdr, regions, look, palette, image_key, file_id)
        public_raw = bytearray(raw)
        spans = refilter(raw, public_raw, hdr, recon, new_image, changed)
    stream = public_stream(z, bounds, public_raw, spans)
    pieces = _public_pieces(data, found, idat_pieces(data, idats, stream))
    public, shared = edit_script(data, pieces)
    payload = encode_payload(data, public, shared)
    if len(payload) >= len(data):  # small file, or altered rows everywhere: say so plainly
        payload = encode_payload(data, public, [])
    _verify(data, public, payload, public_raw)
    return public, payload


def _verify(data: bytes, public: bytes, payload: bytes, public_raw: bytes | bytearray) -> None:
    """Refuse to hand out a file that does not decode to what we meant or restore exactly."""
    try:
        z = b"".join(c.data(public) for c in chunks(public) if c.type == b"IDAT")
        ok = zlib.decompress(z) == public_raw and apply_payload(public, payload) == data
    except (zlib.error, RecordError, UnsupportedImage) as e:
        raise UnsupportedImage(f"selective PNG self-check failed: {e}") from None
    if not ok:
        raise UnsupportedImage("selective PNG self-check failed (internal error)")


def restore(public_without_record: bytes, payload: bytes, image_key: bytes, file_id: bytes
            ) -> bytes:
    """-> the original bytes exactly.

    The keys are unused: the payload is already authenticated and decrypted by the
    record layer, and rebuilding needs no secret, only the public bytes.
    """
    del image_key, file_id
    return apply_payload(public_without_record, payload)
