"""Vault checking: fsck."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from sisafs.cli.common import check_settings, passphrase_args, unlock
from sisafs.errors import DamageFound, UsageError


def cmd_fsck(args) -> int:
    from sisafs.fsck import check_vault
    from sisafs.vault.index import Index
    from sisafs.vault.keys import VaultKeys

    vault = Path(args.vault)
    config, master = unlock(vault, args)
    check_settings(vault, config, master)
    show = (lambda rel: print(f"  checking {rel}", file=sys.stderr)) if args.verbose else None
    root, keys = str(vault.resolve()), VaultKeys.from_master(master)
    if args.rebuild_index:
        return _rebuild_index(vault, root, keys, config)
    index = Index.load(root, keys) if config.indexed else None
    report = check_vault(root, keys, show, index)
    if args.json:
        print(json.dumps({**asdict(report), "clean": report.clean}, indent=2))
    else:
        print(f"{report.files} files checked ({report.block_files} encrypted whole, "
              f"{report.protected} protected images, {report.pending} pending, "
              f"{report.failed} failed to protect), {report.bytes_checked} bytes "
              "authenticated")
        for rel in report.leftovers:
            print(f"  leftover temp file (removed at next mount): {rel}")
        for rel in report.adopted:
            print(f"  changed by a session that did not finish (a crash): {rel}")
        if not report.indexed:
            print("  no vault index (a vault from an older sisafs): rolled-back, swapped, "
                  "deleted and added files are not detected; see 'sisafs upgrade'")
        for f in report.damaged:
            print(f"  DAMAGED {f.path}: {f.problem}")
    if not report.clean:
        raise DamageFound(f"{len(report.damaged)} damaged file(s) in {vault}")
    return 0


def _rebuild_index(vault: Path, root: str, keys, config) -> int:
    """Adopt the files as they are into a new index: after the index was lost, or after
    the user restored files on purpose from a backup. Damaged files stay out of it."""
    from sisafs.fsck import check_vault
    from sisafs.vault.integrity import adopt_tree
    from sisafs.vault.lock import lock_vault

    if not config.indexed:
        raise UsageError(f"{vault} keeps no index yet: 'sisafs upgrade {vault}' builds it")
    lock_fd = lock_vault(root, "fsck --rebuild-index")
    try:
        report = check_vault(root, keys)
        idx = adopt_tree(root, keys, {f.path for f in report.damaged}, bind_xattrs=False)
        idx.close()
    finally:
        os.close(lock_fd)
    print(f"Rebuilt the vault index of {vault}: {len(idx.paths)} files adopted as they are "
          "now.")
    for f in report.damaged:
        print(f"  DAMAGED (left out, reads fail) {f.path}: {f.problem}")
    if not report.clean:
        raise DamageFound(f"{len(report.damaged)} damaged file(s) in {vault}")
    return 0


def register(sub) -> None:
    s = sub.add_parser("fsck", help="read and authenticate every file of a vault "
                                    "(exit 18 if anything is damaged)")
    s.add_argument("vault")
    s.add_argument("--json", action="store_true", help="machine-readable report")
    s.add_argument("-v", "--verbose", action="store_true", help="name each file checked")
    s.add_argument("--rebuild-index", action="store_true",
                   help="adopt every file that authenticates, as it is now, into a new "
                        "vault index (after the index was lost, or files were restored from "
                        "a backup on purpose)")
    passphrase_args(s)
    s.set_defaults(func=cmd_fsck)
