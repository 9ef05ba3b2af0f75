"""Re-encoding the spans of altered MCUs for the selective JPEG path (jpeg_selective).

A span runs from the first altered MCU of a run through one unaltered MCU after it
(which re-synchronises the DC predictors), or, for looks that show local means anyway,
ends on its last altered MCU with the original DCs pinned. Its new bits are sized so
that the bits after it sit at the same bit phase as in the original (a spare +-1
coefficient in an altered block adds the missing bits), so every byte after a span is
the original byte. jpeg_selective's module doc says why; this module is the encoder
side of it, apart from the payload and restore code, because a 12 MP photo has hundreds
of spans and this is where protect's per-span cost lives.
"""

from __future__ import annotations

import bisect
import functools
from typing import NamedTuple

import numpy as np

from sisafs.formats import _jpegcodec
from sisafs.formats.errors import UnsupportedImage
from sisafs.formats.jpeg_structure import Layout, Scan, scan_geometry

# (original start, original end, public bytes, metadata: worth deflating in the record)
Edit = tuple[int, int, bytes, bool]


def _scan_altered(layout: Layout, scan: Scan, altered: np.ndarray) -> np.ndarray:
    """Bool per MCU of this scan, in coding order."""
    if scan.interleaved:
        return altered.ravel()
    c = layout.frame.components[scan.comps[0]]
    grid = np.repeat(np.repeat(altered, c.v, 0), c.h, 1)
    return grid[: scan.mcus_y, : scan.mcus_x].ravel()


def _spans(flags: np.ndarray, per: int, pin: bool = False) -> list[tuple[int, int, int]]:
    """(first MCU, end MCU exclusive, restart interval) of each span to re-encode.

    A span runs from an altered MCU through the unaltered one after it; altered MCUs at
    most one apart share a span; a span never crosses a restart interval. With `pin`
    (the span's last blocks take their original DC instead) a span ends on its last
    altered MCU and only touching runs share one."""
    n = len(flags)
    idx = np.flatnonzero(flags)
    if not len(idx):
        return []
    iv = idx // per
    first = np.ones(len(idx), bool)
    first[1:] = (np.diff(idx) > (1 if pin else 2)) | (np.diff(iv) != 0)
    starts = np.flatnonzero(first)
    lasts = np.append(starts[1:] - 1, len(idx) - 1)
    ends = np.minimum(np.minimum(idx[lasts] + (1 if pin else 2), (iv[lasts] + 1) * per), n)
    return list(zip(idx[starts].tolist(), ends.tolist(), iv[starts].tolist(), strict=True))


class _ScanCtx(NamedTuple):
    """What every span of one scan shares, worked out once per scan: a 12 MP photo has
    hundreds of spans, and per-span numpy set-up cost more than encoding them."""

    scan: Scan
    flags: np.ndarray  # bool per MCU: altered
    fixed: np.ndarray  # uint8 per block of the scan: 1 = unaltered (coded as it stands)
    per: int  # blocks per MCU
    pattern: bytes  # scan slot of each block of one MCU, in coding order
    lasts: list[int]  # per scan slot: index of its last block in one MCU
    alt: list[int]  # the altered MCUs, ascending
    mcus_x: int
    hv: tuple[tuple[int, int], ...]  # per scan slot: (h, v) blocks per MCU
    pub: tuple  # copy_mcus' view of the public coefficients
    dcs: tuple
    acs: tuple


def _scan_ctx(layout: Layout, scan: Scan, pub: list[np.ndarray], flags: np.ndarray
              ) -> _ScanCtx:
    mx, _, hv = scan_geometry(layout.frame, scan)
    pattern = bytes(j for j, (h, v) in enumerate(hv) for _ in range(h * v))
    lasts, n = [], 0
    for h, v in hv:
        n += h * v
        lasts.append(n - 1)
    comps = tuple((h, v, *pub[k].shape[:2], pub[k]) for (h, v), k in zip(hv, scan.comps,
                                                                         strict=True))
    return _ScanCtx(scan, flags, np.repeat((~flags).astype(np.uint8), len(pattern)),
                    len(pattern), pattern, lasts, np.flatnonzero(flags).tolist(), mx,
                    tuple(hv), comps,
                    tuple(scan.dc_tables[d] for d in scan.dc_ids),
                    tuple(scan.ac_tables[t] for t in scan.ac_ids))


