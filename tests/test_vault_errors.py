"""Bad input gets a clear message and its documented exit code, and changes nothing."""

from __future__ import annotations

import json
import os

import pytest
from conftest import needs_fuse
from helpers import run, sha256

from sisafs.errors import FuseUnavailableError


def test_wrong_passphrase_is_exit_10_and_touches_nothing(vault):
    bad = vault.root / "bad"
    bad.write_text("not it\n")
    conf = vault.dir / "sisafs.conf"
    before = (sha256(conf), conf.stat().st_mtime_ns)
    res = run("mount", str(vault.dir), str(vault.mnt), "--passfile", str(bad), check=False)
    assert res.returncode == 10
    assert "wrong passphrase" in res.stderr
    assert not os.path.ismount(vault.mnt)
    assert (sha256(conf), conf.stat().st_mtime_ns) == before


def test_missing_vault_and_config(tmp_path, vault):
    res = run("mount", str(tmp_path / "nope"), str(vault.mnt), "--passfile",
              str(vault.passfile), check=False)
    assert res.returncode == 11 and "no such vault" in res.stderr
    (vault.dir / "sisafs.conf").unlink()
    res = run("mount", str(vault.dir), str(vault.mnt), "--passfile", str(vault.passfile),
              check=False)
    assert res.returncode == 11 and "missing" in res.stderr


@pytest.mark.parametrize("damage", ["truncated", "not json", "unknown flag", "future version",
                                    "bad key field"])
def test_corrupt_config_is_exit_11(vault, damage):
    conf = vault.dir / "sisafs.conf"
    text = conf.read_text()
    d = json.loads(text)
    if damage == "truncated":
        conf.write_text(text[: len(text) // 2])
    elif damage == "not json":
        conf.write_text("hello")
    elif damage == "unknown flag":
        d["feature_flags"].append("quantum-v9")
        conf.write_text(json.dumps(d))
    elif damage == "future version":
        d["version"] = 99
        conf.write_text(json.dumps(d))
    else:
        del d["wrapped_key"]
        conf.write_text(json.dumps(d))
    res = run("mount", str(vault.dir), str(vault.mnt), "--passfile", str(vault.passfile),
              check=False)
    assert res.returncode == 11, res.stderr
    assert "sisafs.conf" in res.stderr
    if damage == "unknown flag":
        assert "quantum-v9" in res.stderr


def test_mountpoint_errors_are_exit_12(vault, tmp_path):
    args = ["--passfile", str(vault.passfile)]
    res = run("mount", str(vault.dir), str(tmp_path / "missing"), *args, check=False)
    assert res.returncode == 12 and "does not exist" in res.stderr
    (vault.mnt / "already-here.txt").write_text("x")
    res = run("mount", str(vault.dir), str(vault.mnt), *args, check=False)
    assert res.returncode == 12 and "not empty" in res.stderr
    f = tmp_path / "file"
    f.write_text("x")
    res = run("mount", str(vault.dir), str(f), *args, check=False)
    assert res.returncode == 12 and "not a directory" in res.stderr


@needs_fuse
def test_already_mounted_is_exit_12(vault):
    vault.mount()
    other = vault.root / "other"
    other.mkdir()
    res = run("mount", str(vault.dir), str(vault.mnt), "--passfile", str(vault.passfile),
              check=False)
    assert res.returncode == 12
    vault.unmount()


def test_no_dev_fuse_is_exit_13(monkeypatch):
    from sisafs.fs import mount

    real_stat = os.stat

    def fake_stat(path, *a, **kw):
        if path == "/dev/fuse":
            raise FileNotFoundError(2, "No such file or directory", path)
        return real_stat(path, *a, **kw)

    monkeypatch.setattr(mount.os, "stat", fake_stat)
    with pytest.raises(FuseUnavailableError) as e:
        mount.check_fuse()
    assert e.value.exit_code == 13 and "/dev/fuse" in str(e.value)


def test_init_refuses_existing_vault_and_nonempty_dir(vault, tmp_path):
    res = run("init", str(vault.dir), "--passfile", str(vault.passfile), check=False)
    assert res.returncode == 14
    d = tmp_path / "full"
    d.mkdir()
    (d / "photo.jpg").write_bytes(b"x")
    res = run("init", str(d), "--passfile", str(vault.passfile), check=False)
    assert res.returncode == 14 and "not empty" in res.stderr


def test_status_and_unmount_of_a_plain_directory_is_exit_15(tmp_path):
    for cmd in ("status", "unmount"):
        res = run(cmd, str(tmp_path), check=False)
        assert res.returncode == 15 and "not a sisafs mount" in res.stderr


def test_no_passphrase_source_without_terminal(vault):
    res = run("mount", str(vault.dir), str(vault.mnt), check=False, stdin=open(os.devnull))
    assert res.returncode == 2 and "--passfile" in res.stderr


def test_extpass(vault):
    res = run("people", "list", "--vault", str(vault.dir), "--extpass",
              f"cat {vault.passfile}", check=False)
    assert res.returncode == 0, res.stderr
