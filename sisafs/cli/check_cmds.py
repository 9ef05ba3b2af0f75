"""Vault checking: fsck."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from sisafs.cli.common import check_settings, passphrase_args, unlock
from sisafs.errors import DamageFound


def cmd_fsck(args) -> int:
    from sisafs.fsck import check_vault
    from sisafs.vault.keys import VaultKeys

    vault = Path(args.vault)
    config, master = unlock(vault, args)
    check_settings(vault, config, master)
    show = (lambda rel: print(f"  checking {rel}", file=sys.stderr)) if args.verbose else None
    report = check_vault(str(vault.resolve()), VaultKeys.from_master(master), show)
    if args.json:
        print(json.dumps({**asdict(report), "clean": report.clean}, indent=2))
    else:
        print(f"{report.files} files checked ({report.block_files} encrypted whole, "
              f"{report.protected} protected images, {report.pending} pending, "
              f"{report.failed} failed to protect), {report.bytes_checked} bytes "
              "authenticated")
        for rel in report.leftovers:
            print(f"  leftover temp file (removed at next mount): {rel}")
        for f in report.damaged:
            print(f"  DAMAGED {f.path}: {f.problem}")
    if not report.clean:
        raise DamageFound(f"{len(report.damaged)} damaged file(s) in {vault}")
    return 0


def register(sub) -> None:
    s = sub.add_parser("fsck", help="read and authenticate every file of a vault "
                                    "(exit 18 if anything is damaged)")
    s.add_argument("vault")
    s.add_argument("--json", action="store_true", help="machine-readable report")
    s.add_argument("-v", "--verbose", action="store_true", help="name each file checked")
    passphrase_args(s)
    s.set_defaults(func=cmd_fsck)
