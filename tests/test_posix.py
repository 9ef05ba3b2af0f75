"""POSIX behaviour through a real mount: what file managers, rsync and camera
importers do. Each test names the trap it guards (many were found by pjdfstest and
fsx and fixed; see docs/testing.md)."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from conftest import needs_fuse
from posix_helpers import OTHER_GID, OTHER_UID, as_user, mounted_vault

pytestmark = needs_fuse


@pytest.fixture(scope="module")
def mnt(tmp_path_factory):
    v = mounted_vault(tmp_path_factory.mktemp("posix"), "--allow-other", "--workers", "1")
    try:
        yield v.mnt
        v.unmount()
    finally:
        v.force_unmount()


@pytest.fixture
def d(mnt, request):
    """A fresh directory per test inside the shared mount."""
    p = mnt / request.node.name.replace("[", "_").replace("]", "_")
    p.mkdir(mode=0o755)
    os.chmod(p, 0o755)
    return p


def _errno(fn) -> int:
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


def test_create_overwrite_append_truncate(d):
    f = d / "a.txt"
    f.write_bytes(b"hello world")
    f.write_bytes(b"bye")  # O_TRUNC overwrite
    assert f.read_bytes() == b"bye"
    with open(f, "ab") as fh:
        fh.write(b" now")
    assert f.read_bytes() == b"bye now"
    os.truncate(f, 3)
    assert f.read_bytes() == b"bye" and f.stat().st_size == 3
    os.truncate(f, 6000)  # grow: zeros, across a block boundary
    assert f.read_bytes() == b"bye" + bytes(5997)
    with open(f, "r+b") as fh:
        fh.truncate(4097)
        fh.seek(0, 2)
        fh.write(b"!")
    assert f.read_bytes() == b"bye" + bytes(4094) + b"!"


def test_rename_over_existing_and_across_dirs(d):
    (d / "sub").mkdir()
    a, b = d / "a", d / "sub" / "b"
    a.write_bytes(b"A" * 5000)
    b.write_bytes(b"B")
    os.rename(a, b)  # over an existing file, into another directory
    assert not a.exists() and b.read_bytes() == b"A" * 5000
    assert b.stat().st_nlink == 1
    os.rename(d / "sub", d / "moved")  # a directory with its content
    assert (d / "moved" / "b").read_bytes() == b"A" * 5000
    (d / "x").write_bytes(b"x")
    os.link(d / "x", d / "y")
    os.rename(d / "x", d / "y")  # both names are one file: nothing happens
    assert (d / "x").exists() and (d / "y").read_bytes() == b"x"
    assert _errno(lambda: os.rename(d / "moved", d / "moved" / "in")) == errno.EINVAL


def test_rsync_style_temp_then_rename_keeps_content_and_times(d):
    tmp, final = d / ".photo.jpg.XXXX", d / "photo.jpg"
    tmp.write_bytes(b"not really a photo")
    os.utime(tmp, ns=(1_000_000_000, 2_000_000_000))
    os.chmod(tmp, 0o640)
    os.rename(tmp, final)
    st = final.stat()
    assert (st.st_mtime_ns, stat.S_IMODE(st.st_mode)) == (2_000_000_000, 0o640)
    assert final.read_bytes() == b"not really a photo"


def test_hard_links_share_content_and_link_count(d):
    a, b = d / "a", d / "b"
    a.write_bytes(b"one")
    os.link(a, b)
    assert a.stat().st_nlink == 2 and a.stat().st_ino == b.stat().st_ino
    with open(b, "ab") as fh:
        fh.write(b" two")
    assert a.read_bytes() == b"one two"
    os.unlink(a)
    assert b.stat().st_nlink == 1 and b.read_bytes() == b"one two"


def test_symlinks(d):
    (d / "target").write_bytes(b"t")
    os.symlink("target", d / "link")
    os.symlink("/nonexistent/far/away", d / "dangling")
    assert os.readlink(d / "link") == "target"
    assert (d / "link").read_bytes() == b"t"
    assert stat.S_ISLNK(os.lstat(d / "dangling").st_mode)
    assert _errno(lambda: (d / "dangling").read_bytes()) == errno.ENOENT
    os.lchown(d / "link", OTHER_UID, OTHER_GID)
    assert os.lstat(d / "link").st_uid == OTHER_UID
    assert (d / "target").stat().st_uid == 0


def test_modes_are_exact_whatever_the_daemon_umask(d):
    """pjdfstest: create/mkdir with 01777, 02755, 0600 must store exactly that (umask 0)."""
    old = os.umask(0)
    try:
        for i, mode in enumerate((0o1777, 0o2755, 0o600, 0o4711, 0o777)):
            fd = os.open(d / f"f{i}", os.O_CREAT | os.O_WRONLY, mode)
            os.close(fd)
            os.mkdir(d / f"d{i}", mode)
            assert stat.S_IMODE((d / f"f{i}").stat().st_mode) == mode
            # Linux's mkdir(2) drops set-user/group-ID before FUSE sees the mode
            assert stat.S_IMODE((d / f"d{i}").stat().st_mode) == mode & 0o1777
            os.mkfifo(d / f"p{i}", mode & 0o777)
            assert stat.S_ISFIFO((d / f"p{i}").stat().st_mode)
    finally:
        os.umask(old)
    os.chmod(d / "f0", 0o4755)
    assert stat.S_IMODE((d / "f0").stat().st_mode) == 0o4755


def test_setgid_directory_is_inherited(d):
    os.chown(d, 0, 1234)
    os.chmod(d, 0o2775)
    os.mkdir(d / "kid")
    (d / "file").write_bytes(b"")
    assert (d / "kid").stat().st_gid == 1234 and (d / "file").stat().st_gid == 1234
    assert (d / "kid").stat().st_mode & stat.S_ISGID


def test_write_by_non_owner_clears_setuid(d):
    f = d / "suid"
    f.write_bytes(b"")
    os.chmod(f, 0o6777)
    def write() -> None:
        with open("suid", "wb") as fh:
            fh.write(b"x")
    assert as_user(write, d) == 0
    assert stat.S_IMODE(f.stat().st_mode) == 0o777


def test_ownership_and_permission_errors_for_non_owners(d):
    f = d / "mine"
    f.write_bytes(b"secret stays mine")
    os.chmod(f, 0o644)
    assert as_user(lambda: open("mine", "ab").close(), d) == errno.EACCES
    assert as_user(lambda: open("new", "wb").close(), d) == errno.EACCES
    assert as_user(lambda: os.chmod("mine", 0o777), d) == errno.EPERM
    assert as_user(lambda: os.unlink("mine"), d) == errno.EACCES
    os.chown(f, OTHER_UID, OTHER_GID)
    assert as_user(lambda: os.chmod("mine", 0o600), d) == 0
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and f.stat().st_uid == OTHER_UID
    assert as_user(lambda: os.chown("mine", 0, 0), d) == errno.EPERM
    assert f.read_bytes() == b"secret stays mine"


def test_timestamps_including_utime_omit(d):
    f = d / "t"
    f.write_bytes(b"x")
    os.utime(f, ns=(111_000_000_000, 222_000_000_000))
    st = f.stat()
    assert (st.st_atime_ns, st.st_mtime_ns) == (111_000_000_000, 222_000_000_000)
    fd = os.open(f, os.O_RDONLY)
    try:  # utimensat with UTIME_OMIT for mtime: only atime changes
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        ts = (ctypes.c_long * 4)(333, 0, 0, (1 << 30) - 2)  # UTIME_OMIT
        assert libc.futimens(fd, ts) == 0
    finally:
        os.close(fd)
    st = f.stat()
    assert st.st_atime_ns == 333_000_000_000 and st.st_mtime_ns == 222_000_000_000
    before = time.time_ns()
    with open(f, "ab") as fh:
        fh.write(b"y")
    assert f.stat().st_mtime_ns >= before - 2_000_000_000


def test_xattrs(d):
    f = d / "x"
    f.write_bytes(b"x")
    os.setxattr(f, "user.tag", b"holiday \x00 2024")
    assert os.getxattr(f, "user.tag") == b"holiday \x00 2024"
    assert "user.tag" in os.listxattr(f)
    os.removexattr(f, "user.tag")
    assert _errno(lambda: os.getxattr(f, "user.tag")) == errno.ENODATA
    assert _errno(lambda: os.setxattr(f, "trusted.x", b"1")) in (errno.ENOTSUP, errno.EPERM)


def test_directories_and_error_codes(d):
    (d / "full").mkdir()
    (d / "full" / "f").write_bytes(b"")
    (d / "file").write_bytes(b"")
    assert _errno(lambda: (d / "missing").read_bytes()) == errno.ENOENT
    assert _errno(lambda: (d / "full").mkdir()) == errno.EEXIST
    assert _errno(lambda: os.open(d / "file", os.O_CREAT | os.O_EXCL)) == errno.EEXIST
    assert _errno(lambda: os.rmdir(d / "full")) == errno.ENOTEMPTY
    assert _errno(lambda: open(d / "full", "wb")) == errno.EISDIR
    assert _errno(lambda: (d / "file" / "x").write_bytes(b"")) == errno.ENOTDIR
    assert _errno(lambda: (d / ("n" * 256)).write_bytes(b"")) == errno.ENAMETOOLONG
    (d / ("n" * 255)).write_bytes(b"longest name")
    assert (d / ("n" * 255)).read_bytes() == b"longest name"
    assert _errno(lambda: os.unlink(d / "full")) in (errno.EISDIR, errno.EPERM)
    assert sorted(os.listdir(d)) == sorted(["full", "file", "n" * 255])


def test_paths_longer_than_the_backing_path_limit(d):
    """A path legal in the mount can pass PATH_MAX once the vault path is in front."""
    here = os.getcwd()
    os.chdir(d)  # walk down with relative names: our own paths stay short
    try:
        for _ in range(24):  # ~4.8 KiB below d
            os.mkdir("p" * 200)
            os.chdir("p" * 200)
        Path("deep.txt").write_bytes(b"deep")
        os.symlink("deep.txt", "link")
        os.setxattr("deep.txt", "user.k", b"v")
        assert Path("link").read_bytes() == b"deep"
        os.rename("deep.txt", "renamed")
        assert sorted(os.listdir(".")) == ["link", "renamed"]
        assert os.getxattr("renamed", "user.k") == b"v"
        os.chdir("..")
        os.rename("p" * 200, "q")  # a directory rename deep down
        assert Path("q/renamed").read_bytes() == b"deep"
    finally:
        os.chdir(here)


def test_sparse_huge_truncate_stays_small(d, mnt):
    f = d / "sparse"
    with open(f, "wb") as fh:
        fh.truncate(8 << 30)  # 8 GiB
        fh.seek(4 << 30)
        fh.write(b"middle")
    assert f.stat().st_size == 8 << 30
    with open(f, "rb") as fh:
        fh.seek((4 << 30) - 3)
        assert fh.read(12) == b"\0\0\0middle\0\0\0"
    backing = mnt.parent / "vault" / d.name / "sparse"
    assert backing.stat().st_blocks * 512 < 1 << 20, "huge truncate was written out"


def test_large_file_round_trip(d):
    data = os.urandom(24 << 20)
    (d / "big").write_bytes(data)
    assert (d / "big").read_bytes() == data
    with open(d / "big", "r+b") as fh:  # unaligned overwrite in the middle
        fh.seek(5_000_001)
        fh.write(b"Z" * 10_000)
    expect = data[:5_000_001] + b"Z" * 10_000 + data[5_010_001:]
    assert (d / "big").read_bytes() == expect


def test_many_small_files(d):
    for i in range(300):
        (d / f"s{i:03d}").write_bytes(str(i).encode() * (i % 7))
    assert len(os.listdir(d)) == 300
    for i in range(0, 300, 17):
        assert (d / f"s{i:03d}").read_bytes() == str(i).encode() * (i % 7)


def test_concurrent_writers(d):
    """Several threads writing disjoint ranges of one file, and their own files."""
    shared = d / "shared"
    shared.write_bytes(b"")
    def worker(k: int) -> None:
        with open(shared, "r+b") as fh:
            for j in range(20):
                fh.seek((k * 20 + j) * 1000)
                fh.write(bytes([65 + k]) * 1000)
        (d / f"own{k}").write_bytes(bytes([k]) * 70_000)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = shared.read_bytes()
    assert data == b"".join(bytes([65 + k]) * 20_000 for k in range(4))
    for k in range(4):
        assert (d / f"own{k}").read_bytes() == bytes([k]) * 70_000


def test_attributes_fresh_after_rename_and_unlink(d):
    """Link counts and sizes must not come from a stale kernel cache."""
    a, b = d / "a", d / "b"
    a.write_bytes(b"1234")
    os.link(a, d / "a2")
    b.write_bytes(b"xy")
    os.rename(b, a)  # a's old inode loses a link
    assert (d / "a2").stat().st_nlink == 1
    assert a.stat().st_size == 2 and a.stat().st_nlink == 1
    with open(a, "ab") as fh:
        fh.write(b"zzz")
        fh.flush()
        assert os.fstat(fh.fileno()).st_size == 5
    assert a.stat().st_size == 5


def test_statfs(mnt):
    s = os.statvfs(mnt)
    assert s.f_namemax == 255 and s.f_blocks > 0


def test_open_file_survives_unlink(d):
    """pjdfstest unlink/14: fstat after unlink gives nlink 0; I/O goes on."""
    f = d / "gone"
    f.write_bytes(b"Hello, World!")
    with open(f, "r+b") as fh:
        os.unlink(f)
        st = os.fstat(fh.fileno())
        assert st.st_nlink == 0 and st.st_size == 13
        assert fh.read() == b"Hello, World!"
        fh.write(b" more")
        fh.flush()
        os.ftruncate(fh.fileno(), 5)
        os.fchmod(fh.fileno(), 0o600)
        fh.seek(0)
        assert fh.read() == b"Hello"
    assert not f.exists()


def test_shared_mmap_write_and_read(d):
    """fsx's MAPWRITE/MAPREAD: key holders keep the page cache and shared mmap even on
    an --allow-other mount (only users without the key get direct I/O)."""
    import mmap

    f = d / "mapped"
    f.write_bytes(bytes(20_000))
    with open(f, "r+b") as fh:
        m = mmap.mmap(fh.fileno(), 20_000)
        m[5000:5005] = b"hello"
        m.flush()
        m.close()
    assert (d / "mapped").read_bytes()[4999:5006] == b"\0hello\0"
