"""Whole-file encryption in authenticated blocks, with random-access reads and writes.

Used for every file that is not (yet) a protected image: non-image files, images that
wait for the workers, and images the selective path could not handle. The layout
follows gocryptfs's content encryption: 4 KiB plaintext blocks, each sealed with
AES-256-GCM under a per-file key, the block index bound as associated data so blocks
cannot be moved. Unlike gocryptfs, the plaintext size lives in a MAC'd header, so a
backing file cut at a block boundary is detected instead of read as a shorter file.

Layout (all integers big-endian):

    header (48 bytes): b"SISAB" | version u8 | flags u8 | attempts u8 | file_id (16) |
                       size u64 | HMAC-SHA256(header[0:32])[:16]

`attempts` counts how often the workers failed to protect an image (0 in files written
before it existed), so a failed image is retried at later mounts a bounded number of
times.
    slot i at 48 + i * 4124: nonce (12) | ciphertext (<= 4096) | tag (16)

A slot made only of zero bytes is a hole and reads as zeros (sparse files, as in
gocryptfs). A slot that lies past the end of the backing file but inside the header's
size means the file was truncated behind our back: that is an authentication failure.
"""

from __future__ import annotations

import ctypes
import errno
import hmac
import os
import struct
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sisafs.crypto.errors import AuthenticationFailed
from sisafs.crypto.keys import PURPOSE_BLOCK, subkey

MAGIC = b"SISAB"
VERSION = 1
HEADER_SIZE = 48
BLOCK = 4096
OVERHEAD = 28
SLOT = BLOCK + OVERHEAD

FLAG_PENDING = 0x01  # an image waiting for the worker pool
FLAG_FAILED = 0x02  # an image the pool could not protect; kept encrypted whole
# Set on files created since issue 10 until a write or truncate leaves a gap: a slot
# of zeros in such a file is a zeroed block, not a hole, and fails authentication.
# Files without it (older ones, sparse ones) read zero slots as holes, as gocryptfs.
FLAG_DENSE = 0x04

_HEAD = struct.Struct(">5sBBB16sQ")  # 32 bytes, MAC'd
_ZERO_NONCE = bytes(12)
_AAD = struct.Struct(">16sQ")  # a block's associated data: file id, block index


@dataclass(frozen=True)
class BlockKeys:
    """The two vault-wide keys a block file needs."""

    content: bytes  # HKDF(master, PURPOSE_BLOCK); per-file keys derive from it
    header_mac: bytes


def is_block_file(head: bytes) -> bool:
    return head[:5] == MAGIC


