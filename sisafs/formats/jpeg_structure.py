"""The whole structure of a sequential JPEG: every segment, every scan and its tables.

`jpeg_container` reads only the header (all the record needs). The selective codec
needs more: each scan's Huffman tables, restart interval and component layout as they
stand when the scan starts, the quantisation tables, and where each scan's entropy-coded
data ends. This module finds all of that and decodes the scans with the C codec; it
refuses (UnsupportedImage, with the reason) everything the selective path cannot alter
exactly, so the caller can take the pixel-domain fallback instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from sisafs.formats import _jpegcodec
from sisafs.formats.errors import UnsupportedImage

# Largest image the selective path decodes (coefficients cost 2 bytes per pixel per
# component); matches the fallback's limit.
MAX_PIXELS = 150_000_000

_SOF_NAMES = {
    0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive",
    0xC3: "lossless", 0xC5: "hierarchical", 0xC6: "hierarchical progressive",
    0xC7: "hierarchical lossless", 0xC9: "arithmetic-coded", 0xCA: "arithmetic progressive",
    0xCB: "arithmetic lossless", 0xCD: "hierarchical arithmetic",
    0xCE: "hierarchical arithmetic progressive", 0xCF: "hierarchical arithmetic lossless",
}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


@dataclass(frozen=True)
class Component:
    cid: int
    h: int
    v: int
    tq: int


@dataclass
class Frame:
    marker: int
    width: int
    height: int
    components: list[Component]

    @property
    def hmax(self) -> int:
        return max(c.h for c in self.components)

    @property
    def vmax(self) -> int:
        return max(c.v for c in self.components)

    @property
    def mcus_x(self) -> int:
        return -(-self.width // (8 * self.hmax))

    @property
    def mcus_y(self) -> int:
        return -(-self.height // (8 * self.vmax))

    def block_dims(self, c: Component) -> tuple[int, int]:
        """(rows, cols) of blocks a non-interleaved scan of `c` codes."""
        cw = -(-self.width * c.h // self.hmax)
        ch = -(-self.height * c.v // self.vmax)
        return -(-ch // 8), -(-cw // 8)


@dataclass
class Scan:
    sos_start: int  # offset of the SOS marker
    data_start: int  # first entropy-coded byte
    comps: list[int]  # indices into Frame.components, in scan order
    dc_ids: list[int]
    ac_ids: list[int]
    dc_tables: tuple  # 4 DHT bodies (or None) as they stand at this scan
    ac_tables: tuple
    restart: int
    interleaved: bool
    mcus_x: int = 0
    mcus_y: int = 0
    end: int = 0  # offset of the marker that ends the entropy-coded data
    mcu_pos: np.ndarray = field(default=None, repr=False)  # int64 bit positions
    mcu_preds: np.ndarray = field(default=None, repr=False)  # int32 (n, 4)
    interval_ends: np.ndarray = field(default=None, repr=False)  # int64 offsets


@dataclass(frozen=True)
class Segment:
    marker: int
    start: int
    end: int

    def body(self, buf: bytes) -> bytes:
        return buf[self.start + 4 : self.end]


@dataclass
class Layout:
    frame: Frame
    qtables: dict[int, np.ndarray]  # id -> 64 values in zigzag order
    segments: list[Segment]  # every marker segment with a length field, in file order
    scans: list[Scan]
    eoi: int  # offset of the EOI marker
    coefs: list[np.ndarray]  # per component: (rows, cols, 64) int16, zigzag order

    def block_grid(self, ci: int) -> tuple[int, int]:
        c = self.frame.components[ci]
        return self.frame.mcus_y * c.v, self.frame.mcus_x * c.h


def _parse_sof(body: bytes, marker: int) -> Frame:
    if len(body) < 6:
        raise UnsupportedImage("corrupt JPEG frame header")
    precision, height, width, n = struct.unpack(">BHHB", body[:6])
    if precision != 8:
        raise UnsupportedImage(f"{precision}-bit JPEG: selective path handles 8-bit only")
    if height == 0:
        raise UnsupportedImage("JPEG with DNL-defined height")
    if width == 0 or n not in (1, 2, 3, 4) or len(body) < 6 + 3 * n:
        raise UnsupportedImage("corrupt JPEG frame header")
    if width * height > MAX_PIXELS:
        raise UnsupportedImage(f"absurd dimensions {width}x{height}")
    comps = []
    for i in range(n):
        cid, hv, tq = body[6 + 3 * i : 9 + 3 * i]
        h, v = hv >> 4, hv & 15
        if not (1 <= h <= 4 and 1 <= v <= 4) or tq > 3 or any(c.cid == cid for c in comps):
            raise UnsupportedImage("corrupt JPEG frame header (sampling or table ids)")
        comps.append(Component(cid, h, v, tq))
    frame = Frame(marker, width, height, comps)
    if sum(c.h * c.v for c in comps) > 10 and n > 1:
        raise UnsupportedImage("corrupt JPEG frame header (more than 10 blocks per MCU)")
    return frame


def _parse_dqt(body: bytes, qtables: dict[int, np.ndarray]) -> None:
    pos = 0
    while pos < len(body):
        pq, tq = body[pos] >> 4, body[pos] & 15
        size = 128 if pq else 64
        if tq > 3 or pq > 1 or pos + 1 + size > len(body):
            raise UnsupportedImage("corrupt JPEG quantisation table")
        raw = body[pos + 1 : pos + 1 + size]
        qtables[tq] = np.frombuffer(raw, dtype=">u2" if pq else np.uint8).astype(np.int32)
        pos += 1 + size


def _parse_dht(body: bytes, dc: list, ac: list) -> None:
    pos = 0
    while pos < len(body):
        tc, th = body[pos] >> 4, body[pos] & 15
        if pos + 17 > len(body) or tc > 1 or th > 3:
            raise UnsupportedImage("corrupt JPEG Huffman table")
        total = sum(body[pos + 1 : pos + 17])
        if total > 256 or pos + 17 + total > len(body):
            raise UnsupportedImage("corrupt JPEG Huffman table")
        (ac if tc else dc)[th] = body[pos + 1 : pos + 17 + total]
        pos += 17 + total


def _parse_sos(body: bytes, frame: Frame, sos_start: int, data_start: int, dc: list,
               ac: list, restart: int) -> Scan:
    if not body:
        raise UnsupportedImage("corrupt JPEG scan header")
    n = body[0]
    if n < 1 or n > 4 or len(body) < 4 + 2 * n:
        raise UnsupportedImage("corrupt JPEG scan header")
    idx, dcs, acs = [], [], []
    for i in range(n):
        cid, t = body[1 + 2 * i : 3 + 2 * i]
        found = [k for k, c in enumerate(frame.components) if c.cid == cid]
        if not found or found[0] in idx or t >> 4 > 3 or t & 15 > 3:
            raise UnsupportedImage("corrupt JPEG scan header (component or table id)")
        idx.append(found[0])
        dcs.append(t >> 4)
        acs.append(t & 15)
    ss, se, a = body[1 + 2 * n : 4 + 2 * n]
    if (ss, se, a) != (0, 63, 0):
        raise UnsupportedImage("scan parameters of a non-sequential JPEG")
    for d, t in zip(dcs, acs, strict=True):
        if dc[d] is None or ac[t] is None:
            raise UnsupportedImage("JPEG scan uses an undefined Huffman table")
    if n > 1 and sum(frame.components[k].h * frame.components[k].v for k in idx) > 10:
        raise UnsupportedImage("corrupt JPEG scan (more than 10 blocks per MCU)")
    return Scan(sos_start, data_start, idx, dcs, acs, tuple(dc), tuple(ac), restart, n > 1)


def parse(buf: bytes) -> Layout:
    """Walk every segment and decode every scan; UnsupportedImage on anything else."""
    if not buf.startswith(b"\xff\xd8"):
        raise UnsupportedImage("not a JPEG (no SOI marker)")
    frame: Frame | None = None
    qtables: dict[int, np.ndarray] = {}
    dc: list = [None] * 4
    ac: list = [None] * 4
    restart = 0
    segments: list[Segment] = []
    scans: list[Scan] = []
    coefs: list[np.ndarray] = []
    pos = 2
    while True:
        while pos + 1 < len(buf) and buf[pos] == 0xFF and buf[pos + 1] == 0xFF:
            pos += 1
        if pos + 2 > len(buf) or buf[pos] != 0xFF:
            raise UnsupportedImage("truncated or corrupt JPEG (no marker where one is due)")
        marker = buf[pos + 1]
        if marker == 0xD9:
            break
        if marker in _STANDALONE or marker == 0xD8 or marker == 0x00:
            raise UnsupportedImage(f"unexpected JPEG marker 0x{marker:02X}")
        if pos + 4 > len(buf):
            raise UnsupportedImage("truncated JPEG segment")
        (length,) = struct.unpack(">H", buf[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > len(buf):
            raise UnsupportedImage("truncated or corrupt JPEG segment")
        seg = Segment(marker, pos, pos + 2 + length)
        body = seg.body(buf)
        segments.append(seg)
        pos = seg.end
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if frame is not None:
                raise UnsupportedImage("JPEG with more than one frame")
            if marker not in (0xC0, 0xC1):
                kind = _SOF_NAMES.get(marker, f"SOF 0x{marker:02X}")
                raise UnsupportedImage(f"{kind} JPEG: selective path handles sequential "
                                       "Huffman-coded JPEGs only")
            frame = _parse_sof(body, marker)
            coefs = [np.zeros((frame.mcus_y * c.v, frame.mcus_x * c.h, 64), np.int16)
                     for c in frame.components]
        elif marker == 0xC4:
            _parse_dht(body, dc, ac)
        elif marker == 0xCC:
            raise UnsupportedImage("arithmetic-coded JPEG (DAC segment)")
        elif marker == 0xDB:
            _parse_dqt(body, qtables)
        elif marker == 0xDD:
            if len(body) != 2:
                raise UnsupportedImage("corrupt JPEG restart interval")
            (restart,) = struct.unpack(">H", body)
        elif marker == 0xDC:
            raise UnsupportedImage("JPEG with a DNL marker")
        elif marker == 0xDA:
            if frame is None:
                raise UnsupportedImage("JPEG scan before the frame header")
            scan = _parse_sos(body, frame, seg.start, seg.end, dc, ac, restart)
            if any(k in s.comps for s in scans for k in scan.comps):
                raise UnsupportedImage("JPEG codes a component in more than one scan")
            _decode(buf, frame, scan, coefs)
            scans.append(scan)
            pos = scan.end
    if frame is None or not scans:
        raise UnsupportedImage("JPEG without a frame or scan")
    for c in frame.components:
        if c.tq not in qtables:
            raise UnsupportedImage("JPEG component uses an undefined quantisation table")
    coded = {k for s in scans for k in s.comps}
    if len(coded) != len(frame.components):
        raise UnsupportedImage("JPEG scans do not cover every component")
    return Layout(frame, qtables, segments, scans, pos, coefs)


def scan_geometry(frame: Frame, scan: Scan) -> tuple[int, int, list[tuple[int, int]]]:
    """(mcus_x, mcus_y, per scan component (h, v) blocks per MCU)."""
    if scan.interleaved:
        hv = [(frame.components[k].h, frame.components[k].v) for k in scan.comps]
        return frame.mcus_x, frame.mcus_y, hv
    rows, cols = frame.block_dims(frame.components[scan.comps[0]])
    return cols, rows, [(1, 1)]


def _decode(buf: bytes, frame: Frame, scan: Scan, coefs: list[np.ndarray]) -> None:
    mx, my, hv = scan_geometry(frame, scan)
    comps = tuple((h, v, d, a, coefs[k].shape[0], coefs[k].shape[1], coefs[k])
                  for (h, v), d, a, k in zip(hv, scan.dc_ids, scan.ac_ids, scan.comps,
                                             strict=True))
    try:
        end, pos, preds, ends = _jpegcodec.decode_scan(
            buf, scan.data_start, scan.dc_tables, scan.ac_tables, comps, mx, my, scan.restart)
    except ValueError as e:
        raise UnsupportedImage(f"corrupt JPEG entropy data: {e}") from None
    scan.mcus_x, scan.mcus_y, scan.end = mx, my, end
    scan.mcu_pos = np.frombuffer(pos, np.int64)
    scan.mcu_preds = np.frombuffer(preds, np.int32).reshape(-1, 4)
    scan.interval_ends = np.frombuffer(ends, np.int64)


def mcu_blocks(frame: Frame, scan: Scan, m0: int, m1: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(scan slot, component index, block row, block col) arrays of the blocks of MCUs
    m0..m1-1 in coding order; arrays, because a span of a 12 MP photo holds thousands."""
    mx, _, hv = scan_geometry(frame, scan)
    pattern = np.array([(j, k, h, v, bv, bh)
                        for j, (k, (h, v)) in enumerate(zip(scan.comps, hv, strict=True))
                        for bv in range(v) for bh in range(h)], np.int64)
    y, x = np.divmod(np.arange(m0, m1, dtype=np.int64), mx)
    n = m1 - m0
    rows = (y[:, None] * pattern[:, 3] + pattern[:, 4]).ravel()
    cols = (x[:, None] * pattern[:, 2] + pattern[:, 5]).ravel()
    return np.tile(pattern[:, 0], n), np.tile(pattern[:, 1], n), rows, cols
