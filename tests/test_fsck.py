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
