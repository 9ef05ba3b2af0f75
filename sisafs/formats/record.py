"""The restore record: everything a key holder needs to get the original bytes back.

It travels inside the public image's own metadata (JPEG APP15 segments, a private PNG
chunk, a private WebP chunk, a trailing ISO-BMFF `uuid` box for HEIF and AVIF), so the
protected file stays one ordinary image. The record is sealed with AES-256-GCM under a
per-file key; its associated data is the clear header plus the SHA-256 of the public
file *without* the record, so changing any public byte, moving a record to another
image, or cutting it short makes the restore fail instead of producing wrong bytes.

Layout (big-endian), version 1:

    b"SISAR" | version u8 | path u8 | format u8 | file_id (16) | original size u64 |
    nonce (12) | manifest length u32 | manifest (UTF-8 JSON) | ciphertext || tag (16)

`path` says which protection ran (0 = fallback: the payload is the whole original;
1 = selective: the payload is codec-specific restore data). `format` is 1 = JPEG,
2 = PNG, 3 = WebP, 4 = AVIF, 5 = HEIF/HEIC (3 to 5 came later without a version change:
the layout is the same, and an older reader already refuses a file whose container it
does not sniff). The header is in the clear because `getattr` needs the original size
without decrypting megabytes. In version 1 the manifest, authenticated but not
encrypted, lists label, box, score and look of every altered region.

Version 2 (written today) shows without a key only what the public image already shows:
- the original size field is masked (XOR with 8 bytes of HMAC-SHA256 under a per-file
  subkey, `PURPOSE_RECORD_SIZE`): `getattr` unmasks it with the image key at the cost
  of one HMAC, nobody else learns the exact size;
- the clear manifest keeps the boxes and the look only (anyone sees where the picture
  was altered);
- labels, scores and the size travel inside the ciphertext, in a private manifest
  before the payload: plaintext = private length u32 | private manifest JSON | payload.
Identities of recognised people are never put in either manifest.

Version 3 (written since issue 11) is version 2 with the public bytes themselves as
associated data instead of their SHA-256: GCM's GHASH authenticates them at several GB/s
(0.1 ms for the 2.3 MB of a 12 MP photo here) where SHA-256 took about 2 ms, paid at
every first read of a protected file and twice when protecting it. Both bind the record
to every public byte.

Version 4 (written since issue 11's size work) is version 3 with both manifests stored
as raw deflate streams of their JSON: their entries repeat the same keys, looks and
reasons, and on a small photo with a dozen regions the two took 1-2 % of the file.
Inflating is bounded (MAX_MANIFEST): a hostile file cannot make a reader allocate more.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sisafs.crypto.keys import PURPOSE_RECORD, PURPOSE_RECORD_SIZE, subkey
from sisafs.formats.errors import RecordError
from sisafs.formats.pieces import Buffer, Pieces

MAGIC = b"SISAR"
VERSION = 4
SUPPORTED = (1, 2, 3, 4)
MAX_MANIFEST = 1 << 22  # bytes of manifest JSON a reader accepts (version 4: inflated)
PATH_FALLBACK = 0
PATH_SELECTIVE = 1
PATH_NAMES = {PATH_FALLBACK: "fallback", PATH_SELECTIVE: "selective"}
FORMAT_JPEG = 1
FORMAT_PNG = 2
FORMAT_WEBP = 3
FORMAT_AVIF = 4
FORMAT_HEIF = 5
FORMAT_NAMES = {FORMAT_JPEG: "jpeg", FORMAT_PNG: "png", FORMAT_WEBP: "webp",
                FORMAT_AVIF: "avif", FORMAT_HEIF: "heif"}

_HEAD = struct.Struct(">5sBBB16sQ12s")
HEADER_SIZE = _HEAD.size  # 44


_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class RecordHeader:
    version: int
    path: int
    format: int
    file_id: bytes
    size_field: int  # version 1: the original size; version 2: masked (see size())
    manifest: dict | None = None
    private: dict | None = None  # version 2, after open_: labels, scores, size

    @property
    def original_size(self) -> int | None:
        """The size without a key: known for version 1 records only."""
        return self.size_field if self.version == 1 else None

    def size(self, image_key: bytes) -> int:
        """The original size (version 2: unmasked with the image key; not authenticated
        until the record is opened, like the version 1 field)."""
        if self.version == 1:
            return self.size_field
        return self.size_field ^ _size_mask(image_key, self.file_id)

    @property
    def path_name(self) -> str:
        return PATH_NAMES.get(self.path, f"unknown({self.path})")

    @property
    def format_name(self) -> str:
        return FORMAT_NAMES.get(self.format, f"unknown({self.format})")


def _size_mask(image_key: bytes, file_id: bytes) -> int:
    key = subkey(image_key, PURPOSE_RECORD_SIZE, salt=file_id)
    return int.from_bytes(hmac.digest(key, b"original size", "sha256")[:8], "big")


def parse_header(blob: bytes) -> RecordHeader:
    if len(blob) < HEADER_SIZE or blob[:5] != MAGIC:
        raise RecordError("restore record: bad magic or truncated header")
    _, version, path, fmt, file_id, size, _ = _HEAD.unpack(blob[:HEADER_SIZE])
    if version not in SUPPORTED:
        raise RecordError(f"restore record version {version} is not supported")
    manifest = None
    if len(blob) >= HEADER_SIZE + _LEN.size:
        (n,) = _LEN.unpack_from(blob, HEADER_SIZE)
        raw = blob[HEADER_SIZE + _LEN.size : HEADER_SIZE + _LEN.size + n]
        if len(raw) == n:
            manifest = _decode_manifest(raw, version, "manifest")
    return RecordHeader(version, path, fmt, file_id, size, manifest)


def _encode_manifest(doc: dict, version: int) -> bytes:
    """Compact JSON; version 4 deflates it (see the module docstring)."""
    raw = json.dumps(doc, separators=(",", ":")).encode()
    if version < 4:
        return raw
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(raw) + c.flush()


def _decode_manifest(raw: bytes | memoryview, version: int, what: str) -> dict:
    """The manifest `_encode_manifest` wrote; RecordError if it does not parse, is not
    a JSON object, or (version 4) does not inflate to at most MAX_MANIFEST bytes."""
    try:
        if version >= 4:
            d = zlib.decompressobj(-15)
            text = d.decompress(raw, MAX_MANIFEST + 1)
            if not d.eof or d.unused_data or len(text) > MAX_MANIFEST:
                raise ValueError(what)
        else:
            text = bytes(raw)
        doc = json.loads(text)
    except (ValueError, zlib.error):
        raise RecordError(f"restore record: unreadable {what}") from None
    if not isinstance(doc, dict):
        raise RecordError(f"restore record: unreadable {what}")
    return doc


def _split(blob: Pieces) -> tuple[bytes, Pieces, bytes]:
    """(authenticated clear part, ciphertext as views: the record can be megabytes and
    lies in 64 KB segments, tag)."""
    if len(blob) < HEADER_SIZE + _LEN.size:
        raise RecordError("restore record truncated")
    (n,) = _LEN.unpack(blob.read(HEADER_SIZE, _LEN.size))
    cut = HEADER_SIZE + _LEN.size + n
    if len(blob) < cut + 16:
        raise RecordError("restore record truncated")
    end = len(blob) - 16
    return bytes(blob.read(0, cut)), blob.slice(cut, end), bytes(blob.read(end, 16))


# What a region entry may not show without a key: what was detected, how sure, and why
# it was altered (the reason names the label). Box, look and mask outline stay public:
# the public pixels show them anyway.
PRIVATE_REGION_KEYS = ("label", "score", "why")


def split_manifest(manifest: dict | None) -> tuple[dict, dict]:
    """(public part, private part) of a manifest; region entries stay in the same order
    so the two halves zip back together. Top-level fields other than "regions" (already
    sealed notes) stay public."""
    manifest = dict(manifest or {})
    regions = manifest.pop("regions", [])
    public = {**manifest, "regions": [{k: v for k, v in r.items()
                                       if k not in PRIVATE_REGION_KEYS} for r in regions]}
    private = {"regions": [{k: r[k] for k in PRIVATE_REGION_KEYS if k in r}
                           for r in regions]}
    return public, private


def seal(payload: bytes, image_key: bytes, *, path: int, fmt: int, original_size: int,
         public_without_record: bytes, file_id: bytes, manifest: dict | None = None,
         version: int = VERSION) -> bytes:
    """Seal a payload into a record blob bound to the public bytes it will live in.
    `version` 1 is kept for tests of old readers only."""
    nonce = os.urandom(12)
    if version == 1:
        size_field, public, plain = original_size, manifest or {}, payload
    else:
        size_field = original_size ^ _size_mask(image_key, file_id)
        public, private = split_manifest(manifest)
        private["original_size"] = original_size
        raw_private = _encode_manifest(private, version)
        plain = _LEN.pack(len(raw_private)) + raw_private + payload
    header = _HEAD.pack(MAGIC, version, path, fmt, file_id, size_field, nonce)
    raw = _encode_manifest(public, version)
    clear = header + _LEN.pack(len(raw)) + raw
    key = subkey(image_key, PURPOSE_RECORD, salt=file_id)
    aad = _associated(clear, public_without_record, version)
    return clear + AESGCM(key).encrypt(nonce, plain, aad)


def _associated(clear: bytes, public_without_record: bytes, version: int) -> bytes:
    """The AEAD's associated data: the clear part, then the public bytes (version 3) or
    their SHA-256 (versions 1 and 2)."""
    if version >= 3:
        return b"".join((clear, public_without_record))
    return clear + hashlib.sha256(public_without_record).digest()


def _decrypt(key: bytes, nonce: bytes, tag: bytes, aad: Iterable[Buffer],
             ciphertext: Pieces) -> memoryview:
    """AES-GCM decryption with the associated data and the ciphertext fed in pieces.

    Same result as `AESGCM(key).decrypt(nonce, ciphertext + tag, b"".join(aad))` (GCM's
    GHASH does not see where the pieces were cut; tests/test_record_stream.py checks it),
    without joining the public bytes (1-3 MB for a 12 MP photo) or the record's 64 KB
    segments. The plaintext lands in one uninitialised buffer (numpy.empty: a
    bytearray or AESGCM's own output is zeroed first, 2 MB of memset per photo).
    Nothing is returned before `finalize` has checked the tag: InvalidTag otherwise.
    """
    dec = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
    for part in aad:
        dec.authenticate_additional_data(part)
    # update_into wants room for one more block than it writes.
    out = memoryview(np.empty(len(ciphertext) + 15, np.uint8))
    pos = 0
    for part in ciphertext.parts:
        pos += dec.update_into(part, out[pos:])
    dec.finalize()
    return out[:pos]


def _associated_parts(clear: bytes, public: Pieces, version: int) -> list[Buffer]:
    """`_associated` as pieces: the clear part, then the public bytes (version 3) or
    their SHA-256 (versions 1 and 2)."""
    if version >= 3:
        return [clear, *public.parts]
    h = hashlib.sha256()
    for part in public.parts:
        h.update(part)
    return [clear, h.digest()]


def open_(blob: bytes | Pieces, image_key: bytes, public_without_record: bytes | Pieces
          ) -> tuple[RecordHeader, bytes | memoryview]:
    """Authenticate and decrypt a record blob; RecordError if anything is off.

    Both may be Pieces (views of the backing file, `jpeg_container.split_record_pieces`):
    nothing of the file is copied here but the decrypted payload."""
    blob = Pieces.of(blob)
    parse_header(bytes(blob.read(0, HEADER_SIZE)))  # bad magic, version before length
    clear, ciphertext, tag = _split(blob)
    header = parse_header(clear)
    nonce = clear[HEADER_SIZE - 12 : HEADER_SIZE]
    key = subkey(image_key, PURPOSE_RECORD, salt=header.file_id)
    aad = _associated_parts(clear, Pieces.of(public_without_record), header.version)
    try:
        payload = _decrypt(key, nonce, tag, aad, ciphertext)
    except InvalidTag:
        raise RecordError("restore record failed authentication (tampered, truncated, "
                          "or another vault's key)") from None
    if header.version == 1:
        return header, payload
    (n,) = _LEN.unpack_from(payload, 0)
    private = _decode_manifest(payload[_LEN.size : _LEN.size + n], header.version,
                               "private manifest")
    if private.get("original_size") != header.size(image_key):
        raise RecordError("restore record: masked size does not match")
    # A view, not a copy: the payload of a 12 MP photo is a megabyte or more, and every
    # first read of a protected file passes through here.
    return replace(header, private=private), payload[_LEN.size + n :]
