"""The block-encrypted file format: random access, holes, and tamper detection."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from sisafs.crypto.blockfile import FLAG_DENSE, HEADER_SIZE, SLOT, BlockFile, BlockKeys
from sisafs.crypto.errors import AuthenticationFailed

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
KEYS = BlockKeys(os.urandom(32), os.urandom(32))


@pytest.mark.parametrize("seed", range(40))
def test_random_operations_match_a_model(fd, seed):
    rng = random.Random(seed)
    bf = BlockFile.create(fd, KEYS)
    model = bytearray()
    for _ in range(40):
        r = rng.random()
        if r < 0.6:
            off, n = rng.randint(0, len(model) + 9000), rng.randint(1, 20000)
            data = rng.randbytes(n)
            bf.write(off, data)
            model.extend(b"\0" * max(0, off - len(model)))
            model[off : off + n] = data
        elif r < 0.8:
            size = rng.randint(0, len(model) + 10000)
            bf.truncate(size)
            model = model[:size] + b"\0" * max(0, size - len(model))
        else:
            bf = BlockFile.open(fd, KEYS)  # reopen: everything is in the file
        off, n = rng.randint(0, len(model) + 10), rng.randint(0, 30000)
        assert bf.read(off, n) == bytes(model[off : off + n]), f"seed {seed}"
        assert bf.size == len(model)


def test_huge_truncate_stays_sparse(fd):
    bf = BlockFile.create(fd, KEYS)
    bf.write(0, b"head")
    bf.truncate(10 << 30)
    assert os.fstat(fd).st_blocks * 512 < 1 << 20
    assert bf.read((5 << 30), 10) == b"\0" * 10


def test_flipped_bit_in_a_block_fails(fd):
    bf = BlockFile.create(fd, KEYS)
    bf.write(0, os.urandom(3 * 4096))
    raw = bytearray(os.pread(fd, 1, HEADER_SIZE + SLOT + 100))
    raw[0] ^= 1
    os.pwrite(fd, bytes(raw), HEADER_SIZE + SLOT + 100)
    with pytest.raises(AuthenticationFailed):
        BlockFile.open(fd, KEYS).read(4096, 10)
    assert BlockFile.open(fd, KEYS).read(0, 10)  # other blocks still read


def test_swapped_blocks_fail(fd):
    bf = BlockFile.create(fd, KEYS)
    bf.write(0, b"A" * 4096 + b"B" * 4096)
    a, b = os.pread(fd, SLOT, HEADER_SIZE), os.pread(fd, SLOT, HEADER_SIZE + SLOT)
    os.pwrite(fd, b + a, HEADER_SIZE)
    with pytest.raises(AuthenticationFailed):
        BlockFile.open(fd, KEYS).read(0, 8192)


def test_truncation_behind_our_back_fails(fd):
    bf = BlockFile.create(fd, KEYS)
    bf.write(0, os.urandom(5 * 4096))
    os.ftruncate(fd, HEADER_SIZE + 2 * SLOT)  # cut at a block boundary
    with pytest.raises(AuthenticationFailed):
        BlockFile.open(fd, KEYS).read_all()


def test_header_tamper_and_wrong_key_fail(fd):
    bf = BlockFile.create(fd, KEYS)
    bf.write(0, b"secret")
    head = bytearray(os.pread(fd, HEADER_SIZE, 0))
    head[24 + 7] ^= 1  # the size field
    os.pwrite(fd, bytes(head), 0)
    with pytest.raises(AuthenticationFailed):
        BlockFile.open(fd, KEYS)
    head[24 + 7] ^= 1
    os.pwrite(fd, bytes(head), 0)
    with pytest.raises(AuthenticationFailed):
        BlockFile.open(fd, BlockKeys(os.urandom(32), os.urandom(32)))


def test_frozen_v1_fixture_still_reads():
    keys = BlockKeys(bytes(range(32)), bytes(range(32, 64)))
    fd = os.open(FIXTURES / "v1_block.bin", os.O_RDONLY)
    try:
        assert BlockFile.open(fd, keys).read_all() == (FIXTURES / "v1_block_plain.txt").read_bytes()
    finally:
        os.close(fd)


def _zero_slot(fd: int, index: int) -> None:
    os.pwrite(fd, bytes(SLOT), HEADER_SIZE + index * SLOT)


def test_zeroed_block_of_a_file_without_holes_fails(fd):
    bf = BlockFile.create(fd, KEYS)
    bf.write(0, os.urandom(3 * 4096))
    assert bf.flags & FLAG_DENSE
    _zero_slot(fd, 1)
    again = BlockFile.open(fd, KEYS)
    assert len(again.read(0, 4096)) == 4096
    with pytest.raises(AuthenticationFailed, match="zeroed"):
        again.read(4096, 4096)


@pytest.mark.parametrize("grow", ["write", "truncate"])
def test_a_gap_makes_the_file_sparse_and_holes_read_as_zeros(fd, grow):
    bf = BlockFile.create(fd, KEYS)
    bf.write(0, b"a" * 100)
    if grow == "write":
        bf.write(3 * 4096, b"b" * 10)
    else:
        bf.truncate(3 * 4096 + 10)
    assert not bf.flags & FLAG_DENSE
    again = BlockFile.open(fd, KEYS)
    assert not again.flags & FLAG_DENSE  # recorded in the header before any hole
    assert again.read(4096, 8192) == bytes(8192)


@pytest.mark.parametrize("end", [4096, 4097, 8192])
def test_growing_into_the_next_block_only_keeps_the_file_dense_when_no_block_is_skipped(
        fd, end):
    bf = BlockFile.create(fd, KEYS)
    bf.write(0, b"a" * 4096)
    bf.truncate(end)
    # 4097 and 8192 leave block 1 unwritten (a hole); 4096 changes nothing.
    assert bool(bf.flags & FLAG_DENSE) == (end == 4096)
    assert BlockFile.open(fd, KEYS).read(0, end) == b"a" * 4096 + bytes(end - 4096)
