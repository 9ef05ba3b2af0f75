"""Tamper suite, whole-file rows (issue 10): an attacker who can write the backing
directory cuts, zeroes, replays, rolls back, swaps, deletes and adds files, and swaps
xattr values. Each attack gives EIO on read and an fsck finding naming the file;
the vault index itself refuses to load if deleted or forged. Tier: in-process (the
filesystem operations and the vault, no FUSE)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from inproc import FS, _call, small_jpeg

from sisafs.crypto.blockfile import HEADER_SIZE, SLOT
from sisafs.errors import ConfigError
from sisafs.fsck import check_vault
from sisafs.vault.index import Index, IndexTampered
from sisafs.vault.layout import INDEX_JOURNAL, INDEX_NAME, PRIVATE_DIR

DOC = bytes(range(256)) * 64  # 16 KiB: four blocks


class Vault:
    """A vault with two documents, two protected photos and one xattr each; copies of
    every backing file as it was before the last change (an attacker's old copies)."""

    def __init__(self, root: Path):
        self.fs = FS(root)
        fs = self.fs
        fs.write_file("/a.bin", DOC)
        fs.write_file("/b.bin", DOC[::-1])
        fs.write_file("/p.jpg", small_jpeg(1, (160, 120)))
        fs.write_file("/q.jpg", small_jpeg(2, (160, 120)))
        fs.protect_all()
        fs.unmount_remount()
        self.old = {n: (root / n).read_bytes() for n in ("a.bin", "b.bin", "p.jpg", "q.jpg")}
        # The current versions: a.bin rewritten in place, p.jpg replaced and protected.
        fh = fs.open("/a.bin", os.O_WRONLY)
        fs.write(fh, 4096, b"N" * 4096)
        fs.close(fh)
        fs.write_file("/p.jpg", small_jpeg(3, (160, 120)))
        fs.protect_all()
        for n in ("a.bin", "b.bin"):
            fs.ops.vault.names.setxattr(fs.ino("/" + n), b"user.tag", n.encode())
        fs.unmount_remount()
        self.root = root

    def backing(self, name: str) -> Path:
        return self.root / name

    def read(self, name: str) -> bytes:
        self.fs.unmount_remount()  # a fresh open, as after a remount
        return self.fs.read_file("/" + name)

    def fsck(self) -> dict[str, str]:
        root = str(self.root.resolve())
        report = check_vault(root, self.fs.vault.keys,
                             index=Index.load(root, self.fs.vault.keys))
        return {f.path: f.problem for f in report.damaged}


@pytest.fixture
def v(tmp_path) -> Vault:
    return Vault(tmp_path / "vault")


def _eio(v: Vault, name: str) -> None:
    with pytest.raises(OSError) as e:
        v.read(name)
    assert e.value.errno == errno.EIO


def test_untouched_vault_reads_back_and_is_clean(v):
    assert v.read("b.bin") == DOC[::-1]
    assert v.read("a.bin") == DOC[:4096] + b"N" * 4096 + DOC[8192:]
    assert v.fsck() == {}


@pytest.mark.parametrize("length", [0, HEADER_SIZE, HEADER_SIZE + SLOT, HEADER_SIZE + 100,
                                    "minus1"])
def test_truncation_to_any_length(v, length):
    p = v.backing("b.bin")
    os.truncate(p, p.stat().st_size - 1 if length == "minus1" else length)
    _eio(v, "b.bin")
    found = v.fsck()
    assert list(found) == ["b.bin"]
    if length == 0:
        assert "cut to 0 bytes" in found["b.bin"]


def test_truncated_protected_image(v):
    p = v.backing("q.jpg")
    os.truncate(p, 0)
    _eio(v, "q.jpg")
    assert "cut to 0 bytes" in v.fsck()["q.jpg"]


def test_zeroed_block(v):
    p = v.backing("b.bin")
    with open(p, "r+b") as f:
        f.seek(HEADER_SIZE + SLOT)
        f.write(bytes(SLOT))
    _eio(v, "b.bin")
    assert list(v.fsck()) == ["b.bin"]


def test_replayed_block(v):
    p = v.backing("a.bin")
    old = v.old["a.bin"][HEADER_SIZE + SLOT : HEADER_SIZE + 2 * SLOT]
    with open(p, "r+b") as f:
        f.seek(HEADER_SIZE + SLOT)
        f.write(old)
    _eio(v, "a.bin")
    assert "not the version sisafs last wrote" in v.fsck()["a.bin"]


def test_replayed_header(v):
    """The header of a shorter earlier version (same file id) put back."""
    fs = v.fs
    fh = fs.open("/b.bin", os.O_WRONLY | os.O_APPEND)
    fs.write(fh, len(DOC), b"tail" * 1000)
    fs.close(fh)
    fs.unmount_remount()
    p = v.backing("b.bin")
    with open(p, "r+b") as f:
        f.write(v.old["b.bin"][:HEADER_SIZE])
    _eio(v, "b.bin")
    assert "old header put back" in v.fsck()["b.bin"]


@pytest.mark.parametrize("name", ["a.bin", "p.jpg"])
def test_rolled_back_file(v, name):
    v.backing(name).write_bytes(v.old[name])
    _eio(v, name)
    assert list(v.fsck()) == [name]


def test_file_copied_over_another(v):
    shutil.copyfile(v.backing("a.bin"), v.backing("b.bin"))
    _eio(v, "b.bin")
    assert "holds the file stored as a.bin" in v.fsck()["b.bin"]
    shutil.copyfile(v.backing("p.jpg"), v.backing("q.jpg"))
    assert "holds the file stored as p.jpg" in v.fsck()["q.jpg"]


def test_deleted_and_added_files(v):
    os.unlink(v.backing("q.jpg"))
    shutil.copyfile(v.backing("a.bin"), v.backing("copy.bin"))
    (v.root / "foreign.txt").write_bytes(b"put there by someone else")
    found = v.fsck()
    assert "deleted" in found["q.jpg"]
    assert "added behind sisafs's back" in found["copy.bin"]
    assert "foreign.txt" in found
    _eio(v, "copy.bin")


def test_swapped_xattr_values(v):
    a, b = v.backing("a.bin"), v.backing("b.bin")
    va = os.getxattr(a, "user.sisafs.x.tag")
    vb = os.getxattr(b, "user.sisafs.x.tag")
    os.setxattr(a, "user.sisafs.x.tag", vb)
    os.setxattr(b, "user.sisafs.x.tag", va)
    v.fs.unmount_remount()
    with pytest.raises(OSError) as e:
        _call(v.fs.ops.getxattr, v.fs.ino("/a.bin"), b"user.tag", v.fs.ctx)
    assert e.value.errno == errno.EIO
    found = v.fsck()
    assert "xattr user.tag" in found["a.bin"] and "xattr user.tag" in found["b.bin"]


def test_xattrs_follow_a_protection_commit(tmp_path):
    fs = FS(tmp_path / "vault")
    fs.write_file("/x.jpg", small_jpeg(5, (160, 120)))
    fs.ops.vault.names.setxattr(fs.ino("/x.jpg"), b"user.where", b"home")
    fs.protect_all()
    fs.unmount_remount()
    assert fs.vault.is_protected(fs.ino("/x.jpg"))
    assert fs.ops.vault.names.getxattr(fs.ino("/x.jpg"), b"user.where") == b"home"


def test_index_deleted_or_forged_refuses_the_vault(v):
    private = v.root / PRIVATE_DIR
    snapshot = (private / INDEX_NAME).read_bytes()
    assert issubclass(IndexTampered, ConfigError)  # exit 11
    (private / INDEX_NAME).unlink()
    with pytest.raises(IndexTampered, match="missing"):
        Index.load(str(v.root), v.fs.vault.keys)
    (private / INDEX_NAME).write_bytes(snapshot[:-1] + bytes([snapshot[-1] ^ 1]))
    with pytest.raises(IndexTampered, match="does not authenticate"):
        Index.load(str(v.root), v.fs.vault.keys)


def test_journal_records_cannot_be_edited_or_reordered(v):
    fs = v.fs
    fs.write_file("/c.bin", b"c")
    fs.write_file("/d.bin", b"d")
    # No clean unmount: the journal holds this session's records.
    j = (v.root / PRIVATE_DIR / INDEX_JOURNAL).read_bytes()
    assert len(j) > 16
    n = int.from_bytes(j[16:20], "big")
    rest = j[20 + n:]
    swapped = j[:16] + rest[: 4 + int.from_bytes(rest[:4], "big")] + j[16 : 20 + n]
    (v.root / PRIVATE_DIR / INDEX_JOURNAL).write_bytes(swapped + j[len(swapped):])
    with pytest.raises(IndexTampered, match="journal"):
        Index.load(str(v.root), fs.vault.keys)


def test_crash_mid_write_is_not_taken_for_tampering(v):
    fs = v.fs
    fh = fs.open("/b.bin", os.O_WRONLY)
    fs.write(fh, 100, b"x" * 5000)
    fs.crash()
    assert v.fsck() == {}
    got = fs.read_file("/b.bin")
    assert len(got) == len(DOC)


def test_whole_vault_put_back_is_refused_on_a_machine_that_saw_it_newer(v):
    """Config, index and every file rolled back together: nothing inside the vault can
    tell, but this machine pinned the index generation it last saw."""
    old_copy = v.root.parent / "old"
    v.fs.session.close()
    shutil.copytree(v.root, old_copy)
    v.fs._mount()
    v.fs.write_file("/new.bin", b"later")
    v.fs.unmount_remount()
    shutil.rmtree(v.root)
    shutil.copytree(old_copy, v.root)
    with pytest.raises(IndexTampered, match="put back to an earlier copy"):
        Index.load(str(v.root), v.fs.vault.keys)


@pytest.mark.parametrize("end", ["remount", "crash"])
def test_no_false_alarm_for_directory_renames_links_and_replacing_renames(tmp_path, end):
    """Namespace changes the index must follow: a directory renamed with files below
    it, a rename over an existing file (an editor's save), a hard link and an unlink,
    an empty file made by mknod."""
    import stat as st_

    from inproc import _call

    fs = FS(tmp_path / "vault")
    fs.mkdir("/d")
    fs.mkdir("/d/e")
    fs.write_file("/d/e/x.bin", b"x" * 5000)
    fs.write_file("/d/y.jpg", small_jpeg(7, (96, 64)))
    fs.write_file("/keep.txt", b"old")
    fs.protect_all()
    fs.rename("/d", "/moved")
    fs.write_file("/.keep.txt.swp", b"new content")
    fs.rename("/.keep.txt.swp", "/keep.txt")
    fs.link("/moved/e/x.bin", "/x-link.bin")
    fh = fs.open("/x-link.bin", os.O_WRONLY)
    fs.write(fh, 0, b"L")
    fs.close(fh)
    fs.unlink("/moved/e/x.bin")
    parent, name = fs._parent("/empty")
    _call(fs.ops.mknod, parent, name, st_.S_IFREG | 0o644, 0, fs.ctx)
    if end == "crash":
        fs.crash()
    else:
        fs.unmount_remount()
    assert fs.read_file("/moved/y.jpg") == small_jpeg(7, (96, 64))
    assert fs.read_file("/keep.txt") == b"new content"
    assert fs.read_file("/x-link.bin") == b"L" + b"x" * 4999
    assert fs.read_file("/empty") == b""
    root = str(fs.root.resolve())
    report = check_vault(root, fs.vault.keys, index=Index.load(root, fs.vault.keys))
    assert report.damaged == []


@pytest.mark.parametrize("failing", [1, 2])
def test_a_journal_append_that_fails_leaves_no_torn_record(tmp_path, monkeypatch, failing):
    """A full disk during a journal append (the create's first or second record: the
    new name, then its id with "being written", one record since issue 11): the
    create is refused and leaves no file, and the records after it still replay (a
    torn record in the middle would read as forged)."""
    fs = FS(tmp_path / "vault")
    fs.write_file("/a.bin", b"a")
    real_write = os.write
    calls = {"n": 0}

    def short_once(fd, data):
        if fd == fs.vault.index._jfd:
            calls["n"] += 1
            if calls["n"] == failing:
                real_write(fd, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short_once)
    with pytest.raises(OSError) as e:
        fs.write_file("/b.bin", b"b")
    assert e.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "write", real_write)
    assert not (fs.root / "b.bin").exists() and fs.vault._open == {}
    fs.write_file("/c.bin", b"c")
    root = str(fs.root.resolve())
    report = check_vault(root, fs.vault.keys, index=Index.load(root, fs.vault.keys))
    assert report.damaged == []  # replays (no torn record), and no trace of b.bin
    fs.crash()
    assert fs.read_file("/a.bin") == b"a" and fs.read_file("/c.bin") == b"c"


