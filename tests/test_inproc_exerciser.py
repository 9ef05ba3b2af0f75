"""In-process tier: a seeded, model-based exerciser of the vault's open-file semantics.

Several descriptors per file (read-only, write-only, read-write, O_APPEND, O_TRUNC),
protection jobs started and committed at random points in between, rename, link,
unlink while open, truncate, page-sized writes, crash (kill -9) and remount. Every read
is checked against a model of what a local disk would return, and the whole tree after
each remount. The CI run does 20,000 operations; `-m slow` soaks 200,000.
"""

from __future__ import annotations

import os
import random

import pytest
from inproc import FS, small_jpeg

from sisafs.fsck import check_vault
from sisafs.vault.index import Index

NAMES = [f"/{n}" for n in ("a.jpg", "b.jpg", "c.png", "d.txt", "e.jpg")] + \
    [f"/sub/{n}" for n in ("f.jpg", "g.txt", "h.jpg")]
ACCESS = [os.O_RDONLY, os.O_WRONLY, os.O_RDWR]


class Model:
    def __init__(self):
        self.files: dict[int, bytearray] = {}
        self.names: dict[str, int] = {}
        self.next = 0

    def new(self, name: str) -> int:
        self.next += 1
        self.files[self.next] = bytearray()
        self.names[name] = self.next
        return self.next


def run_exerciser(tmp_path, seed: int, ops: int) -> dict:
    rnd = random.Random(seed)
    fs = FS(tmp_path / f"vault-{seed}")
    fs.mkdir("/sub")
    m = Model()
    fhs: dict[int, tuple[int, int, bool]] = {}  # fh -> (file id, access, append)
    held: list = []  # started jobs waiting for their commit
    images = [small_jpeg(seed * 100 + i, (32 + 8 * i, 24)) for i in range(4)] + \
        [small_jpeg(seed * 100 + 9, (40, 24), "PNG")]
    counts: dict[str, int] = {}

    def check_tree() -> None:
        for name, fid in m.names.items():
            assert fs.read_file(name) == bytes(m.files[fid]), name

    for step in range(ops):
        op = rnd.choices(
            ["open", "write", "image", "read", "close", "rename", "link", "unlink",
             "truncate", "page", "start", "commit", "crash", "remount"],
            [12, 14, 6, 14, 10, 3, 2, 3, 3, 3, 5, 5, 0.05, 0.1])[0]
        counts[op] = counts.get(op, 0) + 1
        ctx = f"seed {seed} step {step} op {op}"
        if op == "open":
            name = rnd.choice(NAMES)
            acc = rnd.choice(ACCESS)
            flags = acc | (os.O_CREAT if acc != os.O_RDONLY else 0)
            append = acc != os.O_RDONLY and rnd.random() < 0.2
            trunc = acc != os.O_RDONLY and rnd.random() < 0.15
            flags |= (os.O_APPEND if append else 0) | (os.O_TRUNC if trunc else 0)
            if name not in m.names and acc == os.O_RDONLY:
                continue
            fh = fs.open(name, flags)
            fid = m.names.get(name) or m.new(name)
            if trunc:
                m.files[fid][:] = b""
            fhs[fh] = (fid, acc, append)
        elif op in ("write", "image", "page") and fhs:
            fh = rnd.choice(list(fhs))
            fid, acc, append = fhs[fh]
            if acc == os.O_RDONLY:
                with pytest.raises(OSError):
                    fs.write(fh, 0, b"x")
                continue
            data = m.files[fid]
            if op == "image":
                off, buf = 0, rnd.choice(images)
            elif op == "page":
                off, buf = 4096 * rnd.randrange(3), rnd.randbytes(4096)
            else:
                off = rnd.randrange(len(data) + 64)
                buf = rnd.randbytes(rnd.randrange(1, 300))
            if append:
                off = len(data)
            assert fs.write(fh, off, buf) == len(buf), ctx
            if off > len(data):
                data.extend(bytes(off - len(data)))
            data[off:off + len(buf)] = buf
        elif op == "read" and fhs:
            fh = rnd.choice(list(fhs))
            fid, acc, _ = fhs[fh]
            if acc == os.O_WRONLY:
                continue
            off = rnd.randrange(len(m.files[fid]) + 10)
            n = rnd.randrange(1, 5000)
            assert fs.read(fh, off, n) == bytes(m.files[fid][off:off + n]), ctx
        elif op == "close" and fhs:
            fh = rnd.choice(list(fhs))
            fs.close(fh)
            del fhs[fh]
        elif op == "rename" and m.names:
            old, new = rnd.choice(list(m.names)), rnd.choice(NAMES)
            fs.rename(old, new)
            if old != new and m.names[old] != m.names.get(new):
                m.names[new] = m.names.pop(old)
        elif op == "link" and m.names:
            old, new = rnd.choice(list(m.names)), rnd.choice(NAMES)
            if new in m.names:
                continue
            fs.link(old, new)
            m.names[new] = m.names[old]
        elif op == "unlink" and m.names:
            name = rnd.choice(list(m.names))
            fs.unlink(name)
            del m.names[name]
        elif op == "truncate" and m.names:
            name = rnd.choice(list(m.names))
            size = rnd.randrange(len(m.files[m.names[name]]) + 100)
            handles = [fh for fh, (fid, acc, _) in fhs.items()
                       if fid == m.names[name] and acc != os.O_RDONLY]
            if handles and rnd.random() < 0.5:
                fs.ftruncate(rnd.choice(handles), size)
            else:
                fs.truncate(name, size)
            data = m.files[m.names[name]]
            del data[size:]
            data.extend(bytes(size - len(data)))
        elif op == "start":
            commit = fs.start_job()
            if commit is not None:
                held.append(commit)
        elif op == "commit" and held:
            held.pop(rnd.randrange(len(held)))()
        elif op == "crash":
            writers = {fid for fid, acc, _ in fhs.values() if acc != os.O_RDONLY}
            held.clear()
            fhs.clear()
            fs.crash()
            for name, fid in m.names.items():
                got = fs.read_file(name)  # never EIO, never foreign
                if fid in writers:  # an unclosed writer may lose its unsynced tail
                    m.files[fid][:] = got
            check_tree()
            check_fsck(fs)
        elif op == "remount":
            for commit in held:
                commit()
            held.clear()
            for fh in list(fhs):
                fs.close(fh)
            fhs.clear()
            fs.unmount_remount()
            check_tree()
            check_fsck(fs)
    for commit in held:
        commit()
    for fh in list(fhs):
        fs.close(fh)
    fs.unmount_remount()
    check_tree()
    check_fsck(fs)
    return counts


def check_fsck(fs: FS) -> None:
    """The vault index agrees with every file (no false alarm after crashes, renames,
    links, commits), and so does every block and record."""
    report = check_vault(str(fs.root.resolve()), fs.vault.keys,
                         index=Index.load(str(fs.root.resolve()), fs.vault.keys))
    assert report.damaged == [], report.damaged


@pytest.mark.parametrize("seed", range(4))
def test_exerciser(tmp_path, seed):
    counts = run_exerciser(tmp_path, seed, 5000)
    assert counts.get("commit", 0) > 50 and counts.get("remount", 0) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 110))
def test_exerciser_soak(tmp_path, seed):
    run_exerciser(tmp_path, seed, 20_000)
