"""Real-mount tier, as a normal user: a throwaway unprivileged account runs the CLI
(init, mount, cp, unmount, remount, read back) through the same venv; a busy mount
refuses unmount with its own exit code. Needs root to create the account.

Where the interpreter behind the venv is not readable by other users (a pyenv build
under a 0700 /root, as on the development machine), the account gets the one
capability to traverse directories (CAP_DAC_READ_SEARCH, read-only); it still writes
and mounts only as itself, through the setuid fusermount3, and it still cannot write
the root-owned files that a missing write permission would otherwise hide.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import needs_fuse
from helpers import PASSPHRASE

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sisafs" / "data" / "sample" / "dn_person.jpg"

pytestmark = [
    needs_fuse,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a test user"),
    pytest.mark.skipif(shutil.which("useradd") is None or shutil.which("setpriv") is None,
                       reason="needs useradd and setpriv"),
]


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


@pytest.fixture
def user():
    home = Path(tempfile.mkdtemp(prefix="sisafs-user-", dir="/tmp"))
    os.chmod(home, 0o755)
    u = User(home)
    yield u
    mnt = home / "mnt"
    if _mounted(mnt):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
    for pid in _pids_of(u.uid):  # a daemon a failed test left behind (only ours run as it)
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    u.remove()
    shutil.rmtree(home, ignore_errors=True)


def _pids_of(uid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and d.stat().st_uid == uid:
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def _mounted(mnt: Path) -> bool:
    """From /proc/mounts: root cannot stat another user's FUSE mount (no allow_other),
    so os.path.ismount would say no."""
    with open("/proc/mounts") as f:
        return any(line.split()[1] == str(mnt) for line in f)


def _wait_mounted(mnt: Path) -> None:
    deadline = time.monotonic() + 30
    while not _mounted(mnt):
        assert time.monotonic() < deadline, "mount did not appear"
        time.sleep(0.05)


def test_normal_user_init_mount_copy_unmount_read_back(user):
    h = user.home
    user.run("mkdir", "mnt", "in")
    (h / "pass").write_text(PASSPHRASE + "\n")
    os.chown(h / "pass", user.uid, user.gid)
    os.chmod(h / "pass", 0o600)
    shutil.copy(SAMPLE, h / "in" / "photo.jpg")
    (h / "in" / "notes.txt").write_text("not an image\n")
    for p in (h / "in").iterdir():
        os.chmod(p, 0o644)
    want = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (h / "in").iterdir()}

    user.sisafs("init", "vault", "--passfile", "pass", "--level", "2")
    user.sisafs("mount", "vault", "mnt", "--passfile", "pass", "--workers", "1")
    _wait_mounted(h / "mnt")
    user.run("cp", "in/photo.jpg", "in/notes.txt", "mnt/")

    # a shell inside the mount: unmount refuses with the busy code, the mount stays
    inside = subprocess.Popen([*user.prefix, "sh", "-c", "cd mnt && exec sleep 60"],
                              env=user.env, cwd=h)
    time.sleep(0.5)  # let the shell enter the mount
    try:
        busy = user.sisafs("unmount", "mnt", check=False)
        assert busy.returncode == 20, busy.stderr
        assert "busy" in busy.stderr and "Traceback" not in busy.stderr
        assert _mounted(h / "mnt")
    finally:
        inside.kill()
        inside.wait()

    res = user.sisafs("unmount", "mnt")
    assert "Traceback" not in res.stderr
    log = (h / "vault" / ".sisafs" / "sisafs.log").read_text()
    assert "1 protected" in res.stdout, res.stdout + log[-3000:]
    assert not _mounted(h / "mnt")
    backing = (h / "vault" / "photo.jpg").read_bytes()
    assert backing[:2] == b"\xff\xd8" and hashlib.sha256(backing).hexdigest() != want["photo.jpg"]
    assert os.stat(h / "vault" / "photo.jpg").st_uid == user.uid

    user.sisafs("mount", "vault", "mnt", "--passfile", "pass", "--workers", "1")
    _wait_mounted(h / "mnt")
    for name, digest in want.items():
        out = user.run("sha256sum", f"mnt/{name}").stdout.split()[0]
        assert out == digest, name
    st = user.sisafs("status", "mnt")
    assert "Traceback" not in st.stderr
    user.sisafs("unmount", "mnt")
    assert not _mounted(h / "mnt")
