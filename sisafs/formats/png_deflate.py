"""Deflate-level tools for splicing PNG image data without recompressing all of it.

Exact restore of a PNG needs the original compressed bytes back. Recompressing the
filtered scanlines reproduces them only sometimes (81 % of real files, issue 3) and costs
seconds, so the selective PNG codec keeps the original compressed bytes wherever it can
and replaces only a span of whole deflate blocks around the altered rows. That needs two
things Python's `zlib` module does not give:

* the bit position and uncompressed offset of every deflate block boundary, which
  zlib's own `inflate(..., Z_BLOCK)` reports (the technique of zlib's `examples/zran.c`);
  we call the system libz through ctypes because the `zlib` module hides `Z_BLOCK`;
* "filler" blocks that decode to nothing but shift the bit alignment, so that the
  original bytes after a replaced span can be kept byte-for-byte instead of bit-shifted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import zlib
from dataclasses import dataclass

from sisafs.formats.errors import UnsupportedImage

_Z_OK, _Z_STREAM_END, _Z_BLOCK = 0, 1, 5


class _ZStream(ctypes.Structure):
    _fields_ = [
        ("next_in", ctypes.c_void_p), ("avail_in", ctypes.c_uint),
        ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p), ("avail_out", ctypes.c_uint),
        ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p), ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p), ("zfree", ctypes.c_void_p), ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int), ("adler", ctypes.c_ulong), ("reserved", ctypes.c_ulong),
    ]


_libz: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """Load libz once; a missing libz means the selective path is unavailable here."""
    global _libz
    if _libz is None:
        name = ctypes.util.find_library("z") or "libz.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise UnsupportedImage(f"system zlib not loadable for block scanning: {e}") from None
        lib.inflateInit2_.argtypes = [ctypes.POINTER(_ZStream), ctypes.c_int, ctypes.c_char_p,
                                      ctypes.c_int]
        lib.inflate.argtypes = [ctypes.POINTER(_ZStream), ctypes.c_int]
        lib.inflateEnd.argtypes = [ctypes.POINTER(_ZStream)]
        lib.zlibVersion.restype = ctypes.c_char_p
        _libz = lib
    return _libz


@dataclass(frozen=True)
class Boundary:
    """Start of a deflate block: where a decoder needs only the window to go on."""

    bit: int  # bit offset in the zlib stream (header included)
    out: int  # uncompressed bytes produced before this block


def inflate_with_boundaries(stream: bytes, expected: int) -> tuple[bytearray, list[Boundary]]:
    """Decompress a zlib stream of exactly `expected` bytes, listing block boundaries.

    The output buffer is sized from IHDR (`expected`), so a lying header cannot make us
    allocate more than the dimensions already allowed, and extra or missing data is an
    error rather than a silent truncation.
    """
    lib = _lib()
    src = ctypes.create_string_buffer(stream, len(stream))
    dst = (ctypes.c_char * (expected + 1))()
    zs = _ZStream()
    version = lib.zlibVersion()
    if lib.inflateInit2_(ctypes.byref(zs), 15, version, ctypes.sizeof(_ZStream)) != _Z_OK:
        raise UnsupportedImage("inflateInit2 failed")
    zs.next_in = ctypes.addressof(src)
    zs.avail_in = len(stream)
    zs.next_out = ctypes.addressof(dst)
    zs.avail_out = expected + 1
    bounds: list[Boundary] = []
    try:
        while True:
            ret = lib.inflate(ctypes.byref(zs), _Z_BLOCK)
            if ret == _Z_STREAM_END:
                break
            if ret != _Z_OK:
                msg = zs.msg.decode(errors="replace") if zs.msg else f"code {ret}"
                raise UnsupportedImage(f"corrupt image data (inflate: {msg})")
            if zs.total_out > expected:
                raise UnsupportedImage("image data longer than IHDR dimensions imply")
            if zs.data_type & 128 and not zs.data_type & 64:
                bounds.append(Boundary(zs.total_in * 8 - (zs.data_type & 7), zs.total_out))
            elif zs.avail_in == 0:
                raise UnsupportedImage("image data truncated (zlib stream has no end)")
        total_in, total_out = zs.total_in, zs.total_out
    finally:
        lib.inflateEnd(ctypes.byref(zs))
    if total_out != expected:
        raise UnsupportedImage(
            f"image data has {total_out} bytes, IHDR dimensions imply {expected}")
    if total_in != len(stream):
        raise UnsupportedImage("data after the end of the zlib stream in IDAT")
    return bytearray(memoryview(dst)[:expected]), bounds


class _BitWriter:
    """LSB-first bit packing, as deflate stores everything but Huffman codes."""

    def __init__(self) -> None:
        self.value = 0
        self.nbits = 0

    def put(self, value: int, n: int) -> None:
        self.value |= (value & ((1 << n) - 1)) << self.nbits
        self.nbits += n


def _empty_fixed_block() -> _BitWriter:
    """Non-final fixed-Huffman block holding only end-of-block: 10 bits."""
    w = _BitWriter()
    w.put(0, 1)
    w.put(1, 2)  # BTYPE 01
    w.put(0, 7)  # EOB = 0000000 (7-bit code, bit order irrelevant for zeros)
    return w


def _empty_dynamic_block() -> _BitWriter:
    """Non-final dynamic block holding only end-of-block: 95 bits, an odd length.

    Every code in it is complete (no decoder can call it malformed): literal/length
    symbols 0 and 256 get 1-bit codes, distance symbols 0 and 1 get 1-bit codes, and the
    code-length code uses symbols 1 and 18 with 1-bit codes.
    """
    w = _BitWriter()
    w.put(0, 1)
    w.put(2, 2)  # BTYPE 10
    w.put(0, 5)  # HLIT: 257 codes
    w.put(1, 5)  # HDIST: 2 codes
    w.put(15, 4)  # HCLEN: 19 code-length codes
    order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
    for sym in order:
        w.put(1 if sym in (1, 18) else 0, 3)
    # canonical code-length code: symbol 1 -> '0', symbol 18 -> '1'
    w.put(0, 1)  # lit 0: length 1
    w.put(1, 1)
    w.put(138 - 11, 7)  # lit 1..138: zero
    w.put(1, 1)
    w.put(117 - 11, 7)  # lit 139..255: zero
    for _ in range(3):  # lit 256, dist 0, dist 1: length 1
        w.put(0, 1)
    w.put(1, 1)  # EOB: canonical code of symbol 256 is '1'
    return w


_FIXED = _empty_fixed_block()
_DYNAMIC = _empty_dynamic_block()
assert _FIXED.nbits == 10 and _DYNAMIC.nbits == 95


def filler(residue: int) -> tuple[int, int]:
    """Empty deflate blocks totalling a bit count congruent to `residue` mod 8.

    Returns (bits as an LSB-first integer, number of bits).
    """
    residue %= 8
    w = _BitWriter()
    if residue % 2:
        w.put(_DYNAMIC.value, _DYNAMIC.nbits)
        residue = (residue - 7) % 8
    for _ in range(residue // 2):
        w.put(_FIXED.value, _FIXED.nbits)
    return w.value, w.nbits


def raw_deflate(data: bytes | memoryview, window: bytes, wbits: int, final: bool) -> bytes:
    """Compress `data` as raw deflate blocks that may refer back into `window`.

    A non-final span ends with a sync flush (byte-aligned, no final bit) so that more
    blocks can follow it.
    """
    if wbits < 9:  # zlib cannot limit raw deflate to a 256-byte window: use stored blocks
        comp = zlib.compressobj(0, zlib.DEFLATED, -9)
    elif window:
        comp = zlib.compressobj(6, zlib.DEFLATED, -wbits, 8, zlib.Z_DEFAULT_STRATEGY,
                                bytes(window[-(1 << wbits):]))
    else:
        comp = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    return comp.compress(data) + comp.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
