"""allow-other separation (issue 4): users other than the one who mounted (and root)
see the protected public bytes of protected images, never originals, and cannot read
anything that is only stored encrypted."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
from conftest import needs_fuse
from helpers import CORPUS, sha256, wait_for
from posix_helpers import as_user, mounted_vault, read_as_user

pytestmark = needs_fuse

SECRET = b"the spare key is under the third flower pot\n" * 30


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    src = CORPUS / "fr_obama.jpg"
    v = mounted_vault(tmp_path_factory.mktemp("allow"), "--allow-other", "--workers", "1")
    try:
        shutil.copyfile(src, v.mnt / "photo.jpg")
        (v.mnt / "notes.txt").write_bytes(SECRET)
        (v.mnt / "broken.jpg").write_bytes(src.read_bytes()[:3000])  # fails: stays encrypted
        for name in ("photo.jpg", "notes.txt", "broken.jpg"):
            os.chmod(v.mnt / name, 0o666)
        wait_for(lambda: v.status()["queued"] + v.status()["running"] == 0
                 and v.status()["done"] + v.status()["failed"] >= 2, what="protection")
        yield v, src
        v.unmount()
    finally:
        v.force_unmount()


def test_other_user_sees_public_bytes_owner_sees_original(shared):
    v, src = shared
    public = (v.dir / "photo.jpg").read_bytes()
    assert public[:3] == b"\xff\xd8\xff" and public != src.read_bytes()
    # the other user first, then the key holder, then the other user again: the
    # kernel's page cache must not hand one user's view to the other
    code, got = read_as_user(v.mnt / "photo.jpg")
    assert code == 0 and got == public
    assert sha256(v.mnt / "photo.jpg") == sha256(src)
    code, got = read_as_user(v.mnt / "photo.jpg")
    assert code == 0 and got == public

    def stat_other() -> None:
        if os.stat("photo.jpg").st_size != len(public):
            raise OSError(errno.EBADMSG, "size is not the public size")
    assert as_user(stat_other, v.mnt) == 0
    assert (v.mnt / "photo.jpg").stat().st_size == src.stat().st_size


def test_other_user_cannot_read_encrypted_files(shared):
    v, _ = shared
    assert read_as_user(v.mnt / "notes.txt")[0] == errno.EACCES
    assert read_as_user(v.mnt / "broken.jpg")[0] == errno.EACCES  # never protected
    assert (v.mnt / "notes.txt").read_bytes() == SECRET


def test_other_user_cannot_modify_or_read_xattrs(shared):
    v, src = shared
    os.setxattr(v.mnt / "photo.jpg", "user.where", b"home address")
    assert as_user(lambda: open("photo.jpg", "r+b").close(), v.mnt) == errno.EACCES
    assert as_user(lambda: os.getxattr("photo.jpg", "user.where"), v.mnt) == errno.EACCES
    assert os.getxattr(v.mnt / "photo.jpg", "user.where") == b"home address"
    assert sha256(v.mnt / "photo.jpg") == sha256(src)


def test_other_user_may_drop_new_files_but_not_read_them_back(shared):
    v, _ = shared

    def drop() -> None:
        with open("dropped.txt", "wb") as f:
            f.write(b"from another user")
    os.chmod(v.mnt, 0o777)
    try:
        assert as_user(drop, v.mnt) == 0
    finally:
        os.chmod(v.mnt, 0o755)
    assert read_as_user(v.mnt / "dropped.txt")[0] == errno.EACCES
    assert (v.mnt / "dropped.txt").read_bytes() == b"from another user"
    assert (v.dir / "dropped.txt").read_bytes()[:5] == b"SISAB"


def test_other_user_cannot_read_the_status(shared):
    """The status names every file and its state: the mounting user's and root's only."""
    v, _ = shared
    assert "paths" in v.status()  # the owner (root here) reads it

    def read_status() -> None:
        os.getxattr(".sisafs-control", "user.sisafs.status")
    assert as_user(read_status, v.mnt) == errno.EACCES