def test_xattrs_of_an_empty_file_follow_it_becoming_a_block_file(tmp_path):
    import stat as st_

    fs = FS(tmp_path / "vault")
    parent, name = fs._parent("/e")
    _call(fs.ops.mknod, parent, name, st_.S_IFREG | 0o644, 0, fs.ctx)
    fs.ops.vault.names.setxattr(fs.ino("/e"), b"user.k", b"v")
    fh = fs.open("/e", os.O_WRONLY)
    fs.write(fh, 0, b"now a block file")
    fs.close(fh)
    fs.unmount_remount()
    assert fs.ops.vault.names.getxattr(fs.ino("/e"), b"user.k") == b"v"
    assert fs.read_file("/e") == b"now a block file"


def test_upgrade_adopts_an_unindexed_vault_and_binds_its_xattrs(tmp_path):
    """What `sisafs upgrade` does to a vault from before the index: every file adopted
    as it is, xattr values sealed again for their file's id, and from then on the
    index checks hold (here: a swap of the two files is found)."""
    from sisafs.vault.integrity import adopt_tree

    root = tmp_path / "vault"
    old = FS(root, integrity=False)
    old.write_file("/a.bin", b"a" * 5000)
    old.write_file("/b.jpg", small_jpeg(4, (96, 64)))
    old.protect_all()
    old.ops.vault.names.setxattr(old.ino("/a.bin"), b"user.note", b"kept")
    old.session.close()
    (root / PRIVATE_DIR).mkdir(exist_ok=True)
    idx = adopt_tree(str(root.resolve()), old.vault.keys, set(), bind_xattrs=True)
    assert sorted(idx.paths) == ["a.bin", "b.jpg"]
    idx.close()
    fs = FS(root, master=old.master, settings=old.settings, integrity=True)
    assert fs.read_file("/a.bin") == b"a" * 5000
    assert fs.read_file("/b.jpg") == small_jpeg(4, (96, 64))
    assert fs.ops.vault.names.getxattr(fs.ino("/a.bin"), b"user.note") == b"kept"
    fs.session.close()
    shutil.copyfile(root / "b.jpg", root / "a.bin")
    r = str(root.resolve())
    found = {f.path: f.problem for f in
             check_vault(r, fs.vault.keys, index=Index.load(r, fs.vault.keys)).damaged}
    assert "holds the file stored as b.jpg" in found["a.bin"]
