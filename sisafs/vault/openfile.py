"""An open file's plaintext view, shared by every handle open on the same inode.

Handles (one per open(2)) never hold a descriptor of their own: they hold this object,
and the vault swaps what is behind it (`bind`) when a protection commit or a conversion
back to a block file replaces the backing file. So no handle can ever read a replaced
file, write into an orphaned one, or close a descriptor twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from sisafs.crypto.blockfile import BlockFile
from sisafs.crypto.errors import AuthenticationFailed
from sisafs.formats.pieces import Pieces
from sisafs.vault.store import DamagedFile, Kind, keep_times


class OpenFile:
    """Reads and writes in plaintext offsets over the current backing file.

    Block files are read and written in place. A protected image is served from its
    restored original; the vault converts it to a block file before anyone writes.

    The original is restored at the first read, not at open: a key holder re-reading a
    photo the kernel still has in its page cache (`keep_cache`) sends no read at all, so
    an eager restore at open cost a whole-file read and restore for nothing once the
    daemon's own cache had let the photo go (200 photos of 12 MP read twice: the second
    pass spent 4.8 ms of daemon CPU a photo on it). A damaged record is then EIO at
    that first read instead of at open.

    The original is held as `Pieces`: after `store.restore_fd` that is one buffer of
    its own (the splice's pieces joined once, into memory faulted in with one call), so
    every read is a view of it; see restore_fd for why reads are not served from the
    splice's pieces themselves.
    """

    def __init__(self, ino: int, public: bool = False):
        self.ino = ino
        self.fd = -1
        self.writable = False  # whether fd was opened O_RDWR
        self.kind = Kind.EMPTY
        self.block: BlockFile | None = None
        self._restored: Pieces | None = None
        self._restore: Callable[[], Pieces] | None = None  # loads _restored when first read
        self._lazy_size = 0  # the plaintext size the record's header gives, until then
        self.version = b""  # protected images: the record's file id
        self.refs = 0
        self.writers = 0
        self.dirty = False
        self.public = public  # serve the backing bytes as they are (allow-other users)

    def bind(self, fd: int, writable: bool, kind: Kind, block: BlockFile | None = None,
             restored: bytes | Pieces | Callable[[], Pieces] | None = None,
             version: bytes = b"",
             size: int = 0) -> None:
        """Point this open file at a (new) backing descriptor; closes the old one.
        `restored` may be a function that restores the original when it is first read;
        `size` is then the plaintext size to report until it has."""
        old = self.fd
        self.fd, self.writable, self.kind = fd, writable, kind
        self.block, self.version = block, version
        if callable(restored):
            self._restored, self._restore, self._lazy_size = None, restored, size
        else:
            self._restored = None if restored is None else Pieces.of(restored)
            self._restore = None
        if block is not None:
            block.lazy_header = True  # the header is synced on flush/fsync/release
        if old >= 0 and old != fd:
            os.close(old)

    @property
    def restored(self) -> Pieces | None:
        """The restored original of a protected image (restored now if not yet; raises
        DamagedFile if its record does not authenticate)."""
        if self._restore is not None:
            self._restored, self._restore = self._restore(), None
        return self._restored

    @property
    def size(self) -> int:
        if self.public:
            return os.fstat(self.fd).st_size
        if self.block is not None:
            return self.block.size
        if self._restore is not None:
            return self._lazy_size
        return len(self._restored) if self._restored is not None else 0

    def read(self, offset: int, length: int) -> bytes:
        if self.public:
            return os.pread(self.fd, length, offset)
        if self.block is not None:
            try:
                return self.block.read(offset, length)
            except AuthenticationFailed as e:
                raise DamagedFile(str(e)) from None
        if self.restored is not None:
            return bytes(self.restored.read(offset, length))
        return b""

    def read_view(self, offset: int, length: int) -> bytes | memoryview:
        """`read` for replies to the kernel: a restored image is served as a view of
        the cached original where one piece holds the range (else one join of the
        pieces it covers), so a read request copies its bytes once (into the reply),
        not twice."""
        if self.restored is not None and self.block is None and not self.public:
            return self.restored.read(offset, length)
        return self.read(offset, length)

    def write(self, offset: int, data: bytes) -> int:
        assert self.block is not None and self.writable, "vault opens writers as block files"
        try:
            n = self.block.write(offset, data)
        except AuthenticationFailed as e:
            raise DamagedFile(str(e)) from None
        self.dirty = True
        return n

    def truncate(self, size: int) -> None:
        assert self.block is not None and self.writable
        try:
            self.block.truncate(size)
        except AuthenticationFailed as e:
            raise DamagedFile(str(e)) from None
        self.dirty = True

    def sync(self) -> None:
        """Put a size grown by writes into the backing header (flush/fsync/release),
        keeping the times users set."""
        if self.block is not None and self.block.header_stale:
            keep_times(self.fd, self.block.sync_header)

    def set_flags(self, flags: int, attempts: int | None = None) -> None:
        assert self.block is not None
        if flags != self.block.flags or attempts is not None:
            keep_times(self.fd, lambda: self.block.set_flags(flags, attempts))  # type: ignore[union-attr]

    def head(self, n: int = 16) -> bytes:
        return self.read(0, n)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
