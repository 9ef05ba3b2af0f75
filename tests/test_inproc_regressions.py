"""In-process tier: the ten open-file cases of issue 15, each as it was reported.

Each drives `Operations` and the vault directly (tests/inproc.py); "wait" in the
report (until the file is protected) is `protect_all()` here, or a job started before
and committed after another operation where the case needs that interleaving.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys

import pytest
from inproc import FS, backing_kind, small_jpeg

from sisafs.errors import MountpointError
from sisafs.vault.lock import lock_vault
from sisafs.vault.store import Kind


@pytest.fixture
def fs(tmp_path):
    return FS(tmp_path / "vault")


def test_1_read_only_open_does_not_block_writers(fs):
    fs.write_file("/log.txt", b"hello\n")
    reader = fs.open("/log.txt", os.O_RDONLY)
    w = fs.open("/log.txt", os.O_WRONLY | os.O_APPEND)
    assert fs.write(w, 6, b"more\n") == 5
    fs.close(w)
    t = fs.open("/log.txt", os.O_WRONLY | os.O_TRUNC)
    fs.write(t, 0, b"new")
    fs.close(t)
    assert fs.read(reader) == b"new"
    fs.close(reader)


def test_2_rewrite_after_commit_with_reader_open(fs):
    a, b = small_jpeg(1), small_jpeg(2)
    w = fs.open("/x.jpg", os.O_WRONLY | os.O_CREAT)
    fs.write(w, 0, a)
    r = fs.open("/x.jpg", os.O_RDONLY)
    fs.close(w)
    fs.protect_all()
    assert backing_kind(fs, "x.jpg") is Kind.PROTECTED
    fs.write_file("/x.jpg", b)
    assert fs.read(r) == b
    fs.close(r)
    fs.protect_all()
    assert fs.read_file("/x.jpg") == b
    fs.unmount_remount()
    assert fs.read_file("/x.jpg") == b


def test_3_unrelated_file_keeps_its_data(fs):
    p = small_jpeg(3)
    fs.write_file("/P.jpg", p)
    fs.protect_all()
    ro = fs.open("/P.jpg", os.O_RDONLY)
    rw = fs.open("/P.jpg", os.O_RDWR)
    fs.close(ro)
    notes = fs.open("/notes.txt", os.O_WRONLY | os.O_CREAT)
    assert fs.write(notes, 0, b"n" * 20000) == 20000
    assert fs.write(rw, 0, p[:100]) == 100
    fs.close(rw)
    fs.close(notes)
    fs.unmount_remount()
    assert fs.read_file("/notes.txt") == b"n" * 20000
    assert fs.read_file("/P.jpg") == p


def test_4_hard_link_stays_one_file(fs):
    c = small_jpeg(4)
    fs.write_file("/c.jpg", c)
    fs.protect_all()
    fs.link("/c.jpg", "/b.jpg")
    fh = fs.open("/c.jpg", os.O_WRONLY)
    fs.write(fh, 300, b"EDITED")
    fs.close(fh)
    edited = c[:300] + b"EDITED" + c[306:]
    assert fs.read_file("/b.jpg") == fs.read_file("/c.jpg") == edited
    assert fs.stat("/b.jpg").st_nlink == fs.stat("/c.jpg").st_nlink == 2
    fs.protect_all()
    fs.unmount_remount()
    assert fs.read_file("/b.jpg") == fs.read_file("/c.jpg") == edited
    # One link gone: the image is protected again.
    fs.unlink("/b.jpg")
    fs.protect_all()
    assert backing_kind(fs, "c.jpg") is Kind.PROTECTED and fs.read_file("/c.jpg") == edited


def test_5_save_by_rename_is_protected(fs):
    img = small_jpeg(5)
    fs.write_file("/.IMG_1.jpg.tmp", img)
    commit = fs.start_job()  # the job has read the file under its old name
    fs.rename("/.IMG_1.jpg.tmp", "/IMG_1.jpg")
    commit()
    assert backing_kind(fs, "IMG_1.jpg") is Kind.PROTECTED
    # A whole album folder renamed while its photos wait.
    fs.mkdir("/album")
    for i in range(10):
        fs.write_file(f"/album/{i}.jpg", small_jpeg(10 + i))
    fs.rename("/album", "/Album 2024")
    fs.protect_all()
    assert all(backing_kind(fs, f"Album 2024/{i}.jpg") is Kind.PROTECTED for i in range(10))
    assert fs.read_file("/IMG_1.jpg") == img


def test_6_full_disk_is_enospc_and_keeps_earlier_data(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount tmpfs here")
    fs = None
    try:
        fs = FS(mnt / "vault")
        first = os.urandom(3_200_000)
        fs.write_file("/a.bin", first)
        fh = fs.open("/b.bin", os.O_WRONLY | os.O_CREAT)
        with pytest.raises(OSError) as e:
            fs.write(fh, 0, os.urandom(1_040_000))
        assert e.value.errno == errno.ENOSPC
        fs.close(fh)
        assert fs.read_file("/a.bin") == first
        assert fs.read_file("/b.bin") in (b"",)  # nothing half-written is served
        fs.unmount_remount()
        assert fs.read_file("/a.bin") == first
    finally:
        if fs is not None:  # its open descriptors (the index journal) keep tmpfs busy
            with contextlib.suppress(OSError):
                fs.session.close()
            for of in list(fs.vault._open.values()):
                of.close()
        if subprocess.run(["umount", str(mnt)]).returncode:
            subprocess.run(["umount", "-l", str(mnt)])


def test_7_restore_cache_never_serves_another_version(fs):
    x = small_jpeg(7)
    y = bytearray(x)
    y[-3] ^= 1  # one byte of entropy-coded data changed, same size
    y = bytes(y)
    ns = (1_600_000_000_000_000_000, 1_600_000_000_000_000_000)
    for data in (x, x, y):
        fs.write_file("/p.jpg", data)
        fs.utime("/p.jpg", ns)
        fs.protect_all()
        assert fs.read_file("/p.jpg") == data
    fh = fs.open("/p.jpg", os.O_WRONLY | os.O_APPEND)
    fs.write(fh, len(y), b"!")
    fs.close(fh)
    assert fs.read_file("/p.jpg") == y + b"!"


def test_8_second_writer_of_a_vault_is_refused(fs):
    fd = lock_vault(fs.root)
    try:
        code = ("import sys; from sisafs.vault.lock import lock_vault\n"
                "try:\n    lock_vault(sys.argv[1])\nexcept Exception as e:\n"
                "    print(type(e).__name__, getattr(e, 'exit_code', 0), e); sys.exit(3)\n")
        res = subprocess.run([sys.executable, "-c", code, str(fs.root)], capture_output=True,
                             text=True)
        assert res.returncode == 3
        assert "VaultBusy 12" in res.stdout and f"process {os.getpid()}" in res.stdout
    finally:
        os.close(fd)
    os.close(lock_vault(fs.root))  # released with its holder
    assert issubclass(type(MountpointError("x")), MountpointError)


def test_9_protection_keeps_the_dates_users_set(fs):
    ns = (1_500_000_000_123_456_789, 1_400_000_000_987_654_321)
    img = small_jpeg(9)
    # cp -a / tar -x: times set on the open descriptor before close
    fh = fs.open("/d.jpg", os.O_WRONLY | os.O_CREAT)
    fs.write(fh, 0, img)
    fs.utime("/d.jpg", ns, fh)
    fs.close(fh)
    st = fs.stat("/d.jpg")
    assert (st.st_atime_ns, st.st_mtime_ns) == ns
    fs.protect_all()
    assert backing_kind(fs, "d.jpg") is Kind.PROTECTED
    st = fs.stat("/d.jpg")
    assert (st.st_atime_ns, st.st_mtime_ns) == ns and st.st_size == len(img)
    # cp -p: times set by path after close
    fs.write_file("/e.jpg", img)
    fs.utime("/e.jpg", ns)
    fs.protect_all()
    st = fs.stat("/e.jpg")
    assert (st.st_atime_ns, st.st_mtime_ns) == ns


def test_10_worker_threads_never_touch_the_inode_table(fs, monkeypatch):
    """job_read runs in a worker thread: it must work from the job's own descriptor
    with the inode table unusable."""
    img = small_jpeg(11)
    fs.mkdir("/" + "d" * 200)
    fs.write_file("/" + "d" * 200 + "/p.jpg", img)
    job = fs.jobs.take_nowait()
    inp = fs.vault.job_open(job)
    monkeypatch.setattr(fs.vault.inodes, "path", None)
    monkeypatch.setattr(fs.vault, "path", None)
    try:
        assert fs.vault.job_read(inp) == img  # as written (vault/handoff.py)
        inp.plain = None
        assert fs.vault.job_read(inp) == img  # from the job's own descriptor
    finally:
        os.close(inp.fd)
        fs.jobs.finished(job)


def test_failed_image_is_retried_and_status_says_why(fs):
    bad = small_jpeg(12)[:300]  # truncated: the engine refuses it
    fs.write_file("/bad.jpg", bad)
    fs.protect_all()
    assert any("bad.jpg" == p and r for p, r in fs.jobs.failures)
    for _ in range(2):  # attempts 2 and 3, at the next two mounts
        fs.unmount_remount()
        assert "Truncated" in dict(fs.jobs.status()["failures"])["bad.jpg"]  # across mounts
        assert fs.queued() == 1
        fs.protect_all()
    fs.unmount_remount()
    assert fs.queued() == 0 and "failed" in fs.jobs.status()["paths"]["bad.jpg"]
    assert fs.read_file("/bad.jpg") == bad


def test_links_to_special_files_never_open_them(fs):
    """pjdfstest link/00.t: linking a FIFO must not open it (that blocks the daemon)."""
    import stat as st_

    ctx = fs.ctx
    from inproc import _call

    for i, mode in enumerate((st_.S_IFIFO, st_.S_IFSOCK)):
        _call(fs.ops.mknod, 1, f"n{i}".encode(), mode | 0o644, 0, ctx)
        fs.link(f"/n{i}", f"/l{i}")
        assert fs.stat(f"/l{i}").st_nlink == 2 and fs.stat(f"/n{i}").st_nlink == 2
        fs.unlink(f"/n{i}")
        assert fs.stat(f"/l{i}").st_nlink == 1


def test_11_protected_image_is_restored_at_its_first_read_not_at_open(fs, monkeypatch):
    """A key holder re-opening a photo the kernel still caches (keep_cache) sends no
    read: nothing may be read back and restored for it, even once the daemon's own
    restore cache has let the photo go. The size is right before the first read."""
    from sisafs.vault import store

    photo = small_jpeg(11, (160, 120))
    fs.write_file("/p.jpg", photo)
    fs.protect_all()
    assert backing_kind(fs, "p.jpg") is Kind.PROTECTED
    fs.unmount_remount()
    restores = []
    real = store.codec.restore_pieces
    monkeypatch.setattr(store.codec, "restore_pieces",
                        lambda data, key: restores.append(1) or real(data, key))
    for _ in range(3):  # opened, stat'ed and closed without a read: no restore
        fh = fs.open("/p.jpg", os.O_RDONLY)
        assert fs.fstat(fh).st_size == len(photo)
        fs.close(fh)
        fs.vault.cache.clear()
    assert restores == []
    fh = fs.open("/p.jpg", os.O_RDONLY)
    assert fs.read(fh, 0, 100) == photo[:100] and len(restores) == 1
    assert fs.read(fh) == photo and len(restores) == 1  # restored once per open file
    fs.close(fh)


def test_12_damaged_record_is_eio_at_the_first_read(fs):
    """With the restore at the first read, a record that does not authenticate fails
    that read (EIO), never returning a byte; the open itself may succeed."""
    photo = small_jpeg(12, (160, 120))
    fs.write_file("/p.jpg", photo)
    fs.protect_all()
    fs.unmount_remount()
    path = fs.root / "p.jpg"
    data = bytearray(path.read_bytes())
    tag = data.index(b"SISAR")
    data[tag + 200] ^= 0x01  # inside the record's ciphertext: same record id
    path.write_bytes(bytes(data))
    fh = fs.open("/p.jpg", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as e:
            fs.read(fh, 0, 4096)
        assert e.value.errno == errno.EIO
        with pytest.raises(OSError):
            fs.read(fh, 0, 4096)  # still no bytes on a second try
    finally:
        fs.close(fh)