class BlockFile:
    """An open encrypted file, addressed in plaintext offsets.

    Writes order their syscalls so that a crash between any two leaves a file that
    reads as either the old or the new content of the bytes being written: blocks are
    written before the header grows the size, and the header shrinks it before blocks
    are cut. With `lazy_header` set (files open through the mount), growth by writes
    is recorded in the header at `sync_header` only (the vault calls it on flush,
    fsync and release): a sequential copy then costs one header write per close
    instead of one per write(2); a crash before close loses only the unclosed tail,
    never authenticity.

    The object also keeps the GCM tag of every block it sealed (`_tags`) for as long
    as it has written every block of the file itself (from `create`, or a truncate to
    0): the vault index's digest at close (`content_digest`) is then computed from
    them instead of reading the whole file back (1.8 ms of the daemon's CPU per
    12 MP photo copied in, more than the request floor of its writes).
    """

    def __init__(self, fd: int, keys: BlockKeys, file_id: bytes, size: int, flags: int,
                 attempts: int = 0):
        self.fd = fd
        self.keys = keys
        self.file_id = file_id
        self.size = size
        self.flags = flags
        self.attempts = attempts
        self._header_stale = False
        self.lazy_header = False
        self._reserved = 0  # backing length already reserved by this object
        # The tag of each block, in order, as this object sealed it; None when some
        # block on disk was not written by this object (opened, or left a hole).
        self._tags: bytearray | None = None
        self._aead = AESGCM(subkey(keys.content, PURPOSE_BLOCK, salt=file_id))

    # -- header -------------------------------------------------------------------
    @classmethod
    def create(cls, fd: int, keys: BlockKeys, flags: int = 0) -> BlockFile:
        """Turn an empty (or to-be-emptied) backing file into an empty encrypted file."""
        bf = cls(fd, keys, os.urandom(16), 0, flags | FLAG_DENSE)
        os.ftruncate(fd, 0)
        bf._write_header()
        bf._tags = bytearray()
        return bf

    @classmethod
    def open(cls, fd: int, keys: BlockKeys) -> BlockFile:
        h = read_header_full(os.pread(fd, HEADER_SIZE, 0), keys)
        bf = cls(fd, keys, h.file_id, h.size, h.flags, h.attempts)
        bf._trim()
        return bf

    def _trim(self) -> None:
        """Cut what a writer that never closed (a crash) left past the header's size:
        the header grows lazily, at close, so the backing file can be longer than the
        size says, and the last block's slot may hold a whole block. Such bytes were
        never part of the file; left in place, a later write into the last block
        would leave a stale tail behind its slot, and a later truncate that grows
        the file would show them. The last block is sealed again at its length first,
        then the file is cut, so a crash in between still reads back (see
        _read_blocks). Read-only descriptors cannot do this: reads cope without it."""
        want = backing_size(self.size)
        try:
            if os.fstat(self.fd).st_size <= want:
                return
            if self.size % BLOCK:
                last = self.size // BLOCK
                plain = self._read_blocks(last, last, self.size)[0]
                pwrite_all(self.fd, self._seal(last, plain), HEADER_SIZE + last * SLOT)
            os.ftruncate(self.fd, want)
        except OSError:
            pass

    def retarget(self, fd: int) -> None:
        """Continue on another descriptor of the same file (a writer joined readers)."""
        self.fd = fd
        self._tags = None
        self._trim()

    @property
    def header_stale(self) -> bool:
        return self._header_stale

    def _write_header(self) -> None:
        pwrite_all(self.fd, pack_header(self.keys, self.file_id, self.size, self.flags,
                                        self.attempts), 0)
        self._header_stale = False

    def sync_header(self) -> None:
        """Record in the header a size grown by writes (see the class docstring)."""
        if self._header_stale:
            self._write_header()

    def set_flags(self, flags: int, attempts: int | None = None) -> None:
        self.flags = flags
        if attempts is not None:
            self.attempts = min(255, attempts)
        self._write_header()

    # -- blocks -------------------------------------------------------------------
    def _aad(self, index: int) -> bytes:
        return self.file_id + index.to_bytes(8, "big")

    def _seal(self, index: int, plain: bytes, nonce: bytes | None = None) -> bytes:
        nonce = nonce or os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plain, self._aad(index))

    def _open_slot(self, index: int, slot: bytes) -> bytes:
        # A hole is all zeros; a sealed slot starts with a random nonce, so looking at
        # the whole slot is only needed when the nonce is zero (cheap on the hot path).
        if slot[:12] == _ZERO_NONCE and slot == bytes(len(slot)):
            if self.flags & FLAG_DENSE:
                raise AuthenticationFailed(f"block {index}: zeroed (this file has no holes)")
            return b""  # hole; caller pads with zeros
        if len(slot) <= OVERHEAD:
            raise AuthenticationFailed(f"block {index}: truncated")
        try:
            return self._aead.decrypt(slot[:12], slot[12:], self._aad(index))
        except InvalidTag:
            raise AuthenticationFailed(f"block {index}: authentication failed") from None

    def _block_len(self, index: int, size: int) -> int:
        return max(0, min(BLOCK, size - index * BLOCK))

    def _read_blocks(self, first: int, last: int, size: int) -> list[bytes]:
        """Plaintext of blocks first..last (inclusive), each padded to its length."""
        start = HEADER_SIZE + first * SLOT
        raw = os.pread(self.fd, (last - first + 1) * SLOT, start)
        out = []
        for i in range(first, last + 1):
            want = self._block_len(i, size)
            off = (i - first) * SLOT
            slot = raw[off : off + SLOT]
            if want and not slot:
                raise AuthenticationFailed(f"block {i}: missing (backing file truncated)")
            if 0 < want < BLOCK and len(slot) > want + OVERHEAD:
                # The last, partial block of a file whose backing is longer than its
                # header says: a writer that never closed grew it (crash). Its slot
                # is either exactly this long or a whole block.
                try:
                    plain = self._open_slot(i, slot[: want + OVERHEAD])
                except AuthenticationFailed:
                    plain = self._open_slot(i, slot)
            else:
                plain = self._open_slot(i, slot) if slot else b""
            out.append(plain[:want].ljust(want, b"\0"))
        return out

    def read(self, offset: int, length: int) -> bytes:
        end = min(self.size, offset + length)
        if offset >= end:
            return b""
        first, last = offset // BLOCK, (end - 1) // BLOCK
        plain = memoryview(self._open_run(first, last))
        return bytes(plain[offset - first * BLOCK : end - first * BLOCK])

    def _open_run(self, first: int, last: int) -> bytearray:
        """The plaintext of blocks first..last, each opened straight into one buffer
        (AESGCM.decrypt_into, no copy per block). A slot that is not one whole sealed
        block of the expected length (a hole, a missing or damaged slot, the longer
        slot a crash leaves) goes through _read_blocks, which knows those cases."""
        size = self.size
        raw = os.pread(self.fd, (last - first + 1) * SLOT, HEADER_SIZE + first * SLOT)
        src = memoryview(raw)
        out = bytearray(min(size, (last + 1) * BLOCK) - first * BLOCK)
        dst = memoryview(out)
        decrypt_into, file_id = self._aead.decrypt_into, self.file_id
        for i in range(first, last + 1):
            pos = (i - first) * BLOCK
            want = self._block_len(i, size)
            slot = src[(i - first) * SLOT : (i - first) * SLOT + want + OVERHEAD]
            if len(slot) == want + OVERHEAD and slot[:12] != _ZERO_NONCE and (
                    want == BLOCK or len(raw) == (i - first) * SLOT + want + OVERHEAD):
                try:
                    decrypt_into(slot[:12], slot[12:], file_id + i.to_bytes(8, "big"),
                                 dst[pos : pos + want])
                    continue
                except InvalidTag:
                    pass  # _read_blocks names the failure
            dst[pos : pos + want] = self._read_blocks(i, i, size)[0]
        return out

    def read_all(self) -> bytes:
        return self.read(0, self.size)

    def write(self, offset: int, data: bytes) -> int:
        if not data:
            return 0
        end = offset + len(data)
        new_size = max(self.size, end)
        # Unknown until the new slots are on disk (a failed write leaves them unknown);
        # a write past the end leaves holes and reseals the old last block: unknown.
        tags, self._tags = self._tags, None
        if new_size > self.size and backing_size(new_size) > self._reserved:
            # Only growth needs new space; overwrites stay off this syscall path. What
            # this object reserved before needs no fstat to find (once per write).
            reserve(self.fd, backing_size(new_size), self._reserved)
            self._reserved = backing_size(new_size)
        if offset > self.size:
            tags = None
            self._gap(offset // BLOCK)
            self._pad_tail(new_size)
        first, last = offset // BLOCK, (end - 1) // BLOCK
        # Read-modify-write only the partial blocks at either edge.
        head_keep = offset - first * BLOCK
        tail_end = self._block_len(last, new_size) + last * BLOCK
        if head_keep or end < tail_end:
            old_first = self._read_blocks(first, first, self.size)[0] if head_keep else b""
            tail_old = b""
            if end % BLOCK and last * BLOCK < self.size:
                tail_old = self._read_blocks(last, last, self.size)[0]
            buf = bytearray(old_first[:head_keep].ljust(head_keep, b"\0"))
            buf += data
            if end < tail_end:
                buf += tail_old[end - last * BLOCK : tail_end - last * BLOCK].ljust(
                    tail_end - end, b"\0")
            plain = memoryview(buf)
        else:
            plain = memoryview(data)  # block-aligned (a sequential copy): no copy
        slots = self._seal_run(first, plain)
        pwrite_all(self.fd, slots, HEADER_SIZE + first * SLOT)
        if tags is not None:
            tags[16 * first : 16 * (last + 1)] = slot_tags(slots)
            self._tags = tags
        if new_size != self.size:
            self.size = new_size
            self._header_stale = True
            if not self.lazy_header:
                self._write_header()
        return len(data)

    def _gap(self, end_block: int) -> None:
        """Growing leaves blocks from the old end up to `end_block` unwritten (holes):
        the file is sparse from now on, recorded in the header before a hole exists."""
        if self.flags & FLAG_DENSE and end_block > -(-self.size // BLOCK):
            self.flags &= ~FLAG_DENSE
            self._write_header()

    def _seal_run(self, first: int, plain: memoryview) -> bytearray:
        """The slots of consecutive blocks from `first`, sealed straight into one buffer
        (the same bytes as `_seal` per block, without a copy per block). The loop is
        kept to what each block needs: its call costs 1.1 us over AES-GCM's own time,
        most of what sealing a 4 KiB block costs (see bench/results/speed_notes.md)."""
        size = len(plain)
        n = -(-size // BLOCK)
        out = bytearray(size + n * OVERHEAD)
        dst = memoryview(out)
        nonces = os.urandom(12 * n)  # one getrandom() per write
        encrypt_into, aad, file_id = self._aead.encrypt_into, _AAD.pack, self.file_id
        pos = 0
        for k in range(n):
            start = k * BLOCK
            nonce = nonces[12 * k : 12 * k + 12]
            dst[pos : pos + 12] = nonce
            pos += 12
            end = pos + min(BLOCK, size - start) + 16
            encrypt_into(nonce, plain[start : start + BLOCK], aad(file_id, first + k),
                         dst[pos:end])
            pos = end
        return out

    def _pad_tail(self, new_size: int) -> None:
        """Before growing, make the old partial last block a full one (zero-padded)."""
        last = (self.size - 1) // BLOCK if self.size else -1
        if last >= 0 and self.size % BLOCK:
            plain = self._read_blocks(last, last, self.size)[0]
            want = self._block_len(last, new_size)
            pwrite_all(self.fd, self._seal(last, plain.ljust(want, b"\0")),
                       HEADER_SIZE + last * SLOT)

    def truncate(self, new_size: int) -> None:
        if new_size == self.size:
            return
        self._reserved = 0  # a cut frees what was reserved
        tags, self._tags = self._tags, None
        if new_size > self.size:
            self._gap(-(-new_size // BLOCK))
            self._pad_tail(new_size)
            os.ftruncate(self.fd, max(os.fstat(self.fd).st_size, backing_size(new_size)))
            self.size = new_size
            self._write_header()
            return
        old = self.size
        self.size = new_size
        self._write_header()
        if new_size % BLOCK:
            last = new_size // BLOCK
            plain = self._read_blocks(last, last, old)[0][: new_size % BLOCK]
            slot = self._seal(last, plain)
            pwrite_all(self.fd, slot, HEADER_SIZE + last * SLOT)
            if tags is not None:
                tags[16 * last :] = slot[-16:]
        os.ftruncate(self.fd, backing_size(new_size))
        if new_size == 0:
            tags = bytearray()  # nothing left that this object did not write
        if tags is not None:
            del tags[16 * -(-new_size // BLOCK) :]
            self._tags = tags

    def content_digest(self) -> str:
        """`content_digest(self.fd)`, from the tags this object sealed when it wrote
        every block of the file and the backing length is exactly what they make; else
        read back. The header and the length still come from the disk, so the two
        ways give the same digest for the same bytes (tests/test_blockfile_digest.py)."""
        tags = self._tags
        if tags is not None and not self._header_stale:
            head = os.pread(self.fd, HEADER_SIZE, 0)
            length = os.fstat(self.fd).st_size
            if (len(head) == HEADER_SIZE and int.from_bytes(head[24:32], "big") == self.size
                    and length == backing_size(self.size)
                    and len(tags) == 16 * -(-self.size // BLOCK)):
                h = sha256(head)
                h.update(length.to_bytes(8, "big"))
                h.update(tags)
                return h.hexdigest()
        return content_digest(self.fd)


def slot_tags(slots: bytes | bytearray) -> bytes:
    """The GCM tags of consecutive slots, in order (every slot whole but the last)."""
    v = memoryview(slots)
    n = -(-len(v) // SLOT)
    return b"".join([v[k * SLOT + SLOT - 16 : k * SLOT + SLOT] for k in range(n - 1)]
                    + [v[len(v) - 16 :]])


def backing_size(plain_size: int) -> int:
    full, rest = divmod(plain_size, BLOCK)
    return HEADER_SIZE + full * SLOT + (rest + OVERHEAD if rest else 0)


def pack_header(keys: BlockKeys, file_id: bytes, size: int, flags: int,
                attempts: int = 0) -> bytes:
    head = _HEAD.pack(MAGIC, VERSION, flags, attempts, file_id, size)
    return head + hmac.new(keys.header_mac, head, sha256).digest()[:16]


@dataclass(frozen=True)
class Header:
    size: int
    flags: int
    file_id: bytes
    attempts: int


def read_header_full(raw: bytes, keys: BlockKeys) -> Header:
    """A block file header, authenticated; raises if it does not verify."""
    if len(raw) < HEADER_SIZE or raw[:5] != MAGIC:
        raise AuthenticationFailed("not a sisafs block file (bad magic or short header)")
    magic, version, flags, attempts, file_id, size = _HEAD.unpack(raw[:32])
    if version != VERSION:
        raise AuthenticationFailed(f"block file version {version} is not supported")
    want = hmac.new(keys.header_mac, raw[:32], sha256).digest()[:16]
    if not hmac.compare_digest(want, raw[32:48]):
        raise AuthenticationFailed("block file header failed authentication")
    return Header(size, flags, file_id, attempts)


def read_header(raw: bytes, keys: BlockKeys) -> tuple[int, int, bytes]:
    """(size, flags, file_id) of a block file header; raises if it does not verify."""
    h = read_header_full(raw, keys)
    return h.size, h.flags, h.file_id


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """pwrite everything or raise: a short write (full disk, quota) is ENOSPC, never a
    silent loss that a later read turns into EIO."""
    view, done = memoryview(data), 0
    while done < len(data):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += n


_FALLOC_FL_KEEP_SIZE = 1
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def reserve(fd: int, end: int, start: int = 0) -> None:
    """Reserve disk space up to `end` before a write grows the file, so a full disk is
    refused (ENOSPC) before any byte is written instead of leaving a half-written
    block that would make earlier data unreadable. The size is kept: the header is
    authoritative. Filesystems without fallocate fall back to plain writes.
    `start`: where the space is known to be reserved up to already (else the file's
    length)."""
    cur = start or os.fstat(fd).st_size
    if end <= cur:
        return
    if _libc.fallocate(fd, _FALLOC_FL_KEEP_SIZE, cur, end - cur) != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OSError(err, os.strerror(err))


def content_digest(fd: int) -> str:
    """SHA-256 over what pins down a block file's whole content: its header, its
    length and every slot's GCM tag, in order. A tag authenticates its slot's nonce and
    ciphertext under a key only key holders have, so any slot put back from another
    version (or zeroed) changes the digest, and a slot altered in place fails its own
    tag; hashing 16 bytes per 4 KiB block instead of all of them makes the vault
    index's check at open and its update at close cost a read, not a full hash."""
    head = os.pread(fd, HEADER_SIZE, 0)
    h = sha256(head)
    h.update(os.fstat(fd).st_size.to_bytes(8, "big"))
    size = int.from_bytes(head[24:32], "big") if len(head) == HEADER_SIZE else 0
    full, rest = divmod(size, BLOCK)
    step = 256  # slots per read
    for first in range(0, full, step):
        n = min(step, full - first)
        raw = os.pread(fd, n * SLOT, HEADER_SIZE + first * SLOT)
        view = memoryview(raw)
        for k in range(len(raw) // SLOT):
            h.update(view[(k + 1) * SLOT - 16 : (k + 1) * SLOT])
        if len(raw) < n * SLOT:
            h.update(b"short")
            return h.hexdigest()
    if rest:
        h.update(os.pread(fd, 16, HEADER_SIZE + full * SLOT + rest + OVERHEAD - 16))
    return h.hexdigest()
