"""Keep the memory the daemon frees for its next allocations.

Every photo copied in or read moves several MB through fresh buffers: the write
requests' bytes (pyfuse3 makes one object per request), the plaintext a job is handed
(vault/handoff.py), a restored original. glibc hands freed memory back to the kernel as
soon as 128 KiB lie free at the top of the heap, and serves anything above its (moving)
mmap threshold with a new mapping, so the next photo's buffers page-fault in again,
one fault per 4 KiB: measured, 52 held write buffers of 64 KiB plus their join cost
3.3-4.0 ms of CPU with glibc's defaults and 0.95 ms with the thresholds below
(bench/results/speed_notes.md, round 5).

The cost is that the daemon's resident memory stays at its high-water mark (bounded
by the restore cache, the hand-off budget and the requests in flight) instead of
shrinking between bursts. Freed memory is not scrubbed either way: returned to the
kernel or not, what a buffer held stays until it is overwritten or unmapped, and the
daemon is not dumpable (sisafs/hygiene.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
TRIM_AT = 256 << 20  # free bytes at the top of the heap before any goes back
MMAP_AT = 32 << 20  # allocations from here up get their own mapping (glibc's own cap)


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds for this process; False where the C
    library has no mallopt (musl) or refuses, and nothing changes."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_AT) == 1 and mallopt(M_MMAP_THRESHOLD, MMAP_AT) == 1
    if not ok:
        log.info("mallopt refused: freed memory goes back to the kernel as glibc decides")
    return ok
