"""The vault config: a versioned JSON file holding the wrapped master key and settings.

Modelled on gocryptfs.conf: feature flags name every on-disk format the vault uses, and a
flag this version does not know refuses the mount rather than misreading data. The file
is replaced atomically (temp file, fsync, rename) so a crash never leaves half a config.

Key slots: the passphrase slot lives at the top level (`kdf`, `wrapped_key`) exactly as in
the first config layout, so every older config still loads. A vault with a recovery key
also has a `key_slots` list and the "key-slots-v1" flag, so an older sisafs that would
not understand the list refuses the vault instead of ignoring a slot. Every slot wraps
the same master key: changing a passphrase rewrites one slot and no data.

Settings that change how images are protected and that an older sisafs would silently
ignore (a `look`, per-directory overrides) add the "settings-v2" flag for the same reason:
ignoring them would weaken protection without anyone noticing.

Sealed settings (config version 2, flag "settings-sealed-v1"): the settings and flags are
also stored sealed under a subkey of the master key (sisafs/vault/settings_seal.py), and
the key slots are wrapped with their own associated data, so neither a hand edit nor a
downgrade to the unsealed layout goes unnoticed. `verify_settings(master)` is what
mount, protect and fsck call; a config can only be saved sealed by code that verified it
first (or created or upgraded it), so no command launders a tampered file by re-saving.
Version 1 configs still load and work (with a warning) until `sisafs upgrade`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fcntl
import json
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sisafs.crypto.errors import WrongPassphrase
from sisafs.crypto.keys import (
    WRAP_AAD,
    WRAP_AAD_SEALED,
    KdfParams,
    new_recovery_key,
    parse_recovery_key,
    recovery_kek,
    unwrap_key,
    wrap_key,
)
from sisafs.errors import ConfigError, WrongPassphraseError
from sisafs.fileio import write_all
from sisafs.pipeline.settings import effective_settings  # noqa: F401  (re-exported)
from sisafs.vault import settings_seal
from sisafs.vault.layout import CONFIG_NAME

FORMAT = "sisafs-vault"
VERSION = 2  # written when the settings are sealed; 1 (unsealed) still loads
SUPPORTED_VERSIONS = (1, 2)
FLAG_KEY_SLOTS = "key-slots-v1"
FLAG_SETTINGS_V2 = "settings-v2"
FLAG_SEALED = "settings-sealed-v1"
FLAG_INDEX = "integrity-index-v1"  # the vault index (vault/index.py) exists and is kept
KNOWN_FLAGS = frozenset({"block-file-v1", "restore-record-v1", "kdf-argon2id", "kdf-scrypt",
                         "people-store-v1", FLAG_KEY_SLOTS, FLAG_SETTINGS_V2, FLAG_SEALED,
                         FLAG_INDEX})
DEFAULT_SETTINGS: dict = {
    "level": 3,
    "workers": 0,  # 0 = one per CPU core
    "cache_mb": 256,
    "detectors": {},  # sisafs.detect.stack.DetectorSettings, defaults when empty
    "preferences": {},  # sisafs.rank.Preferences, defaults when empty
}
# What a per-directory override may change (the rest is per vault: workers, cache).
DIRECTORY_KEYS = ("level", "look", "detectors", "preferences")
SETTINGS_V2_KEYS = ("look", "directories")


@dataclass
class KeySlot:
    """An extra way to unwrap the master key. Only "recovery" exists today."""

    kind: str
    salt: bytes
    wrapped_key: bytes
    created: str = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "salt": base64.b64encode(self.salt).decode(),
                "wrapped_key": base64.b64encode(self.wrapped_key).decode(),
                "created": self.created}

    @classmethod
    def from_dict(cls, d: dict) -> KeySlot:
        if d["kind"] != "recovery":
            raise ValueError(f"unknown key slot kind {d['kind']!r}")
        return cls(d["kind"], base64.b64decode(d["salt"]), base64.b64decode(d["wrapped_key"]),
                   d.get("created", ""))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass
class VaultConfig:
    kdf: KdfParams
    wrapped_key: bytes
    flags: list[str]
    settings: dict = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    created: str = ""
    slots: list[KeySlot] = field(default_factory=list)
    changed: str = ""  # when a key slot was last rewritten (passwd, recovery)
    seal: bytes = b""  # settings_seal.seal(settings, flags) of a sealed config
    # Set only by create/verify_settings/upgrade: what save() seals with.
    _seal_key: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def sealed(self) -> bool:
        return FLAG_SEALED in self.flags

    @property
    def indexed(self) -> bool:
        """Whether the vault keeps an index (vault/index.py) that sessions must load."""
        return FLAG_INDEX in self.flags

    @property
    def _aad(self) -> bytes:
        return WRAP_AAD_SEALED if self.sealed else WRAP_AAD

    @staticmethod
    def path(vault: Path) -> Path:
        return Path(vault) / CONFIG_NAME

    @classmethod
    def create(cls, passphrase: bytes, kdf: KdfParams) -> tuple[VaultConfig, bytes]:
        """A new config with a fresh random master key; returns (config, master key)."""
        master = os.urandom(32)
        flags = ["block-file-v1", "restore-record-v1", "people-store-v1",
                 f"kdf-{kdf.algorithm}", FLAG_SEALED, FLAG_INDEX]
        cfg = cls(kdf, wrap_key(master, kdf.derive(passphrase), WRAP_AAD_SEALED), flags,
                  created=_now())
        cfg._seal_key = settings_seal.seal_key(master)
        return cfg, master

    # -- key slots -------------------------------------------------------------------
    def unlock(self, passphrase: bytes, recovery_only: bool = False) -> bytes:
        """The master key from the passphrase or, where it is one, the recovery key.

        A secret that parses as a recovery key (its checksum holds) tries the recovery
        slot first: that costs one HKDF, while the passphrase slot costs a full Argon2id."""
        recovery = parse_recovery_key(passphrase)
        if recovery is not None:
            for slot in self.slots:
                kek = recovery_kek(recovery, slot.salt)
                try:
                    return unwrap_key(slot.wrapped_key, kek, self._aad)
                except WrongPassphrase:
                    self._refuse_downgrade(slot.wrapped_key, kek)
                    continue
        if recovery_only:
            if recovery is None:
                raise WrongPassphraseError("not a recovery key (expected 14 groups of 4 "
                                           "characters; check for a typo)")
            raise WrongPassphraseError("wrong recovery key (it is well formed, but not "
                                       "this vault's)")
        kek = self.kdf.derive(passphrase)
        try:
            return unwrap_key(self.wrapped_key, kek, self._aad)
        except WrongPassphrase as e:
            self._refuse_downgrade(self.wrapped_key, kek)
            raise WrongPassphraseError(str(e)) from None

    def _refuse_downgrade(self, wrapped: bytes, kek: bytes) -> None:
        """An unsealed config whose slot opens only as a sealed one was stripped of its
        seal behind sisafs's back: say so instead of "wrong passphrase"."""
        if self.sealed:
            return
        try:
            unwrap_key(wrapped, kek, WRAP_AAD_SEALED)
        except WrongPassphrase:
            return
        raise ConfigError("sisafs.conf: this vault's settings were sealed, but the config "
                          "has been rewritten without its seal (tampered or replaced by an "
                          "old copy); refusing it")

    # -- sealed settings -------------------------------------------------------------
    def verify_settings(self, master: bytes) -> bool:
        """Check the clear settings against the sealed copy; ConfigError naming every
        field changed behind sisafs's back. False for an unsealed (version 1) config,
        which has nothing to check against (the caller warns: `sisafs upgrade`)."""
        if not self.sealed:
            return False
        key = settings_seal.seal_key(master)
        sealed = settings_seal.open_seal(self.seal, key) if self.seal else None
        if sealed is None:
            raise ConfigError("sisafs.conf: the settings seal does not authenticate "
                              "(edited, or copied from another vault); refusing the vault")
        # Defaults fill both sides the same way, so a later sisafs that adds a default
        # setting does not read every older seal as tampered.
        sealed["settings"] = {**DEFAULT_SETTINGS, **sealed["settings"]}
        current = {"settings": self.settings, "flags": sorted(self.flags)}
        names = settings_seal.differences(sealed, current)
        if names:
            raise ConfigError(
                "sisafs.conf: settings changed behind sisafs's back: "
                + settings_seal.describe(sealed, current, names)
                + ". Refusing the vault. Put the sealed values back with 'sisafs config "
                "VAULT --restore-settings', or keep the file's with --accept-settings.")
        self._seal_key = key
        return True

    def sealed_settings(self, master: bytes) -> dict | None:
        """The settings as sisafs last saved them (for --restore-settings)."""
        sealed = settings_seal.open_seal(self.seal, settings_seal.seal_key(master))
        return None if sealed is None else sealed["settings"]

    def trust_settings(self, master: bytes) -> None:
        """Accept the file's settings as they are (the user reviewed them): the next
        save seals them. Only `sisafs config --accept-settings` and upgrade call this."""
        self._seal_key = settings_seal.seal_key(master)

    def upgrade(self, master: bytes, passphrase: bytes) -> str | None:
        """Seal an unsealed config: re-wrap the passphrase slot with the sealed associated
        data and seal the settings. A recovery slot cannot be re-wrapped without its key,
        so it is replaced: returns the new recovery key (or None) to show once."""
        if self.sealed:
            raise ConfigError("the settings of this vault are already sealed")
        kek = self.kdf.derive(passphrase)
        try:
            if unwrap_key(self.wrapped_key, kek) != master:
                raise WrongPassphrase("the passphrase slot holds another key")
        except WrongPassphrase:
            raise WrongPassphraseError("upgrade needs the passphrase itself (the recovery "
                                       "key cannot re-wrap the passphrase slot)") from None
        self.flags.append(FLAG_SEALED)
        self.wrapped_key = wrap_key(master, kek, WRAP_AAD_SEALED)
        self.trust_settings(master)
        return self.add_recovery(master) if self.has_recovery else None

    def set_passphrase(self, master: bytes, passphrase: bytes, kdf: KdfParams) -> None:
        """Re-wrap the master key under a new passphrase (fresh salt); nothing else."""
        self.flags = [f for f in self.flags if not f.startswith("kdf-")]
        at = 3 if len(self.flags) >= 3 else len(self.flags)  # where create() puts it
        self.flags.insert(at, f"kdf-{kdf.algorithm}")
        self.kdf, self.wrapped_key = kdf, wrap_key(master, kdf.derive(passphrase), self._aad)
        self.changed = _now()

    def add_recovery(self, master: bytes) -> str:
        """Replace any recovery slot with a new one; returns the key, shown once."""
        from sisafs.crypto.keys import format_recovery_key

        key, salt = new_recovery_key(), os.urandom(16)
        self.slots = [s for s in self.slots if s.kind != "recovery"]
        self.slots.append(KeySlot("recovery", salt,
                                  wrap_key(master, recovery_kek(key, salt), self._aad), _now()))
        self.changed = _now()
        self._sync_flags()
        return format_recovery_key(key)

    def remove_recovery(self) -> bool:
        before = len(self.slots)
        self.slots = [s for s in self.slots if s.kind != "recovery"]
        self._sync_flags()
        return len(self.slots) != before

    @property
    def has_recovery(self) -> bool:
        return any(s.kind == "recovery" for s in self.slots)

    def _sync_flags(self) -> None:
        """Name exactly the optional features in use, so configs without them stay
        readable by the sisafs that wrote the first layout."""
        wanted = {FLAG_KEY_SLOTS: bool(self.slots),
                  FLAG_SETTINGS_V2: any(self.settings.get(k) for k in SETTINGS_V2_KEYS)}
        for flag, on in wanted.items():
            if on and flag not in self.flags:
                self.flags.append(flag)
            elif not on and flag in self.flags:
                self.flags.remove(flag)

    # -- file ------------------------------------------------------------------------
    def to_json(self) -> str:
        self._sync_flags()
        d: dict[str, Any] = {
            "format": FORMAT, "version": VERSION if self.sealed else 1,
            "feature_flags": self.flags,
            "created": self.created, "kdf": self.kdf.to_dict(),
            "wrapped_key": base64.b64encode(self.wrapped_key).decode(),
        }
        if self.slots:
            d["key_slots"] = [s.to_dict() for s in self.slots]
        if self.changed:
            d["keys_changed"] = self.changed
        d["settings"] = self.settings
        if self.sealed:
            if self._seal_key is None:
                raise RuntimeError("saving sealed settings that were never verified")
            self.seal = settings_seal.seal(self.settings, self.flags, self._seal_key)
            d["settings_seal"] = base64.b64encode(self.seal).decode()
        return json.dumps(d, indent=2) + "\n"

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
            if d.get("version") not in SUPPORTED_VERSIONS:
                raise ConfigError(f"{p}: config version {d.get('version')} is not supported "
                                  f"by this sisafs (supports 1 to {VERSION})")
            flags = list(d["feature_flags"])
            unknown = sorted(set(flags) - KNOWN_FLAGS)
            if unknown:
                raise ConfigError(f"{p}: unknown feature flags {', '.join(unknown)}: this vault "
                                  "needs a newer sisafs; refusing to touch it")
            if "key_slots" in d and FLAG_KEY_SLOTS not in flags:
                raise ConfigError(f"{p}: key_slots without the {FLAG_KEY_SLOTS} flag")
            if (d["version"] == 2) != (FLAG_SEALED in flags) or \
                    ("settings_seal" in d) != (FLAG_SEALED in flags):
                raise ConfigError(f"{p}: version {d['version']}, the {FLAG_SEALED} flag and "
                                  "the settings seal do not agree (tampered?)")
            settings = dict(DEFAULT_SETTINGS)
            settings.update(d.get("settings") or {})
            slots = [KeySlot.from_dict(s) for s in d.get("key_slots", [])]
            return cls(KdfParams.from_dict(d["kdf"]), base64.b64decode(d["wrapped_key"]),
                       flags, settings, d.get("created", ""), slots, d.get("keys_changed", ""),
                       base64.b64decode(d.get("settings_seal", "")))
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{p}: corrupt config ({type(e).__name__}: {e})") from None

    def save(self, vault: Path) -> None:
        atomic_write(self.path(vault), self.to_json().encode(), mode=0o600)


