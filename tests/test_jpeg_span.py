"""The C span helpers of the selective JPEG encoder (copy_mcus, span_bytes) against the
numpy and Python-integer code they replaced, byte for byte, and their refusal of
arguments that would reach outside a buffer (the geometry comes from a hostile file)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sisafs.formats import _jpegcodec
from sisafs.formats.jpeg_structure import Component, Frame, Scan, mcu_blocks, scan_geometry


def _geometry(hv: list[tuple[int, int]], mx: int, my: int, seed: int):
    """Random coefficient arrays for a scan of `hv` components, mx x my MCUs, with
    spare rows and columns (arrays are allocated to whole MCUs of the frame)."""
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(-2048, 2048, (my * v + 1, mx * h + 2, 64), dtype=np.int16)
              for h, v in hv]
    comps = tuple((h, v, a.shape[0], a.shape[1], a) for (h, v), a in zip(hv, arrays,
                                                                          strict=True))
    return arrays, comps


def _reference_blocks(hv, mx: int, m0: int, m1: int):
    """(slot, rows, cols) in coding order, as jpeg_structure.mcu_blocks computes them."""
    pattern = np.array([(j, h, v, bv, bh) for j, (h, v) in enumerate(hv)
                        for bv in range(v) for bh in range(h)], np.int64)
    y, x = np.divmod(np.arange(m0, m1, dtype=np.int64), mx)
    n = m1 - m0
    rows = (y[:, None] * pattern[:, 2] + pattern[:, 3]).ravel()
    cols = (x[:, None] * pattern[:, 1] + pattern[:, 4]).ravel()
    return np.tile(pattern[:, 0], n), rows, cols


@pytest.mark.parametrize("hv", [[(2, 2), (1, 1), (1, 1)], [(1, 1)], [(2, 1), (1, 1), (1, 1)],
                                [(1, 2), (1, 1), (1, 1), (1, 1)]])
def test_copy_mcus_matches_fancy_indexing(hv) -> None:
    mx, my = 7, 5
    arrays, comps = _geometry(hv, mx, my, len(hv))
    rng = random.Random(3)
    for _ in range(40):
        m0 = rng.randrange(mx * my)
        m1 = rng.randrange(m0, mx * my + 1)
        slot, rows, cols = _reference_blocks(hv, mx, m0, m1)
        want = np.empty((len(slot), 64), np.int16)
        for j, a in enumerate(arrays):
            sel = slot == j
            want[sel] = a[rows[sel], cols[sel]]
        got = np.full_like(want, 77)
        assert _jpegcodec.copy_mcus(comps, mx, m0, m1, got, False) == len(slot)
        assert np.array_equal(got, want)
        # and back: the scatter writes exactly those blocks, nothing else
        new = rng.randrange(1000)
        before = [a.copy() for a in arrays]
        _jpegcodec.copy_mcus(comps, mx, m0, m1, np.full_like(want, new), True)
        for j, (a, b) in enumerate(zip(arrays, before, strict=True)):
            sel = slot == j
            b[rows[sel], cols[sel]] = new
            assert np.array_equal(a, b)


def test_copy_mcus_agrees_with_mcu_blocks() -> None:
    """The order is jpeg_structure.mcu_blocks' (check_mcus and the decoder use it)."""
    frame = Frame(0xC0, 112, 80, [Component(1, 2, 2, 0), Component(2, 1, 1, 1),
                            Component(3, 1, 1, 1)])
    scan = Scan(0, 0, [0, 1, 2], [0, 1, 1], [0, 1, 1], (), (), 0, True)
    mx, my, hv = scan_geometry(frame, scan)
    arrays, comps = _geometry(hv, mx, my, 9)
    slot, _comp, rows, cols = mcu_blocks(frame, scan, 3, 17)
    want = np.empty((len(slot), 64), np.int16)
    for j, a in enumerate(arrays):
        want[slot == j] = a[rows[slot == j], cols[slot == j]]
    got = np.empty_like(want)
    _jpegcodec.copy_mcus(comps, mx, 3, 17, got, False)
    assert np.array_equal(got, want)


