"""Client side of the control file: how `status` and `unmount` talk to a mount.

Like S3QL's ctrl file: a virtual `.sisafs-control` at the mount root whose extended
attributes answer queries (status) and run commands (drain). Setting the drain
attribute blocks until the queue is empty and the backing filesystem is synced.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from sisafs.errors import NotMountedError, SisafsError
from sisafs.vault.layout import CONTROL_NAME

STATUS = "user.sisafs.status"
DRAIN = "user.sisafs.drain"


def _control(mountpoint: Path) -> str:
    path = os.path.join(mountpoint, CONTROL_NAME)
    if not os.path.ismount(mountpoint) or not os.path.exists(path):
        raise NotMountedError(f"{mountpoint}: not a sisafs mount")
    return path


def status(mountpoint: Path) -> dict:
    return json.loads(os.getxattr(_control(mountpoint), STATUS))


def drain(mountpoint: Path) -> None:
    os.setxattr(_control(mountpoint), DRAIN, b"1")


def unmount(mountpoint: Path, timeout: float = 120.0) -> dict:
    """Drain, unmount, and wait for the daemon to exit; returns the last status."""
    ctrl = _control(mountpoint)
    drain(mountpoint)
    st = json.loads(os.getxattr(ctrl, STATUS))
    res = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SisafsError(f"fusermount3 -u {mountpoint} failed: {res.stderr.strip()} "
                          "(is a file still open there?)")
    pid, deadline = int(st["pid"]), time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return st
        time.sleep(0.05)
    raise SisafsError(f"the daemon (pid {pid}) is still finishing; it will exit on its own")
