"""Client side of the control file: how `status` and `unmount` talk to a mount.

Like S3QL's ctrl file: a virtual `.sisafs-control` at the mount root whose extended
attributes answer queries (status) and run commands (drain). Setting the drain
attribute blocks until the queue is empty and the backing filesystem is synced.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sisafs.errors import BusyError, FuseUnavailableError, NotMountedError, SisafsError
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


def _drain_watched(mountpoint: Path, progress: Callable[[dict], None] | None,
                   interval: float) -> None:
    """Drain; meanwhile, if asked, pass a fresh status to `progress` every `interval`
    seconds (the drain blocks in setxattr, so it runs in a thread and this one polls)."""
    if progress is None:
        drain(mountpoint)
        return
    failure: list[BaseException] = []

    def run() -> None:
        try:
            drain(mountpoint)
        except BaseException as e:  # re-raised in the caller's thread
            failure.append(e)

    t = threading.Thread(target=run, name="sisafs-drain", daemon=True)
    t.start()
    while True:
        t.join(interval)
        if not t.is_alive():
            break
        try:
            progress(status(mountpoint))
        except (OSError, ValueError):
            pass  # the mount is going away; the drain thread reports how it ended
    if failure:
        raise failure[0]


def _fusermount_u(mountpoint: Path) -> None:
    res = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, text=True)
    if res.returncode == 0:
        return
    err = res.stderr.strip()
    if "busy" in err.lower():
        raise BusyError(f"{mountpoint} is busy: a file is still open there or a shell is "
                        "inside it (see `fuser -vm`); everything queued is already "
                        "protected and on disk, so close it and run unmount again")
    raise FuseUnavailableError(f"fusermount3 -u {mountpoint} failed: {err}")


def _exited(pid: int) -> bool:
    """The daemon is gone: no such pid, someone else's pid now, or a zombie whose
    parent (a service manager, a test) has not reaped it yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def unmount(mountpoint: Path, timeout: float = 120.0,
            progress: Callable[[dict], None] | None = None, interval: float = 0.5) -> dict:
    """Drain, unmount, and wait for the daemon to exit; returns the last status.

    `progress`, if given, is called with the daemon's status while the queue drains."""
    ctrl = _control(mountpoint)
    _drain_watched(mountpoint, progress, interval)
    st = json.loads(os.getxattr(ctrl, STATUS))
    _fusermount_u(mountpoint)
    pid, deadline = int(st["pid"]), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _exited(pid):
            return st
        time.sleep(0.05)
    raise SisafsError(f"the daemon (pid {pid}) is still finishing; it will exit on its own")
