"""Protect-time proof that a selective public JPEG decodes as intended, without
decoding the whole file a second time.

The public file is the original with a few byte ranges replaced (jpeg_selective), and
the original decoded cleanly (jpeg_structure.parse). So it is enough to check each
replaced range in its context:

- between the edits the public file holds the original bytes;
- the segment chain of the public file is the original's, metadata segments aside
  (jpeg_privacy may drop or rewrite those; everything a decoder needs is byte-equal),
  every scan's entropy data starts where the original's does, shifted by the edits
  before it, and EOI ends the file;
- each re-encoded span decodes, from the state the original decoder had at its first
  MCU (bit position, DC predictors), to exactly the intended coefficients, and the
  decoder then stands, past the new bytes, at an MCU boundary with the same bit
  position (shifted) and the same predictors as the original decoder did there, or at
  the same restart/end marker. The bits of a span's first byte that belong to the MCU
  before it must be the original's.

From such a state on, the public file holds original bytes up to the next edit, so it
decodes as the original did; by induction over the edits the whole file decodes to the
intended coefficients. A splice bug fails one of these checks (UnsupportedImage), so it
can never produce an unreadable public file. The cost is that of decoding the re-encoded
spans (mostly flat altered blocks), not the whole scan.
"""

from __future__ import annotations

import bisect
import struct

import numpy as np

from sisafs.formats import _jpegcodec
from sisafs.formats.errors import UnsupportedImage
from sisafs.formats.jpeg_structure import Layout, Scan, scan_geometry

# (original start, original end, public bytes, ...): jpeg_selective's edits
Edit = tuple


class _Shift:
    """Original offsets to public offsets: every edit moves what follows it."""

    def __init__(self, edits: list[Edit]) -> None:
        self.ends = [e[1] for e in edits]
        self.starts = [e[0] for e in edits]
        self.after: list[int] = []  # delta once edit i is behind
        d = 0
        for e in edits:
            d += len(e[2]) - (e[1] - e[0])
            self.after.append(d)

    def before(self, i: int) -> int:
        """Delta of the edits before edit i."""
        return self.after[i - 1] if i else 0

    def at(self, pos: int) -> int:
        """Public offset of original byte `pos`, which no edit replaced."""
        i = bisect.bisect_right(self.ends, pos)
        if i < len(self.starts) and self.starts[i] < pos:
            raise _fail("offset inside an edit")
        return pos + self.before(i)


def verify_public(public: bytes, data: bytes, layout: Layout, pub_coefs: list[np.ndarray],
                  edits: list[Edit], spans: list[tuple[int, Scan, int]]) -> None:
    """UnsupportedImage unless `public` decodes to `pub_coefs` (see the module doc).

    edits: sorted, as jpeg_selective assembled them; spans: (original start offset of a
    span's edit, its scan, the span's first MCU) for every re-encoded span."""
    shift = _Shift(edits)
    _verify_unchanged(public, data, edits, shift)
    _verify_segments(public, data, layout, shift)
    index = {e[0]: i for i, e in enumerate(edits)}
    by_scan: dict[int, list[tuple[int, int]]] = {}
    for off, scan, a in spans:
        i = index.get(off)
        if i is None:
            raise _fail("span without an edit")
        by_scan.setdefault(id(scan), []).append((a, i))
    for scan in layout.scans:
        if id(scan) in by_scan:
            _verify_spans(public, data, layout, pub_coefs, scan, by_scan[id(scan)], edits,
                          shift)


def _fail(what: str) -> UnsupportedImage:
    return UnsupportedImage(f"public JPEG does not decode as intended: {what} "
                            "(internal error)")


def _verify_unchanged(public: bytes, data: bytes, edits: list[Edit], shift: _Shift) -> None:
    """Between the edits the public file holds the original bytes (a memcmp)."""
    pub, org = memoryview(public), memoryview(data)
    cur = 0
    for i, e in enumerate([*edits, (len(data), len(data), b"")]):
        d = shift.before(i)
        if pub[cur + d : e[0] + d] != org[cur : e[0]]:
            raise _fail("bytes outside the edits changed")
        cur = e[1]
    if len(public) != len(data) + (shift.after[-1] if edits else 0):
        raise _fail("length")


