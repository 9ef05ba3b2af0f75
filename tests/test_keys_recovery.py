"""Recovery keys, `sisafs info`, and the frozen first config layout.

The recovery slot is a second wrapping of the same master key: it must open the vault
on its own (mount, passwd), survive a passphrase change, refuse typos as typos, and
vanish when removed. Old configs must keep loading."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import needs_fuse
from helpers import PASSPHRASE, run

from sisafs.crypto.keys import format_recovery_key, new_recovery_key, parse_recovery_key
from sisafs.errors import ConfigError, WrongPassphraseError
from sisafs.vault.config import FLAG_KEY_SLOTS, VaultConfig

KEY_RE = re.compile(r"\b(?:[A-Z2-7]{4}-){13}[A-Z2-7]{4}\b")
FIXTURE_V1 = Path(__file__).parent / "fixtures" / "config_v1"
V1_PASSPHRASE = b"frozen v1 passphrase"
V1_MASTER_SHA256 = "0f18376ab3f509e834dd0d96f92b793d8d2155a67012c11cf9bd7ad331ad0e9a"


def _init_with_recovery(tmp_path: Path) -> tuple[Path, Path, str]:
    passfile = tmp_path / "pass"
    passfile.write_text(PASSPHRASE + "\n")
    vault = tmp_path / "vault"
    out = run("init", str(vault), "--passfile", str(passfile), "--recovery",
              "--kdf", "scrypt").stdout
    keys = KEY_RE.findall(out)
    assert len(keys) == 1, out
    return vault, passfile, keys[0]


def test_recovery_key_text_round_trips_and_rejects_typos():
    key = new_recovery_key()
    text = format_recovery_key(key)
    assert KEY_RE.fullmatch(text)
    assert parse_recovery_key(text) == key
    assert parse_recovery_key(" " + text.lower().replace("-", " ") + "\n") == key
    typo = text[:7] + ("A" if text[7] != "A" else "B") + text[8:]
    assert parse_recovery_key(typo) is None
    assert parse_recovery_key(PASSPHRASE) is None


@needs_fuse
def test_recovery_key_mounts_and_resets_the_passphrase(tmp_path):
    vault, passfile, key = _init_with_recovery(tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    keyfile = tmp_path / "recovery"
    keyfile.write_text(key.lower().replace("-", " ") + "\n")  # as copied from paper
    try:
        run("mount", str(vault), str(mnt), "--passfile", str(passfile))
        (mnt / "diary.txt").write_bytes(b"dear diary\n" * 10)
        run("unmount", str(mnt))
        # The recovery key alone mounts and reads what was written with the passphrase.
        run("mount", str(vault), str(mnt), "--passfile", str(keyfile), "--recovery-key")
        assert (mnt / "diary.txt").read_bytes() == b"dear diary\n" * 10
        run("unmount", str(mnt))
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
    # --recovery-key refuses a passphrase instead of trying it.
    res = run("mount", str(vault), str(mnt), "--passfile", str(passfile), "--recovery-key",
              check=False)
    assert res.returncode == 10 and "not a recovery key" in res.stderr

    # Lost passphrase: passwd with the recovery key sets a new one.
    new = tmp_path / "new"
    new.write_text("new passphrase after loss\n")
    run("passwd", str(vault), "--passfile", str(keyfile), "--new-passfile", str(new))
    cfg = VaultConfig.load(vault)
    with pytest.raises(WrongPassphraseError):
        cfg.unlock(PASSPHRASE.encode())
    master = cfg.unlock(b"new passphrase after loss")
    assert cfg.unlock(key.encode()) == master, "passwd must keep the recovery slot"

    # Replacing the recovery key retires the old one; removing it leaves the passphrase.
    out = run("recovery", str(vault), "--passfile", str(new)).stdout
    (key2,) = KEY_RE.findall(out)
    res = run("recovery", str(vault), "--check", "--passfile", str(keyfile), check=False)
    assert res.returncode == 10 and "wrong recovery key" in res.stderr
    keyfile.write_text(key2)
    run("recovery", str(vault), "--check", "--passfile", str(keyfile))
    run("recovery", str(vault), "--remove", "--passfile", str(new))
    res = run("recovery", str(vault), "--check", "--passfile", str(keyfile), check=False)
    assert res.returncode == 10
    conf = json.loads((vault / "sisafs.conf").read_text())
    assert "key_slots" not in conf and FLAG_KEY_SLOTS not in conf["feature_flags"]


def test_info_shows_settings_and_no_secrets(tmp_path):
    vault, _, key = _init_with_recovery(tmp_path)
    conf = json.loads((vault / "sisafs.conf").read_text())
    info = json.loads(run("info", str(vault), "--json").stdout)
    assert info["key_slots"] == ["passphrase", "recovery"]
    assert info["kdf"]["algorithm"] == "scrypt" and info["kdf"]["n"] == 2**15
    assert info["level"] == 3 and info["detectors"]["faces"] is True
    assert info["preferences"]["priority"] == ["centre"]
    assert FLAG_KEY_SLOTS in info["feature_flags"]
    text = run("info", str(vault)).stdout + json.dumps(info)
    secrets = [conf["wrapped_key"], conf["kdf"]["salt"], key,
               conf["key_slots"][0]["wrapped_key"], conf["key_slots"][0]["salt"]]
    for secret in secrets:
        assert secret not in text
    assert "scrypt" in text and "recovery" in text


def test_frozen_v1_config_still_loads_unlocks_and_upgrades(tmp_path):
    vault = tmp_path / "v1"
    shutil.copytree(FIXTURE_V1, vault)
    cfg = VaultConfig.load(vault)
    master = cfg.unlock(V1_PASSPHRASE)
    assert hashlib.sha256(master).hexdigest() == V1_MASTER_SHA256
    info = json.loads(run("info", str(vault), "--json").stdout)
    assert info["level"] == 4 and info["key_slots"] == ["passphrase"]
    # Saving without new features keeps the first layout byte for byte.
    cfg.save(vault)
    assert (vault / "sisafs.conf").read_text() == (FIXTURE_V1 / "sisafs.conf").read_text()
    # Adding a recovery key upgrades it and names the new feature.
    key = cfg.add_recovery(master)
    cfg.save(vault)
    again = VaultConfig.load(vault)
    assert FLAG_KEY_SLOTS in again.flags
    assert again.unlock(key.encode()) == master == again.unlock(V1_PASSPHRASE)


def test_key_slots_without_their_flag_are_refused(tmp_path):
    vault = tmp_path / "v"
    shutil.copytree(FIXTURE_V1, vault)
    cfg = VaultConfig.load(vault)
    cfg.add_recovery(cfg.unlock(V1_PASSPHRASE))
    d = json.loads(cfg.to_json())
    d["feature_flags"].remove(FLAG_KEY_SLOTS)
    (vault / "sisafs.conf").write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=FLAG_KEY_SLOTS):
        VaultConfig.load(vault)
