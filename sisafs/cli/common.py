"""Helpers shared by subcommands: passphrase options, unlocking a vault, reading inputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from sisafs.errors import InputError, UsageError


def passphrase_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passfile", metavar="FILE", help="read the passphrase from FILE")
    p.add_argument("--extpass", metavar="CMD",
                   help="run CMD and read the passphrase from its output")


def unlock(vault: Path, args) -> tuple:
    from sisafs.vault.config import VaultConfig
    from sisafs.vault.passphrase import read_passphrase

    config = VaultConfig.load(vault)
    pw = read_passphrase(args.passfile, args.extpass)
    return config, config.unlock(pw)


def image_key(args) -> bytes:
    from sisafs.vault.keys import VaultKeys

    if args.keyfile:
        raw = Path(args.keyfile).read_bytes()
        if len(raw) != 32:
            raise InputError(f"{args.keyfile}: not a sisafs key file (expected 32 bytes)")
        return VaultKeys.from_master(raw).image
    if args.vault:
        _, master = unlock(Path(args.vault), args)
        return VaultKeys.from_master(master).image
    raise UsageError("give --keyfile K or --vault V")


def read_input(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None


