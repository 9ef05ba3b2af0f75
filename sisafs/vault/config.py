"""The vault config: a versioned JSON file holding the wrapped master key and settings.

Modelled on gocryptfs.conf: feature flags name every on-disk format the vault uses, and a
flag this version does not know refuses the mount rather than misreading data. The file
is replaced atomically (temp file, fsync, rename) so a crash never leaves half a config.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from sisafs.crypto.errors import WrongPassphrase
from sisafs.crypto.keys import KdfParams, unwrap_key, wrap_key
from sisafs.errors import ConfigError, WrongPassphraseError
from sisafs.vault.layout import CONFIG_NAME

FORMAT = "sisafs-vault"
VERSION = 1
KNOWN_FLAGS = frozenset({"block-file-v1", "restore-record-v1", "kdf-argon2id", "kdf-scrypt",
                         "people-store-v1"})
DEFAULT_SETTINGS: dict = {
    "level": 3,
    "workers": 0,  # 0 = one per CPU core
    "cache_mb": 256,
    "detectors": {},  # sisafs.detect.stack.DetectorSettings, defaults when empty
    "preferences": {},  # sisafs.rank.Preferences, defaults when empty
}


@dataclass
class VaultConfig:
    kdf: KdfParams
    wrapped_key: bytes
    flags: list[str]
    settings: dict = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    created: str = ""

    @staticmethod
    def path(vault: Path) -> Path:
        return Path(vault) / CONFIG_NAME

    @classmethod
    def create(cls, passphrase: bytes, kdf: KdfParams) -> tuple[VaultConfig, bytes]:
        """A new config with a fresh random master key; returns (config, master key)."""
        import datetime

        master = os.urandom(32)
        flags = ["block-file-v1", "restore-record-v1", "people-store-v1",
                 f"kdf-{kdf.algorithm}"]
        cfg = cls(kdf, wrap_key(master, kdf.derive(passphrase)), flags,
                  created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
        return cfg, master

    def unlock(self, passphrase: bytes) -> bytes:
        try:
            return unwrap_key(self.wrapped_key, self.kdf.derive(passphrase))
        except WrongPassphrase as e:
            raise WrongPassphraseError(str(e)) from None

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "version": VERSION, "feature_flags": self.flags,
            "created": self.created, "kdf": self.kdf.to_dict(),
            "wrapped_key": base64.b64encode(self.wrapped_key).decode(),
            "settings": self.settings,
        }, indent=2) + "\n"

    @classmethod
    def load(cls, vault: Path) -> VaultConfig:
        p = cls.path(vault)
        if not Path(vault).is_dir():
            raise ConfigError(f"{vault}: no such vault directory")
        try:
            raw = p.read_text()
        except FileNotFoundError:
            raise ConfigError(f"{p}: missing; is {vault} a sisafs vault? "
                              "(create one with 'sisafs init')") from None
        except OSError as e:
            raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
        try:
            d = json.loads(raw)
            if d.get("format") != FORMAT:
                raise ConfigError(f"{p}: not a sisafs vault config")
            if d.get("version") != VERSION:
                raise ConfigError(f"{p}: config version {d.get('version')} is not supported "
                                  f"by this sisafs (supports {VERSION})")
            flags = list(d["feature_flags"])
            unknown = sorted(set(flags) - KNOWN_FLAGS)
            if unknown:
                raise ConfigError(f"{p}: unknown feature flags {', '.join(unknown)}: this vault "
                                  "needs a newer sisafs; refusing to touch it")
            settings = dict(DEFAULT_SETTINGS)
            settings.update(d.get("settings") or {})
            return cls(KdfParams.from_dict(d["kdf"]), base64.b64decode(d["wrapped_key"]),
                       flags, settings, d.get("created", ""))
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{p}: corrupt config ({type(e).__name__}: {e})") from None

    def save(self, vault: Path) -> None:
        atomic_write(self.path(vault), self.to_json().encode(), mode=0o600)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a whole file so that readers see the old or the new content, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
