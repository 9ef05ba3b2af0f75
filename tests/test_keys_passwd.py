"""`sisafs passwd`: the old passphrase stops working, the new one works, and nothing but
the key slot changes: files written before read back exactly through a real mount."""

from __future__ import annotations

import json
import shutil

from conftest import needs_fuse
from helpers import corpus_images, run, sha256

pytestmark = needs_fuse

NOTE = b"written before the passphrase changed\n" * 100


def _backing_hashes(vault) -> dict[str, str]:
    return {p.relative_to(vault.dir).as_posix(): sha256(p) for p in vault.backing_files()}


def test_passwd_rewraps_only_the_key(vault, corpus, tmp_path):
    photo = next(p for p in corpus_images() if p.name == "fr_rose_leslie_img1.jpg")
    vault.mount("--workers", "1")
    shutil.copyfile(photo, vault.mnt / "photo.jpg")
    (vault.mnt / "note.txt").write_bytes(NOTE)
    vault.unmount()
    before_files = _backing_hashes(vault)
    conf = vault.dir / "sisafs.conf"
    before = json.loads(conf.read_text())

    new = tmp_path / "new-pass"
    new.write_text("a much better passphrase\n")
    out = run("passwd", str(vault.dir), "--passfile", str(vault.passfile),
              "--new-passfile", str(new)).stdout
    assert "Changed the passphrase" in out

    after = json.loads(conf.read_text())
    assert after["wrapped_key"] != before["wrapped_key"]
    assert after["kdf"]["salt"] != before["kdf"]["salt"]
    for key in ("settings", "feature_flags", "created", "format", "version"):
        assert after[key] == before[key], key
    assert _backing_hashes(vault) == before_files, "passwd rewrote data"

    res = run("mount", str(vault.dir), str(vault.mnt), "--passfile", str(vault.passfile),
              check=False)
    assert res.returncode == 10 and "wrong passphrase" in res.stderr
    vault.passfile.write_text(new.read_text())
    vault.mount()
    try:
        assert (vault.mnt / "photo.jpg").read_bytes() == photo.read_bytes()
        assert (vault.mnt / "note.txt").read_bytes() == NOTE
    finally:
        vault.unmount()


def test_passwd_refuses_wrong_old_passphrase_and_changes_nothing(vault, tmp_path):
    bad, new = tmp_path / "bad", tmp_path / "new"
    bad.write_text("not it\n")
    new.write_text("new one\n")
    conf = vault.dir / "sisafs.conf"
    before = conf.read_bytes()
    res = run("passwd", str(vault.dir), "--passfile", str(bad), "--new-passfile", str(new),
              check=False)
    assert res.returncode == 10
    assert conf.read_bytes() == before
    empty = tmp_path / "empty"
    empty.write_text("\n")
    res = run("passwd", str(vault.dir), "--passfile", str(vault.passfile),
              "--new-passfile", str(empty), check=False)
    assert res.returncode == 10 and "empty passphrase" in res.stderr
    assert conf.read_bytes() == before
