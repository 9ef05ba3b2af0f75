"""Mount tier: issue 15's cases through the real CLI and real tools (cp -a, mv, ln, dd),
on top of the in-process tests of the same cases (test_inproc_regressions.py)."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import needs_fuse
from helpers import corpus_images, run, sha256, wait_for

from sisafs.formats import codec

pytestmark = needs_fuse


def protected(path) -> bool:
    with open(path, "rb") as f:
        return codec.read_header(f) is not None


def test_second_mount_of_a_vault_exits_12(vault, tmp_path):
    vault.mount()
    other = tmp_path / "mnt2"
    other.mkdir()
    try:
        res = run("mount", str(vault.dir), str(other), "--passfile", str(vault.passfile),
                  check=False)
        assert res.returncode == 12, res.stderr
        assert f"process {vault.daemon_pid()}" in res.stderr
        assert not os.path.ismount(other)
    finally:
        vault.unmount()


def test_real_tools_keep_dates_links_and_renames(vault, corpus):
    if not corpus_images():
        pytest.skip("no corpus")
    src = corpus_images()[0]
    vault.mount("--workers", "1")
    m = vault.mnt
    subprocess.run(["cp", "-a", str(src), str(m / "dated.jpg")], check=True)
    subprocess.run(["cp", str(src), str(m / ".IMG_1.jpg.tmp")], check=True)
    subprocess.run(["mv", str(m / ".IMG_1.jpg.tmp"), str(m / "IMG_1.jpg")], check=True)
    subprocess.run(["cp", str(src), str(m / "c.jpg")], check=True)
    wait_for(lambda: protected(vault.dir / "c.jpg"), 120, "c.jpg protected")
    os.link(m / "c.jpg", m / "b.jpg")
    subprocess.run("printf EDITED | dd of=c.jpg bs=1 seek=3000 conv=notrunc status=none",
                   shell=True, cwd=m, check=True)
    want_mtime = os.stat(src).st_mtime_ns
    vault.unmount()
    assert protected(vault.dir / "dated.jpg") and protected(vault.dir / "IMG_1.jpg")
    assert os.stat(vault.dir / "dated.jpg").st_mtime_ns == want_mtime
    vault.mount()
    try:
        assert sha256(m / "IMG_1.jpg") == sha256(src) == sha256(m / "dated.jpg")
        assert os.stat(m / "dated.jpg").st_mtime_ns == want_mtime
        assert (m / "b.jpg").read_bytes() == (m / "c.jpg").read_bytes()
        assert (m / "c.jpg").read_bytes()[3000:3006] == b"EDITED"
        assert os.stat(m / "c.jpg").st_nlink == 2
    finally:
        vault.unmount()
