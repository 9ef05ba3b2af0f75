"""Writing a whole buffer to a descriptor, or failing: the one loop every writer of
whole files uses (the vault's staged files, a worker's protected image, the config and
the vault index), so a short write on a full disk is always ENOSPC, never a file that
silently ends early."""

from __future__ import annotations

import errno
import os


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` at the descriptor's position, or raise (ENOSPC for a write
    that makes no progress)."""
    view, off = memoryview(data), 0
    while off < len(view):
        n = os.write(fd, view[off:])
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        off += n
