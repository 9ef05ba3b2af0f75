"""Shared pieces of the POSIX, allow-other and fault tests: module-wide mounts and
running a function as another user."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from helpers import Vault, run

OTHER_UID = 65534  # nobody
OTHER_GID = 65534
FAST_DETECTORS = ("detectors.text=false", "detectors.people=false",
                  "detectors.identity=false")


def _child(fn: Callable[[], object], cwd: Path, uid: int, gid: int) -> None:
    """In a forked child: become uid/gid in `cwd` (entered as root, so pytest's private
    0700 temp directories above it are no obstacle), run fn, exit with its errno."""
    code = 255
    try:
        os.chdir(cwd)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        fn()
        code = 0
    except OSError as e:
        code = e.errno or 255
    except BaseException:
        code = 255
    os._exit(code)


def as_user(fn: Callable[[], object], cwd: Path, uid: int = OTHER_UID,
            gid: int = OTHER_GID) -> int:
    """Run fn as another user with names relative to `cwd`; 0 if it returned, else
    the errno of its OSError (255 for anything else)."""
    pid = os.fork()
    if pid == 0:
        _child(fn, cwd, uid, gid)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def read_as_user(path: Path, uid: int = OTHER_UID) -> tuple[int, bytes]:
    """(errno or 0, bytes) of reading `path` as another user; the bytes come back
    through a pipe the parent drains while the child runs."""
    r, w = os.pipe()

    def go() -> None:
        data = Path(path.name).read_bytes()
        with os.fdopen(w, "wb") as f:
            f.write(data)

    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(go, path.parent, uid, OTHER_GID)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)


def mounted_vault(base: Path, *extra: str) -> Vault:
    v = Vault(base)
    for kv in FAST_DETECTORS:  # faces only: what these tests check needs no more
        run("config", str(v.dir), "--set", kv)
    v.mount(*extra)
    os.chmod(v.mnt, 0o755)  # the vault root is 0700; other users must reach the tree
    return v
