"""Bulk mode (`sisafs protect --recursive`) through the real CLI.

What matters: the backing tree is exactly what the mount would have produced (a later
mount reads every file back byte-exact), a killed run loses nothing and a re-run redoes
nothing that was complete, and bulk mode never writes under a live mount.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import needs_fuse
from helpers import PASSPHRASE, SISAFS, Vault, corpus_images, run, sha256, wait_for
from PIL import Image

from sisafs.crypto.blockfile import FLAG_FAILED, FLAG_PENDING
from sisafs.vault.config import VaultConfig
from sisafs.vault.keys import VaultKeys
from sisafs.vault.layout import TMP_PREFIX
from sisafs.vault.store import Kind, probe_fd, read_plaintext


def make_tree(root: Path, images: list[Path]) -> dict[str, str]:
    """A source tree: the images in two levels plus the awkward cases; rel -> sha256."""
    for i, img in enumerate(images):
        d = root / "photos" / ("2024" if i % 2 else "2025")
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(img, d / img.name)
    (root / "docs").mkdir()
    (root / "docs" / "notes.txt").write_text("not an image, stored encrypted whole\n" * 50)
    (root / "empty.bin").write_bytes(b"")
    (root / "docs" / "text-named.png").write_text("a text file named .png\n")
    (root / "docs" / "truncated.jpg").write_bytes(images[0].read_bytes()[:2000])
    os.symlink("docs/notes.txt", root / "notes-link")
    return {str(p.relative_to(root)): sha256(p) for p in root.rglob("*")
            if p.is_file() and not p.is_symlink()}


def bulk(v: Vault, src: Path, *extra: str, check: bool = True) -> dict:
    res = run("protect", "--recursive", str(src), "--vault", str(v.dir), "--passfile",
              str(v.passfile), "--json", *extra, check=check, timeout=900)
    return json.loads(res.stdout) if res.returncode in (0, 1) else {"rc": res.returncode,
                                                                       "stderr": res.stderr}


def vault_keys(v: Vault) -> VaultKeys:
    return VaultKeys.from_master(VaultConfig.load(v.dir).unlock(PASSPHRASE.encode()))


def plaintext(keys: VaultKeys, path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_plaintext(fd, keys)
    finally:
        os.close(fd)


@needs_fuse
def test_bulk_corpus_then_mount_reads_back_exact(vault, corpus, tmp_path):
    images = corpus_images()
    src = tmp_path / "src"
    want = make_tree(src, images)
    summary = bulk(vault, src, "--workers", "2")
    assert summary["total"] == len(want) + 1  # + the symlink
    assert summary["protected"] == len(images)
    assert summary["failed"] and sum(summary["failed"].values()) == 1  # truncated.jpg
    assert summary["encrypted_whole"] == 3 and summary["links"] == 1
    assert not summary["errors"]

    keys = vault_keys(vault)
    for rel in want:
        backing = vault.dir / rel
        fd = os.open(backing, os.O_RDONLY)
        try:
            probe = probe_fd(fd, keys)
        finally:
            os.close(fd)
        if rel.startswith("photos/"):
            assert probe.kind is Kind.PROTECTED, rel
            with Image.open(backing) as im, Image.open(src / rel) as orig:
                assert im.size == orig.size
            assert sha256(backing) != want[rel]
        else:
            assert probe.kind is Kind.BLOCK, rel
        if rel == "docs/truncated.jpg":
            assert probe.flags & FLAG_FAILED
        assert os.stat(backing).st_mtime_ns == os.stat(src / rel).st_mtime_ns
    assert b"stored encrypted whole" not in (vault.dir / "docs/notes.txt").read_bytes()
    assert os.readlink(vault.dir / "notes-link") == "docs/notes.txt"

    vault.mount()
    try:
        refused = run("protect", "--recursive", str(src), "--vault", str(vault.dir),
                      "--passfile", str(vault.passfile), check=False)
        assert refused.returncode == 12 and "busy" in refused.stderr
        got = {rel: sha256(vault.mnt / rel) for rel in want}
        assert got == want
        assert (vault.mnt / "notes-link").read_bytes() == (src / "docs/notes.txt").read_bytes()
    finally:
        vault.unmount()

    again = bulk(vault, src)
    assert again["skipped"] == again["total"] and again["protected"] == 0


def test_bulk_killed_then_resumed(tmp_path, corpus):
    """kill -9 in the middle: every final name holds a complete file, the re-run skips
    exactly those, finishes the rest, and leaves no temp file behind."""
    images = [p for p in corpus_images() if p.stat().st_size < 600_000][:10]
    v = Vault(tmp_path)
    src = tmp_path / "src"
    want = make_tree(src, images)
    photos = [rel for rel in want if rel.startswith("photos/")]
    proc = subprocess.Popen([*SISAFS, "protect", "--recursive", str(src), "--vault",
                             str(v.dir), "--passfile", str(v.passfile), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for(lambda: sum((v.dir / r).exists() for r in photos) >= 3, timeout=300,
                 what="three protected photos")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(0.5)  # let the killed workers go
    before = {rel: os.stat(v.dir / rel) for rel in want if (v.dir / rel).exists()}
    assert 3 <= sum(r in before for r in photos) < len(photos)

    keys = vault_keys(v)
    staged = set()  # images the killed run staged but had not protected yet
    for rel in before:
        fd = os.open(v.dir / rel, os.O_RDONLY)
        try:
            p = probe_fd(fd, keys)
        finally:
            os.close(fd)
        if p.kind is Kind.BLOCK and p.flags & FLAG_PENDING:
            staged.add(rel)
    summary = bulk(v, src, "--workers", "2")
    done_before = len(before) - len(staged)
    assert summary["skipped"] == done_before + ("notes-link" in os.listdir(v.dir))
    assert summary["skipped"] + summary["protected"] + summary["encrypted_whole"] \
        + summary["links"] + sum(summary["failed"].values()) == summary["total"]
    for rel, st in before.items():  # not redone: same inode, same mtime
        now = os.stat(v.dir / rel)
        if rel in staged:  # finished from what was staged, not read again
            assert now.st_mtime_ns == st.st_mtime_ns, rel
            continue
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), rel
    for rel, digest in want.items():
        assert sha256_bytes(plaintext(keys, v.dir / rel)) == digest, rel
    assert not [p for p in v.dir.rglob(f"{TMP_PREFIX}*")]
    assert not list((v.dir / ".sisafs" / "tmp").glob("*"))


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_bulk_usage_errors(tmp_path):
    v = Vault(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    res = run("protect", "--recursive", str(src), "--passfile", str(v.passfile), check=False)
    assert res.returncode == 2 and "--vault" in res.stderr
    res = run("protect", "--recursive", str(tmp_path / "nope"), "--vault", str(v.dir),
              "--passfile", str(v.passfile), check=False)
    assert res.returncode == 16
    res = run("protect", "--recursive", str(v.dir), "--vault", str(v.dir),
              "--passfile", str(v.passfile), check=False)
    assert res.returncode == 16 and "contain" in res.stderr
    res = run("protect", "--recursive", str(src), "--vault", str(v.dir), "--passfile",
              str(v.passfile), "--ray-address", "127.0.0.1:1", check=False)
    assert res.returncode == 2 and "--executor ray" in res.stderr


@pytest.mark.parametrize("pid_alive", [True, False])
def test_bulk_refuses_vault_with_live_daemon_marker(tmp_path, pid_alive):
    """A daemon from before the lock existed only leaves its pid in .sisafs/mounted."""
    v = Vault(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("x")
    private = v.dir / ".sisafs"
    private.mkdir(exist_ok=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pid = sleeper.pid if pid_alive else 2 ** 22 + 12345
        (private / "mounted").write_text(str(pid))
        res = run("protect", "--recursive", str(src), "--vault", str(v.dir), "--passfile",
                  str(v.passfile), check=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    if pid_alive:
        assert res.returncode == 12 and "mounted" in res.stderr
    else:
        assert res.returncode == 0, res.stderr


def test_bulk_retry_failed(tmp_path, corpus):
    """Failed images count as done (they are stored, encrypted whole) unless asked."""
    v = Vault(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "truncated.jpg").write_bytes(corpus_images()[0].read_bytes()[:2000])
    (src / "notes.txt").write_text("x")
    first = bulk(v, src, "--workers", "1")
    assert sum(first["failed"].values()) == 1 and first["encrypted_whole"] == 1
    assert bulk(v, src)["skipped"] == 2
    retried = bulk(v, src, "--workers", "1", "--retry-failed")
    assert sum(retried["failed"].values()) == 1 and retried["skipped"] == 1
