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
without decrypting megabytes; the size is also visible from the public file, roughly. The
manifest is authenticated but not encrypted: it lists what was altered (label, box,
score, look), which anyone can see in the public pixels anyway, so `sisafs inspect`
works without a key. Identities of recognised people are never put in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sisafs.crypto.keys import PURPOSE_RECORD, subkey
from sisafs.formats.errors import RecordError

MAGIC = b"SISAR"
VERSION = 1
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
    original_size: int
    manifest: dict | None = None

    @property
    def path_name(self) -> str:
        return PATH_NAMES.get(self.path, f"unknown({self.path})")

    @property
    def format_name(self) -> str:
        return FORMAT_NAMES.get(self.format, f"unknown({self.format})")


def parse_header(blob: bytes) -> RecordHeader:
    if len(blob) < HEADER_SIZE or blob[:5] != MAGIC:
        raise RecordError("restore record: bad magic or truncated header")
    _, version, path, fmt, file_id, size, _ = _HEAD.unpack(blob[:HEADER_SIZE])
    if version != VERSION:
        raise RecordError(f"restore record version {version} is not supported")
    manifest = None
    if len(blob) >= HEADER_SIZE + _LEN.size:
        (n,) = _LEN.unpack_from(blob, HEADER_SIZE)
        raw = blob[HEADER_SIZE + _LEN.size : HEADER_SIZE + _LEN.size + n]
        if len(raw) == n:
            try:
                manifest = json.loads(raw)
            except ValueError:
                raise RecordError("restore record: unreadable manifest") from None
    return RecordHeader(version, path, fmt, file_id, size, manifest)


def _split(blob: bytes) -> tuple[bytes, bytes]:
    """(authenticated clear part, ciphertext)."""
    if len(blob) < HEADER_SIZE + _LEN.size:
        raise RecordError("restore record truncated")
    (n,) = _LEN.unpack_from(blob, HEADER_SIZE)
    cut = HEADER_SIZE + _LEN.size + n
    if len(blob) < cut + 16:
        raise RecordError("restore record truncated")
    return blob[:cut], blob[cut:]


def seal(payload: bytes, image_key: bytes, *, path: int, fmt: int, original_size: int,
         public_without_record: bytes, file_id: bytes, manifest: dict | None = None
         ) -> bytes:
    """Seal a payload into a record blob bound to the public bytes it will live in."""
    nonce = os.urandom(12)
    header = _HEAD.pack(MAGIC, VERSION, path, fmt, file_id, original_size, nonce)
    raw = json.dumps(manifest or {}, separators=(",", ":")).encode()
    clear = header + _LEN.pack(len(raw)) + raw
    key = subkey(image_key, PURPOSE_RECORD, salt=file_id)
    digest = hashlib.sha256(public_without_record).digest()
    return clear + AESGCM(key).encrypt(nonce, payload, clear + digest)


def open_(blob: bytes, image_key: bytes, public_without_record: bytes
          ) -> tuple[RecordHeader, bytes]:
    """Authenticate and decrypt a record blob; RecordError if anything is off."""
    header = parse_header(blob)
    clear, ciphertext = _split(blob)
    nonce = blob[HEADER_SIZE - 12 : HEADER_SIZE]
    key = subkey(image_key, PURPOSE_RECORD, salt=header.file_id)
    digest = hashlib.sha256(public_without_record).digest()
    try:
        payload = AESGCM(key).decrypt(nonce, ciphertext, clear + digest)
    except InvalidTag:
        raise RecordError("restore record failed authentication (tampered, truncated, "
                          "or another vault's key)") from None
    return header, payload