def test_copy_mcus_refuses_bad_geometry() -> None:
    hv = [(2, 2), (1, 1)]
    mx, my = 4, 3
    arrays, comps = _geometry(hv, mx, my, 1)
    out = np.empty((6 * mx * my, 64), np.int16)
    y, c = arrays
    bad = [
        (comps, mx, 0, mx * (y.shape[0] // 2) + 1),  # an MCU row past the arrays
        (comps, mx, 5, 4),  # end before start
        (comps, mx, -1, 2),
        (comps, 0, 0, 1),
        (comps, y.shape[1], 0, 1),  # MCUs wider than the arrays
        (((2, 2, y.shape[0], y.shape[1], y[:-1]),), mx, 0, 1),  # array shorter than said
        (((2, 2, y.shape[0] + 5, y.shape[1], y),), mx, 0, 1),
        (((0, 2, y.shape[0], y.shape[1], y),), mx, 0, 1),
        (((5, 1, y.shape[0], y.shape[1], y),), mx, 0, 1),
        ((), mx, 0, 1),
        (tuple([comps[0]] * 5), mx, 0, 1),
        ([*comps], mx, 0, 1),
    ]
    for args in bad:
        with pytest.raises((ValueError, TypeError)):
            _jpegcodec.copy_mcus(*args, out, False)
    with pytest.raises(ValueError):  # too small a block buffer
        _jpegcodec.copy_mcus(comps, mx, 0, 2, out[:9], False)  # 10 blocks
    with pytest.raises((TypeError, BufferError)):  # gather into read-only bytes
        _jpegcodec.copy_mcus(comps, mx, 0, 1, bytes(6 * 128), False)
    ro = tuple((h, v, r, k, bytes(a.tobytes())) for h, v, r, k, a in comps)
    with pytest.raises((TypeError, BufferError)):  # scatter into read-only arrays
        _jpegcodec.copy_mcus(ro, mx, 0, 1, out, True)
    assert _jpegcodec.copy_mcus(comps, mx, 2, 2, out, False) == 0  # an empty range


def _reference_span(data: bytes, start: int, pieces, end: int) -> bytes:
    """The Python-integer splice the C code replaced (jpeg_selective before issue 11's
    last round)."""
    ph_s = start & 7
    v = (data[start >> 3] >> (8 - ph_s)) if ph_s else 0
    total = ph_s
    for bits, nbits in pieces:
        v = (v << nbits) | (int.from_bytes(bits, "big") >> (len(bits) * 8 - nbits))
        total += nbits
    if end < 0:
        pad = -total % 8
        v, total = (v << pad) | ((1 << pad) - 1), total + pad
    else:
        ph_e = end & 7
        if ph_e:
            v = (v << (8 - ph_e)) | (data[end >> 3] & ((1 << (8 - ph_e)) - 1))
            total += 8 - ph_e
        if total % 8:
            raise ValueError("mismatch")
    return v.to_bytes(total // 8, "big").replace(b"\xff", b"\xff\x00")


def test_span_bytes_matches_python_integers() -> None:
    rng = random.Random(5)
    for _ in range(3000):
        data = bytes(rng.choice([0xFF, 0x00, rng.randrange(256)]) for _ in range(40))
        start = rng.randrange(0, 20 * 8)
        pieces = []
        for _ in range(rng.randrange(0, 4)):
            nbits = rng.randrange(0, 90)
            raw = bytes(rng.choice([0xFF, rng.randrange(256)])
                        for _ in range((nbits + 7) // 8 + rng.randrange(2)))
            pieces.append((raw, nbits))
        total = (start & 7) + sum(n for _, n in pieces)
        if rng.random() < 0.3:
            end = -1
        else:  # mostly an end phase that fits, sometimes one that does not
            ph = (-total) % 8 if rng.random() < 0.8 else rng.randrange(8)
            end = rng.randrange(21, 39) * 8 + ((8 - ph) % 8)
        try:
            want = _reference_span(data, start, pieces, end)
        except ValueError:
            with pytest.raises(ValueError):
                _jpegcodec.span_bytes(data, start, tuple(pieces), end)
            continue
        assert _jpegcodec.span_bytes(data, start, tuple(pieces), end) == want


def test_span_bytes_refuses_bad_arguments() -> None:
    data = b"\x12\x34\xff\x00\x56"
    bad = [
        (data, -1, ((b"\x80", 1),), -1),
        (data, 5 * 8, (), -1),  # start past the data
        (data, 3, ((b"\x80", 9),), -1),  # more bits than the piece holds
        (data, 3, ((b"\x80", -1),), -1),
        (data, 3, ((b"\x80", 5),), 5 * 8 + 3),  # end byte past the data
        (data, 3, ((b"\x80", 4),), 2 * 8 + 3),  # 3 + 4 + 5 bits: not whole bytes
        (data, 3, [(b"\x80", 5)], -1),
        (data, 3, ((b"\x80",),), -1),
        (data, 3, (b"\x80",), -1),
    ]
    for args in bad:
        with pytest.raises((ValueError, TypeError)):
            _jpegcodec.span_bytes(*args)
    assert _jpegcodec.span_bytes(data, 3, ((b"\xff", 5),), -1) == b"\x1f"
    assert _jpegcodec.span_bytes(b"\xe0", 3, ((b"\xf8", 5),), -1) == b"\xff\x00"
    assert _jpegcodec.span_bytes(data, 0, ((b"\xa0", 3),), -1) == b"\xbf"  # one-bit padding
    assert _jpegcodec.span_bytes(data, 8, ((b"\xff", 8),), 16) == b"\xff\x00"


def _tables(n: int) -> list[tuple[bytes, bytes]]:
    """n different (DC, AC) Huffman tables: optimised tables of differently noisy images."""
    import io

    from PIL import Image

    from sisafs.formats.jpeg_structure import parse

    out: list[tuple[bytes, bytes]] = []
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.clip(rng.normal(128, 4 + 6 * i, (32, 32)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=60 + 3 * i, optimize=True)
        scan = parse(buf.getvalue()).scans[0]
        out.append((scan.dc_tables[scan.dc_ids[0]], scan.ac_tables[scan.ac_ids[0]]))
    return out


def test_encoder_table_cache_gives_the_tables_asked_for() -> None:
    """encode_blocks keeps the tables it built last, keyed by the DHT body: a table
    evicted and built again, or a buffer whose contents changed, must code exactly as a
    first use would."""
    tables = _tables(12)
    assert len(set(tables)) == 12
    coefs = np.zeros((20, 64), np.int16)
    coefs[:, 0] = np.arange(20) % 5 - 2
    coefs[::3, 1] = 1

    def enc(dc, ac):
        bits, nbits = _jpegcodec.encode_blocks(coefs.copy(), bytes(20), bytes(20), (dc,),
                                               (ac,), (0,))
        return bits, nbits

    first = [enc(dc, ac) for dc, ac in tables]  # twelve tables: more than the cache holds
    again = [enc(dc, ac) for dc, ac in reversed(tables)][::-1]
    assert first == again
    assert len({f for f in first}) > 1
    dc0, ac0 = tables[0]
    mutable = bytearray(ac0)
    assert enc(dc0, mutable) == first[0]
    mutable[:] = tables[5][1]  # same object, other contents
    assert enc(dc0, mutable) == enc(dc0, tables[5][1])
