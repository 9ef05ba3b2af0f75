"""Helpers shared by subcommands: passphrase options, unlocking a vault, reading inputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from sisafs.errors import ConfigError, InputError, UsageError


def passphrase_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passfile", metavar="FILE", help="read the passphrase from FILE")
    p.add_argument("--extpass", metavar="CMD",
                   help="run CMD and read the passphrase from its output")


def unlock(vault: Path, args) -> tuple:
    from sisafs.hygiene import wipe
    from sisafs.vault.config import VaultConfig
    from sisafs.vault.passphrase import read_passphrase

    config = VaultConfig.load(vault)
    pw = read_passphrase(args.passfile, args.extpass)
    try:
        return config, config.unlock(pw)
    finally:
        wipe(pw)


def check_settings(vault: Path, config, master: bytes) -> None:
    """Refuse a vault whose settings were changed behind sisafs's back (ConfigError,
    exit 11, naming the fields); warn about a vault whose settings are not sealed yet.
    Every command that acts on the settings (mount, protect, fsck) calls this."""
    import sys

    from sisafs.vault import pins

    if config.verify_settings(master):
        pins.remember(master)
        return
    if pins.seen_sealed(master):
        raise ConfigError(f"{vault}: this machine has opened this vault with sealed "
                          "settings, but its sisafs.conf is now unsealed (version 1): an old "
                          "copy put back, or tampering. Refusing it. Review the settings "
                          f"('sisafs info {vault}'), then seal them again with 'sisafs "
                          f"upgrade {vault}'.")
    print(f"sisafs: warning: the settings of {vault} are not authenticated (config "
          f"version 1): anyone who can write {vault} can change them unnoticed. Seal "
          f"them with: sisafs upgrade {vault}", file=sys.stderr)


def executor_destination(settings: dict, args):
    """(executor spec, where photos and keys go): photos leave this process only where
    this command line says (sisafs/pipeline/executor.py, require_consent); mount and
    bulk print the destination before they start."""
    from sisafs.pipeline.executor import ExecutorSpec, describe, require_consent

    spec = ExecutorSpec.from_settings(settings).override(args.executor, args.ray_address,
                                                         args.workers)
    require_consent(spec, args.executor, args.ray_address)
    return spec, describe(spec)


def image_key(args) -> bytes:
    from sisafs.vault.keys import VaultKeys

    if args.keyfile:
        raw = Path(args.keyfile).read_bytes()
        if len(raw) != 32:
            raise InputError(f"{args.keyfile}: not a sisafs key file (expected 32 bytes)")
        return VaultKeys.from_master(raw).image
    if args.vault:
        config, master = unlock(Path(args.vault), args)
        check_settings(Path(args.vault), config, master)
        return VaultKeys.from_master(master).image
    raise UsageError("give --keyfile K or --vault V")


def read_input(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None


