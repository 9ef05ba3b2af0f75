"""Bad PNGs must fail fast with UnsupportedImage (so the caller falls back), and bad
payloads must fail with RecordError: never a crash, a huge allocation or wrong bytes."""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_png_matrix import FILE_ID, KEY, chunk, random_samples, write_png

from sisafs.formats import png_selective
from sisafs.formats.errors import RecordError, UnsupportedImage
from sisafs.formats.png_container import chunks
from sisafs.regions import Region

FIXTURES = Path(__file__).parent / "fixtures" / "png"
REGION = [Region("face", 1.0, (2, 2, 8, 8))]


def small_png() -> bytes:
    return write_png(random_samples(24, 20, 3, 8), 8, 2, idat_size=64)


def protect(data: bytes) -> tuple[bytes, bytes]:
    return png_selective.protect(data, REGION, "noise", KEY, FILE_ID)


def ihdr(w: int, h: int, depth: int = 8, ct: int = 2, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ct, 0, 0, interlace))


def test_absurd_dimensions_fail_fast() -> None:
    png = b"\x89PNG\r\n\x1a\n" + ihdr(100000, 100000) + chunk(
        b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    t = time.perf_counter()
    with pytest.raises(UnsupportedImage, match="pixel limit"):
        protect(png)
    assert time.perf_counter() - t < 0.5


def test_dimensions_disagreeing_with_data() -> None:
    good = small_png()
    cs = list(chunks(good))
    body = good[cs[1].start:]
    for w, h in ((20, 25), (20, 23), (4000, 4000)):
        with pytest.raises(UnsupportedImage, match="IHDR dimensions"):
            protect(good[:8] + ihdr(w, h) + body)


@pytest.mark.parametrize("bad", ["zero", "depth", "ctype", "method", "interlace"])
def test_invalid_ihdr(bad: str) -> None:
    good = small_png()
    body = good[list(chunks(good))[1].start:]
    head = {"zero": ihdr(0, 5), "depth": ihdr(20, 24, depth=3),
            "ctype": ihdr(20, 24, ct=5), "method": ihdr(20, 24)[:-5] + b"",
            "interlace": ihdr(20, 24, interlace=2)}[bad]
    if bad == "method":
        head = chunk(b"IHDR", struct.pack(">IIBBBBB", 20, 24, 8, 2, 1, 0, 0))
    with pytest.raises(UnsupportedImage):
        protect(good[:8] + head + body)


def test_truncated_everywhere() -> None:
    good = small_png()
    for cut in list(range(0, 60)) + list(range(60, len(good) - 1, 7)):
        with pytest.raises(UnsupportedImage):
            protect(good[:cut])


def test_bad_crc() -> None:
    good = bytearray(small_png())
    idat = next(c for c in chunks(bytes(good)) if c.type == b"IDAT")
    good[idat.start + 10] ^= 0x01
    with pytest.raises(UnsupportedImage, match="CRC"):
        protect(bytes(good))


def test_structure_errors() -> None:
    good = small_png()
    cs = list(chunks(good))
    idats = [good[c.start:c.end] for c in cs if c.type == b"IDAT"]
    head = good[:cs[1].start]
    iend = chunk(b"IEND", b"")
    cases = {
        "not consecutive": head + idats[0] + chunk(b"tEXt", b"a\x00b") + b"".join(idats[1:])
        + iend,
        "no IDAT": head + iend,
        "APNG": head + chunk(b"acTL", bytes(8)) + b"".join(idats) + iend,
        "critical": head + chunk(b"ABCD", b"") + b"".join(idats) + iend,
        "record": head + chunk(b"siSR", b"x") + b"".join(idats) + iend,
        "extra data": head + chunk(b"IDAT", zlib.compress(
            zlib.decompress(b"".join(c.data(good) for c in cs if c.type == b"IDAT")) + b"\0")
        ) + iend,
        "zlib": head + chunk(b"IDAT", b"\x78\x9c" + b"\xff" * 40) + iend,
    }
    for name, png in cases.items():
        with pytest.raises(UnsupportedImage):
            protect(png)
        assert name


def test_palette_without_plte() -> None:
    png = write_png(random_samples(10, 10, 1, 4) % 16, 4, 3, palette=b"")
    with pytest.raises(UnsupportedImage, match="PLTE"):
        protect(png)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1,
                max_size=4))