def _verify_segments(public: bytes, data: bytes, layout: Layout, shift: _Shift) -> None:
    """The public segment chain: what decoders read is the original's, in order."""
    want = [data[s.start : s.end] for s in layout.segments if not _metadata(s.marker)]
    scans = iter(layout.scans)
    got = []
    pos, eoi = 2, shift.at(layout.eoi)
    if not public.startswith(b"\xff\xd8"):
        raise _fail("no SOI")
    while pos != eoi:
        while pos + 1 < len(public) and public[pos] == 0xFF and public[pos + 1] == 0xFF:
            pos += 1
        if pos + 4 > len(public) or public[pos] != 0xFF or pos > eoi:
            raise _fail("broken segment chain")
        marker = public[pos + 1]
        (length,) = struct.unpack_from(">H", public, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > len(public):
            raise _fail("broken segment chain")
        if not _metadata(marker):
            got.append(public[pos:end])
        pos = end
        if marker == 0xDA:
            scan = next(scans, None)
            if scan is None or end != shift.at(scan.data_start):
                raise _fail("scan moved")
            pos = shift.at(scan.end)
    if got != want or next(scans, None) is not None:
        raise _fail("segments differ from the original's")
    if public[eoi : eoi + 2] != b"\xff\xd9" or len(public) != eoi + 2:
        raise _fail("EOI")


def _metadata(marker: int) -> bool:
    return 0xE0 <= marker <= 0xEF or marker == 0xFE


def _comps(layout: Layout, scan: Scan, coefs: list[np.ndarray]) -> tuple:
    _, _, hv = scan_geometry(layout.frame, scan)
    return tuple((h, v, d, a, coefs[k].shape[0], coefs[k].shape[1], coefs[k])
                 for (h, v), d, a, k in zip(hv, scan.dc_ids, scan.ac_ids, scan.comps,
                                            strict=True))


def _verify_spans(public: bytes, data: bytes, layout: Layout, pub_coefs: list[np.ndarray],
                  scan: Scan, spans: list[tuple[int, int]], edits: list[Edit],
                  shift: _Shift) -> None:
    """Check every re-encoded span of one scan: (first MCU, edit index) each."""
    k = len(scan.comps)
    n = len(scan.mcu_pos)
    per = scan.restart or n
    mx = scan_geometry(layout.frame, scan)[0]
    tabs = (scan.dc_tables, scan.ac_tables)
    a = np.array([s[0] for s in spans], np.int64)
    idx = [s[1] for s in spans]
    off = np.array([edits[i][0] for i in idx], np.int64)
    new_len = np.array([len(edits[i][2]) for i in idx], np.int64)
    d0 = np.array([shift.before(i) for i in idx], np.int64)
    d1 = np.array([shift.after[i] for i in idx], np.int64)
    p_end = off + d0 + new_len
    start = scan.mcu_pos[a]
    iv = a // per
    m_end = np.minimum((iv + 1) * per, n)
    if np.any(start >> 3 != off):
        raise _fail("span does not start at its MCU")
    for o, ph, d in zip(off[start & 7 != 0].tolist(), (start & 7)[start & 7 != 0].tolist(),
                        d0[start & 7 != 0].tolist(), strict=True):
        if public[o + d] >> (8 - ph) != data[o] >> (8 - ph):
            raise _fail("bits before a span changed")
    jobs = np.zeros((len(a), 8), np.int64)
    jobs[:, 0] = start + 8 * d0
    jobs[:, 1] = a
    jobs[:, 2] = m_end
    jobs[:, 3] = 8 * p_end
    jobs[:, 4 : 4 + k] = scan.mcu_preds[a, :k]
    res = _check(public, tabs, _comps(layout, scan, pub_coefs), mx, jobs)
    m, bits, pad_end = res[:, 0], res[:, 1], res[:, 2]
    inside = m < m_end
    mi = np.where(inside, m, 0)
    ok = (bits == scan.mcu_pos[mi] + 8 * d1) & (bits >= 8 * p_end) & np.all(
        res[:, 3 : 3 + k] == scan.mcu_preds[mi, :k], axis=1)
    if np.any(inside & ~ok):
        raise _fail("decoder out of step after a span")
    # A span whose interval ended: the marker after it must be the original's.
    ended = ~inside & ~((pad_end == scan.interval_ends[iv] + d1) & (pad_end >= p_end))
    if not ended.any():
        return
    # The original may hold fill bytes before that marker: then the padding must end
    # where the original's did.
    last = m_end[ended] - 1
    ojobs = np.zeros((len(last), 8), np.int64)
    ojobs[:, 0] = scan.mcu_pos[last]
    ojobs[:, 1] = last
    ojobs[:, 2] = last + 1
    ojobs[:, 4 : 4 + k] = scan.mcu_preds[last, :k]
    ores = _check(data, tabs, _comps(layout, scan, layout.coefs), mx, ojobs)
    if np.any((pad_end[ended] != ores[:, 2] + d1[ended]) |
              (bits[ended] != ores[:, 1] + 8 * d1[ended]) | (pad_end[ended] < p_end[ended])):
        raise _fail("interval end moved")


def _check(buf: bytes, tabs: tuple, comps: tuple, mx: int, jobs: np.ndarray) -> np.ndarray:
    res = np.empty_like(jobs)
    try:
        _jpegcodec.check_mcus(buf, *tabs, comps, mx, jobs, res)
    except ValueError as e:
        raise _fail(str(e)) from None
    return res