def scan_edits(data: bytes, layout: Layout, scan: Scan, pub: list[np.ndarray],
                altered: np.ndarray, pin: bool = False, done: list | None = None
                ) -> list[Edit]:
    """The edits that re-encode this scan's altered MCUs; `done` gets (edit start,
    scan, first MCU) of each, for the public-file check."""
    flags = _scan_altered(layout, scan, altered)
    n = len(flags)
    per = scan.restart or n
    spans = _spans(flags, per, pin)
    if not spans:
        return []
    ctx = _scan_ctx(layout, scan, pub, flags)
    edits: list[Edit] = []
    i = 0
    while i < len(spans):
        a, e, iv = spans[i]
        interval_end = min((iv + 1) * per, n)
        while True:
            edit, used = _span_edit(data, layout, ctx, a, e, interval_end, iv, pin)
            i += 1
            # A span that grew to its interval's end, or whose last byte is the first
            # byte of the next span, swallows the next span.
            if i < len(spans) and spans[i][2] == iv and (
                    spans[i][0] < used or int(scan.mcu_pos[spans[i][0]]) >> 3 < edit[1]):
                e = max(used, spans[i][1])
                continue
            break
        edits.append(edit)
        if done is not None:
            done.append((edit[0], scan, a))
    return edits


# _pad_bits tries at most this many altered blocks, from the span's end backwards.
_PAD_TRIES = 32


