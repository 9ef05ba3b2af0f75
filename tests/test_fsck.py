"""`sisafs fsck`: every kind of damage is found and named, a clean vault exits 0, and
the check never writes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import needs_fuse
from helpers import CORPUS, SISAFS, run

pytestmark = needs_fuse

TEXT = b"meeting notes, do not share\n" * 400


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A vault with a protected image, a failed image, text files, an xattr; unmounted."""
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    from helpers import Vault

    v = Vault(tmp_path_factory.mktemp("fsck"))
    for kv in ("detectors.text=false", "detectors.people=false", "detectors.identity=false"):
        run("config", str(v.dir), "--set", kv)
    v.mount("--workers", "1")
    shutil.copyfile(CORPUS / "fr_obama.jpg", v.mnt / "photo.jpg")
    (v.mnt / "broken.jpg").write_bytes((CORPUS / "fr_obama.jpg").read_bytes()[:4000])
    for name in ("a.txt", "b.txt", "c.txt", "d.txt", "e.txt"):
        (v.mnt / name).write_bytes(TEXT)
    (v.mnt / "dir").mkdir()
    (v.mnt / "dir" / "f.txt").write_bytes(TEXT[:10])
    os.setxattr(v.mnt / "a.txt", "user.tag", b"x")
    (v.mnt / "empty").write_bytes(b"")
    v.unmount()
    return v


def _fsck(v, *extra):
    return run("fsck", str(v.dir), "--passfile", str(v.passfile), *extra, check=False)


