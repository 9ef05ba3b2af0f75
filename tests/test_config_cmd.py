"""`sisafs config`: valid changes are saved (vault-wide and per directory), invalid ones
are refused with exit 19 and leave sisafs.conf byte for byte as it was; and the pure
`effective_settings` the worker uses resolves directory overrides correctly."""

from __future__ import annotations

import json

import pytest
from helpers import Vault, run

from sisafs.errors import SettingsError
from sisafs.vault.config import (
    DEFAULT_SETTINGS,
    FLAG_SETTINGS_V2,
    VaultConfig,
    effective_settings,
    validate_settings,
)


@pytest.fixture(scope="module")
def shared_vault(tmp_path_factory):
    """One vault for the refusal cases: each must leave it unchanged anyway."""
    return Vault(tmp_path_factory.mktemp("config"))


def _enrol(vault, name: str) -> None:
    """A person in the vault's people store without a photo (an arbitrary embedding):
    `config --never` only checks that the name is enrolled."""
    import numpy as np

    from sisafs.cli.people_cmds import LABEL
    from sisafs.people import PeopleStore
    from sisafs.vault.keys import VaultKeys
    from sisafs.vault.layout import PEOPLE_FILE, PRIVATE_DIR

    config = VaultConfig.load(vault.dir)
    keys = VaultKeys.from_master(config.unlock(vault.passfile.read_text().strip().encode()))
    store = PeopleStore()
    store.add_embeddings(name, [np.ones(128, np.float32) / np.sqrt(128)])
    path = vault.dir / PRIVATE_DIR / PEOPLE_FILE
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_bytes(store.dump(lambda b: keys.seal_state(b, LABEL)))


def _settings(vault) -> dict:
    return json.loads((vault.dir / "sisafs.conf").read_text())["settings"]


@pytest.mark.parametrize("argv, message", [
    (["--level", "7"], "level must be"),
    (["--set", "detectors.face_treshold=0.4"], "unknown detect setting"),
    (["--set", "detectors.face_threshold=2"], "face_threshold must be"),
    (["--set", "colour=red"], "unknown setting 'colour'"),
    (["--set", "level"], "expected KEY=VALUE"),
    (["--priority", "faces,bogus"], "unknown priority 'bogus'"),
    (["--priority", "faces,faces"], "listed twice"),
    (["--dir", "../elsewhere", "--level", "5"], "outside the vault"),
    (["--dir", "Family", "--set", "workers=2"], "cannot be set per directory"),
    (["--dir", "Kids", "--level", "0"], "directories['Kids'].level"),
    (["--dir", "Kids", "--look", "auto", "--set", "look=sparkles"], "look must be one of"),
    (["--clear"], "--clear needs --dir"),
    (["--dir", "Nobody", "--clear"], "no override to clear"),
    (["--unset", "detectors.margin"], "is not set"),
    (["--never", "bob", "--passfile", "PASSFILE"], "'bob' is not enrolled"),
])
def test_invalid_settings_are_exit_19_and_change_nothing(shared_vault, argv, message):
    vault = shared_vault
    conf = vault.dir / "sisafs.conf"
    before = conf.read_bytes()
    argv = [str(shared_vault.passfile) if a == "PASSFILE" else a for a in argv]
    res = run("config", str(vault.dir), *argv, check=False)
    assert res.returncode == SettingsError.exit_code, res.stderr
    assert message in res.stderr
    assert conf.read_bytes() == before


def test_changes_and_directory_overrides_are_saved(vault):
    d = str(vault.dir)
    _enrol(vault, "me")
    run("config", d, "--level", "4", "--priority", "faces,text",
        "--set", "detectors.face_threshold=0.4", "--always", "car", "--never", "me",
        "--passfile", str(vault.passfile))
    run("config", d, "--dir", "Family", "--level", "5", "--look", "pixelate")
    run("config", d, "--dir", "Family/Public/", "--level", "2", "--always", "me")
    s = _settings(vault)
    assert s["level"] == 4 and s["detectors"] == {"face_threshold": 0.4}
    assert s["preferences"] == {"priority": ["faces", "text"], "always": ["car"],
                                "never": ["me"]}
    assert s["directories"]["Family"] == {"level": 5, "look": "pixelate"}
    # The directory list starts from the vault's list; "me" moved from never to always.
    assert s["directories"]["Family/Public"] == {
        "level": 2, "preferences": {"always": ["car", "me"], "never": []}}
    cfg = VaultConfig.load(vault.dir)
    assert FLAG_SETTINGS_V2 in cfg.flags
    validate_settings(cfg.settings)
    assert json.loads(run("config", d, "--dir", "Family").stdout) == {
        "Family": {"level": 5, "look": "pixelate"}}
    # Back out: the flag goes once nothing needs it.
    run("config", d, "--dir", "Family", "--clear")
    run("config", d, "--dir", "Family/Public", "--clear", "--unset", "level")
    run("config", d, "--unset", "detectors.face_threshold", "--unset", "level")
    s = _settings(vault)
    assert "directories" not in s and s["level"] == 3 and s["detectors"] == {}
    assert FLAG_SETTINGS_V2 not in VaultConfig.load(vault.dir).flags


def test_effective_settings_resolves_directories_outermost_first():
    settings = {
        "level": 3, "detectors": {"face_threshold": 0.4}, "preferences": {"never": ["me"]},
        "directories": {
            "Family": {"level": 5, "detectors": {"margin": 0.3}},
            "Family/Public": {"level": 2, "look": "blur"},
            "Fam": {"level": 1},
        },
    }
    top = effective_settings(settings, "photo.jpg")
    assert top == {"level": 3, "look": "noise", "detectors": {"face_threshold": 0.4},
                   "preferences": {"never": ["me"]}}
    fam = effective_settings(settings, "Family/2024/a.jpg")
    assert fam["level"] == 5 and fam["look"] == "noise"
    assert fam["detectors"] == {"face_threshold": 0.4, "margin": 0.3}
    pub = effective_settings(settings, "/Family/Public/b.png")
    assert (pub["level"], pub["look"]) == (2, "blur")
    assert pub["detectors"]["margin"] == 0.3
    # Whole path components only: "Familyx" is not inside "Family" or "Fam".
    assert effective_settings(settings, "Familyx/c.jpg")["level"] == 3
    # A file named like a directory is not inside it.
    assert effective_settings(settings, "Family")["level"] == 3
    assert settings["directories"]["Family"] == {"level": 5, "detectors": {"margin": 0.3}}


def test_validate_settings_checks_merged_directory_settings():
    with pytest.raises(ValueError, match="both always and never"):
        validate_settings({"level": 3, "preferences": {"never": ["me"]},
                           "directories": {"Kids": {"preferences": {"always": ["me"]}}}})
    with pytest.raises(ValueError, match="not normalised"):
        validate_settings({"level": 3, "directories": {"Kids/": {"level": 4}}})
    with pytest.raises(ValueError, match="unknown setting"):
        validate_settings({"level": 3, "colour": "red"})
    validate_settings(dict(DEFAULT_SETTINGS))
