"""Unit tier: the protect-time check of the public JPEG (sisafs/formats/jpeg_check.py).

The check decodes only the re-encoded spans in their context; these tests hold it to
the whole-file decode it replaced. It must pass on every file protect builds, and
whenever it passes on a damaged public file, a full decode must give the intended
coefficients anyway (a splice bug can never slip through as an unreadable file).
"""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from sisafs.formats import jpeg_check, jpeg_looks, jpeg_spans
from sisafs.formats import jpeg_selective as js
from sisafs.formats.errors import UnsupportedImage
from sisafs.formats.jpeg_structure import parse
from sisafs.regions import Region

REGIONS = [Region("face", 0.9, (30, 20, 33, 29)), Region("text", 0.5, (90, 60, 40, 40)),
           Region("face", 0.4, (0, 0, 3, 3))]
CASES = {
    "420": dict(subsampling=2, quality=75),
    "444-optimized": dict(subsampling=0, quality=90, optimize=True),
    "restart-blocks": dict(subsampling=0, restart_marker_blocks=5, optimize=True),
    "restart-rows": dict(subsampling=2, restart_marker_rows=1),
    "gray": dict(quality=80),
}


def scene(w: int = 141, h: int = 97, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(float)
    img += rng.normal(0, 18, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg(case: str) -> bytes:
    im = Image.fromarray(scene())
    if case == "gray":
        im = im.convert("L")
    buf = io.BytesIO()
    im.save(buf, "JPEG", **CASES[case])
    return buf.getvalue()


def build(data: bytes, look: str):
    """What js.protect builds before its self-check."""
    layout = parse(data)
    pub, altered = jpeg_looks.apply(layout, REGIONS, look, b"\x01" * 32)
    edits = js._header_edits(data, layout)
    spans: list = []
    pin = look in jpeg_looks.SHOWS_MEANS
    for scan in layout.scans:
        edits += jpeg_spans.scan_edits(data, layout, scan, pub, altered, pin, spans)
    edits.sort(key=lambda e: e[0])
    public, _ = js._assemble(data, edits)
    return layout, pub, edits, spans, public


def full_decode_ok(public: bytes, layout, pub) -> bool:
    """The check this module replaced: the whole public file decodes as intended."""
    try:
        check = parse(public)
    except UnsupportedImage:
        return False
    full = {k for s in layout.scans if s.interleaved for k in s.comps}
    for k, (got, want) in enumerate(zip(check.coefs, pub, strict=True)):
        if k not in full:
            rows, cols = layout.frame.block_dims(layout.frame.components[k])
            got, want = got[:rows, :cols], want[:rows, :cols]
        if not np.array_equal(got, want):
            return False
    return True


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("look", ["noise", "blur"])
def test_passes_on_what_protect_builds(case: str, look: str) -> None:
    data = jpeg(case)
    layout, pub, edits, spans, public = build(data, look)
    assert spans
    jpeg_check.verify_public(public, data, layout, pub, edits, spans)
    assert full_decode_ok(public, layout, pub)


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_spans_never_pass_unless_they_decode(case: str) -> None:
    data = jpeg(case)
    layout, pub, edits, spans, public = build(data, "noise")
    shift = jpeg_check._Shift(edits)
    index = {e[0]: i for i, e in enumerate(edits)}
    # every byte of every span edit, and the bytes just around them
    targets = []
    for off, _, _ in spans:
        i = index[off]
        start = off + shift.before(i)
        targets += range(max(0, start - 2), min(len(public), start + len(edits[i][2]) + 2))
    rng = random.Random(case)
    caught = 0
    for pos in rng.sample(targets, min(len(targets), 150)):
        bad = bytearray(public)
        bad[pos] ^= 1 << rng.randrange(8)
        try:
            jpeg_check.verify_public(bytes(bad), data, layout, pub, edits, spans)
        except UnsupportedImage:
            caught += 1
            continue
        assert full_decode_ok(bytes(bad), layout, pub), f"byte {pos} slipped through"
    assert caught > 0


def test_damaged_segments_and_lengths_are_caught() -> None:
    data = jpeg("420")
    layout, pub, edits, spans, public = build(data, "noise")
    for bad in (public[:-1], public + b"\0", public[:2] + public[3:],
                public.replace(b"\xff\xc4", b"\xff\xc5", 1)):
        with pytest.raises(UnsupportedImage):
            jpeg_check.verify_public(bad, data, layout, pub, edits, spans)
    # an edit that swallowed one byte too many (a splice off by one)
    last = edits[-1]
    shifted = [*edits[:-1], (last[0], last[1], last[2][:-1], *last[3:])]
    public2, _ = js._assemble(data, shifted)
    with pytest.raises(UnsupportedImage):
        jpeg_check.verify_public(public2, data, layout, pub, shifted, spans)


@pytest.mark.parametrize("look", ["noise", "blur"])
def test_garbage_before_restart_markers(look: str) -> None:
    """Bytes between an interval's padding and its marker (decoders skip them): a span
    ending at such an interval is checked against where the original's padding ended."""
    data = jpeg("restart-blocks")
    sos = data.index(b"\xff\xda")
    head, body = data[:sos], data[sos:]
    for n in range(8):
        body = body.replace(bytes([0xFF, 0xD0 + n]), bytes([0x5A, 0xFF, 0xD0 + n]))
    data = head + body
    layout, pub, edits, spans, public = build(data, look)
    jpeg_check.verify_public(public, data, layout, pub, edits, spans)
    assert full_decode_ok(public, layout, pub)
    public2, payload = js.protect(data, REGIONS, look, b"\x02" * 32, b"\x03" * 16)
    assert js.restore(public2, payload, b"\x02" * 32, b"\x03" * 16) == data
