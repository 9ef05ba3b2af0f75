"""The piece table the vault serves restored originals from (issue 11): every read of
[offset, offset + length) equals that slice of the original, at edit boundaries, past
the end and for zero lengths, on a synthetic table and on real restored JPEGs (new,
and the frozen records of every version)."""

from __future__ import annotations

import io
import random
from itertools import accumulate
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisafs.formats import codec
from sisafs.formats.pieces import Pieces
from sisafs.regions import Region

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
FIXED_KEY = bytes(range(32))


def boundaries(p: Pieces) -> list[int]:
    """Where each part starts, and the end."""
    return [0, *accumulate(len(x) for x in p.parts)]


def check_reads(p: Pieces, original: bytes, seed: int = 0, n: int = 400) -> None:
    """Random reads plus every part boundary +-2 with short and long lengths."""
    assert len(p) == len(original)
    rng = random.Random(seed)
    size = len(original)
    pairs = [(rng.randrange(size + 50), rng.choice((0, 1, 7, 4096, 131072, 10 * size)))
             for _ in range(n)]
    for b in boundaries(p):
        for d in (-2, -1, 0, 1, 2):
            for length in (0, 1, 2, 3, 5, 131072):
                pairs.append((max(0, b + d), length))
    pairs += [(size, 10), (size + 1, 10), (max(0, size - 1), 10), (0, size), (0, size + 1)]
    for off, length in pairs:
        got = p.read(off, length)
        assert isinstance(got, bytes | memoryview)
        assert bytes(got) == original[off : off + length], (off, length)
        assert bytes(p.slice(off, off + length)) == original[off : off + length]


def test_reads_equal_slices_of_the_joined_parts():
    rng = random.Random(5)
    parts = [rng.randbytes(rng.choice((0, 1, 2, 17, 300))) for _ in range(200)]
    parts += [memoryview(rng.randbytes(1000))[3:500], bytearray(b"tail")]
    whole = b"".join(parts)
    p = Pieces(parts)
    check_reads(p, whole)
    assert p.tobytes() == bytes(p) == whole
    assert len(Pieces()) == 0 and Pieces().read(0, 10) == b"" and not Pieces()


def test_a_read_inside_one_part_is_a_view_not_a_copy():
    backing = bytes(range(256)) * 16
    p = Pieces([memoryview(backing)[:1000], b"x", memoryview(backing)[2000:]])
    inside = p.read(10, 100)
    assert isinstance(inside, memoryview) and inside.obj is backing
    assert isinstance(p.read(990, 20), bytes)  # across a boundary: one small join
    assert p.footprint == len(backing) + 1  # a view holds its whole buffer


@pytest.mark.parametrize("size", [0, 1000, (1 << 20) + 12345])
def test_joined_is_one_read_only_part_with_the_same_bytes(size):
    """`joined` (what the vault keeps): one part, every read a view of it, nobody can
    write through it."""
    rng = random.Random(size)
    whole = rng.randbytes(size)
    cuts = sorted(rng.randrange(size + 1) for _ in range(50))
    p = Pieces(memoryview(whole)[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True))
    j = p.joined()
    assert len(j.parts) == (1 if size else 0) and j.tobytes() == whole
    check_reads(j, whole, n=50)
    if size:
        view = j.read(1, 10)
        assert isinstance(view, memoryview) and view.readonly
        assert j.footprint >= size


def test_negative_offsets_are_refused():
    with pytest.raises(ValueError):
        Pieces([b"abc"]).read(-1, 2)


def selective_jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:120, 0:160]
    img = np.stack([x * 255 // 160, y * 255 // 120, (x + y) % 256], -1).astype(float)
    img += rng.normal(0, 20, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("look", ["blur", "noise"])
def test_restored_jpeg_reads_equal_the_original_at_every_edit_boundary(look):
    data = selective_jpeg(3)
    regions = [Region("face", 0.9, (20, 10, 40, 30)), Region("text", 0.8, (100, 70, 50, 40))]
    key = bytes(range(1, 33))
    p = codec.protect(data, regions, look, key)
    assert p.path == "selective"
    restored = codec.restore_pieces(p.data, key)
    assert len(restored.parts) > 4  # edits really are spliced in as pieces
    check_reads(restored, data, seed=len(look))
    assert restored.tobytes() == codec.restore(p.data, key) == data


@pytest.mark.parametrize("version", [1, 2, 3, 4])
@pytest.mark.parametrize("name", ["jpeg", "progressive", "png"])
def test_frozen_records_restore_as_pieces(name, version):
    ext = "png" if name == "png" else "jpg"
    protected = (FIXTURES / f"v{version}_{name}_protected.{ext}").read_bytes()
    original = (FIXTURES / f"v1_{name}_original.{ext}").read_bytes()
    restored = codec.restore_pieces(protected, FIXED_KEY)
    check_reads(restored, original, n=100)
