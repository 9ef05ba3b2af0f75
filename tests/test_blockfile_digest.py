"""The vault index's digest of a block file computed from the tags a BlockFile sealed
(`BlockFile.content_digest`) equals the one read back from the disk
(`blockfile.content_digest`), whatever the writes, truncates and reopenings; and a
block put back behind sisafs's back while a writer has the file open is refused at
the next open instead of adopted at close."""

from __future__ import annotations

import os
import random

import pytest
from inproc import FS

from sisafs.crypto.blockfile import (
    BLOCK,
    HEADER_SIZE,
    SLOT,
    BlockFile,
    BlockKeys,
    content_digest,
)

KEYS = BlockKeys(os.urandom(32), os.urandom(32))


def _same(bf: BlockFile) -> None:
    bf.sync_header()
    assert bf.content_digest() == content_digest(bf.fd)


def test_a_sequential_copy_is_digested_from_its_tags(fd):
    bf = BlockFile.create(fd, KEYS)
    bf.lazy_header = True
    data = os.urandom(5 * BLOCK + 1234)
    for off in range(0, len(data), 65536 // 3):  # unaligned requests
        bf.write(off, data[off : off + 65536 // 3])
    assert bf._tags is not None and len(bf._tags) == 16 * 6
    _same(bf)


@pytest.mark.parametrize("seed", range(30))
def test_random_operations_digest_as_read_back(fd, seed):
    rng = random.Random(seed)
    bf = BlockFile.create(fd, KEYS)
    bf.lazy_header = rng.random() < 0.5
    for _ in range(25):
        r = rng.random()
        size = bf.size
        if r < 0.55:  # mostly writes at or inside the end, sometimes past it (holes)
            off = rng.randint(0, size + (9000 if rng.random() < 0.2 else 0))
            bf.write(off, rng.randbytes(rng.randint(1, 3 * BLOCK)))
        elif r < 0.75:
            bf.truncate(rng.randint(0, size + BLOCK))
        elif r < 0.8:
            bf.truncate(0)
        elif r < 0.9:
            bf.sync_header()
            bf = BlockFile.open(fd, KEYS)  # a reopened file knows no tags: reads back
        _same(bf)


def test_a_failed_write_forgets_the_tags(fd, monkeypatch):
    bf = BlockFile.create(fd, KEYS)
    bf.write(0, os.urandom(BLOCK))

    def full(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError):
        bf.write(BLOCK, os.urandom(BLOCK))
    monkeypatch.undo()
    assert bf._tags is None
    _same(bf)


def test_a_block_put_back_while_open_is_refused_at_the_next_open(tmp_path):
    """The digest at close is of what sisafs wrote: an older block (a valid slot of
    the same file, which O_TRUNC keeps) copied back over the new one before the
    writer closes is a rollback, refused at the next open (before, the close read
    the file back and adopted it)."""
    fs = FS(tmp_path / "vault")
    fs.write_file("/d.bin", b"A" * (3 * BLOCK))
    backing = tmp_path / "vault" / "d.bin"
    old = backing.read_bytes()[HEADER_SIZE + SLOT : HEADER_SIZE + 2 * SLOT]
    fh = fs.open("/d.bin", os.O_WRONLY | os.O_TRUNC)
    fs.write(fh, 0, b"B" * (3 * BLOCK))
    raw = bytearray(backing.read_bytes())
    raw[HEADER_SIZE + SLOT : HEADER_SIZE + 2 * SLOT] = old
    backing.write_bytes(bytes(raw))
    fs.close(fh)
    fs.unmount_remount()
    with pytest.raises(OSError) as e:
        fs.read_file("/d.bin")
    assert e.value.errno == 5  # EIO


def test_sealing_a_run_gives_the_slots_of_sealing_block_by_block(fd, monkeypatch):
    bf = BlockFile.create(fd, KEYS)
    plain = os.urandom(3 * BLOCK + 77)
    nonces = os.urandom(12 * 4)
    monkeypatch.setattr(os, "urandom", lambda n: nonces[:n])
    run = bf._seal_run(5, memoryview(plain))
    blocks = b"".join(bf._seal(5 + k, plain[k * BLOCK : (k + 1) * BLOCK],
                               nonces[12 * k : 12 * k + 12]) for k in range(4))
    assert bytes(run) == blocks