def _span_edit(data: bytes, layout: Layout, ctx: _ScanCtx, a: int, e: int,
               interval_end: int, iv: int, pin: bool = False) -> tuple[Edit, int]:
    """The edit that re-encodes MCUs a..e-1, and the end MCU it really covers.

    Without `pin`, MCU e-1 is unaltered (or the interval ends at e) and its re-encoding
    puts the DC predictors back in step. With `pin`, MCU e-1 is altered and the last
    block of each component in the span takes its original DC instead; should that not
    come out exactly, the span takes the unaltered MCU after it as before.

    The span is encoded in two parts, split at an MCU boundary before the last blocks
    `_pad_bits` may touch: most spans need padding, and then only the short second part
    is encoded again. The bits are the same as one encoding of the whole span (the
    encoder's only state across blocks is the DC predictors)."""
    scan, per = ctx.scan, ctx.per
    tail = e == interval_end
    coefs = np.empty(((e - a) * per, 64), np.int16)
    _jpegcodec.copy_mcus(ctx.pub, ctx.mcus_x, a, e, coefs, False)
    fixed = ctx.fixed[a * per : e * per]
    slots = ctx.pattern * (e - a)
    preds = tuple(scan.mcu_preds[a, : len(scan.comps)].tolist())
    start = int(scan.mcu_pos[a])
    end = -1 if tail else int(scan.mcu_pos[e])
    pins: list[tuple[int, int]] = []  # (block index in the span, original DC)
    plan_fixed = fixed
    if pin and not tail and not fixed[-1]:
        plan_fixed = fixed.copy()
        my, mx = divmod(e - 1, ctx.mcus_x)
        for j, k in enumerate(scan.comps):
            last = (e - a - 1) * per + ctx.lasts[j]
            h, v = ctx.hv[j]
            dc = int(layout.coefs[k][my * v + v - 1, mx * h + h - 1, 0])
            coefs[last, 0] = dc
            plan_fixed[last] = 1  # the walk must land on it, as on an unaltered block
            pins.append((last, dc))
    elif pin and not tail:
        pin = False
    _plan_dc(coefs, slots, plan_fixed, ctx.dcs, preds)
    need = -(-_PAD_TRIES // per)  # altered MCUs that hold the blocks _pad_bits may try
    hi = bisect.bisect_left(ctx.alt, e)
    k0 = (ctx.alt[hi - need] - a) * per if hi - bisect.bisect_left(ctx.alt, a) > need else 0
    head = _encode(coefs[:k0], slots[:k0], fixed[:k0], ctx.dcs, ctx.acs, preds) if k0 \
        else (b"", 0)
    if k0:  # the predictors after the head: its last block of each component
        preds = tuple(coefs[[k0 - per + x for x in ctx.lasts], 0].tolist())
    rest = (coefs[k0:], slots[k0:], fixed[k0:], ctx.dcs, ctx.acs)
    bits = _encode(*rest, preds)
    if not tail and (start + head[1] + bits[1] - end) % 8:
        if _pad_bits(*rest, (end - start - head[1] - bits[1]) % 8):
            bits = _encode(*rest, preds)
        else:
            # No spare coefficient gives the right length: run to the interval's end.
            return _span_edit(data, layout, ctx, a, interval_end, interval_end, iv)
    if any(int(coefs[i, 0]) != dc for i, dc in pins):
        # The encoder had to move a pinned DC: re-synchronise the old way.
        return _span_edit(data, layout, ctx, a, min(e + 1, interval_end), interval_end, iv)
    _jpegcodec.copy_mcus(ctx.pub, ctx.mcus_x, a, e, coefs, True)  # what the public file holds
    try:
        new = _jpegcodec.span_bytes(data, start, (head, bits), end)
    except ValueError:
        raise UnsupportedImage("span bit length mismatch (internal error)") from None
    if tail:
        orig_end = int(scan.interval_ends[iv])
    elif end & 7:
        orig_end = (end >> 3) + (2 if data[end >> 3] == 0xFF else 1)
    else:
        orig_end = end >> 3
    return (start >> 3, orig_end, new, False), e


def _encode(coefs: np.ndarray, slots: bytes, fixed: np.ndarray, dcs: tuple, acs: tuple,
            preds: tuple) -> tuple[bytes, int]:
    try:
        return _jpegcodec.encode_blocks(coefs, slots, bytes(fixed), dcs, acs, preds)
    except LookupError:
        raise UnsupportedImage("the file's Huffman tables cannot code the altered blocks") \
            from None


_XS = np.arange(-1024, 1024)  # DC values the altered blocks may take


@functools.lru_cache(maxsize=16)
def _codable(table: bytes) -> np.ndarray:
    """Bool per DC difference -2047..2047: does the table have a code for its size?"""
    cats = np.zeros(16, bool)
    cats[[s for s in table[16 : 16 + sum(table[:16])] if s <= 11]] = True
    d = np.abs(np.arange(-2047, 2048))
    size = np.where(d == 0, 0, np.floor(np.log2(np.maximum(d, 1))).astype(int) + 1)
    out = cats[size]
    out.flags.writeable = False  # cached and shared between spans
    return out


@functools.lru_cache(maxsize=16)
def _codes_all(table: bytes) -> bool:
    """Does the table code every DC difference? Asked once per component and span, and
    the numpy test cost more than the rest of a typical span's planning."""
    return bool(_codable(table).all())


def _landing_sets(codable: np.ndarray, f: int, n: int) -> list[np.ndarray | None]:
    """For each of n altered blocks before an unaltered one with DC f: the DC values from
    which f can still be reached in codable steps (None = any value)."""
    d = f - _XS + 2047
    last = np.zeros(len(_XS), bool)
    ok = (d >= 0) & (d < len(codable))
    last[ok] = codable[d[ok]]
    if last.all():
        return [None] * n
    k = 0
    while k < 11 and codable[2047 + (1 << k)] and codable[2047 - (1 << k)]:
        k += 1
    if codable[2047] and k:  # sizes 0..k all coded: the sets are intervals
        step = (1 << k) - 1
        return [np.abs(_XS - f) <= (n - i) * step for i in range(n)]
    sets: list[np.ndarray | None] = [last]
    kernel = codable[::-1].astype(np.float32)
    while len(sets) < n and sets[-1] is not None:
        conv = np.convolve(sets[-1].astype(np.float32), kernel)[2047 : 2047 + len(_XS)]
        nxt = conv > 0.5
        sets.append(None if nxt.all() else nxt)
    sets += [None] * (n - len(sets))
    return sets[::-1]


def _plan_dc(coefs: np.ndarray, slots: bytes, fixed: np.ndarray, dcs: tuple,
             preds: tuple) -> None:
    """Choose the altered blocks' DC values so that every DC difference in the span,
    including the one into the next unaltered block, has a code in the file's table.
    Optimised tables only code the difference sizes the original needed, so the altered
    DCs walk towards the next original DC in steps the table can code."""
    for j in range(len(preds)):
        if _codes_all(dcs[j]):
            continue  # every DC difference has a code (standard tables): nothing to plan
        codable = _codable(dcs[j])
        idx = np.flatnonzero(np.frombuffer(slots, np.uint8) == j).tolist()
        p, n = preds[j], 0
        while n < len(idx):
            if fixed[idx[n]]:
                p = int(coefs[idx[n], 0])
                n += 1
                continue
            run = n
            while run < len(idx) and not fixed[idx[run]]:
                run += 1
            sets = (_landing_sets(codable, int(coefs[idx[run], 0]), run - n)
                    if run < len(idx) else [None] * (run - n))
            for i, allowed in zip(idx[n:run], sets, strict=True):
                want = int(coefs[i, 0])
                if -2047 <= want - p <= 2047 and codable[want - p + 2047] and (
                        allowed is None or (-1024 <= want < 1024 and allowed[want + 1024])):
                    p = want
                    continue
                d = _XS - p + 2047
                ok = (d >= 0) & (d < len(codable))
                ok[ok] = codable[d[ok]]
                if allowed is not None:
                    ok &= allowed
                if not ok.any():
                    raise UnsupportedImage("the file's DC Huffman table cannot code the "
                                           "altered blocks")
                cand = _XS[ok]
                p = int(cand[np.argmin(np.abs(cand - int(coefs[i, 0])))])
                coefs[i, 0] = p
            n = run


def _pad_bits(coefs: np.ndarray, slots: bytes, fixed: np.ndarray, dcs: tuple, acs: tuple,
              need: int) -> bool:
    """Add +-1 coefficients past the last non-zero one in altered blocks so the span
    grows by `need` bits modulo 8. A small knapsack over residues modulo 8."""
    reach: dict[int, list[tuple[int, int]]] = {0: []}
    tried = 0
    for i in range(len(coefs) - 1, -1, -1):
        if fixed[i] or tried >= 32:
            continue
        tried += 1
        j = slots[i]
        options = _pad_options(coefs[i, 1:].tobytes(), dcs[j], acs[j])
        new = dict(reach)
        for r0, path in reach.items():
            for d, q in options:
                new.setdefault((r0 + d) % 8, path + [(i, q)])
        reach = new
        if need in reach:
            for bi, q in reach[need]:
                coefs[bi, q] = 1
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _pad_options(ac_part: bytes, dc: bytes, ac: bytes) -> tuple[tuple[int, int], ...]:
    """(extra bits mod 8, coefficient index) a +1 past the block's last non-zero AC
    term can add. The answer depends on the AC terms only, and altered blocks repeat
    them (every noise block has none), so it is cached."""
    blk = np.zeros(64, np.int16)
    blk[1:] = np.frombuffer(ac_part, np.int16)
    nz = np.flatnonzero(blk[1:])
    last = int(nz[-1]) + 1 if len(nz) else 0
    base = _jpegcodec.block_bits(blk.tobytes(), dc, ac)
    if base < 0:
        return ()
    options: dict[int, int] = {}
    for q in range(63, last, -1):
        trial = blk.copy()
        trial[q] = 1
        bits = _jpegcodec.block_bits(trial.tobytes(), dc, ac)
        if bits >= 0:
            options.setdefault((bits - base) % 8, q)
    return tuple(options.items())
