"""Tamper suite, settings rows: an attacker who can write the backing directory edits
sisafs.conf. Sealed settings make mount, protect and fsck refuse (exit 11, naming the
field); a Ray executor named only by the config sends nothing anywhere; version 1
configs still load and are sealed by `sisafs upgrade`; every config version has a frozen
fixture. Tier: CLI subprocesses, no FUSE mount needed (the refusals come first)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from helpers import PASSPHRASE, run

from sisafs.crypto.keys import KdfParams
from sisafs.errors import ConfigError, UsageError
from sisafs.pipeline.executor import ExecutorSpec, describe, require_consent
from sisafs.vault.config import FLAG_SEALED, VaultConfig
from sisafs.vault.index import Index
from sisafs.vault.keys import VaultKeys

FIXTURES = Path(__file__).parent / "fixtures"
V1_PASSPHRASE = "frozen v1 passphrase"
V2_PASSPHRASE = "frozen v2 passphrase"
V2_MASTER_SHA256 = "4fd00e20c947ef56fd9d43df452dda0bce4971d8ee6bebe164b1cd4eca794096"
EXIT_CONFIG = ConfigError.exit_code  # 11


class _CheapVault:
    """What `sisafs init` writes, with the tests' cheap KDF: every command of this file
    unlocks it, and a full Argon2id per command would dominate the run."""

    def __init__(self, root: Path):
        self.dir = root / "vault"
        self.dir.mkdir(mode=0o700)
        config, master = VaultConfig.create(PASSPHRASE.encode(), KdfParams.new(cheap=True))
        (self.dir / ".sisafs").mkdir(mode=0o700)
        Index.create(str(self.dir), VaultKeys.from_master(master))
        config.save(self.dir)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """A fresh (sealed) vault and a source tree for protect -r; each test copies it."""
    root = tmp_path_factory.mktemp("sealed")
    v = _CheapVault(root)
    src = root / "src"
    src.mkdir()
    (src / "note.txt").write_text("hello\n")
    return v, src


def _copy(sealed, tmp_path) -> tuple[Path, Path, Path]:
    v, src = sealed
    vault = tmp_path / "vault"
    shutil.copytree(v.dir, vault)
    passfile = tmp_path / "pass"
    passfile.write_text(PASSPHRASE + "\n")
    (tmp_path / "mnt").mkdir()
    return vault, passfile, src


def _edit(vault: Path, change) -> None:
    conf = vault / "sisafs.conf"
    d = json.loads(conf.read_text())
    change(d)
    conf.write_text(json.dumps(d, indent=2))


def _refusals(vault: Path, passfile: Path, src: Path, tmp_path: Path) -> list:
    pw = ["--passfile", str(passfile)]
    return [
        run("mount", str(vault), str(tmp_path / "mnt"), *pw, check=False),
        run("protect", "-r", str(src), "--vault", str(vault), *pw, check=False),
        run("protect", str(src / "note.txt"), str(tmp_path / "o.jpg"), "--vault", str(vault),
            *pw, check=False),
        run("fsck", str(vault), *pw, check=False),
    ]


ATTACKS = {
    "level": lambda d: d["settings"].update(level=1),
    "detectors.faces": lambda d: d["settings"]["detectors"].update(faces=False),
    "preferences.never": lambda d: d["settings"]["preferences"].update(never=["face"]),
    "directories": lambda d: d["settings"].update(directories={"x": {"level": 1}}),
    "executor": lambda d: d["settings"].update(executor={"kind": "ray",
                                                         "address": "10.6.6.6:6379"}),
    "workers": lambda d: d["settings"].update(workers=64),
    "cache_mb": lambda d: d["settings"].update(cache_mb=1 << 19),
    "max_image_mb": lambda d: d["settings"].update(max_image_mb=60000),
    "max_image_mp": lambda d: d["settings"].update(max_image_mp=10000),
}


@pytest.mark.parametrize("field", list(ATTACKS))
def test_hand_edited_setting_makes_mount_exit_11(sealed, tmp_path, field):
    vault, passfile, _ = _copy(sealed, tmp_path)
    _edit(vault, ATTACKS[field])
    res = run("mount", str(vault), str(tmp_path / "mnt"), "--passfile", str(passfile),
              check=False)
    assert res.returncode == EXIT_CONFIG, res.stderr
    assert "changed behind sisafs's back" in res.stderr and field in res.stderr
    assert not any((tmp_path / "mnt").iterdir())


def test_hand_edited_level_makes_protect_and_fsck_exit_11(sealed, tmp_path):
    vault, passfile, src = _copy(sealed, tmp_path)
    _edit(vault, lambda d: (ATTACKS["level"](d), ATTACKS["detectors.faces"](d)))
    for res in _refusals(vault, passfile, src, tmp_path)[1:]:
        assert res.returncode == EXIT_CONFIG, res.stderr
        assert "level (sealed 3, file 1)" in res.stderr and "detectors.faces" in res.stderr
    assert not (vault / "note.txt").exists()  # protect -r wrote nothing


def test_downgrade_and_broken_seal_are_refused(sealed, tmp_path):
    vault, passfile, src = _copy(sealed, tmp_path)

    def strip(d):
        d["version"] = 1
        d["feature_flags"].remove(FLAG_SEALED)
        del d["settings_seal"]
        d["settings"]["level"] = 1

    _edit(vault, strip)
    for res in _refusals(vault, passfile, src, tmp_path)[::3]:  # mount, fsck
        assert res.returncode == EXIT_CONFIG and "without its seal" in res.stderr, res.stderr
    (tmp_path / "b").mkdir()
    vault2, _, _ = _copy(sealed, tmp_path / "b")
    _edit(vault2, lambda d: d.update(settings_seal=d["settings_seal"][:-8] + "AAAAAAA="))
    res = run("fsck", str(vault2), "--passfile", str(passfile), check=False)
    assert res.returncode == EXIT_CONFIG and "seal does not authenticate" in res.stderr


def test_config_is_the_way_to_change_and_to_repair(sealed, tmp_path):
    vault, passfile, src = _copy(sealed, tmp_path)
    pw = ["--passfile", str(passfile)]
    run("config", str(vault), "--level", "4", *pw)
    assert run("fsck", str(vault), *pw).returncode == 0
    _edit(vault, ATTACKS["level"])
    res = run("config", str(vault), "--level", "5", *pw, check=False)
    assert res.returncode == EXIT_CONFIG and "level (sealed 4, file 1)" in res.stderr
    run("config", str(vault), "--restore-settings", *pw)
    assert VaultConfig.load(vault).settings["level"] == 4
    _edit(vault, ATTACKS["level"])
    run("config", str(vault), "--accept-settings", *pw)
    assert VaultConfig.load(vault).settings["level"] == 1
    assert run("fsck", str(vault), *pw).returncode == 0
    # passwd and recovery re-save the config: they too refuse instead of re-sealing.
    _edit(vault, ATTACKS["workers"])
    new = tmp_path / "new"
    new.write_text("another passphrase\n")
    res = run("passwd", str(vault), *pw, "--new-passfile", str(new), check=False)
    assert res.returncode == EXIT_CONFIG and "workers" in res.stderr


def test_executor_in_config_alone_sends_nothing(sealed, tmp_path):
    vault, passfile, src = _copy(sealed, tmp_path)
    pw = ["--passfile", str(passfile)]
    run("config", str(vault), "--set", "executor.kind=ray", "--set",
        "executor.address=10.6.6.6:6379", *pw)
    for res in (run("mount", str(vault), str(tmp_path / "mnt"), *pw, check=False),
                run("protect", "-r", str(src), "--vault", str(vault), *pw, check=False)):
        assert res.returncode == UsageError.exit_code, res.stderr
        assert "--executor ray --ray-address 10.6.6.6:6379" in res.stderr
    # Naming the executor but not the cluster is not enough either.
    res = run("protect", "-r", str(src), "--vault", str(vault), *pw, "--executor", "ray",
              check=False)
    assert res.returncode == UsageError.exit_code and "--ray-address" in res.stderr
    # The command line can always keep everything here.
    out = run("protect", "-r", str(src), "--vault", str(vault), *pw, "--executor", "local",
              "--workers", "1")
    assert "stay on this machine" in out.stderr


def test_consent_rules_and_destination_text():
    ray_cfg = ExecutorSpec.from_settings({"executor": {"kind": "ray"}})
    with pytest.raises(UsageError, match="--executor ray"):
        require_consent(ray_cfg.override(None, None, None), None, None)
    require_consent(ray_cfg.override("ray", None, None), "ray", None)
    spec = ExecutorSpec("ray", "10.0.0.5:6379")
    require_consent(spec, "ray", "10.0.0.5:6379")
    assert "10.0.0.5:6379" in describe(spec) and "image key" in describe(spec)
    detect = ExecutorSpec("ray", "10.0.0.5:6379", remote="detect")
    assert "keys stay in this process" in describe(detect)
    assert "stay on this machine" in describe(ExecutorSpec("local", workers=2))


def test_frozen_v1_config_upgrades_and_is_then_sealed(tmp_path):
    vault = tmp_path / "v1"
    shutil.copytree(FIXTURES / "config_v1", vault)
    passfile = tmp_path / "pass"
    passfile.write_text(V1_PASSPHRASE + "\n")
    pw = ["--passfile", str(passfile)]
    before = VaultConfig.load(vault)
    master = before.unlock(V1_PASSPHRASE.encode())
    assert not before.sealed and before.verify_settings(master) is False
    res = run("fsck", str(vault), *pw)
    assert "not authenticated" in res.stderr and "sisafs upgrade" in res.stderr
    out = run("upgrade", str(vault), *pw).stdout
    assert "Sealed the settings" in out
    after = VaultConfig.load(vault)
    assert after.sealed and after.unlock(V1_PASSPHRASE.encode()) == master
    assert after.settings == before.settings and after.verify_settings(master)
    assert json.loads((vault / "sisafs.conf").read_text())["version"] == 2
    assert "not authenticated" not in run("fsck", str(vault), *pw).stderr
    assert "Built the vault index" in out
    assert "already in the current format" in run("upgrade", str(vault), *pw).stdout
    # A stripped copy of the upgraded config does not open (the slot's AAD changed).
    old = (FIXTURES / "config_v1" / "sisafs.conf").read_bytes()
    _edit(vault, lambda d: (d.update(version=1), d["feature_flags"].remove(FLAG_SEALED),
                            d.pop("settings_seal")))
    res = run("fsck", str(vault), *pw, check=False)
    assert res.returncode == EXIT_CONFIG and "without its seal" in res.stderr
    # The pre-upgrade v1 file put back (a sync history, a backup) does open with its
    # slot, but this machine saw the vault sealed: refused as a rollback.
    (vault / "sisafs.conf").write_bytes(old)
    for cmd in (["fsck", str(vault)], ["mount", str(vault), str(tmp_path)]):
        res = run(*cmd, *pw, check=False)
        assert res.returncode == EXIT_CONFIG and "now unsealed" in res.stderr, res.stderr
    run("upgrade", str(vault), *pw)  # the way back, after a review
    assert run("fsck", str(vault), *pw).returncode == 0


def test_upgrade_replaces_a_recovery_key(tmp_path):
    vault = tmp_path / "v1"
    shutil.copytree(FIXTURES / "config_v1", vault)
    cfg = VaultConfig.load(vault)
    master = cfg.unlock(V1_PASSPHRASE.encode())
    old_key = cfg.add_recovery(master)
    cfg.save(vault)
    new_key = cfg.upgrade(master, bytearray(V1_PASSPHRASE.encode()))
    cfg.save(vault)
    again = VaultConfig.load(vault)
    assert new_key and again.unlock(new_key.encode()) == master
    with pytest.raises(Exception):  # noqa: B017 - the old slot is gone
        again.unlock(old_key.encode(), recovery_only=True)


def test_frozen_v2_config_loads_and_verifies(tmp_path):
    vault = tmp_path / "v2"
    shutil.copytree(FIXTURES / "config_v2", vault)
    cfg = VaultConfig.load(vault)
    master = cfg.unlock(V2_PASSPHRASE.encode())
    assert hashlib.sha256(master).hexdigest() == V2_MASTER_SHA256
    assert cfg.sealed and cfg.verify_settings(master)
    assert cfg.settings["directories"] == {"Family": {"level": 5}}
    info = json.loads(run("info", str(vault), "--json").stdout)
    assert info["config_version"] == 2 and info["settings_sealed"] is True


def test_frozen_v1_vault_upgrades_and_checks_clean(tmp_path):
    """The frozen v1 vault (tests/fixtures/vaults) is sealed by one command and its
    data, untouched by the upgrade, still authenticates."""
    vault = tmp_path / "v1"
    shutil.copytree(FIXTURES / "vaults" / "v1", vault, symlinks=True)
    passfile = tmp_path / "pass"
    passfile.write_text("frozen fixture\n")
    pw = ["--passfile", str(passfile)]
    out = run("upgrade", str(vault), *pw).stdout
    assert "Built the vault index" in out and "(3 files)" in out
    assert VaultConfig.load(vault).indexed
    res = run("fsck", str(vault), *pw, "--json")
    report = json.loads(res.stdout)
    assert report["protected"] == 2 and report["indexed"] and report["damaged"] == []
    assert "not authenticated" not in res.stderr
    assert "already in the current format" in run("upgrade", str(vault), *pw).stdout
    # From now on a file copied over another's name is found, and the vault can adopt
    # such a state on purpose (a restore from backup).
    album = vault / "album"
    shutil.copyfile(album / "tiny.png", album / "tiny.jpg")
    res = run("fsck", str(vault), *pw, check=False)
    assert res.returncode == 18 and "album/tiny.jpg: holds the file stored as " \
        "album/tiny.png" in res.stdout, res.stdout
    run("fsck", str(vault), *pw, "--rebuild-index")
    run("fsck", str(vault), *pw)
    (vault / ".sisafs" / "index").unlink()
    res = run("fsck", str(vault), *pw, check=False)
    assert res.returncode == EXIT_CONFIG and "index (.sisafs/index) is missing" in res.stderr
    run("fsck", str(vault), *pw, "--rebuild-index")
    _edit(vault, ATTACKS["level"])
    res = run("fsck", str(vault), *pw, check=False)
    assert res.returncode == EXIT_CONFIG and "level (sealed 3, file 1)" in res.stderr


def test_removing_the_index_flag_is_refused(sealed, tmp_path):
    """Switching the vault index off by hand (to hide a rollback) is a sealed change."""
    vault, passfile, src = _copy(sealed, tmp_path)
    _edit(vault, lambda d: d["feature_flags"].remove("integrity-index-v1"))
    for res in _refusals(vault, passfile, src, tmp_path):
        assert res.returncode == EXIT_CONFIG, res.stderr
        assert "changed behind sisafs's back" in res.stderr and "flags" in res.stderr
