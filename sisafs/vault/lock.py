"""The vault lock: one writer of a backing tree at a time.

A mount daemon holds it from before the kernel sees the mount until its queue is
drained and synced; a bulk `protect -r` run holds it for its whole run. Both take it
exclusively, so a second mount, a remount while the old daemon still drains (after a
`fusermount3 -u` or a file-manager eject), or a bulk run under a mount are refused with
the pid of the holder. `flock` locks die with their process, so a crash never leaves a
stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sisafs.errors import MountpointError
from sisafs.vault.layout import LOCK_NAME, PRIVATE_DIR


class VaultBusy(MountpointError):
    """Another process writes this vault (exit code 12, like any mount refusal)."""


def holder(vault: str | os.PathLike) -> int | None:
    """The pid written by the current holder of the lock, if any can be read."""
    try:
        text = (Path(vault) / PRIVATE_DIR / LOCK_NAME).read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def lock_vault(vault: str | os.PathLike, what: str = "mount") -> int:
    """Take the vault lock or raise VaultBusy; returns the descriptor that holds it
    (closing it, or the process ending, releases it)."""
    private = Path(vault) / PRIVATE_DIR
    private.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(private / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = holder(vault)
        who = f"process {pid}" if pid else "another process"
        raise VaultBusy(f"{vault}: vault busy: in use by {who} (a mount, possibly still "
                        "draining its queue, or a bulk 'sisafs protect -r' run); "
                        f"wait for it to finish, then try again ({what} refused)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