@contextlib.contextmanager
def locked(vault: Path) -> Iterator[None]:
    """Hold the vault's config lock (flock on the vault directory itself, so no lock
    file appears in the backing tree): two `passwd`/`config` runs must not both read the
    old config and each save their own change over the other's."""
    fd = os.open(vault, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a whole file so that readers see the old or the new content, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fd, data)  # a short write (full disk) must not pass for the file
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# -- settings --------------------------------------------------------------------------
def normalize_dir(relpath: str) -> str:
    """A directory key as stored: relative to the vault root, '/'-separated, no '.',
    '..' or trailing slash. Raises ValueError for paths that leave the vault."""
    norm = posixpath.normpath(relpath.replace(os.sep, "/").strip("/")) if relpath else ""
    if norm in ("", "."):
        raise ValueError("a directory override needs a subdirectory (use the vault-wide "
                         "setting for the root)")
    if norm == ".." or norm.startswith("../"):
        raise ValueError(f"{relpath!r} is outside the vault")
    return norm


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")


def _check_protection(where: str, s: dict) -> None:
    from sisafs.detect.stack import DetectorSettings
    from sisafs.formats.looks import LOOKS
    from sisafs.rank import Preferences

    if "level" in s:
        _check_int(f"{where}level", s["level"], 1, 5)
    look = s.get("look")
    if look is not None and look not in LOOKS:
        raise ValueError(f"{where}look must be one of {', '.join(LOOKS)}, not {look!r}")
    for key, parse in (("detectors", DetectorSettings.from_dict),
                       ("preferences", Preferences.from_dict)):
        try:
            parse(s.get(key) or {})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}{key}: {e}") from None


