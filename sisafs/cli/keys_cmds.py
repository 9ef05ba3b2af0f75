"""Key management: passwd, recovery, info (gocryptfs's -passwd and -info).

Every slot wraps the same master key, so changing a passphrase or the recovery key
rewrites one field of sisafs.conf and no data: a vault of any size changes its
passphrase in the time of one key derivation.
"""

from __future__ import annotations

import json
from pathlib import Path

from sisafs.cli.common import passphrase_args
from sisafs.errors import UsageError

RECOVERY_WARNING = ("Write it down and keep it apart from the vault: with it anyone can read "
                    "every original, and sisafs shows it only this once.")


def recovery_flag(p) -> None:
    p.add_argument("--recovery-key", action="store_true",
                   help="the secret given (terminal, --passfile, --extpass) is the recovery key")


def unlock_vault(vault: Path, args, prompt: str = "Passphrase: ") -> tuple:
    """(config, master key) from the passphrase or the recovery key.

    A recovery key in a --passfile works without --recovery-key; the flag only changes
    the prompt and refuses to fall back to the (slow) passphrase slot."""
    from sisafs.hygiene import wipe
    from sisafs.vault.config import VaultConfig
    from sisafs.vault.passphrase import read_passphrase

    config = VaultConfig.load(vault)
    recovery = bool(getattr(args, "recovery_key", False))
    secret = read_passphrase(args.passfile, args.extpass,
                             prompt="Recovery key: " if recovery else prompt)
    try:
        return config, config.unlock(secret, recovery_only=recovery)
    finally:
        wipe(secret)


def print_recovery_key(vault: Path, key: str) -> None:
    print(f"Recovery key for {vault}:\n\n    {key}\n\n{RECOVERY_WARNING}")


def cmd_passwd(args) -> int:
    from sisafs.crypto.keys import KdfParams
    from sisafs.hygiene import wipe
    from sisafs.vault.config import locked
    from sisafs.vault.passphrase import read_passphrase

    vault = Path(args.vault)
    config, master = unlock_vault(vault, args, prompt="Old passphrase: ")
    new = read_passphrase(args.new_passfile, args.new_extpass, confirm=True,
                          prompt="New passphrase: ")
    kdf = KdfParams.new(args.kdf or config.kdf.algorithm)
    with locked(vault):
        from sisafs.vault.config import VaultConfig

        # Re-read under the lock: keep what a concurrent `config` saved meanwhile.
        config = VaultConfig.load(vault)
        config.verify_settings(master)  # never re-seal settings changed behind our back
        config.set_passphrase(master, new, kdf)
        if config.unlock(new) != master:  # never save a slot that does not open
            raise RuntimeError("the new key slot does not unwrap the master key")
        config.save(vault)
    wipe(new)
    print(f"Changed the passphrase of {vault}; the old one no longer opens it. "
          "Running mounts keep working until unmounted.")
    return 0


def cmd_recovery(args) -> int:
    from sisafs.vault.config import VaultConfig, locked

    vault = Path(args.vault)
    if args.check:
        args.recovery_key = True
        unlock_vault(vault, args)
        print(f"That recovery key opens {vault}.")
        return 0
    config, master = unlock_vault(vault, args)
    with locked(vault):
        config = VaultConfig.load(vault)
        config.verify_settings(master)  # never re-seal settings changed behind our back
        if args.remove:
            if not config.remove_recovery():
                raise UsageError(f"{vault} has no recovery key")
            config.save(vault)
            print(f"Removed the recovery key of {vault}; only the passphrase opens it now.")
            return 0
        replaced = config.has_recovery
        key = config.add_recovery(master)
        config.save(vault)
    if replaced:
        print("The previous recovery key no longer opens the vault.")
    print_recovery_key(vault, key)
    return 0


def vault_info(vault: Path) -> dict:
    """Everything about a vault that is not a secret (no passphrase needed)."""
    from sisafs.detect.stack import DetectorSettings
    from sisafs.rank import Preferences
    from sisafs.vault.config import VERSION, VaultConfig

    config = VaultConfig.load(vault)
    kdf = config.kdf.to_dict()
    kdf.pop("salt")
    s = config.settings
    return {
        "vault": str(vault), "config_version": VERSION if config.sealed else 1,
        "settings_sealed": config.sealed, "created": config.created,
        "keys_changed": config.changed or None, "feature_flags": sorted(config.flags),
        "kdf": kdf, "key_slots": ["passphrase"] + [slot.kind for slot in config.slots],
        "level": s.get("level"), "look": s.get("look") or "by level",
        "workers": s.get("workers"), "cache_mb": s.get("cache_mb"),
        "detectors": DetectorSettings.from_dict(s.get("detectors") or {}).to_dict(),
        "preferences": Preferences.from_dict(s.get("preferences") or {}).to_dict(),
        "directories": s.get("directories") or {},
    }


def cmd_info(args) -> int:
    info = vault_info(Path(args.vault))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    kdf = ", ".join(f"{k}={v}" for k, v in info["kdf"].items())
    print(f"vault          {info['vault']}\n"
          f"config         version {info['config_version']}"
          f" (settings {'sealed' if info['settings_sealed'] else 'NOT sealed: sisafs upgrade'})"
          f", created {info['created']}"
          + (f", keys changed {info['keys_changed']}" if info["keys_changed"] else "") + "\n"
          f"feature flags  {' '.join(info['feature_flags'])}\n"
          f"kdf            {kdf}\n"
          f"key slots      {', '.join(info['key_slots'])}\n"
          f"level          {info['level']} (look: {info['look']})\n"
          f"workers        {info['workers'] or 'one per CPU core'}, cache {info['cache_mb']} MiB")
    print("detectors      " + ", ".join(f"{k}={v}" for k, v in info["detectors"].items()))
    prefs = info["preferences"]
    print(f"preferences    priority {','.join(prefs['priority'])}; "
          f"always {','.join(prefs['always']) or '-'}; never {','.join(prefs['never']) or '-'}")
    for name, override in sorted(info["directories"].items()):
        print(f"directory      {name}/: {json.dumps(override, sort_keys=True)}")
    return 0


def register(sub) -> None:
    s = sub.add_parser("passwd", help="change the passphrase (re-wraps the master key only)",
                       description="Change the passphrase of a vault. The old secret may be "
                       "the passphrase or the recovery key; nothing but the key slot changes.")
    s.add_argument("vault")
    passphrase_args(s)
    recovery_flag(s)
    s.add_argument("--new-passfile", metavar="FILE", help="read the new passphrase from FILE")
    s.add_argument("--new-extpass", metavar="CMD",
                   help="run CMD and read the new passphrase from its output")
    s.add_argument("--kdf", choices=["argon2id", "scrypt"],
                   help="key derivation for the new passphrase (default: as before)")
    s.set_defaults(func=cmd_passwd)

    s = sub.add_parser("recovery", help="create, replace, check or remove the recovery key",
                       description="Add a recovery key (printed once) that unlocks the vault "
                       "when the passphrase is lost; it replaces any earlier one.")
    s.add_argument("vault")
    passphrase_args(s)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--remove", action="store_true", help="delete the recovery key slot")
    g.add_argument("--check", action="store_true",
                   help="check that a recovery key (read like a passphrase) opens the vault")
    s.set_defaults(func=cmd_recovery)

    s = sub.add_parser("info", help="version, flags, KDF, key slots and settings (no secrets)")
    s.add_argument("vault")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)