def test_mutated_image_data_never_crashes(mutations: list[tuple[int, int]]) -> None:
    """Corrupt the zlib stream but fix the CRCs: reach inflate and the unfilter paths."""
    good = small_png()
    cs = [c for c in chunks(good) if c.type == b"IDAT"]
    z = bytearray(b"".join(c.data(good) for c in cs))
    for pos, val in mutations:
        z[pos % len(z)] = val
    png = good[:cs[0].start] + chunk(b"IDAT", bytes(z)) + chunk(b"IEND", b"")
    try:
        public, payload = protect(png)
    except UnsupportedImage:
        return
    assert png_selective.restore(public, payload, KEY, FILE_ID) == png


def test_tampered_payload_is_refused() -> None:
    good = small_png()
    public, payload = protect(good)
    for bad in (payload[:-1], payload[:10], b"XXXX" + payload[4:],
                payload[:-1] + bytes([payload[-1] ^ 1])):
        with pytest.raises(RecordError):
            png_selective.restore(public, bad, KEY, FILE_ID)
    public = (FIXTURES / "v1_public.png").read_bytes()  # splice mode: COPY ops
    payload = (FIXTURES / "v1_payload.bin").read_bytes()
    other = bytearray(public)
    other[20] ^= 1  # a byte restore copies (IHDR), same length: the CRC-32 catches it
    with pytest.raises(RecordError):
        png_selective.restore(bytes(other), payload, KEY, FILE_ID)
    with pytest.raises(RecordError):
        png_selective.restore(public + b"x", payload, KEY, FILE_ID)


def test_small_file_payload_is_whole_original() -> None:
    png = write_png(random_samples(12, 12, 3, 8), 8, 2)
    public, payload = protect(png)
    assert payload[5] == 1  # FLAG_WHOLE: one DATA op with every original byte
    assert len(payload) < len(png) + 64
    assert png_selective.restore(public, payload, KEY, FILE_ID) == png


def test_frozen_payload_v1() -> None:
    """Format version 1 must restore forever: a payload written by the first version."""
    original = (FIXTURES / "v1_original.png").read_bytes()
    public = (FIXTURES / "v1_public.png").read_bytes()
    payload = (FIXTURES / "v1_payload.bin").read_bytes()
    assert payload[:6] == b"sPNG\x01\x00"  # version 1, splice (has COPY ops)
    assert png_selective.restore(public, payload, KEY, FILE_ID) == original
    assert hashlib.sha256(original).hexdigest() == (FIXTURES / "v1_original.sha256"
                                                    ).read_text().split()[0]
    assert public != original and b"Comment" in original and b"Comment" not in public


def make_v1_fixture() -> None:  # pragma: no cover - run by hand once per format version
    """python -c 'import sys; sys.path.insert(0, "tests"); import test_png_errors as t;
    t.make_v1_fixture()'"""
    original = write_png(random_samples(16, 12, 3, 8, seed=42), 8, 2, idat_size=100,
                         before=(chunk(b"tEXt", b"Comment\x00fixture"),
                                 chunk(b"tEXt", b"Software\x00" + b"sisafs fixture " * 20)))
    public, payload = protect(original)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "v1_original.png").write_bytes(original)
    (FIXTURES / "v1_public.png").write_bytes(public)
    (FIXTURES / "v1_payload.bin").write_bytes(payload)
    (FIXTURES / "v1_original.sha256").write_text(hashlib.sha256(original).hexdigest() + "\n")