def test_clean_vault_exits_zero(populated):
    res = _fsck(populated, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["clean"] and report["protected"] == 1 and report["failed"] == 1
    # broken.jpg, 5 texts, dir/f.txt and the empty file are encrypted whole
    assert report["files"] == 9 and report["block_files"] == 8 and not report["damaged"]


def test_every_kind_of_damage_is_found(populated, tmp_path):
    damaged = tmp_path / "copy"
    shutil.copytree(populated.root, damaged, symlinks=True)
    vdir = damaged / "vault"
    # a bit flipped inside a block, a file cut short, a header edited, a foreign file,
    # a protected image with one altered byte, a sealed xattr replaced
    a = bytearray((vdir / "a.txt").read_bytes())
    a[5000] ^= 1
    (vdir / "a.txt").write_bytes(bytes(a))
    b = (vdir / "b.txt").read_bytes()
    (vdir / "b.txt").write_bytes(b[: len(b) - 4200])
    c = bytearray((vdir / "c.txt").read_bytes())
    c[30] ^= 0xFF  # the size field of the MAC'd header
    (vdir / "c.txt").write_bytes(bytes(c))
    (vdir / "dir" / "planted.txt").write_bytes(b"plain text put behind the vault's back")
    p = bytearray((vdir / "photo.jpg").read_bytes())
    p[-200] ^= 1
    (vdir / "photo.jpg").write_bytes(bytes(p))
    os.setxattr(vdir / "d.txt", "user.sisafs.x.tag", b"\0" * 40)
    before = {f: f.read_bytes() for f in vdir.rglob("*") if f.is_file()}

    res = subprocess.run([*SISAFS, "fsck", str(vdir), "--passfile",
                          str(damaged / "pass")], capture_output=True, text=True)
    assert res.returncode == 18, res.stdout + res.stderr
    damaged_names = {line.split()[1].rstrip(":") for line in res.stdout.splitlines()
                     if line.strip().startswith("DAMAGED")}
    assert damaged_names == {"a.txt", "b.txt", "c.txt", "dir/planted.txt", "photo.jpg",
                             "d.txt"}
    after = {f: f.read_bytes() for f in vdir.rglob("*") if f.is_file()}
    assert after == before, "fsck must never write"


def test_wrong_passphrase_is_not_damage(populated, tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("not the passphrase\n")
    res = run("fsck", str(populated.dir), "--passfile", str(bad), check=False)
    assert res.returncode == 10


V1 = Path(__file__).parent / "fixtures" / "vaults" / "v1"
V1_FILES = {
    "note.txt": hashlib.sha256(b"a note kept since format v1\n").hexdigest(),
    "album/tiny.png": "496a0fa77d9315a05ba11d78c214a32219586e6d7c1544eca9ab23f90d2a8e98",
    "album/tiny.jpg": "bb4e6d66f1e5956ecd501b95c65701b1a1c279ddaa9e788561531dc6d35bd884",
    "link.png": "496a0fa77d9315a05ba11d78c214a32219586e6d7c1544eca9ab23f90d2a8e98",
}


def test_frozen_v1_vault_still_mounts_and_checks_clean(tmp_path):
    vdir = tmp_path / "v1"
    shutil.copytree(V1, vdir, symlinks=True)  # mounting writes .sisafs/ inside
    pw = tmp_path / "pass"
    pw.write_text("frozen fixture\n")
    res = run("fsck", str(vdir), "--passfile", str(pw), "--json", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["protected"] == 2
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run("mount", str(vdir), str(mnt), "--passfile", str(pw), "--workers", "1")
    try:
        for rel, digest in V1_FILES.items():
            assert hashlib.sha256((mnt / rel).read_bytes()).hexdigest() == digest, rel
    finally:
        run("unmount", str(mnt))


def test_index_findings_and_refusals_through_a_real_mount(populated, tmp_path):
    """The vault index end to end: a file copied over another's name and a deleted file
    are named by fsck; through a mount the copy reads EIO while the rest reads back;
    a vault whose index was deleted is refused by mount with exit 11."""
    import errno

    copy = tmp_path / "copy"
    shutil.copytree(populated.root, copy, symlinks=True)
    vdir = copy / "vault"
    pw = ["--passfile", str(copy / "pass")]
    shutil.copyfile(vdir / "a.txt", vdir / "e.txt")
    (vdir / "dir" / "f.txt").unlink()
    res = run("fsck", str(vdir), *pw, check=False)
    assert res.returncode == 18, res.stdout + res.stderr
    assert "DAMAGED e.txt: holds the file stored as a.txt" in res.stdout
    assert "DAMAGED dir/f.txt: deleted behind sisafs's back" in res.stdout
    mnt = copy / "mnt"
    mnt.mkdir(exist_ok=True)
    run("mount", str(vdir), str(mnt), *pw, "--workers", "1")
    try:
        with pytest.raises(OSError) as e:
            (mnt / "e.txt").read_bytes()
        assert e.value.errno == errno.EIO
        assert (mnt / "b.txt").read_bytes() == TEXT
        out = run("status", str(mnt)).stdout
        assert "refused (EIO)" in out and "e.txt: holds the file stored as a.txt" in out, out
    finally:
        run("unmount", str(mnt))
    (vdir / ".sisafs" / "index").unlink()
    res = run("mount", str(vdir), str(mnt), *pw, check=False)
    assert res.returncode == 11 and "index (.sisafs/index) is missing" in res.stderr, \
        res.stderr


V2 = Path(__file__).parent / "fixtures" / "vaults" / "v2"
V2_FILES = {
    "note.txt": hashlib.sha256(b"a note kept since format v2 (vault index)\n").hexdigest(),
    "album/tiny.jpg": "ddb5582067180a0110de2217dc6e3aa9a48acadabc8d14392e4c0d24f8d6ef89",
    "album/tiny.png": "8b9d45d056dde169f97800844aba745447e97d991649e8f9b5b5c0ad0720a724",
    "link.png": "8b9d45d056dde169f97800844aba745447e97d991649e8f9b5b5c0ad0720a724",
}


def test_frozen_v2_vault_with_index_mounts_and_checks_clean(tmp_path):
    vdir = tmp_path / "v2"
    shutil.copytree(V2, vdir, symlinks=True)
    pw = tmp_path / "pass"
    pw.write_text("frozen fixture v2\n")
    for _ in range(2):  # before and after a mount rewrote the index
        res = run("fsck", str(vdir), "--passfile", str(pw), "--json", check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        report = json.loads(res.stdout)
        assert report["indexed"] and report["protected"] == 2 and report["files"] == 3
        mnt = tmp_path / "mnt"
        mnt.mkdir(exist_ok=True)
        run("mount", str(vdir), str(mnt), "--passfile", str(pw), "--workers", "1")
        try:
            for rel, digest in V2_FILES.items():
                assert hashlib.sha256((mnt / rel).read_bytes()).hexdigest() == digest, rel
        finally:
            run("unmount", str(mnt))