def _check_executor(settings: dict) -> None:
    """settings["executor"] belongs to sisafs/pipeline/executor.py, which validates it."""
    from sisafs.errors import SisafsError
    from sisafs.pipeline.executor import ExecutorSpec

    try:
        ExecutorSpec.from_settings(settings)
    except SisafsError as e:
        raise ValueError(str(e)) from None


def validate_settings(settings: dict) -> None:
    """Raise ValueError naming the first bad setting; accept every valid config.

    Each directory override is checked merged with the vault-wide settings, as the
    worker will see it, so an override cannot produce an invalid combination (a name
    both always and never protected, say)."""
    # Optional settings, absent from DEFAULT_SETTINGS so that old configs re-save byte
    # for byte: max_image_mb (default 256): larger images stay encrypted whole, since a
    # job holds the whole image in memory.
    # max_image_mp (default 50): images that decode to more pixels stay encrypted whole
    # (sisafs/formats/limits.py), since a small file can declare a huge canvas.
    known = set(DEFAULT_SETTINGS) | {"look", "directories", "executor", "max_image_mb",
                                     "max_image_mp"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    _check_int("workers", settings.get("workers", 0), 0, 256)
    _check_int("cache_mb", settings.get("cache_mb", 256), 0, 1 << 20)
    _check_int("max_image_mb", settings.get("max_image_mb", 256), 1, 1 << 16)
    _check_int("max_image_mp", settings.get("max_image_mp", 50), 1, 1000)
    _check_protection("", settings)
    if settings.get("executor") is not None:
        _check_executor(settings)
    directories = settings.get("directories") or {}
    if not isinstance(directories, dict):
        raise ValueError("directories must be an object of SUBDIR: {settings}")
    for name, override in directories.items():
        if normalize_dir(name) != name:
            raise ValueError(f"directory {name!r} is not normalised "
                             f"(expected {normalize_dir(name)!r})")
        if not isinstance(override, dict):
            raise ValueError(f"directories[{name!r}] must be an object")
        bad = sorted(set(override) - set(DIRECTORY_KEYS))
        if bad:
            raise ValueError(f"directories[{name!r}]: {', '.join(bad)} cannot be set per "
                             f"directory (only {', '.join(DIRECTORY_KEYS)})")
        _check_protection(f"directories[{name!r}].", override)
        _check_protection(f"directories[{name!r}].", effective_settings(settings, f"{name}/x"))
