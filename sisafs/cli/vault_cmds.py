"""Vault lifecycle: init, mount, unmount, status."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from sisafs.cli.common import check_settings, executor_destination, passphrase_args
from sisafs.cli.keys_cmds import print_recovery_key, recovery_flag, unlock_vault
from sisafs.errors import DamageFound, UsageError, VaultExistsError


def cmd_init(args) -> int:
    from sisafs.crypto.keys import KdfParams
    from sisafs.hygiene import wipe
    from sisafs.vault import pins
    from sisafs.vault.config import VaultConfig
    from sisafs.vault.index import Index
    from sisafs.vault.keys import VaultKeys
    from sisafs.vault.layout import PRIVATE_DIR
    from sisafs.vault.passphrase import read_passphrase

    vault = Path(args.vault)
    if VaultConfig.path(vault).exists():
        raise VaultExistsError(f"{vault}: already a sisafs vault")
    if vault.exists() and any(vault.iterdir()):
        raise VaultExistsError(f"{vault}: directory is not empty")
    if not 1 <= args.level <= 5:
        raise UsageError("--level must be between 1 and 5")
    pw = read_passphrase(args.passfile, args.extpass, confirm=True,
                         prompt="New vault passphrase: ")
    config, master = VaultConfig.create(pw, KdfParams.new(args.kdf))
    wipe(pw)
    config.settings["level"] = args.level
    recovery = config.add_recovery(master) if args.recovery else None
    config.changed = ""  # a new vault: no key has changed yet
    vault.mkdir(mode=0o700, parents=True, exist_ok=True)
    (vault / PRIVATE_DIR).mkdir(mode=0o700, exist_ok=True)
    Index.create(str(vault.resolve()), VaultKeys.from_master(master))  # before the flag
    config.save(vault)
    pins.remember(master)
    print(f"Created vault {vault} (security level {args.level}). "
          f"Mount it with: mkdir -p MOUNTPOINT && sisafs mount {vault} MOUNTPOINT")
    print(f"See what each level does to your own photos first: sisafs preview PHOTO... "
          f"(then sisafs config {vault} --level N)")
    if recovery:
        print()
        print_recovery_key(vault, recovery)
    return 0


def cmd_upgrade(args) -> int:
    """Bring a vault made by an older sisafs to the current format, in one explicit
    step (an older sisafs can no longer open it afterwards): seal the settings of a
    version 1 config (a recovery key is replaced), and build the vault index from the
    files as they are, after checking every one (exit 18 if any is damaged)."""
    from sisafs.fsck import check_vault
    from sisafs.hygiene import wipe
    from sisafs.vault import pins
    from sisafs.vault.config import FLAG_INDEX, VaultConfig, locked
    from sisafs.vault.integrity import adopt_tree
    from sisafs.vault.keys import VaultKeys
    from sisafs.vault.layout import PRIVATE_DIR
    from sisafs.vault.lock import lock_vault
    from sisafs.vault.passphrase import read_passphrase

    vault = Path(args.vault)
    first = VaultConfig.load(vault)
    if first.sealed and first.indexed:
        print(f"{vault}: already in the current format (settings sealed, vault index "
              "kept); nothing to do.")
        return 0
    pw = read_passphrase(args.passfile, args.extpass)
    recovery = None
    lock_fd = lock_vault(vault, "upgrade")
    try:
        with locked(vault):
            config = VaultConfig.load(vault)
            master = config.unlock(pw)
            if not config.sealed:
                recovery = config.upgrade(master, pw)
                config.save(vault)
                print(f"Sealed the settings of {vault} (config version 2): a change made "
                      "behind sisafs's back now makes mount, protect and fsck refuse, and "
                      "only 'sisafs config' with the passphrase changes them.")
            if not config.indexed:
                root = str(vault.resolve())
                keys = VaultKeys.from_master(master)
                report = check_vault(root, keys)
                if not report.clean:
                    for f in report.damaged:
                        print(f"  DAMAGED {f.path}: {f.problem}", file=sys.stderr)
                    raise DamageFound(f"{len(report.damaged)} damaged file(s): the index "
                                      "was not built (restore or delete them, then run "
                                      "upgrade again)")
                (vault / PRIVATE_DIR).mkdir(mode=0o700, exist_ok=True)
                idx = adopt_tree(root, keys, set(), bind_xattrs=True)
                idx.close()
                config.verify_settings(master)
                config.flags.append(FLAG_INDEX)
                config.save(vault)
                print(f"Built the vault index of {vault} ({len(idx.paths)} files): a file "
                      "rolled back, cut, swapped, deleted or added behind sisafs's back is "
                      "now refused (EIO) and named by 'sisafs fsck'.")
    finally:
        os.close(lock_fd)
    pins.remember(master)
    wipe(pw)
    print("sisafs older than this one can no longer open the vault.")
    if recovery:
        print("\nThe recovery key had to be replaced (a key slot cannot be re-sealed "
              "without its key); the old one no longer opens the vault.")
        print_recovery_key(vault, recovery)
    return 0


def cmd_mount(args) -> int:
    from sisafs.fs.mount import (
        MountOptions,
        check_fuse,
        check_mountpoint,
        daemonize_and_serve,
        serve,
        setup_logging,
    )
    from sisafs.hygiene import harden_process

    vault, mp = Path(args.vault), Path(args.mountpoint)
    config, master = unlock_vault(vault, args)
    check_settings(vault, config, master)
    check_mountpoint(mp)
    check_fuse()
    _, destination = executor_destination(config.settings, args)
    opts = MountOptions(vault.resolve(), mp.resolve(), args.foreground, args.allow_other,
                        args.workers, args.debug, args.executor, args.ray_address)
    print(f"sisafs: {destination}", file=sys.stderr)
    harden_process()  # before daemonising: the fork inherits both settings
    if args.foreground:
        setup_logging(opts)
        serve(opts, master, config, lambda _: None)
    else:
        daemonize_and_serve(opts, master, config)
    return 0


def cmd_unmount(args) -> int:
    import sys

    from sisafs import control
    from sisafs.report.progress import DrainProgress

    bar = DrainProgress(None if args.quiet else sys.stderr)
    try:
        st = control.unmount(Path(args.mountpoint), progress=bar)
    finally:
        bar.close()
    print(f"Unmounted {args.mountpoint}: {st['done']} protected, {st['failed']} failed "
          "to protect (kept encrypted whole).")
    return 0


def cmd_status(args) -> int:
    from sisafs import control

    if args.watch or args.until_idle:
        from sisafs.report.progress import watch

        if args.interval <= 0:
            raise UsageError("--interval must be positive")
        return watch(Path(args.mountpoint), args.interval, args.until_idle)
    st = control.status(Path(args.mountpoint))
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(f"queued {st['queued']}  running {st['running']}  done {st['done']} "
          f"(selective {st['selective']}, fallback {st['fallback']})  failed {st['failed']}")
    for path, state in st["paths"].items():
        print(f"  {state:24s} {path}")
    for path, problem in st.get("refused", {}).items():
        print(f"  refused (EIO)            {path}: {problem} (see 'sisafs fsck')")
    return 0


def register(sub) -> None:
    s = sub.add_parser("init", help="create a new vault")
    s.add_argument("vault")
    s.add_argument("--level", type=int, default=3, help="security level 1-5 (default 3)")
    s.add_argument("--kdf", choices=["argon2id", "scrypt"], default="argon2id")
    s.add_argument("--recovery", action="store_true",
                   help="also create a recovery key, printed once (see 'sisafs recovery')")
    passphrase_args(s)
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("upgrade", help="bring a vault from an older sisafs to the current "
                                       "format (sealed settings, vault index)",
                       description="Convert a vault's config to version 2: settings are "
                       "sealed under the master key, so a change behind sisafs's back "
                       "makes mount, protect and fsck refuse (exit 11). Then check every "
                       "file and build the vault index, so a file rolled back, cut, "
                       "swapped, deleted or added behind sisafs's back is found.")
    s.add_argument("vault")
    passphrase_args(s)
    s.set_defaults(func=cmd_upgrade)

    s = sub.add_parser("mount", help="unlock a vault and mount it")
    s.add_argument("vault")
    s.add_argument("mountpoint")
    s.add_argument("-f", "--foreground", action="store_true", help="do not daemonise")
    s.add_argument("--allow-other", action="store_true",
                   help="let other users see the protected images")
    s.add_argument("--workers", type=int, help="worker processes (default: CPU cores)")
    s.add_argument("--executor", choices=["local", "ray"],
                   help="where photos are protected: local processes, or Ray actors; "
                        "photos leave this process only with --executor ray given here "
                        "(the vault config alone is not enough)")
    s.add_argument("--ray-address", metavar="ADDR",
                   help="head of a running Ray cluster (host:port, or 'auto')")
    s.add_argument("--debug", action="store_true")
    passphrase_args(s)
    recovery_flag(s)
    s.set_defaults(func=cmd_mount)

    s = sub.add_parser("unmount", aliases=["umount"],
                       help="drain the queue, write everything, and unmount")
    s.add_argument("mountpoint")
    s.add_argument("--quiet", "-q", action="store_true",
                   help="no progress line while the queue drains (there is none "
                        "anyway when stderr is not a terminal)")
    s.set_defaults(func=cmd_unmount)

    s = sub.add_parser("status", help="queue depth, done, failed, per-path state")
    s.add_argument("mountpoint")
    s.add_argument("--json", action="store_true")
    s.add_argument("--watch", action="store_true",
                   help="live view (queue, rate, ETA, failures) until Ctrl-C")
    s.add_argument("--until-idle", action="store_true",
                   help="watch, and exit once the queue is empty")
    s.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="refresh period of --watch (default 1)")
    s.set_defaults(func=cmd_status)
