"""A throwaway unprivileged account for real-mount tests that must not run as root
(root mounts without fusermount3, so the setuid path and permission checks would go
untested). Creating it needs root; tests skip otherwise.

Where the interpreter behind the venv is not readable by other users (a pyenv build
under a 0700 /root, as on the development machine), the account gets the one
capability to traverse directories (CAP_DAC_READ_SEARCH, read-only); it still writes
and mounts only as itself, through the setuid fusermount3, and it still cannot write
the root-owned files that a missing write permission would otherwise hide.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

needs_root_and_tools = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("setpriv") is None,
    reason="needs root, useradd and setpriv to create a test user")


class User:
    """A throwaway account and the command prefix that runs as it."""

    def __init__(self, home: Path):
        self.name = f"sisafs-t{os.getpid() % 100000}"
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh",
                        "--home-dir", str(home), self.name], check=True, capture_output=True)
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid, self.home = pw.pw_uid, pw.pw_gid, home
        os.chown(home, self.uid, self.gid)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
        base = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
        caps = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        for prefix in (base, base + caps):
            # through a shell, as the daemon spawns its workers: exec by path
            probe = subprocess.run([*prefix, "/bin/sh", "-c",
                                    f"exec '{sys.executable}' -c 'import pyfuse3, sisafs.cli'"],
                                   env=self.env, capture_output=True, cwd=home)
            if probe.returncode == 0:
                self.prefix = prefix
                return
        self.remove()
        pytest.skip(f"the venv's python is not usable by another user: {probe.stderr[-300:]}")

    def popen(self, *argv: str, **kw) -> subprocess.Popen:
        return subprocess.Popen([*self.prefix, *argv], env={**self.env, **kw.pop("env", {})},
                                cwd=kw.pop("cwd", self.home), **kw)

    def run(self, *argv: str, check: bool = True, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        res = subprocess.run([*self.prefix, *argv], env=self.env, capture_output=True,
                             text=True, timeout=timeout, cwd=cwd or self.home)
        if check and res.returncode != 0:
            raise AssertionError(f"{argv} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def sisafs(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "sisafs.cli", *argv, **kw)

    def remove(self) -> None:
        subprocess.run(["userdel", self.name], capture_output=True)


def mounted(mnt: Path) -> bool:
    """From /proc/mounts: root cannot stat another user's FUSE mount (no allow_other),
    so os.path.ismount would say no."""
    with open("/proc/mounts") as f:
        return any(line.split()[1] == str(mnt) for line in f)


def wait_mounted(mnt: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not mounted(mnt):
        assert time.monotonic() < deadline, "mount did not appear"
        time.sleep(0.05)


def _pids_of(uid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and d.stat().st_uid == uid:
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


@pytest.fixture
def user() -> Iterator[User]:
    """A new account with its own home under /tmp; removed with whatever it left."""
    home = Path(tempfile.mkdtemp(prefix="sisafs-user-", dir="/tmp"))
    os.chmod(home, 0o755)
    u = User(home)
    yield u
    with open("/proc/mounts") as f:
        for mp in [line.split()[1] for line in f if line.split()[1].startswith(str(home))]:
            subprocess.run(["fusermount3", "-u", "-z", mp], capture_output=True)
    for pid in _pids_of(u.uid):  # a daemon a failed test left behind (only ours run as it)
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    u.remove()
    shutil.rmtree(home, ignore_errors=True)
