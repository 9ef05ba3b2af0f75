"""The copy-in path's bookkeeping, cut to fewer syscalls and journal records (issue 11),
still leaves every state crash recovery needs. Tier: in-process."""

from __future__ import annotations

import os
import stat

from inproc import FS, _call, backing_kind, small_jpeg

from sisafs.crypto.blockfile import BLOCK, FLAG_PENDING, BlockFile
from sisafs.vault.inodes import ROOT
from sisafs.vault.store import Kind, open_backing, probe_fd


def _header(fs: FS, name: str) -> BlockFile:
    fd = open_backing(str(fs.root / name), os.O_RDONLY)
    try:
        return BlockFile.open(fd, fs.vault.keys.block)
    finally:
        os.close(fd)


def test_close_writes_the_size_and_the_pending_flag_before_release(tmp_path):
    """close(2) (flush) puts the grown size and the pending flag in the header in one
    write; a daemon killed before the kernel's release leaves it for recovery."""
    fs = FS(tmp_path / "v")
    photo = small_jpeg(5, (160, 120))
    fh = fs.open("/p.jpg", os.O_WRONLY | os.O_CREAT)
    fs.write(fh, 0, photo)
    _call(fs.ops.flush, fh)
    bf = _header(fs, "p.jpg")
    assert bf.size == len(photo) and bf.flags & FLAG_PENDING
    fs.crash()
    fs.protect_all()
    assert backing_kind(fs, "p.jpg") is Kind.PROTECTED
    assert fs.read_file("/p.jpg") == photo


def test_a_file_created_and_synced_then_crashed_is_adopted(tmp_path):
    """create journals the new id and "being written" in one record: after a crash
    before close, recovery adopts what fsync made durable (no EIO)."""
    fs = FS(tmp_path / "v")
    data = os.urandom(3 * BLOCK + 5)
    fh = fs.open("/d.bin", os.O_WRONLY | os.O_CREAT)
    fs.write(fh, 0, data)
    fs.fsync(fh)
    fs.crash()
    assert fs.read_file("/d.bin") == data


def test_an_empty_file_opened_for_writing_is_adopted_after_a_crash(tmp_path):
    """The same for an empty file (mknod, or a crash right after create) made a block
    file by an open for writing."""
    fs = FS(tmp_path / "v")
    _call(fs.ops.mknod, ROOT, b"e.bin", stat.S_IFREG | 0o644, 0, fs.ctx)
    assert backing_kind(fs, "e.bin") is Kind.EMPTY
    fh = fs.open("/e.bin", os.O_WRONLY)
    fs.write(fh, 0, b"x" * 100)
    fs.fsync(fh)
    fs.crash()
    assert fs.read_file("/e.bin") == b"x" * 100
    fd = open_backing(str(fs.root / "e.bin"), os.O_RDONLY)
    try:
        assert probe_fd(fd, fs.vault.keys).kind is Kind.BLOCK
    finally:
        os.close(fd)
