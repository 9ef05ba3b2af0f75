"""Bytes held as a run of views: a file's bytes without a whole-file copy.

The first read of a protected 12 MP JPEG used to copy the whole file three times
(the public bytes without the record, the record's associated data, the spliced
original), about half of the daemon's CPU for that read (issue 11). A `Pieces` is the
same bytes as a list of memoryviews over the buffers that already hold them (the backing
file as read, the decrypted payload): the public bytes are the backing buffer less the
record's segments, the original is those public pieces with the stored edits spliced in.
A read of [offset, offset + length) joins only the pieces it covers, and whoever wants
every byte in one object still gets it (`tobytes`).
"""

from __future__ import annotations

import ctypes
import mmap
from bisect import bisect_right
from collections.abc import Iterable

import numpy as np

Buffer = bytes | bytearray | memoryview
# `joined` prefaults buffers from this size on; smaller ones are one bytes join.
_PREFAULT_MIN = 1 << 20
_MADV_POPULATE_WRITE = 23  # Linux 5.14
_libc: ctypes.CDLL | None = None


def _populate(addr: int, size: int) -> None:
    """Fault in the whole pages of [addr, addr + size) for writing, in one call, unless
    its first and last pages are there already (memory malloc recycled from an evicted
    original: walking 800 present pages costs 0.15 ms for nothing). Contents stay as
    they are. Best effort: on an older kernel the pages fault in one by one as before."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        _libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    page = mmap.PAGESIZE
    start, end = -(-addr // page) * page, (addr + size) // page * page
    if end - start < 2 * page:
        return
    seen = ctypes.create_string_buffer(1)
    if all(_libc.mincore(at, page, seen) == 0 and seen.raw[0] & 1
           for at in (start, end - page)):
        return
    _libc.madvise(start, end - start, _MADV_POPULATE_WRITE)


class Pieces:
    """Immutable bytes made of the given parts in order (empty parts are dropped).

    The parts are kept as given (views stay views), so a Pieces keeps its buffers alive:
    `footprint` is what it holds in memory, for the restore cache's accounting.
    """

    __slots__ = ("_parts", "_starts", "_size")

    def __init__(self, parts: Iterable[Buffer] = ()):
        self._parts: list[Buffer] = []
        self._starts: list[int] = []
        pos = 0
        for p in parts:
            n = len(p)
            if n:
                self._parts.append(p)
                self._starts.append(pos)
                pos += n
        self._size = pos

    @classmethod
    def of(cls, data: Buffer | Pieces) -> Pieces:
        """`data` as Pieces (itself if it already is)."""
        return data if isinstance(data, Pieces) else cls((data,))

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __repr__(self) -> str:
        return f"Pieces({self._size} bytes in {len(self._parts)} parts)"

    @property
    def parts(self) -> tuple[Buffer, ...]:
        """The parts in order: what a hash or an AEAD consumes one after the other."""
        return tuple(self._parts)

    def _locate(self, offset: int) -> int:
        """Index of the part holding byte `offset` (0 <= offset < len)."""
        return bisect_right(self._starts, offset) - 1

    def _clamp(self, start: int, stop: int) -> tuple[int, int]:
        if start < 0 or stop < 0:
            raise ValueError("Pieces offsets are never negative")
        return min(start, self._size), min(max(stop, start), self._size)

    def views(self, start: int, stop: int) -> list[memoryview]:
        """Views of the bytes [start, stop), in order (none past the end): what a
        splice appends to its own list of parts."""
        start, stop = self._clamp(start, stop)
        if start >= stop:
            return []
        i = self._locate(start)
        base, part = self._starts[i], self._parts[i]
        if stop <= base + len(part):  # the common case: one part holds it all
            return [memoryview(part)[start - base : stop - base]]
        out = []
        while start < stop:
            base, part = self._starts[i], self._parts[i]
            end = min(stop, base + len(part))
            out.append(memoryview(part)[start - base : end - base])
            start, i = end, i + 1
        return out

    def read(self, offset: int, length: int) -> bytes | memoryview:
        """The bytes [offset, offset + length), short at the end, b"" past it; a view
        when one part holds them all, else one join of the covered parts only."""
        views = self.views(offset, offset + max(length, 0))
        if not views:
            return b""
        return views[0] if len(views) == 1 else b"".join(views)

    def slice(self, start: int, stop: int) -> Pieces:
        """The bytes [start, stop) as Pieces: views, nothing copied."""
        return Pieces(self.views(start, stop))

    def tobytes(self) -> bytes:
        """Every byte in one bytes object (a copy unless it is one bytes part already)."""
        if len(self._parts) == 1 and type(self._parts[0]) is bytes:
            return self._parts[0]
        return b"".join(self._parts)

    __bytes__ = tobytes

    def joined(self) -> Pieces:
        """The same bytes in one read-only buffer of their own, for a caller that keeps
        them (the vault's restored originals): later reads are views, no join each.

        Large ones are copied into malloc'd memory whose pages are faulted in with one
        madvise (`_populate`) first. Kept memory is fresh while the restore cache
        grows, and on the dev VM the kernel faulted a fresh 3.4 MB join in page by page
        at 2 ms, most of a first read of a 12 MP photo; populated in one call, 1 ms.
        Once the cache evicts, malloc hands the evicted original's memory to the next
        one, as for a join (an anonymous map of our own would never be recycled: tried,
        4.2 against 3.1 ms a photo then)."""
        if self._size < _PREFAULT_MIN:
            return Pieces((self.tobytes(),)) if self._size else Pieces()
        buf = np.empty(self._size, np.uint8)
        _populate(buf.ctypes.data, self._size)
        view, pos = memoryview(buf), 0
        for part in self._parts:
            end = pos + len(part)
            view[pos:end] = part
            pos = end
        return Pieces((view.toreadonly(),))

    @property
    def footprint(self) -> int:
        """Bytes of memory this keeps alive: every distinct buffer its parts view, whole
        (a view of a few bytes still holds its whole backing file)."""
        seen: dict[int, int] = {}
        for p in self._parts:
            obj = p.obj if isinstance(p, memoryview) else p
            seen[id(obj)] = memoryview(obj).nbytes
        return sum(seen.values())
