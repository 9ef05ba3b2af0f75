"""Real-mount tier, as a normal user: a throwaway unprivileged account runs the CLI
(init, mount, cp, unmount, remount, read back) through the same venv; a busy mount
refuses unmount with its own exit code. Needs root to create the account
(tests/unprivileged.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time

from conftest import needs_fuse
from helpers import PASSPHRASE
from unprivileged import REPO, mounted, needs_root_and_tools, user, wait_mounted

SAMPLE = REPO / "sisafs" / "data" / "sample" / "dn_person.jpg"

pytestmark = [needs_fuse, needs_root_and_tools]
__all__ = ["user"]  # the fixture


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
    wait_mounted(h / "mnt")
    user.run("cp", "in/photo.jpg", "in/notes.txt", "mnt/")

    # a shell inside the mount: unmount refuses with the busy code, the mount stays
    inside = subprocess.Popen([*user.prefix, "sh", "-c", "cd mnt && exec sleep 60"],
                              env=user.env, cwd=h)
    time.sleep(0.5)  # let the shell enter the mount
    try:
        busy = user.sisafs("unmount", "mnt", check=False)
        assert busy.returncode == 20, busy.stderr
        assert "busy" in busy.stderr and "Traceback" not in busy.stderr
        assert mounted(h / "mnt")
    finally:
        inside.kill()
        inside.wait()

    res = user.sisafs("unmount", "mnt")
    assert "Traceback" not in res.stderr
    log = (h / "vault" / ".sisafs" / "sisafs.log").read_text()
    assert "1 protected" in res.stdout, res.stdout + log[-3000:]
    assert not mounted(h / "mnt")
    backing = (h / "vault" / "photo.jpg").read_bytes()
    assert backing[:2] == b"\xff\xd8" and hashlib.sha256(backing).hexdigest() != want["photo.jpg"]
    assert os.stat(h / "vault" / "photo.jpg").st_uid == user.uid

    user.sisafs("mount", "vault", "mnt", "--passfile", "pass", "--workers", "1")
    wait_mounted(h / "mnt")
    for name, digest in want.items():
        out = user.run("sha256sum", f"mnt/{name}").stdout.split()[0]
        assert out == digest, name
    st = user.sisafs("status", "mnt")
    assert "Traceback" not in st.stderr
    assert "vault" in user.sisafs("info", "vault").stdout
    user.sisafs("unmount", "mnt")
    assert not mounted(h / "mnt")
    assert user.sisafs("fsck", "vault", "--passfile", "pass").returncode == 0
