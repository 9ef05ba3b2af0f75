"""An open file's plaintext view, shared by every handle open on the same inode."""

from __future__ import annotations

import os

from sisafs.crypto.blockfile import BlockFile
from sisafs.crypto.errors import AuthenticationFailed
from sisafs.vault.store import DamagedFile, Kind


class OpenFile:
    """Reads and writes in plaintext offsets over one backing file descriptor.

    Block files are read and written in place. A protected image is opened read-only
    and served from its restored original (the vault converts it to a block file
    before anyone may write).
    """

    def __init__(self, ino: int, fd: int, kind: Kind, block: BlockFile | None = None,
                 restored: bytes | None = None, public: bool = False):
        self.ino = ino
        self.fd = fd
        self.kind = kind
        self.block = block
        if block is not None:
            block.lazy_header = True  # the header is synced on flush/fsync/release
        self.restored = restored
        self.refs = 0
        self.writers = 0
        self.dirty = False
        self.public = public  # serve the backing bytes as they are (allow-other users)

    @property
    def size(self) -> int:
        if self.public:
            return os.fstat(self.fd).st_size
        if self.block is not None:
            return self.block.size
        return len(self.restored or b"")

    def read(self, offset: int, length: int) -> bytes:
        if self.public:
            return os.pread(self.fd, length, offset)
        if self.block is not None:
            try:
                return self.block.read(offset, length)
            except AuthenticationFailed as e:
                raise DamagedFile(str(e)) from None
        if self.restored is not None:
            return self.restored[offset : offset + length]
        return b""

    def write(self, offset: int, data: bytes) -> int:
        assert self.block is not None, "vault must open writers as block files"
        try:
            n = self.block.write(offset, data)
        except AuthenticationFailed as e:
            raise DamagedFile(str(e)) from None
        self.dirty = True
        return n

    def truncate(self, size: int) -> None:
        assert self.block is not None
        try:
            self.block.truncate(size)
        except AuthenticationFailed as e:
            raise DamagedFile(str(e)) from None
        self.dirty = True

    def sync(self) -> None:
        """Put a size grown by writes into the backing header (flush/fsync/release)."""
        if self.block is not None:
            self.block.sync_header()

    def head(self, n: int = 16) -> bytes:
        return self.read(0, n)

    def close(self) -> None:
        os.close(self.fd)
